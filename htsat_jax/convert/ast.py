"""Audio Spectrogram Transformer weights -> this project's :class:`~htsat_jax.models.ast.AST`.

Three sources:

* **official AST checkpoints** (``audioset_10_10_0.4593.pth``, ``speechcommands_10_10_0.9812.pth``,
  ESC-50 fold models...): ``torch.save(DataParallel(ASTModel).state_dict())``, keys
  ``module.v.*`` (timm DeiT backbone) and ``module.mlp_head.{0,1}.*``; the ``module.`` prefix is
  optional. :func:`load_ast_checkpoint` converts them for evaluation (every key accounted for in a
  :class:`~htsat_jax.convert.ConversionReport`; timm's unused ImageNet classifiers ``v.head`` and
  ``v.head_dist`` are dropped).
* **transformers' layout** (``ASTForAudioClassification``: ``audio_spectrogram_transformer.*`` and
  ``classifier.*``; both the transformers-5 names ``layers.N.attention.q_proj`` and the 4.x / Hub
  names ``encoder.layer.N.attention.attention.query``): a state dict file (``.safetensors``,
  ``.bin``/``.pth``) or a ``save_pretrained`` folder (its ``config.json`` supplies strides, length
  and class names). Mapped to the official layout (separate q/k/v fused to ``qkv``), then as above.
* **DeiT / ViT ImageNet weights** in timm's layout (what the official ``ASTModel`` loads with
  ``timm.create_model('vit_deit_base_distilled_patch16_384', pretrained=True)``), and official
  AudioSet AST checkpoints used as an initialisation (the official ``audioset_pretrain=True``
  fine-tuning path): :func:`load_pretrained` / :func:`import_pretrained_state_dict` adapt them
  exactly as the official constructor does (patch conv summed over RGB, position embedding cut at
  the centre or bilinearly interpolated per axis, fresh ``mlp_head``) and report what was taken,
  adapted and left at its initial value.

The strides cannot be read from the shapes (only ``f_dim * t_dim`` shows, in ``v.pos_embed``):
they are arguments, by default parsed from an official file name (``audioset_<fstride>_<tstride>_<mAP>.pth``)
or 10/10, and the position-embedding length is checked against them. ``num_heads`` is not in the
shapes either: default ``embed_dim // 64`` (every DeiT size), override with ``num_heads=``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from typing import Any, Mapping

import numpy as np
from flax import traverse_util

from htsat_jax.convert import torch_htsat as convert
from htsat_jax.convert.common import CheckpointError, ConversionReport, normalise_keys
from htsat_jax.models.ast import (DEIT_IMAGENET_CLASSES, OFFICIAL_NORM_STATS, OFFICIAL_SPEC_AUGMENT, OFFICIAL_TDIMS,
                                  ASTConfig)

MODULE_PREFIX = "module."
HF_PREFIX = "audio_spectrogram_transformer."
HF_MODEL_TYPE = "audio-spectrogram-transformer"
# timm's ImageNet classifiers inside the official ``v``: kept by the official code, never used.
UNUSED_OFFICIAL = ("v.head.weight", "v.head.bias", "v.head_dist.weight", "v.head_dist.bias")
_STRIDES_IN_NAME = re.compile(r"_(\d+)_(\d+)_\d+\.\d+")
_DEIT_HEAD_DIM = 64


# ----------------------------------------------------------------------------- official key layout


def official_key_shapes(config: ASTConfig, *, with_deit_heads: bool = False) -> dict[str, tuple[int, ...]]:
    """Every key of the official ``ASTModel.state_dict()`` (without ``module.``) and its shape.

    ``with_deit_heads`` adds timm's unused ``v.head`` / ``v.head_dist`` (present in official files).
    """
    c, d = config, config.embed_dim
    hidden = int(d * c.mlp_ratio)
    keys: dict[str, tuple[int, ...]] = {
        "v.cls_token": (1, 1, d), "v.dist_token": (1, 1, d), "v.pos_embed": (1, c.num_tokens, d),
        "v.patch_embed.proj.weight": (d, 1, c.patch_size, c.patch_size), "v.patch_embed.proj.bias": (d,),
    }
    for i in range(c.depth):
        b = f"v.blocks.{i}"
        keys.update({
            f"{b}.norm1.weight": (d,), f"{b}.norm1.bias": (d,),
            f"{b}.attn.qkv.weight": (3 * d, d), f"{b}.attn.qkv.bias": (3 * d,),
            f"{b}.attn.proj.weight": (d, d), f"{b}.attn.proj.bias": (d,),
            f"{b}.norm2.weight": (d,), f"{b}.norm2.bias": (d,),
            f"{b}.mlp.fc1.weight": (hidden, d), f"{b}.mlp.fc1.bias": (hidden,),
            f"{b}.mlp.fc2.weight": (d, hidden), f"{b}.mlp.fc2.bias": (d,),
        })
    keys.update({"v.norm.weight": (d,), "v.norm.bias": (d,)})
    if with_deit_heads:
        n = DEIT_IMAGENET_CLASSES
        keys.update({"v.head.weight": (n, d), "v.head.bias": (n,),
                     "v.head_dist.weight": (n, d), "v.head_dist.bias": (n,)})
    keys.update({"mlp_head.0.weight": (d,), "mlp_head.0.bias": (d,),
                 "mlp_head.1.weight": (c.num_classes, d), "mlp_head.1.bias": (c.num_classes,)})
    return keys


def flax_path(key: str) -> tuple | None:
    """Official key (no ``module.``) -> path in ``nnx.state(AST)``; None for unused keys."""
    if key in ("v.cls_token", "v.dist_token", "v.pos_embed"):
        return (key[2:],)
    head = {"mlp_head.0.weight": ("head_norm", "scale"), "mlp_head.0.bias": ("head_norm", "bias"),
            "mlp_head.1.weight": ("head", "kernel"), "mlp_head.1.bias": ("head", "bias")}
    if key in head:
        return head[key]
    if key.startswith("v.patch_embed.proj."):
        return ("patch_embed", "kernel" if key.endswith("weight") else "bias")
    m = re.fullmatch(r"v\.(?:blocks\.(\d+)\.)?(.+)\.(weight|bias)", key)
    if m is None or key in UNUSED_OFFICIAL:
        return None
    block, module, kind = m.groups()
    parts = tuple(module.split("."))
    leaf = "bias" if kind == "bias" else ("scale" if parts[-1].startswith("norm") else "kernel")
    return (("blocks", int(block)) if block is not None else ()) + parts + (leaf,)


def to_flax_layout(key: str, value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)  # Conv2d (O, I, kh=freq, kw=time) -> (kh, kw, I, O)
    if value.ndim == 2:
        return value.T  # Linear (out, in) -> (in, out)
    return value


def from_flax_layout(key: str, value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    if value.ndim == 2:
        return value.T
    return value


def export_state_dict(weights: Mapping, config: ASTConfig, *, with_deit_heads: bool = False) -> dict[str, np.ndarray]:
    """This project's AST weights -> official keys (no ``module.``); DeiT heads zero if asked for."""
    sd = {}
    flat = traverse_util.flatten_dict(normalise_keys(weights))
    for key, shape in official_key_shapes(config, with_deit_heads=with_deit_heads).items():
        path = flax_path(key)
        if path is None:
            sd[key] = np.zeros(shape, np.float32)
        else:
            sd[key] = np.ascontiguousarray(from_flax_layout(key, np.asarray(flat[path])))
    return sd


# ----------------------------------------------------------------------------- reading sources


def _strip_module(sd: Mapping[str, Any], path: str) -> dict[str, Any]:
    keys = [str(k) for k in sd]
    if all(k.startswith(MODULE_PREFIX) for k in keys):
        return {k[len(MODULE_PREFIX):]: v for k, v in sd.items()}
    if any(k.startswith(MODULE_PREFIX) for k in keys):
        odd = [k for k in keys if not k.startswith(MODULE_PREFIX)][:5]
        raise CheckpointError(f"{path}: some keys lack the '{MODULE_PREFIX}' (DataParallel) prefix the others "
                              f"have, e.g. {odd}")
    return dict(sd)


def _unwrap(obj: Any, path: str) -> tuple[Mapping, str]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict-like checkpoint, got {type(obj).__name__}")
    for name in ("state_dict", "model"):
        inner = obj.get(name)
        if isinstance(inner, Mapping) and inner and all(hasattr(v, "shape") for v in inner.values()):
            return inner, f"{{'{name}': state_dict}}"
    return obj, "bare state dict"


def source_kind(sd: Mapping[str, Any]) -> str | None:
    """``'ast'`` (official, ``module.`` stripped), ``'hf'``, ``'deit'`` (timm ViT/DeiT) or None."""
    keys = {str(k) for k in sd}
    if "v.cls_token" in keys or "module.v.cls_token" in keys:
        return "ast"
    if any(k.startswith(HF_PREFIX + "embeddings.") or k.startswith("embeddings.patch_embeddings.") for k in keys):
        return "hf"
    if "cls_token" in keys and "pos_embed" in keys and "patch_embed.proj.weight" in keys:
        return "deit"
    return None


def is_ast_object(obj: Any) -> bool:
    """True for an official AST or transformers-layout AST checkpoint already read with ``torch.load``."""
    if not isinstance(obj, Mapping):
        return False
    try:
        sd, _ = _unwrap(obj, "")
    except CheckpointError:
        return False
    return source_kind(sd) in ("ast", "hf")


def is_hf_model_dir(path: str) -> bool:
    """A transformers ``save_pretrained`` folder of an AST (``config.json`` with its model_type)."""
    cfg = os.path.join(path, "config.json")
    if not (os.path.isdir(path) and os.path.isfile(cfg)):
        return False
    try:
        with open(cfg, encoding="utf-8") as f:
            return json.load(f).get("model_type") == HF_MODEL_TYPE
    except (OSError, ValueError):
        return False


def read_state_dict(path: str, *, unsafe: bool = False) -> tuple[dict[str, np.ndarray], str, dict | None]:
    """A file (``.pth``/``.bin``/``.ckpt`` via torch, ``.safetensors``) or a transformers folder ->
    ``(state dict as numpy, container description, transformers config.json or None)``."""
    hf_config = None
    if os.path.isdir(path):
        if not is_hf_model_dir(path):
            raise CheckpointError(f"{path} is a directory but not a transformers AST folder (config.json with "
                                  f"model_type {HF_MODEL_TYPE!r})")
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            hf_config = json.load(f)
        pre = os.path.join(path, "preprocessor_config.json")  # the feature extractor's mean/std
        if os.path.isfile(pre):
            with open(pre, encoding="utf-8") as f:
                hf_config["_preprocessor"] = json.load(f)
        for name in ("model.safetensors", "pytorch_model.bin"):
            if os.path.isfile(os.path.join(path, name)):
                sd, container, _ = read_state_dict(os.path.join(path, name), unsafe=unsafe)
                return sd, f"transformers folder ({name})", hf_config
        raise CheckpointError(f"{path}: transformers folder without model.safetensors or pytorch_model.bin "
                              "(sharded checkpoints are not supported)")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        try:
            return dict(load_file(path)), "safetensors", None
        except Exception as e:  # noqa: BLE001 - name the file
            raise CheckpointError(f"could not read {path} as safetensors: {type(e).__name__}: {e}") from e
    sd, container = _unwrap(convert.read_torch_file(path, unsafe=unsafe), path)
    return {str(k): convert._to_numpy(v, str(k), path) for k, v in sd.items()}, container, hf_config


def _require(sd: Mapping[str, np.ndarray], key: str, path: str, what: str = "an AST checkpoint") -> np.ndarray:
    if key not in sd:
        sample = ", ".join(sorted(sd)[:6])
        raise CheckpointError(f"{path}: missing key {key!r}; this does not look like {what} (first keys: {sample})")
    return sd[key]


def hf_to_official(sd: Mapping[str, np.ndarray], path: str = "<state_dict>") -> dict[str, np.ndarray]:
    """transformers' AST keys (5.x or 4.x/Hub names) -> official keys (no ``module.``).

    Separate query/key/value projections are stacked into the fused ``qkv`` ([q; k; v] rows, as
    timm's ``reshape(B, N, 3, heads, hd)`` reads them). A model saved without qkv bias gets zeros.
    """
    src = {(k[len(HF_PREFIX):] if k.startswith(HF_PREFIX) else k): v for k, v in sd.items()}
    out: dict[str, np.ndarray] = {}
    simple = {
        "embeddings.cls_token": "v.cls_token", "embeddings.distillation_token": "v.dist_token",
        "embeddings.position_embeddings": "v.pos_embed",
        "embeddings.patch_embeddings.projection.weight": "v.patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "v.patch_embed.proj.bias",
        "layernorm.weight": "v.norm.weight", "layernorm.bias": "v.norm.bias",
        "classifier.layernorm.weight": "mlp_head.0.weight", "classifier.layernorm.bias": "mlp_head.0.bias",
        "classifier.dense.weight": "mlp_head.1.weight", "classifier.dense.bias": "mlp_head.1.bias",
    }
    # (new 5.x suffix, old 4.x suffix) -> official block suffix
    per_block = {
        ("attention.o_proj", "attention.output.dense"): "attn.proj",
        ("layernorm_before", "layernorm_before"): "norm1",
        ("layernorm_after", "layernorm_after"): "norm2",
        ("mlp.fc1", "intermediate.dense"): "mlp.fc1",
        ("mlp.fc2", "output.dense"): "mlp.fc2",
    }
    qkv_names = {"new": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
                 "old": ("attention.attention.query", "attention.attention.key", "attention.attention.value")}
    used = set()
    for k, v in src.items():
        if k in simple:
            out[simple[k]] = v
            used.add(k)
    blocks = sorted({int(m.group(2)) for k in src if (m := re.match(r"(layers|encoder\.layer)\.(\d+)\.", k))})
    for i in blocks:
        style = "new" if any(k.startswith(f"layers.{i}.") for k in src) else "old"
        base = f"layers.{i}." if style == "new" else f"encoder.layer.{i}."
        for names, official in per_block.items():
            name = names[0] if style == "new" else names[1]
            for kind in ("weight", "bias"):
                key = base + f"{name}.{kind}"
                out[f"v.blocks.{i}.{official}.{kind}"] = _require(src, key, path, "a transformers AST state dict")
                used.add(key)
        ws = [_require(src, base + f"{n}.weight", path, "a transformers AST state dict") for n in qkv_names[style]]
        out[f"v.blocks.{i}.attn.qkv.weight"] = np.concatenate(ws, axis=0)
        bias_keys = [base + f"{n}.bias" for n in qkv_names[style]]
        if all(b in src for b in bias_keys):
            out[f"v.blocks.{i}.attn.qkv.bias"] = np.concatenate([src[b] for b in bias_keys], axis=0)
        elif not any(b in src for b in bias_keys):  # qkv_bias=False
            out[f"v.blocks.{i}.attn.qkv.bias"] = np.zeros(3 * ws[0].shape[0], ws[0].dtype)
        else:
            raise CheckpointError(f"{path}: block {i} has bias for only some of query/key/value")
        used.update(base + f"{n}.weight" for n in qkv_names[style])
        used.update(b for b in bias_keys if b in src)
    unknown = sorted(set(src) - used)
    if unknown:
        raise CheckpointError(f"{path}: unknown key(s) for a transformers AST: " + ", ".join(unknown[:10])
                              + (" ..." if len(unknown) > 10 else ""))
    return out


# ----------------------------------------------------------------------------- geometry


def strides_from_filename(path: str) -> tuple[int, int] | None:
    """``audioset_10_10_0.4593.pth`` -> (10, 10): the official release names carry the strides."""
    m = _STRIDES_IN_NAME.search(os.path.basename(str(path)))
    return (int(m.group(1)), int(m.group(2))) if m else None


def infer_grid(num_patches: int, *, fstride: int, tstride: int, input_tdim: int | None, input_fdim: int = 128,
               patch_size: int = 16, key: str = "v.pos_embed", shape: tuple = (), path: str = "<state_dict>"
               ) -> tuple[int, str]:
    """Check a position embedding of ``num_patches`` patches against the strides; return
    ``(input_tdim, how it was chosen)``.

    ``f_dim = (input_fdim - 16) // fstride + 1`` must divide ``num_patches``; ``t_dim`` is the
    quotient. Several lengths give the same ``t_dim``: without ``input_tdim`` the official recipe's
    length (1024, 512 or 128) is taken when it fits, else the shortest length that fits.
    """
    f_dim = (input_fdim - patch_size) // fstride + 1
    if f_dim < 1 or num_patches % f_dim:
        raise CheckpointError(
            f"{path}: {key} has shape {tuple(shape)}: {num_patches} patches are not a grid of f_dim={f_dim} "
            f"frequency rows ({input_fdim} bins, patch {patch_size}, fstride={fstride}); pass the strides the "
            "model was trained with (official file names say them: audioset_<fstride>_<tstride>_<mAP>.pth)")
    t_dim = num_patches // f_dim
    if input_tdim is not None:
        got = (input_tdim - patch_size) // tstride + 1
        if got != t_dim:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(shape)}, i.e. {f_dim} x {t_dim} patches (+2 tokens) with "
                f"fstride={fstride}; input_tdim={input_tdim} with tstride={tstride} gives {got} time patches "
                f"({f_dim * got + 2} tokens)")
        return input_tdim, "given"
    for name, tdim in OFFICIAL_TDIMS.items():
        if (tdim - patch_size) // tstride + 1 == t_dim:
            return tdim, f"{tdim} (official {name} length, from {t_dim} time patches)"
    tdim = patch_size + (t_dim - 1) * tstride
    return tdim, f"{tdim} (shortest length giving {t_dim} time patches; pass input_tdim= to choose)"


# ----------------------------------------------------------------------------- official / HF checkpoints


@dataclasses.dataclass
class ASTConversionReport(ConversionReport):
    """:class:`~htsat_jax.convert.ConversionReport` plus class names found (transformers folders)."""

    class_names: list[str] | None = None

    def summary(self) -> str:
        lines = [f"source: {self.source} ({self.container})", f"converted: {len(self.converted)} tensors",
                 f"dropped: {len(self.dropped)} tensors"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.dropped.items())]
        lines.append("inferred: " + ", ".join(f"{k}={v}" for k, v in self.inferred.items()))
        return "\n".join(lines)


def infer_config(sd: Mapping[str, np.ndarray], path: str, *, fstride: int | None = None, tstride: int | None = None,
                 input_tdim: int | None = None, num_heads: int | None = None, loss_type: str | None = None,
                 hf_config: Mapping | None = None, **overrides) -> tuple[ASTConfig, dict]:
    """ASTConfig from an official-layout state dict (no ``module.``) and what was inferred how."""
    inferred: dict[str, Any] = {}
    pe = _require(sd, "v.patch_embed.proj.weight", path)
    if pe.ndim != 4 or pe.shape[1] != 1 or pe.shape[2] != pe.shape[3]:
        raise CheckpointError(f"{path}: v.patch_embed.proj.weight has shape {tuple(pe.shape)}, expected "
                              "(dim, 1, p, p) (an AST takes a 1-channel spectrogram)")
    dim, patch = int(pe.shape[0]), int(pe.shape[2])
    depth = 0
    while f"v.blocks.{depth}.norm1.weight" in sd:
        depth += 1
    if depth == 0:
        raise CheckpointError(f"{path}: no transformer blocks (v.blocks.0.norm1.weight) found")
    fc1 = _require(sd, "v.blocks.0.mlp.fc1.weight", path)
    head = _require(sd, "mlp_head.1.weight", path)
    pos = _require(sd, "v.pos_embed", path)
    hf = hf_config or {}
    input_fdim = int(hf.get("num_mel_bins", 128))
    if fstride is None or tstride is None:
        named = strides_from_filename(path)
        if hf.get("frequency_stride") and hf.get("time_stride"):
            named, src = (int(hf["frequency_stride"]), int(hf["time_stride"])), "transformers config.json"
        else:
            src = "file name" if named else "default"
        named = named or (10, 10)
        fstride = named[0] if fstride is None else fstride
        tstride = named[1] if tstride is None else tstride
        inferred["strides"] = f"fstride={fstride}, tstride={tstride} ({src})"
    else:
        inferred["strides"] = f"fstride={fstride}, tstride={tstride} (given)"
    if input_tdim is None and hf.get("max_length"):
        input_tdim = int(hf["max_length"])
    if pos.ndim != 3 or pos.shape[2] != dim or pos.shape[1] < 3:
        raise CheckpointError(f"{path}: v.pos_embed has shape {tuple(pos.shape)}, expected (1, patches + 2, {dim})")
    input_tdim, how = infer_grid(int(pos.shape[1]) - 2, fstride=fstride, tstride=tstride, input_tdim=input_tdim,
                                 input_fdim=input_fdim, patch_size=patch, shape=pos.shape, path=path)
    inferred["input_tdim"] = how
    # Input normalisation is not in the weights: a transformers folder's feature extractor says it,
    # else take the official recipe that has this length.
    pre = hf.get("_preprocessor") or {}
    recipe = {v: k for k, v in OFFICIAL_TDIMS.items()}.get(input_tdim)
    if "mean" in pre and "std" in pre and "norm_mean" not in overrides and "norm_std" not in overrides:
        overrides["norm_mean"], overrides["norm_std"] = float(pre["mean"]), float(pre["std"])
        inferred["normalisation"] = f"mean {pre['mean']}, std {pre['std']} (transformers preprocessor_config.json)"
    elif recipe and "norm_mean" not in overrides and "norm_std" not in overrides:
        overrides["norm_mean"], overrides["norm_std"] = OFFICIAL_NORM_STATS[recipe]
        overrides.setdefault("freqm", OFFICIAL_SPEC_AUGMENT[recipe][0])
        overrides.setdefault("timem", OFFICIAL_SPEC_AUGMENT[recipe][1])
        inferred["normalisation"] = (f"official {recipe} recipe: mean {overrides['norm_mean']}, std "
                                     f"{overrides['norm_std']} (guessed from {input_tdim} frames; override with "
                                     "norm_mean=/norm_std=)")
    elif "norm_mean" not in overrides:
        inferred["normalisation"] = "AudioSet mean/std (default; override with norm_mean=/norm_std=)"
    if num_heads is None:
        num_heads = int(hf.get("num_attention_heads") or max(1, dim // _DEIT_HEAD_DIM))
        inferred["num_heads"] = f"{num_heads} ({'transformers config.json' if hf else 'embed_dim // 64, as DeiT'})"
    num_classes = int(head.shape[0])
    if loss_type is None:
        # Not stored. The official ESC-50 recipe trains with cross-entropy, AudioSet and SCV2 with BCE.
        loss_type = "clip_ce" if num_classes == 50 else "clip_bce"
        inferred["loss_type"] = f"{loss_type} (guessed from {num_classes} classes; override with loss_type=)"
    inferred.update(num_classes=num_classes, embed_dim=dim, depth=depth, patch_size=patch)
    try:
        config = ASTConfig(num_classes=num_classes, fstride=fstride, tstride=tstride, input_tdim=input_tdim,
                           input_fdim=input_fdim, patch_size=patch, embed_dim=dim, depth=depth, num_heads=num_heads,
                           mlp_ratio=fc1.shape[0] / dim, loss_type=loss_type, **overrides)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: inferred AST architecture is inconsistent: {e}") from e
    return config, inferred


def convert_state_dict(sd: Mapping[str, np.ndarray], config: ASTConfig, *, path: str = "<state_dict>",
                       report: ConversionReport | None = None, dtype: Any = np.float32) -> dict:
    """Official-layout state dict (no ``module.``) -> ``nnx.to_pure_dict(nnx.state(AST(config)))``."""
    report = report or ConversionReport(source=path)
    expected = official_key_shapes(config, with_deit_heads=True)
    missing = [k for k in expected if k not in sd and k not in UNUSED_OFFICIAL]
    unknown = [k for k in sd if k not in expected]
    if unknown:
        raise CheckpointError(f"{path}: unknown key(s) for an AST with depth {config.depth}: "
                              + ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else ""))
    if missing:
        raise CheckpointError(f"{path}: missing key(s): " + ", ".join(missing[:10])
                              + (" ..." if len(missing) > 10 else ""))
    out: dict = {}
    for key, value in sd.items():
        if tuple(value.shape) != tuple(expected[key]):
            raise CheckpointError(f"{path}: key {key!r} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(expected[key])}")
        if key in UNUSED_OFFICIAL:
            report.dropped[key] = "timm's DeiT ImageNet classifier, kept by the official model but unused"
            continue
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{path}: key {key!r} contains NaN or inf")
        out[flax_path(key)] = np.ascontiguousarray(to_flax_layout(key, value)).astype(dtype)
        report.converted.append(key)
    return traverse_util.unflatten_dict(out)


def convert_ast_object(obj: Any, path: str, *, hf_config: Mapping | None = None, fstride: int | None = None,
                       tstride: int | None = None, input_tdim: int | None = None, num_heads: int | None = None,
                       loss_type: str | None = None, dtype: Any = np.float32, return_report: bool = False,
                       container: str | None = None, **config_overrides):
    """:func:`load_ast_checkpoint` for a checkpoint already read (``torch.load`` result or a state dict)."""
    raw, found = _unwrap(obj, path)
    sd = {str(k): convert._to_numpy(v, str(k), path) for k, v in raw.items()}
    container = container or found
    kind = source_kind(sd)
    if kind == "deit":
        raise CheckpointError(f"{path} is a timm DeiT/ViT ImageNet state dict (keys cls_token, pos_embed, blocks.*), "
                              "not an AST: it initialises training (htsat_jax.convert.ast.load_pretrained)")
    if kind is None:
        raise CheckpointError(f"{path}: not an AST checkpoint: no 'module.v.cls_token', 'v.cls_token' or "
                              f"'{HF_PREFIX}embeddings.cls_token' key (first keys: {', '.join(sorted(sd)[:6])})")
    if kind == "hf":
        sd = hf_to_official(sd, path)
        container += ", transformers layout mapped to the official one"
    else:
        sd = _strip_module(sd, path)
    config, inferred = infer_config(sd, path, fstride=fstride, tstride=tstride, input_tdim=input_tdim,
                                    num_heads=num_heads, loss_type=loss_type, hf_config=hf_config,
                                    **config_overrides)
    report = ASTConversionReport(source=path, container=container, inferred=inferred)
    if hf_config:
        eps = hf_config.get("layer_norm_eps")
        if eps is not None and float(eps) != config.layer_norm_eps:
            inferred["layer_norm_eps"] = (f"{config.layer_norm_eps} (official timm value; the transformers config "
                                          f"says {eps}, ignored)")
        labels = hf_config.get("id2label") or {}
        names = [labels.get(str(i), labels.get(i)) for i in range(config.num_classes)]
        if all(isinstance(n, str) for n in names) and not all(n == f"LABEL_{i}" for i, n in enumerate(names)):
            report.class_names = names
    weights = convert_state_dict(sd, config, path=path, report=report, dtype=dtype)
    return (config, weights, report) if return_report else (config, weights)


def load_ast_checkpoint(path: str, *, fstride: int | None = None, tstride: int | None = None,
                        input_tdim: int | None = None, num_heads: int | None = None, loss_type: str | None = None,
                        unsafe: bool = False, dtype: Any = np.float32, return_report: bool = False,
                        **config_overrides):
    """Read an official AST checkpoint, a transformers-layout state dict or a transformers folder.

    Args:
      path: ``.pth`` (official, ``module.`` prefix optional), ``.bin``/``.safetensors`` (transformers
        keys) or a ``save_pretrained`` folder.
      fstride, tstride: patch strides; default from the file name (``audioset_12_12_0.4467.pth``),
        a transformers config.json, else 10. Checked against ``v.pos_embed``'s length.
      input_tdim: input frames; default: the official recipe length that fits (1024/512/128).
      num_heads: default ``embed_dim // 64`` (DeiT) or the transformers config's.
      loss_type: default clip_ce for 50 classes (ESC-50), clip_bce otherwise.
      unsafe: allow ``torch.load(weights_only=False)``.
      config_overrides: other ASTConfig fields, e.g. ``norm_mean``/``norm_std`` (default: the official
        recipe with this input length -- AudioSet 1024, ESC-50 512, SCV2 128 frames -- else AudioSet's).

    Returns:
      ``(ASTConfig, weights)`` (nested numpy dict for ``nnx.state(AST(config))``), plus an
      :class:`ASTConversionReport` when ``return_report``.
    """
    sd, container, hf_config = read_state_dict(path, unsafe=unsafe)
    return convert_ast_object(sd, path, hf_config=hf_config, fstride=fstride, tstride=tstride,
                              input_tdim=input_tdim, num_heads=num_heads, loss_type=loss_type, dtype=dtype,
                              return_report=return_report, container=container, **config_overrides)


# ----------------------------------------------------------------------------- ImageNet / AudioSet init



@functools.lru_cache(maxsize=None)
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` matrix of PyTorch's 1-D linear resize, ``align_corners=False``
    (``F.interpolate(mode='bilinear')`` is this matrix applied along each axis; no antialiasing).

    Same arithmetic as ATen's CPU kernel for float32 tensors: float32 scale ``in / out``, source
    coordinate ``scale * (o + 0.5) - 0.5`` rounded once to float32 (the kernel's fused multiply-add;
    checked against ``F.interpolate`` weights bit for bit), clamped at 0, taps ``floor`` and
    ``floor + 1`` (clamped to the last index), weights ``1 - l`` and ``l`` in float32. Plain float64
    coordinates would move results by up to ~1e-5. Identity when ``in_size == out_size``. Stored as
    float64 holding the float32 weights.
    """
    f = np.float32
    m = np.zeros((out_size, in_size), np.float64)
    scale = f(in_size) / f(out_size)
    for o in range(out_size):
        src = max(f(float(scale) * (o + 0.5) - 0.5), f(0))  # exact product, one rounding: an FMA
        i0 = min(int(src), in_size - 1)
        i1 = i0 + 1 if i0 < in_size - 1 else i0
        w1 = f(min(max(src - f(i0), f(0)), f(1)))
        m[o, i0] += float(f(1) - w1)
        m[o, i1] += float(w1)
    return m


def adapt_pos_embed(grid: np.ndarray, f_dim: int, t_dim: int) -> tuple[np.ndarray, str]:
    """The official position-embedding adaptation: ``(D, H, W)`` patch grid -> ``(D, f_dim, t_dim)``.

    As ``ASTModel.__init__``: first the time (last) axis -- if ``t_dim <= W`` keep the centre
    columns ``[W//2 - t_dim//2, +t_dim)``, else bilinear resize ``(H, W) -> (H, t_dim)``; then the
    frequency axis the same way with ``f_dim``. The paper speaks of "cut and bilinearly
    interpolate"; the code cuts whenever it can and interpolates only to grow.
    """
    d, h, w = grid.shape
    notes = []
    x = grid.astype(np.float64)
    if t_dim <= w:
        start = w // 2 - t_dim // 2
        x = x[:, :, start:start + t_dim]
        notes.append(f"time: centre columns {start}:{start + t_dim} of {w}")
    else:
        x = np.einsum("dhw,tw->dht", x, bilinear_matrix(w, t_dim))
        notes.append(f"time: bilinear {w} -> {t_dim}")
    if f_dim <= h:
        start = h // 2 - f_dim // 2
        x = x[:, start:start + f_dim, :]
        notes.append(f"frequency: centre rows {start}:{start + f_dim} of {h}")
    else:
        x = np.einsum("dhw,fh->dfw", x, bilinear_matrix(h, f_dim))
        notes.append(f"frequency: bilinear {h} -> {f_dim}")
    return x.astype(grid.dtype), "; ".join(notes)


@dataclasses.dataclass
class ASTImportReport:
    """Where every tensor of an initialised AST came from (official key names, e.g. ``v.norm.weight``).

    Every model tensor is in exactly one of ``taken``, ``adapted``, ``left_initial``; every source
    key in exactly one of ``taken``, ``adapted``, ``skipped_source`` (under its source name).
    """

    source: str
    kind: str  # "deit" (timm ImageNet) or "ast" (official AST checkpoint)
    taken: list[str] = dataclasses.field(default_factory=list)
    adapted: list[str] = dataclasses.field(default_factory=list)
    left_initial: list[str] = dataclasses.field(default_factory=list)
    skipped_source: list[str] = dataclasses.field(default_factory=list)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"AST init from {self.source} ({self.kind}):",
                 f"  taken as is: {len(self.taken)} tensors",
                 f"  adapted: {len(self.adapted)}"]
        lines += [f"    {k}: {self.notes[k]}" for k in self.adapted]
        lines.append(f"  left at their initial values: {len(self.left_initial)} ({', '.join(self.left_initial)})")
        by_reason: dict[str, list[str]] = {}
        for k in self.skipped_source:
            by_reason.setdefault(self.notes.get(k, "not in the model"), []).append(k)
        lines.append(f"  skipped from the source: {len(self.skipped_source)} keys")
        for reason, keys in by_reason.items():
            lines.append(f"    {', '.join(keys) if len(keys) <= 4 else f'{len(keys)} keys like {keys[0]}'}: {reason}")
        return "\n".join(lines)


_DEIT_RENAME = {"cls_token": "v.cls_token", "dist_token": "v.dist_token", "pos_embed": "v.pos_embed",
                "patch_embed.proj.weight": "v.patch_embed.proj.weight",
                "patch_embed.proj.bias": "v.patch_embed.proj.bias",
                "norm.weight": "v.norm.weight", "norm.bias": "v.norm.bias"}


def _check_backbone(sd: Mapping[str, np.ndarray], config: ASTConfig, source: str) -> None:
    """Width, depth, MLP width and patch size of an official-layout source must match ``config``."""
    pe = _require(sd, "v.patch_embed.proj.weight", source, "a DeiT/AST backbone")
    d, p = config.embed_dim, config.patch_size
    if pe.ndim != 4 or pe.shape[0] != d or pe.shape[2:] != (p, p):
        raise CheckpointError(f"{source}: patch_embed.proj.weight has shape {tuple(pe.shape)}; the model expects "
                              f"({d}, in_chans, {p}, {p}) (embed_dim {d}, patch {p})")
    depth = 0
    while f"v.blocks.{depth}.norm1.weight" in sd:
        depth += 1
    if depth != config.depth:
        raise CheckpointError(f"{source}: {depth} blocks (blocks.N.* keys), the model has depth {config.depth}")
    fc1 = _require(sd, "v.blocks.0.mlp.fc1.weight", source, "a DeiT/AST backbone")
    if fc1.shape != (int(d * config.mlp_ratio), d):
        raise CheckpointError(f"{source}: blocks.0.mlp.fc1.weight has shape {tuple(fc1.shape)}, the model expects "
                              f"({int(d * config.mlp_ratio)}, {d})")


def import_pretrained_state_dict(sd: Mapping[str, np.ndarray], config: ASTConfig, init_weights: Mapping, *,
                                 source: str = "<state dict>", source_strides: tuple[int, int] | None = None,
                                 source_fdim: int = 128) -> tuple[dict, ASTImportReport]:
    """Initialise AST weights from a timm DeiT/ViT ImageNet state dict or an official/transformers AST.

    What the official ``ASTModel(imagenet_pretrain=True)`` (DeiT source) or
    ``ASTModel(audioset_pretrain=True)`` (AST source) constructor does:

    * ``patch_embed.proj.weight`` ``(D, 3, 16, 16)`` is **summed** over its RGB input channels
      (HTS-AT's Swin import averages; the AST code sums); an AST source is already 1-channel;
    * the position embedding's patch part is cut at the centre / bilinearly interpolated to the
      ``(f_dim, t_dim)`` grid (:func:`adapt_pos_embed`); the CLS and distillation entries are kept.
      DeiT grids are square (24 x 24 for the 384 model); an AST source's grid follows from
      ``source_strides`` (default: from the file name, else 10/10);
    * transformer blocks and the final norm are copied; timm's ImageNet classifiers ``head`` and
      ``head_dist`` and an AST source's ``mlp_head`` are skipped: the new ``mlp_head`` keeps its
      initial values, as the official code builds a fresh one.

    A plain ViT without ``dist_token`` also loads: the distillation token and its position entry
    stay initial (the official code supports only distilled DeiT).

    Args:
      sd: numpy state dict as read by :func:`read_state_dict`.
      config: the AST to initialise (width, depth, MLP width and patch size must match the source).
      init_weights: ``nnx.to_pure_dict(nnx.state(AST(config, ...)))``; untouched tensors keep these.

    Returns:
      ``(weights, report)``: a new pure dict (numpy arrays in the dtypes of ``init_weights``).
    """
    kind = source_kind(sd)
    if kind is None:
        raise CheckpointError(f"{source}: neither a timm DeiT/ViT state dict (cls_token, pos_embed, "
                              "patch_embed.proj.weight) nor an AST checkpoint (v.cls_token)")
    report = ASTImportReport(source=source, kind="deit" if kind == "deit" else "ast")
    if kind == "deit":
        official, origin = {}, {}
        for k, v in sd.items():
            new = _DEIT_RENAME.get(k) or ("v." + k if k.startswith("blocks.") else None)
            if new is None:
                report.skipped_source.append(k)
                report.notes[k] = ("ImageNet classifier, unused by the AST forward" if k.startswith("head")
                                   else "not in the AST model")
                continue
            official[new], origin[new] = v, k
    else:
        official = hf_to_official(sd, source) if kind == "hf" else _strip_module(sd, source)
        origin = {k: k for k in official}
        for k in [k for k in official if k.startswith("mlp_head.") or k in UNUSED_OFFICIAL]:
            report.skipped_source.append(k)
            report.notes[k] = ("AudioSet classifier: the official fine-tuning builds a new mlp_head"
                               if k.startswith("mlp_head.") else "DeiT ImageNet classifier, unused")
            del official[k]
    _check_backbone(official, config, source)

    out = traverse_util.flatten_dict(normalise_keys(init_weights))
    prefix = 2 if "v.dist_token" in official else 1
    for key, shape in official_key_shapes(config).items():
        path = flax_path(key)
        if key not in official:
            report.left_initial.append(key)
            if key == "v.dist_token":
                report.notes[key] = "source has no distillation token (plain ViT)"
            continue
        value = np.asarray(official[key])
        adapted = None
        if key == "v.patch_embed.proj.weight" and value.shape[1] != 1:
            adapted = f"summed over {value.shape[1]} input channels: {tuple(value.shape)} -> "
            value = value.sum(axis=1, keepdims=True)
            adapted += f"{tuple(value.shape)}"
        elif key == "v.pos_embed":
            value, adapted = _pos_embed_for(value, config, prefix, kind, source, source_strides, source_fdim,
                                            init_weights)
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(f"{source}: {origin[key]} has shape {tuple(official[key].shape)}, the model expects "
                                  f"{tuple(shape)}" + (" after adaptation" if adapted else ""))
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{source}: {origin[key]} contains NaN or inf")
        out[path] = np.ascontiguousarray(to_flax_layout(key, value)).astype(np.asarray(out[path]).dtype)
        if adapted:
            report.adapted.append(key)
            report.notes[key] = adapted
        else:
            report.taken.append(key)
    return traverse_util.unflatten_dict(out), report


def _pos_embed_for(value: np.ndarray, config: ASTConfig, prefix: int, kind: str, source: str,
                   source_strides, source_fdim: int, init_weights: Mapping) -> tuple[np.ndarray, str]:
    """Source ``(1, prefix + H*W, D)`` -> ``(1, 2 + f_dim*t_dim, D)`` with the official rule."""
    n, d = value.shape[1] - prefix, value.shape[2]
    if kind == "deit":
        side = math.isqrt(n)
        if side * side != n:
            raise CheckpointError(f"{source}: pos_embed has shape {tuple(value.shape)}: {n} patch positions are "
                                  "not a square grid")
        h, w, how = side, side, f"{side}x{side} grid (DeiT)"
    else:
        fs, _ = source_strides or strides_from_filename(source) or (10, 10)
        h = (source_fdim - config.patch_size) // fs + 1
        if n % h:
            raise CheckpointError(f"{source}: v.pos_embed has shape {tuple(value.shape)}: {n} patches are not a grid "
                                  f"of {h} frequency rows (source fstride {fs}); pass source_strides=")
        w = n // h
        how = f"{h}x{w} grid (AST, source fstride {fs})"
    grid = value[0, prefix:].T.reshape(d, h, w)
    new, notes = adapt_pos_embed(grid, config.f_dim, config.t_dim)
    tokens = value[:, :prefix]
    if prefix == 1:  # plain ViT: keep the initial distillation-token position
        tokens = np.concatenate([tokens, np.asarray(init_weights["pos_embed"])[:, 1:2].astype(value.dtype)], axis=1)
        notes += "; distillation-token entry left initial"
    out = np.concatenate([tokens, new.reshape(d, -1).T[None]], axis=1)
    return out, f"{how} -> {config.f_dim}x{config.t_dim}: {notes}; CLS/DIST entries kept"


def load_pretrained(path: str, config: ASTConfig, init_weights: Mapping, *, unsafe: bool = False,
                    source_strides: tuple[int, int] | None = None) -> tuple[dict, ASTImportReport]:
    """:func:`import_pretrained_state_dict` for a file: timm DeiT ``.pth`` (``{'model': sd}`` or bare,
    e.g. ``deit_base_distilled_patch16_384-d0272ac0.pth``), ``.safetensors``, an official AST ``.pth``
    (e.g. ``audioset_10_10_0.4593.pth`` to fine-tune on ESC-50) or a transformers AST folder."""
    sd, _, _ = read_state_dict(path, unsafe=unsafe)
    return import_pretrained_state_dict(sd, config, init_weights, source=path, source_strides=source_strides)


# ----------------------------------------------------------------------------- CLI


def add_cli(sub) -> None:
    """The ``torch-ast`` (official ``.pth``) and ``hf-ast`` (transformers) commands of ``python -m htsat_jax.convert``."""
    for name, what in (("torch-ast", "official AST .pth (module.v.*)"),
                       ("hf-ast", "transformers AST .bin/.safetensors file or save_pretrained folder")):
        p = sub.add_parser(name, help=f"{what} -> model directory")
        p.add_argument("input", help=what)
        p.add_argument("output_dir", help="directory to write (must not exist or be empty)")
        p.add_argument("--fstride", type=int, default=None)
        p.add_argument("--tstride", type=int, default=None)
        p.add_argument("--input_tdim", type=int, default=None)
        p.add_argument("--num_heads", type=int, default=None)
        p.add_argument("--loss_type", choices=("clip_bce", "clip_ce"), default=None)
        p.add_argument("--class_names", default=None, help="CSV (index,mid,display_name) or one name per line")
        p.add_argument("--unsafe_load", action="store_true")
        p.set_defaults(convert=lambda args: load_ast_checkpoint(
            args.input, fstride=args.fstride, tstride=args.tstride, input_tdim=args.input_tdim,
            num_heads=args.num_heads, loss_type=args.loss_type, unsafe=args.unsafe_load, return_report=True))
