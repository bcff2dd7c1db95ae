"""Official PyTorch HTS-AT checkpoints -> this project's model config and weights.

Reads both containers the official code writes: the weight-averaged ``{'state_dict': ...}``
file (``HTSAT_*_Saved_*.ckpt``, every tensor float32) and a raw Lightning checkpoint with extra
top-level keys (integer buffers as int64). Keys may carry the ``sed_model.`` prefix of the
Lightning wrapper or not (``predict.py`` style). The architecture is inferred from the tensor
shapes; every key is accounted for:

* learned tensors and bn0 running statistics are converted (transposed to Flax layouts);
* frozen frontend constants (STFT kernels, ``melW``) and fixed buffers (relative position index,
  shifted-window masks) are *checked* against what this code computes, never trusted blindly;
* ``head.*`` (built but unused by the official forward with the token-semantic head) and
  ``bn0.num_batches_tracked`` are dropped and listed in the report.

CLI: ``python -m htsat_jax.convert torch-htsat INPUT.ckpt OUTPUT_DIR``.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Mapping

import numpy as np
from flax import traverse_util

from htsat_jax.convert.common import CheckpointError, ConversionReport, normalise_keys, read_torch_file
from htsat_jax.convert.common import to_numpy as _to_numpy
from htsat_jax.models import frontend as frontend_lib
from htsat_jax.models import swin
from htsat_jax.models.htsat import HTSATConfig

PREFIX = "sed_model."
# Candidate frontends to recognise a checkpoint's stored mel filterbank. hop = sample_rate / 100
# keeps 1001 frames per 10 s, which is what every official config uses (hop 320 @ 32 kHz, 160 @ 16 kHz).
_CANDIDATE_RATES = (32000, 16000, 48000, 44100, 22050, 8000)


# ----------------------------------------------------------------------------- official key layout


def _block_keys(prefix: str, dim: int, heads: int, window: int, mlp_hidden: int, mask_shape) -> dict:
    keys = {}
    if mask_shape is not None:
        keys[f"{prefix}.attn_mask"] = mask_shape
    n = window * window
    keys.update({
        f"{prefix}.norm1.weight": (dim,), f"{prefix}.norm1.bias": (dim,),
        f"{prefix}.attn.relative_position_bias_table": ((2 * window - 1) ** 2, heads),
        f"{prefix}.attn.relative_position_index": (n, n),
        f"{prefix}.attn.qkv.weight": (3 * dim, dim), f"{prefix}.attn.qkv.bias": (3 * dim,),
        f"{prefix}.attn.proj.weight": (dim, dim), f"{prefix}.attn.proj.bias": (dim,),
        f"{prefix}.norm2.weight": (dim,), f"{prefix}.norm2.bias": (dim,),
        f"{prefix}.mlp.fc1.weight": (mlp_hidden, dim), f"{prefix}.mlp.fc1.bias": (mlp_hidden,),
        f"{prefix}.mlp.fc2.weight": (dim, mlp_hidden), f"{prefix}.mlp.fc2.bias": (dim,),
    })
    return keys


def official_key_shapes(config: HTSATConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the official ``state_dict()`` (without ``sed_model.``) with its shape, in order."""
    c, fe = config, config.frontend
    bins = fe.num_bins
    keys: dict[str, tuple[int, ...]] = {
        "spectrogram_extractor.stft.conv_real.weight": (bins, 1, fe.n_fft),
        "spectrogram_extractor.stft.conv_imag.weight": (bins, 1, fe.n_fft),
        "logmel_extractor.melW": (bins, fe.n_mels),
        "bn0.weight": (fe.n_mels,), "bn0.bias": (fe.n_mels,),
        "bn0.running_mean": (fe.n_mels,), "bn0.running_var": (fe.n_mels,), "bn0.num_batches_tracked": (),
        "patch_embed.proj.weight": (c.embed_dim, 1, c.patch_size, c.patch_size),
        "patch_embed.proj.bias": (c.embed_dim,),
        "patch_embed.norm.weight": (c.embed_dim,), "patch_embed.norm.bias": (c.embed_dim,),
    }
    grid = c.spec_size // c.patch_stride
    for i, (depth, heads) in enumerate(zip(c.depths, c.num_heads)):
        dim, res = c.embed_dim * 2**i, grid // 2**i
        for j in range(depth):
            window, shift = swin.effective_window_and_shift((res, res), c.window_size,
                                                            0 if j % 2 == 0 else c.window_size // 2)
            n_win = (res // window) ** 2
            mask = (n_win, window * window, window * window) if shift else None
            keys.update(_block_keys(f"layers.{i}.blocks.{j}", dim, heads, window, int(dim * c.mlp_ratio), mask))
        if i < len(c.depths) - 1:
            keys[f"layers.{i}.downsample.reduction.weight"] = (2 * dim, 4 * dim)
            keys[f"layers.{i}.downsample.norm.weight"] = (4 * dim,)
            keys[f"layers.{i}.downsample.norm.bias"] = (4 * dim,)
    nf = c.num_features
    keys.update({
        "norm.weight": (nf,), "norm.bias": (nf,),
        "tscam_conv.weight": (c.num_classes, nf, c.head_freq_bins, 3), "tscam_conv.bias": (c.num_classes,),
        "head.weight": (c.num_classes, c.num_classes), "head.bias": (c.num_classes,),
    })
    return keys


def stft_kernels(config: frontend_lib.FrontendConfig) -> tuple[np.ndarray, np.ndarray]:
    """The official conv-DFT kernels ``(bins, 1, n_fft)``: ``cos/-sin(2 pi k n / N) * hann[n]``."""
    n = np.arange(config.n_fft)
    k = np.arange(config.num_bins)[:, None]
    angle = 2.0 * np.pi * k * n[None, :] / config.n_fft
    w = frontend_lib.hann_window(config.n_fft)
    return (np.cos(angle) * w)[:, None, :], (-np.sin(angle) * w)[:, None, :]


# ----------------------------------------------------------------------------- reading


def looks_like_htsat(path: str) -> bool:
    """A torch file whose tensors are an HTS-AT's (or a Swin's, which the converter refuses by name)."""
    if not os.path.isfile(path) or path.endswith((".safetensors", ".h5", ".tflite", ".json")):
        return False
    try:
        obj = read_torch_file(path)
    except CheckpointError:
        return False
    if not isinstance(obj, Mapping):
        return False
    sd = obj.get("state_dict", obj.get("model", obj))
    return isinstance(sd, Mapping) and any(str(k).removeprefix(PREFIX) == "patch_embed.proj.weight" for k in sd)


def extract_state_dict(obj: Any, path: str) -> tuple[dict[str, np.ndarray], str]:
    """Find the model's tensors in a loaded checkpoint; returns (state dict without prefix, container)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict-like checkpoint, got {type(obj).__name__}")
    if "state_dict" in obj:
        sd = obj["state_dict"]
        extra = sorted(k for k in obj if k != "state_dict")
        container = ("Lightning checkpoint (extra top-level keys: " + ", ".join(extra) + ")") if extra \
            else "weight-averaged {'state_dict'} file"
    elif "model" in obj and isinstance(obj["model"], Mapping) and any(
            str(k).startswith("layers.") for k in obj["model"]):
        raise CheckpointError(
            f"{path} looks like a Swin ImageNet checkpoint (weights under 'model', no HTS-AT head); "
            "it initialises training (config.init_from), it is not an HTS-AT model"
        )
    else:
        sd, container = obj, "bare state dict"
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(f"{path}: 'state_dict' is empty or not a dict")
    keys = list(sd)
    if all(str(k).startswith(PREFIX) for k in keys):
        sd = {k[len(PREFIX):]: v for k, v in sd.items()}
    elif any(str(k).startswith(PREFIX) for k in keys):
        odd = [k for k in keys if not str(k).startswith(PREFIX)][:5]
        raise CheckpointError(f"{path}: some keys lack the '{PREFIX}' prefix the others have, e.g. {odd}")
    return {k: _to_numpy(v, k, path) for k, v in sd.items()}, container


def _require(sd: Mapping[str, np.ndarray], key: str, path: str) -> np.ndarray:
    if key not in sd:
        sample = ", ".join(sorted(sd)[:6])
        raise CheckpointError(
            f"{path}: missing key {key!r}; this does not look like an HTS-AT checkpoint (first keys: {sample})"
        )
    return sd[key]


def infer_frontend(melw: np.ndarray, path: str) -> frontend_lib.FrontendConfig:
    """Recognise the sample rate from the stored mel filterbank ``(bins, mels)``."""
    bins, mels = melw.shape
    n_fft = 2 * (bins - 1)
    best = None
    for rate in _CANDIDATE_RATES:
        cfg = frontend_lib.FrontendConfig(sample_rate=rate, n_fft=n_fft, hop_length=rate // 100, n_mels=mels)
        diff = float(np.max(np.abs(frontend_lib.mel_filterbank(cfg) - melw)))
        if best is None or diff < best[1]:
            best = (cfg, diff)
        if diff <= 1e-6:
            return cfg
    raise CheckpointError(
        f"{path}: logmel_extractor.melW {melw.shape} matches no known frontend (Slaney mel, fmin 50, "
        f"fmax 14000, sample rates {_CANDIDATE_RATES}); closest is {best[0].sample_rate} Hz with max "
        f"difference {best[1]:.3g}. Pass frontend=FrontendConfig(...) explicitly if it is a custom model."
    )


def infer_config(sd: Mapping[str, np.ndarray], path: str, *, loss_type: str | None = None,
                 frontend: frontend_lib.FrontendConfig | None = None) -> tuple[HTSATConfig, dict]:
    """Architecture from tensor shapes. Returns the config and what was inferred (for the report)."""
    if frontend is None:
        frontend = infer_frontend(_require(sd, "logmel_extractor.melW", path), path)
    pe = _require(sd, "patch_embed.proj.weight", path)
    if pe.ndim != 4 or pe.shape[1] != 1:
        raise CheckpointError(f"{path}: patch_embed.proj.weight has shape {pe.shape}, expected (dim, 1, p, p) "
                              "(an HTS-AT model takes a 1-channel spectrogram image)")
    embed_dim, patch = pe.shape[0], pe.shape[2]
    depths, heads = [], []
    stage = 0
    while f"layers.{stage}.blocks.0.norm1.weight" in sd:
        n = 0
        while f"layers.{stage}.blocks.{n}.norm1.weight" in sd:
            n += 1
        depths.append(n)
        heads.append(_require(sd, f"layers.{stage}.blocks.0.attn.relative_position_bias_table", path).shape[1])
        stage += 1
    if not depths:
        raise CheckpointError(f"{path}: no Swin blocks found (layers.0.blocks.0.*)")
    table = sd["layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
    window = (math.isqrt(table) + 1) // 2
    if (2 * window - 1) ** 2 != table:
        raise CheckpointError(f"{path}: relative_position_bias_table has {table} rows, not (2w-1)^2")
    fc1 = _require(sd, "layers.0.blocks.0.mlp.fc1.weight", path)
    tscam = _require(sd, "tscam_conv.weight", path)
    # The patch grid (hence spec_size) shows in the first shifted block's mask: (grid/window)^2 windows.
    spec_size, spec_source = 256, "default (no attention mask stored)"
    if "layers.0.blocks.1.attn_mask" in sd:
        grid = window * math.isqrt(sd["layers.0.blocks.1.attn_mask"].shape[0])
        spec_size, spec_source = grid * patch, "from layers.0.blocks.1.attn_mask"
    num_classes = tscam.shape[0]
    inferred = {"num_classes": num_classes, "embed_dim": embed_dim, "depths": tuple(depths),
                "num_heads": tuple(heads), "window_size": window, "patch_size": patch,
                "spec_size": f"{spec_size} ({spec_source})",
                "sample_rate": frontend.sample_rate, "hop_length": frontend.hop_length}
    if loss_type is None:
        # Not stored in checkpoints. The official 50-class model is ESC-50, trained with clip_ce.
        loss_type = "clip_ce" if num_classes == 50 else "clip_bce"
        inferred["loss_type"] = f"{loss_type} (guessed from {num_classes} classes; override with loss_type=)"
    else:
        inferred["loss_type"] = f"{loss_type} (given)"
    try:
        config = HTSATConfig(
            num_classes=num_classes, embed_dim=embed_dim, depths=tuple(depths), num_heads=tuple(heads),
            window_size=window, spec_size=spec_size, patch_size=patch, patch_stride=patch,
            mlp_ratio=fc1.shape[0] / embed_dim, loss_type=loss_type, frontend=frontend,
        )
    except ValueError as e:
        raise CheckpointError(f"{path}: inferred architecture is inconsistent: {e}") from e
    return config, inferred


# ----------------------------------------------------------------------------- converting


def _flax_path(key: str) -> tuple[str, ...] | None:
    """Official key -> path in ``nnx.state(model)``; None for keys that are not model state."""
    if key in ("bn0.weight", "bn0.bias", "bn0.running_mean", "bn0.running_var"):
        return ("bn0", {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}[key[4:]])
    m = re.fullmatch(r"(.*)\.(weight|bias)", key)
    if m is None:
        if key.endswith("relative_position_bias_table"):
            return tuple(_split_key(key))
        return None
    module, kind = m.groups()
    parts = _split_key(module)
    if kind == "bias":
        return tuple(parts) + ("bias",)
    # LayerNorms are norm, norm1, norm2 (and patch_embed.norm, downsample.norm); bn0 is handled above.
    return tuple(parts) + (("scale",) if str(parts[-1]).startswith("norm") else ("kernel",))


def _split_key(key: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in key.split(".")]


def _to_flax_layout(key: str, value: np.ndarray) -> np.ndarray:
    if value.ndim == 2 and not key.endswith("relative_position_bias_table"):
        return value.T  # Linear (out, in) -> Dense kernel (in, out)
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)  # Conv2d (O, I, kh, kw) -> (kh, kw, I, O)
    return value


def _from_flax_layout(key: str, value: np.ndarray) -> np.ndarray:
    if value.ndim == 2 and not key.endswith("relative_position_bias_table"):
        return value.T
    if value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    return value


def convert_state_dict(sd: Mapping[str, np.ndarray], config: HTSATConfig, *, path: str = "<state_dict>",
                       report: ConversionReport | None = None, dtype: Any = np.float32) -> dict:
    """Official state dict (no prefix) -> nested dict matching ``nnx.to_pure_dict(nnx.state(model))``."""
    report = report or ConversionReport(source=path)
    expected = official_key_shapes(config)
    missing = [k for k in expected if k not in sd and k not in ("head.weight", "head.bias",
                                                                "bn0.num_batches_tracked")]
    unknown = [k for k in sd if k not in expected]
    if unknown:
        raise CheckpointError(f"{path}: unknown key(s) for an HTS-AT model with {config.depths} depths: "
                              + ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else ""))
    if missing:
        raise CheckpointError(f"{path}: missing key(s): " + ", ".join(missing[:10])
                              + (" ..." if len(missing) > 10 else ""))
    for key, value in sd.items():
        if tuple(value.shape) != tuple(expected[key]):
            raise CheckpointError(f"{path}: key {key!r} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(expected[key])}")
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{path}: key {key!r} contains NaN or inf")

    _verify_constants(sd, config, path, report)
    out: dict = {}  # flat: Flax path tuple -> array
    for key, value in sd.items():
        if key in report.verified or key in report.dropped:
            continue
        if key in ("head.weight", "head.bias"):
            report.dropped[key] = "unused by the official forward (token-semantic head replaces it)"
            continue
        if key == "bn0.num_batches_tracked":
            report.dropped[key] = "BatchNorm step counter, unused with a fixed momentum"
            continue
        flax_path = _flax_path(key)
        if flax_path is None:  # every remaining key is model state by construction of official_key_shapes
            raise CheckpointError(f"{path}: no conversion rule for key {key!r}")
        out[flax_path] = np.ascontiguousarray(_to_flax_layout(key, value)).astype(dtype)
        report.converted.append(key)
    return traverse_util.unflatten_dict(out)


def _verify_constants(sd: Mapping[str, np.ndarray], config: HTSATConfig, path: str,
                      report: ConversionReport) -> None:
    """Frozen frontend constants and fixed buffers must equal what this code computes."""
    fe = config.frontend
    real, imag = stft_kernels(fe)
    checks = {
        "spectrogram_extractor.stft.conv_real.weight": (real, 1e-6),
        "spectrogram_extractor.stft.conv_imag.weight": (imag, 1e-6),
        "logmel_extractor.melW": (frontend_lib.mel_filterbank(fe), 1e-6),
    }
    for key, (ours, tol) in checks.items():
        diff = float(np.max(np.abs(sd[key].astype(np.float64) - ours)))
        if diff > tol:
            raise CheckpointError(
                f"{path}: frozen frontend constant {key!r} differs from this frontend "
                f"({fe.sample_rate} Hz, n_fft {fe.n_fft}, {fe.n_mels} mels, {fe.fmin}-{fe.fmax} Hz) by "
                f"up to {diff:.3g} (tolerance {tol}); the model was trained with another frontend"
            )
        report.verified[key] = f"max |diff| {diff:.2g} vs recomputed"
    for key, value in sd.items():
        if key.endswith("relative_position_index"):
            window = math.isqrt(value.shape[0])
            if not np.array_equal(value.astype(np.int64), swin.relative_position_index(window)):
                raise CheckpointError(f"{path}: {key!r} differs from the Swin relative position index")
            report.verified[key] = "equal"
        elif key.endswith("attn_mask"):
            stage = int(key.split(".")[1])
            res = config.spec_size // config.patch_stride // 2**stage
            window, shift = swin.effective_window_and_shift((res, res), config.window_size, config.window_size // 2)
            if not np.array_equal(value, swin.shifted_window_mask(res, res, window, shift)):
                raise CheckpointError(f"{path}: {key!r} differs from the shifted-window mask for a "
                                      f"{res}x{res} map with window {window}, shift {shift}")
            report.verified[key] = "equal"


def export_state_dict(weights: Mapping, config: HTSATConfig) -> dict[str, np.ndarray]:
    """Inverse of :func:`convert_state_dict`: this project's weights -> official keys (no prefix).

    Frontend constants and buffers are recomputed; ``head.*`` is filled with zeros (unused).
    """
    sd: dict[str, np.ndarray] = {}
    flat = traverse_util.flatten_dict(normalise_keys(weights))
    real, imag = stft_kernels(config.frontend)
    for key, shape in official_key_shapes(config).items():
        if key == "spectrogram_extractor.stft.conv_real.weight":
            sd[key] = real.astype(np.float32)
        elif key == "spectrogram_extractor.stft.conv_imag.weight":
            sd[key] = imag.astype(np.float32)
        elif key == "logmel_extractor.melW":
            sd[key] = frontend_lib.mel_filterbank(config.frontend)
        elif key.endswith("relative_position_index"):
            sd[key] = swin.relative_position_index(math.isqrt(shape[0])).astype(np.int64)
        elif key.endswith("attn_mask"):
            stage = int(key.split(".")[1])
            res = config.spec_size // config.patch_stride // 2**stage
            window, shift = swin.effective_window_and_shift((res, res), config.window_size, config.window_size // 2)
            sd[key] = swin.shifted_window_mask(res, res, window, shift).copy()
        elif key == "bn0.num_batches_tracked":
            sd[key] = np.array(0, np.int64)
        elif key.startswith("head."):
            sd[key] = np.zeros(shape, np.float32)
        else:
            sd[key] = np.ascontiguousarray(_from_flax_layout(key, np.asarray(flat[_flax_path(key)])))
    return sd


def load_torch_checkpoint(path: str, *, loss_type: str | None = None,
                          frontend: frontend_lib.FrontendConfig | None = None, unsafe: bool = False,
                          dtype: Any = np.float32, return_report: bool = False):
    """Read an official HTS-AT checkpoint.

    Args:
      path: ``.ckpt`` written by the official ``main.py`` (weight-averaged or raw Lightning).
      loss_type: ``clip_bce`` or ``clip_ce``; not stored in checkpoints, guessed from the class count
        (50 classes -> ESC-50's clip_ce) when None.
      frontend: override the frontend recognised from the stored mel filterbank.
      unsafe: allow ``torch.load(weights_only=False)`` for checkpoints with pickled objects.
      dtype: numpy dtype of the returned weights.
      return_report: also return a :class:`ConversionReport`.

    Returns:
      ``(config, weights)`` where ``weights`` is a nested dict of numpy arrays matching
      ``nnx.to_pure_dict(nnx.state(HTSAT(config)))``; plus the report when asked.
    """
    return convert_torch_object(read_torch_file(path, unsafe=unsafe), path, loss_type=loss_type,
                                frontend=frontend, dtype=dtype, return_report=return_report)


def convert_torch_object(obj: Any, path: str, *, loss_type: str | None = None,
                         frontend: frontend_lib.FrontendConfig | None = None, dtype: Any = np.float32,
                         return_report: bool = False):
    """:func:`load_torch_checkpoint` for a file already read with :func:`read_torch_file`."""
    sd, container = extract_state_dict(obj, path)
    config, inferred = infer_config(sd, path, loss_type=loss_type, frontend=frontend)
    report = ConversionReport(source=path, container=container, inferred=inferred)
    weights = convert_state_dict(sd, config, path=path, report=report, dtype=dtype)
    return (config, weights, report) if return_report else (config, weights)


# ----------------------------------------------------------------------------- CLI


def add_cli(sub) -> None:
    """The ``torch-htsat`` command of ``python -m htsat_jax.convert``."""
    p = sub.add_parser("torch-htsat", help="official PyTorch HTS-AT checkpoint (.ckpt) -> model directory")
    p.add_argument("input", help="official .ckpt file (HTSAT_*_Saved_*.ckpt or a Lightning checkpoint)")
    p.add_argument("output_dir", help="directory to write (must not exist or be empty)")
    p.add_argument("--loss_type", choices=("clip_bce", "clip_ce"), default=None,
                   help="output activation; default: clip_ce for 50 classes (ESC-50), else clip_bce")
    p.add_argument("--class_names", default=None,
                   help="optional CSV with the class names (index,mid,display_name like "
                        "class_labels_indices.csv, or one name per line)")
    p.add_argument("--unsafe_load", action="store_true",
                   help="allow torch.load(weights_only=False) for checkpoints holding pickled objects")
    p.set_defaults(convert=lambda args: load_torch_checkpoint(args.input, loss_type=args.loss_type,
                                                              unsafe=args.unsafe_load, return_report=True))
