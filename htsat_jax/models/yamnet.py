r"""YAMNet (Google, AudioSet, 521 classes): MobileNet-v1 on 0.96 s log-mel patches, in Flax NNX.

The same function as the official ``research/audioset/yamnet`` code (``yamnet_frames_model``):

* frontend (``yamnet_frontend``, inside the model and ``jax.jit``): the official zero padding of
  the waveform, STFT 400 / 160 with a periodic Hann window and fft 512, **magnitude**, the HTK mel
  matrix without the DC bin, ``ln(mel + 0.001)``, patches of 96 frames every 48, time first;
* backbone: one 3x3 convolution and 13 depthwise-separable blocks, every convolution without bias,
  followed by BatchNorm **with no scale** (``beta`` only, epsilon **1e-4**) and plain ReLU; TF
  ``"SAME"`` padding, which pads **0 before / 1 after** on the stride-2 layers (JAX's ``"SAME"``
  does the same); the patch is ``(H, W) = (time 96, mel 64)``;
* head: global average pooling over the final 3 x 2 grid (the 1024-d embedding), Dense(521),
  sigmoid per patch.

Outputs of ``Model(waveform)``:

``framewise_output (batch, patches, classes)``
    per-patch scores (sigmoid; softmax for a ``clip_ce`` model); patch ``i`` covers
    ``[0.48 i, 0.48 i + 0.975)`` s, so steps are 0.48 s apart (:func:`frame_seconds`).
``clipwise_output (batch, classes)``
    the mean over patches of the per-patch scores (Google's ``inference.py``), or their max
    (``clip_pool="max"``); a ``clip_ce`` model pools the per-patch logits instead.
``latent_output (batch, 1024)``
    the mean of the patch embeddings.
``embeddings`` / ``frame_features (batch, patches, 1024)``
    the patch embeddings (``frame_features``: what ``AudioTagger.embed`` collects).
``logits (batch, patches, classes)``
    the classifier's per-patch logits.

``num_samples (batch,)`` (optional) gives each row's true length in a zero-padded batch: patches
past each row's official padded end are left out of the clip and latent pooling, so a padded row
gives exactly what the official model gives for the unpadded clip (the windowed analysis uses it).

Training (``train=True``): BatchNorm uses batch statistics over all patches of the batch (unless
``freeze_bn``) and updates its moving averages with ``bn_momentum`` (Keras' 0.99).
``mixup_lambda`` mixes the **log-mel frames** of the batch with the batch reversed, before
patching. ``key`` is unused (YAMNet has no dropout).

Weights: the released float Keras file ``yamnet.h5`` and YAMNet ``.tflite`` files (8-bit weights
dequantized, BatchNorm folded into the convolutions) convert with ``htsat_jax.convert.yamnet``
(``python -m htsat_jax.convert yamnet-h5 | yamnet-tflite``) and load directly with
``AudioTagger.from_checkpoint``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from htsat_jax.inference import windowing
from htsat_jax.models import yamnet_frontend as frontend

NAME = "yamnet"

# (stride, output channels) of the 14 layers: layer1 is a 3x3 convolution, layers 2-14 are
# depthwise-separable blocks (the stride applies to the depthwise convolution).
LAYERS: tuple[tuple[int, int], ...] = (
    (2, 32), (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024),
)
BN_EPSILON = 1e-4
LOSS_TYPES = ("clip_bce", "clip_ce")
CLIP_POOLS = ("mean", "max")


@dataclasses.dataclass(frozen=True)
class Config:
    """YAMNet. The frontend and layer layout are fixed (the official ones); these are the switches.

    Attributes:
      num_classes: classifier outputs (521: AudioSet as YAMNet was released).
      loss_type: ``clip_bce`` (per-patch sigmoid, clip = pooled probabilities) or ``clip_ce``
        (clip = pooled per-patch logits, for single-label fine-tuning).
      clip_pool: how patches make the clip output: ``mean`` (Google's inference) or ``max``.
      width_divisor: every layer's channels divided by this (1: YAMNet; the ``tiny`` variant uses 8).
      bn_momentum: moving-average momentum of BatchNorm in training (Keras/Flax meaning).
      freeze_bn: BatchNorm keeps using its moving statistics in training (e.g. when fine-tuning
        weights from a ``.tflite``, whose BatchNorm is folded into the convolutions).
      sample_rate: 16000; the frontend is defined at that rate only.
    """

    num_classes: int = 521
    loss_type: str = "clip_bce"
    clip_pool: str = "mean"
    width_divisor: int = 1
    bn_momentum: float = 0.99
    freeze_bn: bool = False
    sample_rate: int = frontend.SAMPLE_RATE
    model_name: ClassVar[str] = NAME

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.clip_pool not in CLIP_POOLS:
            raise ValueError(f"clip_pool must be one of {CLIP_POOLS}, got {self.clip_pool!r}")
        if int(self.sample_rate) != frontend.SAMPLE_RATE:
            raise ValueError(f"YAMNet's frontend is defined at {frontend.SAMPLE_RATE} Hz, got sample_rate="
                             f"{self.sample_rate} (audio of other rates is resampled before the model)")
        if not (isinstance(self.width_divisor, int) and 1 <= self.width_divisor <= 32):
            raise ValueError(f"width_divisor must be an integer in 1..32, got {self.width_divisor!r}")

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels of the 14 layers."""
        return tuple(c // self.width_divisor for _, c in LAYERS)

    @property
    def embedding_dim(self) -> int:
        return self.channels[-1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown YAMNet config fields {unknown}; known: {sorted(known)}")
        return cls(**dict(d))


VARIANTS: dict[str, dict[str, Any]] = {"base": {}, "tiny": {"width_divisor": 8}}
# The classifier: re-initialised when fine-tuning to another class count.
HEAD = ("logits",)
# Fields a checkpoint must share with the config it initialises (every tensor shape follows them).
ARCH_FIELDS = ("width_divisor",)


def _batch_norm(features: int, config: Config, *, rngs, dtype, param_dtype) -> nnx.BatchNorm:
    return nnx.BatchNorm(features, use_scale=False, use_bias=True, epsilon=BN_EPSILON, momentum=config.bn_momentum,
                         dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def _conv(cin: int, cout: int, kernel: int, stride: int, *, groups: int = 1, rngs, dtype, param_dtype) -> nnx.Conv:
    return nnx.Conv(cin, cout, (kernel, kernel), strides=stride, padding="SAME", feature_group_count=groups,
                    use_bias=False, kernel_init=nnx.initializers.he_normal(), dtype=dtype,
                    param_dtype=param_dtype, rngs=rngs)


class ConvBlock(nnx.Module):
    """layer1: Conv2D 3x3 (no bias) -> BatchNorm (beta only) -> ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, config: Config, *, rngs, dtype, param_dtype):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.conv = _conv(cin, cout, 3, stride, **kw)
        self.bn = _batch_norm(cout, config, **kw)

    def __call__(self, x, *, use_running_average: bool):
        return jax.nn.relu(self.bn(self.conv(x), use_running_average=use_running_average))


class SeparableBlock(nnx.Module):
    """layers 2-14: depthwise 3x3 (stride s) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, config: Config, *, rngs, dtype, param_dtype):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.depthwise_conv = _conv(cin, cin, 3, stride, groups=cin, **kw)   # kernel (3, 3, 1, C)
        self.depthwise_bn = _batch_norm(cin, config, **kw)
        self.pointwise_conv = _conv(cin, cout, 1, 1, **kw)                   # kernel (1, 1, Cin, Cout)
        self.pointwise_bn = _batch_norm(cout, config, **kw)

    def __call__(self, x, *, use_running_average: bool):
        x = jax.nn.relu(self.depthwise_bn(self.depthwise_conv(x), use_running_average=use_running_average))
        return jax.nn.relu(self.pointwise_bn(self.pointwise_conv(x), use_running_average=use_running_average))


class Backbone(nnx.Module):
    """The 14 layers: ``(N, 96, 64)`` log-mel patches (time, mel) -> ``(N, 3, 2, 1024)`` feature maps.

    Attributes ``layer1`` ... ``layer14`` (the official layer names).
    """

    def __init__(self, config: Config, *, rngs: nnx.Rngs, dtype: Any = None, param_dtype: Any = jnp.float32):
        self.config = config
        cin = 1
        for i, ((stride, _), cout) in enumerate(zip(LAYERS, config.channels), start=1):
            block = ConvBlock if i == 1 else SeparableBlock
            setattr(self, f"layer{i}", block(cin, cout, stride, config, rngs=rngs, dtype=dtype,
                                             param_dtype=param_dtype))
            cin = cout

    def __call__(self, patches, *, train: bool = False, capture: dict | None = None):
        x = patches[..., None] if patches.ndim == 3 else patches
        use_running_average = not train or self.config.freeze_bn
        for i in range(1, len(LAYERS) + 1):
            x = getattr(self, f"layer{i}")(x, use_running_average=use_running_average)
            if capture is not None:
                capture[f"layer{i}_out"] = x
        return x


def _masked_mean(x, mask):
    """Mean over axis 1 of ``x (B, P, D)`` where ``mask (B, P)``."""
    w = mask.astype(x.dtype)[..., None]
    return (x * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1)


class Model(nnx.Module):
    """YAMNet: waveform at 16 kHz -> per-patch and clip scores, embeddings (see the module docstring)."""

    def __init__(self, config: Config, *, rngs: nnx.Rngs, dtype: Any = None, param_dtype: Any = jnp.float32):
        self.config = config
        self.backbone = Backbone(config, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.logits = nnx.Linear(config.embedding_dim, config.num_classes, dtype=dtype, param_dtype=param_dtype,
                                 rngs=rngs)

    def __call__(self, waveform, *, train: bool = False, key=None, mixup_lambda=None, num_samples=None,
                 capture: dict | None = None) -> dict[str, jax.Array]:
        """Forward from raw audio.

        Args:
          waveform: ``(batch, samples)`` float in [-1, 1] at 16 kHz, any length (padded by the
            official rule inside).
          train: BatchNorm batch statistics (see ``Config.freeze_bn``).
          key: unused (no randomness in YAMNet).
          mixup_lambda: optional ``(batch,)``: log-mel frames become ``lam x + (1 - lam) x[::-1]``.
          num_samples: optional ``(batch,)`` true lengths of zero-padded rows (see module docstring).
          capture: a dict to receive ``log_mel``, ``patches`` and ``layer{i}_out``.
        """
        if waveform.ndim != 2:
            raise ValueError(f"YAMNet expects a waveform of shape (batch, samples), got {waveform.shape}")
        log_mel = frontend.log_mel(frontend.pad_waveform(waveform))
        if mixup_lambda is not None:
            lam = jnp.asarray(mixup_lambda, log_mel.dtype)[:, None, None]
            log_mel = lam * log_mel + (1.0 - lam) * log_mel[::-1]
        patches = frontend.patches(log_mel)
        if capture is not None:
            capture["log_mel"], capture["patches"] = log_mel, patches
        return self.forward_patches(patches, train=train, num_samples=num_samples, capture=capture)

    def forward_patches(self, patches, *, train: bool = False, num_samples=None,
                        capture: dict | None = None) -> dict[str, jax.Array]:
        """``(batch, patches, 96, 64)`` log-mel patches -> the outputs of :meth:`__call__`."""
        c = self.config
        batch, count = patches.shape[:2]
        out_dtype = jnp.float64 if patches.dtype == jnp.float64 else jnp.float32
        fmap = self.backbone(patches.reshape((batch * count,) + patches.shape[2:]), train=train, capture=capture)
        emb = fmap.mean(axis=(1, 2)).reshape(batch, count, -1)
        logits = self.logits(emb).astype(out_dtype)
        emb = emb.astype(out_dtype)
        if num_samples is None:
            valid = jnp.ones((batch, count), bool)
        else:
            valid = jnp.arange(count)[None, :] < frontend.official_num_patches_traced(num_samples)[:, None]
        if c.loss_type == "clip_bce":
            frame = jax.nn.sigmoid(logits)
            pooled_input = frame
        else:
            frame = jax.nn.softmax(logits, axis=-1)
            pooled_input = logits
        if c.clip_pool == "mean":
            clip = _masked_mean(pooled_input, valid)
        else:
            clip = jnp.where(valid[..., None], pooled_input, -jnp.inf).max(axis=1)
        return {"clipwise_output": clip, "framewise_output": frame, "latent_output": _masked_mean(emb, valid),
                "embeddings": emb, "frame_features": emb, "logits": logits}


# ============================================================================ the model contract
# (htsat_jax.models): what the trainer, the tagger, export and the tools use.


def frame_seconds(config: Config, num_samples: int) -> float:
    """Patches start every 0.48 s (each covers 0.975 s of audio from its start)."""
    return frontend.PATCH_HOP_SECONDS


def input_limits(config: Config) -> tuple[int, None]:
    """Any length: the official padding gives every input of at least one sample one patch."""
    return 1, None


def infer(model: Model, waveform) -> dict[str, jax.Array]:
    """The official ``yamnet_frames_model`` on each row (padded by the official rule); clip = pooled patches."""
    return model(waveform)


class PatchWindows(windowing.Windows):
    """Windows of YAMNet patches on a 0.48 s grid.

    A window is run exactly as the official model runs the window's audio on its own: the buffer is
    ``padded_length(window)`` samples (zeros past the audio) and the patches past the audio's
    official padded end are left out of the clip score and the latent (``num_samples``). Window
    starts are multiples of 0.48 s, so the patches of overlapping windows coincide.

    Grid step ``g`` is ``[0.48 g, 0.48 (g + 1))`` s; its score is the mean of the (at most two)
    patches that contain it, patches ``g - 1`` and ``g`` (the nearest valid patch at the end).
    ``frame_features`` rows are all the window's patches; row ``i`` spans ``[0.48 i, 0.48 i + 0.975)`` s.
    """

    def __init__(self, config: Config, window_s: float, hop_s: float):
        if not hop_s > 0:
            raise ValueError(f"hop_s must be positive, got {hop_s}")
        if hop_s > window_s:
            raise ValueError(f"hop_s={hop_s} is longer than window_s={window_s}: audio between windows "
                             "would never be seen")
        self.config = config
        self.sample_rate = config.sample_rate
        self.frame_hop = frontend.PATCH_HOP_SAMPLES
        self.window = int(round(window_s * self.sample_rate))
        if self.window < self.frame_hop:
            raise ValueError(f"window_s={window_s} is shorter than YAMNet's patch hop "
                             f"({frontend.PATCH_HOP_SECONDS} s); windows would leave gaps")
        steps = min(int(round(hop_s * self.sample_rate / self.frame_hop)), self.window // self.frame_hop)
        self.hop = max(1, steps) * self.frame_hop   # whole 0.48 s steps, not past the window
        self.min_samples = 1
        self.buffer = frontend.padded_length(self.window)

    def _key(self):
        return (self.config, self.window, self.hop)

    def prepare(self, segment: np.ndarray) -> dict[str, np.ndarray]:
        buffer = np.zeros(self.buffer, np.float32)
        buffer[:segment.shape[0]] = segment
        return {"waveform": buffer, "num_samples": np.asarray(segment.shape[0], np.int32)}

    def forward(self, model: Model, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return model(inputs["waveform"], num_samples=inputs["num_samples"])

    def local_frames(self, framewise: np.ndarray, segment_samples: int) -> np.ndarray:
        grid = self.num_frames(segment_samples)
        last = min(frontend.official_num_patches(segment_samples), framewise.shape[0]) - 1
        out = np.empty((grid, framewise.shape[1]), framewise.dtype)
        for g in range(grid):
            cover = [i for i in (g - 1, g) if 0 <= i <= last]
            out[g] = framewise[cover].mean(axis=0) if cover else framewise[last]
        return out

    def feature_intervals(self, segment_samples: int, steps: int) -> np.ndarray:
        starts = np.arange(steps, dtype=np.float64)
        return np.stack([starts, starts + frontend.PATCH_SECONDS / frontend.PATCH_HOP_SECONDS], axis=1)

    def short_note(self, segment_samples: int) -> str | None:
        padded = frontend.padded_length(segment_samples)
        if padded > segment_samples:
            return (f"zero-padded to {padded / self.sample_rate:g} s as the official YAMNet does "
                    f"({frontend.official_num_patches(segment_samples)} patches of 0.96 s every 0.48 s)")
        return None


def windows(config: Config, window_s: float = 10.0, hop_s: float = 5.0) -> PatchWindows:
    """Long audio in windows of YAMNet patches (hop rounded to whole 0.48 s steps), see :class:`PatchWindows`."""
    return PatchWindows(config, window_s, hop_s)


# The export's default input (``htsat_jax.inference.export``): 1 s, the on-device chunk (LEAN's input).
EXPORT_SECONDS = 1.0


def export_forward(model: Model, num_samples: int):
    """The ONNX-lowerable forward on ``(batch, num_samples)`` 16 kHz waveforms: ``Model(waveform)``
    with the frontend built from export-friendly pieces (same values): the official zero padding,
    slice framing, ``sqrt`` of a real-DFT power spectrum for the magnitude, slice patching.

    Outputs: ``clipwise_output (batch, classes)``, ``framewise_output (batch, patches, classes)``
    (per-patch scores), ``latent_output (batch, 1024)``, ``embeddings (batch, patches, 1024)``;
    1 s gives 2 patches (the official padding), 10 s gives 20.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    names = ("clipwise_output", "framewise_output", "latent_output", "embeddings")

    def forward(waveform: jax.Array) -> dict[str, jax.Array]:
        log_mel = frontend.log_mel_exportable(frontend.pad_waveform(waveform))
        out = model.forward_patches(frontend.patches_sliced(log_mel), train=False)
        return {k: out[k] for k in names}

    return forward


def file_kind(path: str) -> str | None:
    """``"h5"``, ``"tflite"`` or None, from the file's magic bytes."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "h5"
    if head[4:8] == b"TFL3":
        return "tflite"
    return None


def can_load(path: str) -> bool:
    """A YAMNet Keras HDF5 weights file (``yamnet.h5``) or a YAMNet ``.tflite`` file."""
    from htsat_jax.convert import yamnet as convert
    from htsat_jax.convert.common import CheckpointError

    kind = file_kind(os.fspath(path))
    try:
        if kind == "h5":
            return convert.looks_like_yamnet_h5(path)
        if kind == "tflite":
            return convert.looks_like_yamnet_tflite(path)
    except (CheckpointError, OSError, ValueError):
        return False
    return False


def load(path: str, *, loss_type: str | None = None, **kwargs) -> tuple[Config, dict, list[str] | None]:
    """A released YAMNet file -> ``(config, weights, class names)`` (see ``htsat_jax.convert.yamnet``)."""
    from htsat_jax.convert import yamnet as convert

    config, weights, report = convert.load_yamnet(path, loss_type=loss_type, **kwargs)
    return config, weights, report.class_names


def init_from(path: str, config: Config, fresh: Mapping, *, seed: int = 0) -> tuple[dict, str]:
    """Training start from a YAMNet model directory, ``.h5`` or ``.tflite``: every tensor, the
    classifier fresh when the class count differs (or the file has none)."""
    from htsat_jax.convert import yamnet as convert
    from htsat_jax.models import base

    if base.is_model_dir(path):
        weights, report = base.init_from_model_dir(path, config, fresh, arch_fields=ARCH_FIELDS, head=HEAD)
        return weights, report.summary()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"init_from={path!r}: no model directory (with config.json) or YAMNet file there")
    src_cfg, loaded, conv_report = convert.load_yamnet(path, require_head=False)
    diffs = [f"{f}: file {getattr(src_cfg, f)} vs config {getattr(config, f)}"
             for f in ARCH_FIELDS if getattr(src_cfg, f) != getattr(config, f)]
    if diffs:
        raise ValueError(f"init_from={path} does not match config.model: " + "; ".join(diffs))
    has_head = "logits" in loaded
    keep = HEAD if (not has_head or src_cfg.num_classes != config.num_classes) else ()
    weights, report = base.merge_weights(fresh, loaded, source=path, keep_fresh=keep)
    if not has_head:
        report.notes.append("the file has no classifier")
    report.notes.extend(conv_report.notes)
    return weights, report.summary()


def param_count(model: Model) -> int:
    """Trainable parameters (kernels, BatchNorm beta, classifier)."""
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
