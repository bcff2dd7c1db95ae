"""Initialise HTS-AT from a Swin Transformer ImageNet checkpoint (Microsoft's layout).

This is what the official ``main.py train()`` does with ``config.swin_pretrain_path``
(HTSAT_SPEC §6), and a little more:

* the file is ``torch.save({'model': state_dict})`` as Microsoft's Swin-Transformer writes it;
  its key names are HTS-AT's own (``patch_embed.*``, ``layers.{s}.blocks.{b}.*``,
  ``layers.{s}.downsample.*``, ``norm.*``), so tensors are matched by name and converted to
  Flax layouts with the same rules as :mod:`htsat_jax.convert`;
* ``patch_embed.proj.weight`` ``(C, 3, p, p)`` is averaged over its RGB input channels
  (``mean(dim=1, keepdim=True)``): HTS-AT's image has one channel;
* ``head.*`` (the ImageNet classifier) is dropped; ``bn0`` and ``tscam_conv`` keep the values
  they were initialised with (the Swin file has no such tensors);
* the buffers ``relative_position_index`` and ``attn_mask`` are skipped: this model computes them
  from its own geometry;
* beyond the official code (which asserts equal shapes): a Swin trained with another window size
  (e.g. ``swin_tiny_patch4_window7_224``: tables of ``13*13`` rows) is accepted; its relative
  position bias tables are resampled to ``(2W-1)^2`` rows with PyTorch's bicubic
  ``F.interpolate(mode='bicubic', align_corners=False)`` (A = -0.75, clamped borders), exactly
  as Microsoft's ``load_pretrained`` does when fine-tuning at a new resolution. The resampling
  is a numpy re-implementation of that (:func:`bicubic_resize_matrix`), not
  ``jax.image.resize`` (Keys' A = -0.5 and antialiasing when shrinking give other values).

Width, depth and head count must match the model config (the error names the key and the
shapes). Standard Swin-T (window 7) has heads ``(3, 6, 12, 24)``: set
``config.model.num_heads`` accordingly to use it; HTS-AT's ``(4, 8, 16, 32)`` is Swin-T/C24
(``swin_tiny_c24_patch4_window8_256.pth``), which loads without any resampling.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, Mapping

import numpy as np
from flax import traverse_util

from htsat_jax.convert import torch_htsat as convert
from htsat_jax.convert.common import CheckpointError, normalise_keys
from htsat_jax.models.htsat import HTSATConfig

TABLE = "relative_position_bias_table"
_EXAMPLE_KEY = "layers.0.blocks.0.attn.relative_position_bias_table"
_HEAD_KEYS = ("head.weight", "head.bias")
# Official keys that are not model state here: frozen frontend constants (recomputed) and the unused head.
_NOT_STATE = ("spectrogram_extractor.", "logmel_extractor.", "head.")


@dataclasses.dataclass
class SwinImportReport:
    """Where every tensor came from. Names are the official (torch) keys, e.g. ``norm.weight``.

    Every tensor of the model is in exactly one of ``taken``, ``resampled``, ``left_initial``;
    every key of the Swin file in exactly one of ``taken``, ``resampled``, ``skipped_source``.
    ``notes`` says what was done to a key when it was not a plain copy.
    """

    source: str
    taken: list[str] = dataclasses.field(default_factory=list)
    resampled: list[str] = dataclasses.field(default_factory=list)
    left_initial: list[str] = dataclasses.field(default_factory=list)
    skipped_source: list[str] = dataclasses.field(default_factory=list)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"Swin import from {self.source}:",
                 f"  taken: {len(self.taken)} tensors"
                 + ("" if "patch_embed.proj.weight" not in self.taken
                    else " (patch_embed.proj.weight averaged over its input channels)")]
        if self.resampled:
            shapes = list(dict.fromkeys(self.notes[k] for k in self.resampled))
            lines.append(f"  resampled (bicubic): {len(self.resampled)} relative position bias tables, "
                         + "; ".join(shapes))
        lines.append(f"  left at their initial values: {len(self.left_initial)} tensors"
                     + (f" ({', '.join(self.left_initial)})" if self.left_initial else ""))
        by_reason: dict[str, list[str]] = {}
        for k in self.skipped_source:
            by_reason.setdefault(self.notes.get(k, "not in the model"), []).append(k)
        lines.append(f"  skipped from the Swin file: {len(self.skipped_source)} keys")
        for reason, keys in by_reason.items():
            shown = ", ".join(keys) if len(keys) <= 4 else f"{len(keys)} keys like {keys[0]}"
            lines.append(f"    {shown}: {reason}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- reading


def is_swin_state(obj: Any) -> bool:
    """True for Microsoft's container: ``{'model': {'layers.0.blocks.0.attn.relative_position_bias_table': ...}}``."""
    return (isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping)
            and any(re.fullmatch(r"layers\.\d+\.blocks\.\d+\.attn\." + TABLE, str(k)) for k in obj["model"]))


def read_swin_state_dict(path: str, *, unsafe: bool = False) -> dict[str, np.ndarray]:
    """The ``'model'`` state dict of a Swin checkpoint as numpy arrays."""
    return swin_state_from_object(convert.read_torch_file(path, unsafe=unsafe), path)


def swin_state_from_object(obj: Any, path: str) -> dict[str, np.ndarray]:
    """:func:`read_swin_state_dict` for a file already read with ``convert.read_torch_file``."""
    if not is_swin_state(obj):
        if isinstance(obj, Mapping):
            top = ", ".join(map(str, list(obj)[:8])) + (" ..." if len(obj) > 8 else "")
            inner = obj.get("model") if isinstance(obj.get("model"), Mapping) else obj.get("state_dict")
            sample = (", ".join(map(str, list(inner)[:4])) + " ...") if isinstance(inner, Mapping) else ""
            what = f"its top-level keys are [{top}]" + (f"; the weights there start with [{sample}]" if sample else "")
        else:
            what = f"it holds a {type(obj).__name__}"
        hint = (" It looks like an HTS-AT checkpoint: config.init_from takes it as it is "
                "(python -m htsat_jax.convert torch-htsat converts it to a model directory)."
                if isinstance(obj, Mapping) and "state_dict" in obj else "")
        raise CheckpointError(
            f"{path} is not a Swin checkpoint in Microsoft's layout (weights under 'model' with keys like "
            f"{_EXAMPLE_KEY!r}): {what}.{hint}")
    return {str(k): convert._to_numpy(v, str(k), path) for k, v in obj["model"].items()}


# ----------------------------------------------------------------------------- bicubic resampling


@functools.lru_cache(maxsize=None)
def bicubic_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` float64 matrix of PyTorch's 1-D bicubic resize, ``align_corners=False``.

    Same arithmetic as ATen's CPU kernel: source coordinate ``(o + 0.5) * in/out - 0.5`` and cubic
    coefficients (A = -0.75) in float32, taps clamped to the border; no antialiasing.
    """
    f = np.float32
    a = f(-0.75)
    scale = f(in_size) / f(out_size)

    def near(x):  # |x| <= 1
        return ((a + f(2)) * x - (a + f(3))) * x * x + f(1)

    def far(x):  # 1 < |x| < 2
        return ((a * x - f(5) * a) * x + f(8) * a) * x - f(4) * a

    matrix = np.zeros((out_size, in_size), np.float64)
    for o in range(out_size):
        src = f(scale * (f(o) + f(0.5)) - f(0.5))
        i = min(int(np.floor(src)), in_size - 1)
        t = f(min(max(src - f(i), f(0)), f(1)))
        weights = (far(t + f(1)), near(t), near(f(1) - t), far(f(2) - t))
        for tap, w in zip(range(i - 1, i + 3), weights):
            matrix[o, min(max(tap, 0), in_size - 1)] += float(w)
    return matrix


def resample_bias_table(table: np.ndarray, rows: int) -> np.ndarray:
    """``(S1*S1, heads)`` relative position bias table -> ``(rows, heads)``, ``rows = S2*S2``.

    Microsoft's Swin ``load_pretrained``: view as ``(1, heads, S1, S1)``, bicubic resize to
    ``(S2, S2)`` (``align_corners=False``), back to ``(S2*S2, heads)``.
    """
    s1, s2 = math.isqrt(table.shape[0]), math.isqrt(rows)
    if s1 * s1 != table.shape[0] or s2 * s2 != rows:
        raise ValueError(f"relative position bias tables must have square row counts, got {table.shape[0]} -> {rows}")
    grid = table.T.reshape(table.shape[1], s1, s1).astype(np.float64)
    m = bicubic_resize_matrix(s1, s2)
    out = np.einsum("oi,hij,pj->hop", m, grid, m)
    return out.reshape(table.shape[1], rows).T.astype(table.dtype)


# ----------------------------------------------------------------------------- import


def _swin_geometry(sd: Mapping[str, np.ndarray]) -> tuple[list[int], list[int]]:
    """Blocks per stage and heads per stage (from the first block's table) of a Swin state dict."""
    depths, heads = [], []
    while any(k.startswith(f"layers.{len(depths)}.blocks.") for k in sd):
        s = len(depths)
        blocks = {int(m.group(1)) for k in sd if (m := re.match(rf"layers\.{s}\.blocks\.(\d+)\.", k))}
        depths.append(max(blocks) + 1)
        table = sd.get(f"layers.{s}.blocks.0.attn.{TABLE}")
        heads.append(int(table.shape[1]) if table is not None and table.ndim == 2 else -1)
    return depths, heads


def _check_architecture(sd: Mapping[str, np.ndarray], config: HTSATConfig, path: str) -> None:
    pe = sd.get("patch_embed.proj.weight")
    if pe is None or pe.ndim != 4:
        raise CheckpointError(f"{path}: no patch_embed.proj.weight (C, in_chans, p, p) in the Swin file "
                              f"(got {None if pe is None else tuple(pe.shape)})")
    if pe.shape[0] != config.embed_dim:
        raise CheckpointError(
            f"{path}: patch_embed.proj.weight has shape {tuple(pe.shape)}, i.e. embed_dim {pe.shape[0]}; "
            f"the model has embed_dim {config.embed_dim} (expects ({config.embed_dim}, 1, {config.patch_size}, "
            f"{config.patch_size}) after averaging the input channels)")
    depths, heads = _swin_geometry(sd)
    if tuple(depths) != tuple(config.depths):
        raise CheckpointError(f"{path}: the Swin file has depths {tuple(depths)} (layers.{{s}}.blocks.{{b}} keys), "
                              f"the model has depths {tuple(config.depths)}")
    for s, (got, want) in enumerate(zip(heads, config.num_heads)):
        if got != want:
            key = f"layers.{s}.blocks.0.attn.{TABLE}"
            shape = tuple(sd[key].shape) if key in sd else None
            raise CheckpointError(
                f"{path}: {key} has shape {shape}, i.e. {got} heads in stage {s}; the model has num_heads "
                f"{tuple(config.num_heads)} (set config.model.num_heads to the Swin's heads, e.g. (3, 6, 12, 24) "
                "for standard Swin-T, (4, 8, 16, 32) for Swin-T/C24)")


def load_swin_weights(path: str, config: HTSATConfig, init_weights: Mapping, *,
                      unsafe: bool = False) -> tuple[dict, SwinImportReport]:
    """Initialise HTS-AT weights from a Swin ImageNet checkpoint.

    Args:
      path: Microsoft Swin checkpoint (``{'model': state_dict}``, e.g.
        ``swin_tiny_c24_patch4_window8_256.pth``).
      config: the HTS-AT model to initialise; width, depths and heads must match the Swin's.
      init_weights: the freshly initialised model, ``nnx.to_pure_dict(nnx.state(HTSAT(config, ...)))``.
        Tensors the Swin file does not provide keep these values.
      unsafe: allow ``torch.load(weights_only=False)``.

    Returns:
      ``(weights, report)``: a new pure dict with the model's structure (taken tensors as numpy
      arrays in the dtype of ``init_weights``), and a :class:`SwinImportReport`.

    Raises:
      CheckpointError: not a Swin checkpoint, or an architecture/shape mismatch (names key and shapes).
    """
    return import_swin_state_dict(read_swin_state_dict(path, unsafe=unsafe), config, init_weights, source=path)


def import_swin_state_dict(sd: Mapping[str, np.ndarray], config: HTSATConfig, init_weights: Mapping, *,
                           source: str = "<swin state dict>") -> tuple[dict, SwinImportReport]:
    """:func:`load_swin_weights` for a Swin state dict already in memory (the ``'model'`` entry, numpy)."""
    _check_architecture(sd, config, source)
    report = SwinImportReport(source=source)
    out = traverse_util.flatten_dict(normalise_keys(init_weights))
    model_keys = {}
    for key, shape in convert.official_key_shapes(config).items():
        flax_path = convert._flax_path(key)
        if flax_path is not None and not key.startswith(_NOT_STATE):
            model_keys[key] = (flax_path, shape)
    covered = {p for p, _ in model_keys.values()}
    uncovered = ["/".join(map(str, p)) for p in out if p not in covered]

    for key, (flax_path, shape) in model_keys.items():
        if key not in sd:
            report.left_initial.append(key)
            continue
        value = sd[key]
        if key == "patch_embed.proj.weight":
            value = value.mean(axis=1, keepdims=True)
            report.notes[key] = f"averaged over {sd[key].shape[1]} input channels: {tuple(sd[key].shape)} -> " \
                                f"{tuple(value.shape)}"
        resampled = False
        if key.endswith(TABLE) and value.shape != shape and value.ndim == 2 and value.shape[1] == shape[1]:
            report.notes[key] = f"{value.shape[0]}x{value.shape[1]} -> {shape[0]}x{shape[1]}"
            value = resample_bias_table(value, shape[0])
            resampled = True
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(f"{source}: {key} has shape {tuple(sd[key].shape)}, the model expects "
                                  f"{tuple(shape)}" + (" after averaging the input channels"
                                                       if key == "patch_embed.proj.weight" else ""))
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{source}: {key} contains NaN or inf")
        if flax_path not in out:
            raise CheckpointError(f"init_weights has no {'/'.join(map(str, flax_path))} (for {key}); pass "
                                  "nnx.to_pure_dict(nnx.state(model)) of a model built from this config")
        ref = out[flax_path]
        new = np.ascontiguousarray(convert._to_flax_layout(key, value)).astype(ref.dtype)
        if new.shape != tuple(np.shape(ref)):
            raise CheckpointError(f"init_weights/{'/'.join(map(str, flax_path))} has shape {np.shape(ref)}, "
                                  f"{key} converts to {new.shape}")
        out[flax_path] = new
        (report.resampled if resampled else report.taken).append(key)
    report.left_initial += uncovered  # none for a model built from ``config``; listed if ever there

    for key in sd:
        if key in model_keys:
            continue
        report.skipped_source.append(key)
        if key in _HEAD_KEYS:
            report.notes[key] = "ImageNet classifier, dropped (as the official import does)"
        elif key.endswith(("relative_position_index", "attn_mask")):
            report.notes[key] = "buffer, recomputed by this model from its own geometry"
        else:
            report.notes[key] = "no such tensor in the HTS-AT model"
    return traverse_util.unflatten_dict(out), report
