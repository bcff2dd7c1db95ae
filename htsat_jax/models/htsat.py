"""HTS-AT: hierarchical token-semantic audio transformer (Chen et al., ICASSP 2022).

Waveform -> log-mel -> BatchNorm over mel bins -> (SpecAugment, mixup when training) ->
bicubic time stretch to ``spec_size * freq_ratio`` frames -> time->frequency->window image
-> Swin backbone -> final LayerNorm -> token-semantic head. Shapes and order of operations
follow the official implementation (HTSAT_SPEC §1-4); where the paper and the code disagree,
the code wins and the comment says so.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from htsat_jax.models import frontend as frontend_lib
from htsat_jax.models import swin

NAME = "htsat"
LOSS_TYPES = ("clip_bce", "clip_ce")


@dataclasses.dataclass(frozen=True)
class SpecAugmentConfig:
    """torchlibrosa SpecAugmentation as HTS-AT configures it (widths drawn in [0, drop_width))."""

    time_drop_width: int = 64
    time_stripes_num: int = 2
    freq_drop_width: int = 8
    freq_stripes_num: int = 2


@dataclasses.dataclass(frozen=True)
class HTSATConfig:
    """Architecture and frontend of one HTS-AT model. Defaults are the paper's AudioSet model."""

    model_name: ClassVar[str] = NAME
    num_classes: int = 527
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    spec_size: int = 256
    patch_size: int = 4
    patch_stride: int = 4
    mlp_ratio: float = 4.0
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    # clip_bce: clipwise_output is a probability (sigmoid); clip_ce: it is the raw mean logit.
    loss_type: str = "clip_bce"
    frontend: frontend_lib.FrontendConfig = frontend_lib.AUDIOSET_FRONTEND
    spec_augment: SpecAugmentConfig = SpecAugmentConfig()
    # How window attention runs (swin.ATTENTION_IMPLS): the same numbers, chosen for speed on the
    # backend; not part of the architecture (weights move freely between settings).
    attention: str = "auto"

    def __post_init__(self):
        # Accept lists (from JSON / ml_collections) and nested dicts, store hashable tuples.
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        if isinstance(self.frontend, Mapping):
            object.__setattr__(self, "frontend", frontend_lib.FrontendConfig(**self.frontend))
        if isinstance(self.spec_augment, Mapping):
            object.__setattr__(self, "spec_augment", SpecAugmentConfig(**self.spec_augment))
        self.validate()

    def validate(self) -> None:
        problems = []
        if len(self.depths) != len(self.num_heads):
            problems.append(f"depths {self.depths} and num_heads {self.num_heads} differ in length")
        if self.attention not in swin.ATTENTION_IMPLS:
            problems.append(f"attention {self.attention!r} is not one of {swin.ATTENTION_IMPLS}")
        if self.loss_type not in LOSS_TYPES:
            problems.append(f"loss_type {self.loss_type!r} is not one of {LOSS_TYPES}")
        if self.spec_size % self.frontend.n_mels:
            problems.append(f"spec_size {self.spec_size} must be a multiple of n_mels {self.frontend.n_mels}")
        grid = self.spec_size // self.patch_stride
        if grid % (2 ** (len(self.depths) - 1)):
            problems.append(f"patch grid {grid} cannot be halved {len(self.depths) - 1} times")
        for i, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2**i) % heads:
                problems.append(f"stage {i} dim {self.embed_dim * 2**i} not divisible by {heads} heads")
        if problems:
            raise ValueError("invalid HTSATConfig: " + "; ".join(problems))

    # ---- derived geometry (HTSAT_SPEC §2, §4)
    @property
    def sample_rate(self) -> int:
        """Rate of the waveform the model takes (its log-mel frontend's)."""
        return self.frontend.sample_rate

    @property
    def freq_ratio(self) -> int:
        return self.spec_size // self.frontend.n_mels

    @property
    def target_frames(self) -> int:
        """Frames the log-mel is stretched to: 1024 for the paper model."""
        return self.spec_size * self.freq_ratio

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def final_grid(self) -> int:
        return self.spec_size // self.patch_stride // 2 ** (len(self.depths) - 1)

    @property
    def head_freq_bins(self) -> int:
        """Rows of each time-quarter in the final grid (the tscam_conv kernel height)."""
        return self.final_grid // self.freq_ratio

    @property
    def head_time_steps(self) -> int:
        """Chronological steps of the token-semantic head: 32 for the paper model."""
        return self.final_grid * self.freq_ratio

    @property
    def drop_path_rates(self) -> list[float]:
        return [float(r) for r in np.linspace(0.0, self.drop_path_rate, sum(self.depths))]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HTSATConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown HTSATConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**dict(d))


TINY = dict(embed_dim=16, depths=(2, 2, 2, 1), num_heads=(2, 4, 8, 16))


# ----------------------------------------------------------------------------- spectrogram to image


@functools.lru_cache(maxsize=32)
def bicubic_matrix(in_size: int, out_size: int, dtype_name: str = "float32") -> np.ndarray:
    """``(out_size, in_size)`` matrix of PyTorch's bicubic ``align_corners=True`` resize along one axis.

    PyTorch's cubic kernel uses A = -0.75 (not Keys' -0.5, so not ``jax.image.resize``) and computes
    the source coordinate in the input's precision; doing it in float64 for float32 inputs moves
    values by up to 3e-4, so the arithmetic dtype follows the input dtype.
    """
    f = np.dtype(dtype_name).type
    a = f(-0.75)
    scale = f(in_size - 1) / f(out_size - 1) if out_size > 1 else f(0)
    matrix = np.zeros((out_size, in_size), np.float64)

    def near(x):  # |x| <= 1
        return ((a + f(2)) * x - (a + f(3))) * x * x + f(1)

    def far(x):  # 1 < |x| < 2
        return ((a * x - f(5) * a) * x + f(8) * a) * x - f(4) * a

    for o in range(out_size):
        src = f(scale * f(o))
        i = int(np.floor(src))
        t = f(src - f(i))
        weights = (far(t + f(1)), near(t), near(f(1) - t), far(f(2) - t))
        for tap, w in zip(range(i - 1, i + 3), weights):
            matrix[o, min(max(tap, 0), in_size - 1)] += float(w)
    return matrix.astype(np.dtype(dtype_name))


def stretch_time(x: jax.Array, target: int) -> jax.Array:
    """``(B, T, F)`` -> ``(B, target, F)`` by bicubic interpolation; identity when ``T == target``.

    The official code interpolates (the paper says "pad"; the maintainer confirmed the code, issue #40).
    """
    frames = x.shape[1]
    if frames == target:
        return x
    if frames > target:
        raise ValueError(f"cannot stretch {frames} frames down to {target}; crop first")
    m = jnp.asarray(bicubic_matrix(frames, target, np.dtype(x.dtype).name), x.dtype)
    return jnp.einsum("ot,btf->bof", m, x, precision=jax.lax.Precision.HIGHEST)


def to_image(spec: jax.Array, freq_ratio: int) -> jax.Array:
    """Time->frequency->window layout: ``(B, r*S, F)`` -> ``(B, r*F, S)`` image.

    ``img[r*F + f, w] = spec[r*S + w, f]``: the stretched frames are cut into ``r`` consecutive
    quarters, each becomes an ``F``-row block (mel bins), blocks stacked vertically.
    """
    b, t, f = spec.shape
    s = t // freq_ratio
    return spec.reshape(b, freq_ratio, s, f).transpose(0, 1, 3, 2).reshape(b, freq_ratio * f, s)


# ----------------------------------------------------------------------------- augmentations


def spec_augment(x: jax.Array, key: jax.Array, config: SpecAugmentConfig) -> jax.Array:
    """Zero random time and mel stripes per sample, ``(B, T, F)`` -> same shape.

    Applied after bn0, so the zeros equal the normalised mean, as in the official code.
    """
    b, t, f = x.shape
    keep = jnp.ones((b, t, f), bool)
    specs = [(1, t, config.time_drop_width, config.time_stripes_num),
             (2, f, config.freq_drop_width, config.freq_stripes_num)]
    for axis, size, width_max, stripes in specs:
        for _ in range(stripes):
            key, wkey, skey = jax.random.split(key, 3)
            width = jax.random.randint(wkey, (b,), 0, width_max)
            start = jax.random.randint(skey, (b,), 0, size - width)
            pos = jnp.arange(size)[None, :]
            stripe = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # (B, size)
            stripe = stripe[:, :, None] if axis == 1 else stripe[:, None, :]
            keep = keep & ~stripe
    return jnp.where(keep, x, jnp.zeros_like(x))


def mixup(x: jax.Array, lam: jax.Array) -> jax.Array:
    """``x[b] <- lam[b] x[b] + (1 - lam[b]) x[B-1-b]`` on the normalised log-mel ``(B, T, F)``.

    Targets are not mixed (official code; maintainer, issue #8). The official partner is the
    flipped per-GPU batch; under jit the flip spans the global batch, which is the same
    distribution of pairs.
    """
    lam = lam.astype(x.dtype)[:, None, None]
    return lam * x + (1.0 - lam) * x[::-1]


# ----------------------------------------------------------------------------- the model


def _at_least_f32(x: jax.Array) -> jax.Array:
    """Outputs leave the model in float32 (bfloat16 compute) or float64 (x64 parity runs)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


class HTSAT(nnx.Module):
    """HTS-AT with the token-semantic head.

    Call with a waveform ``(batch, samples)`` at ``config.frontend.sample_rate``; returns
    ``clipwise_output (batch, classes)``, ``framewise_output (batch, target_frames, classes)``
    and ``latent_output (batch, num_features)``.
    """

    def __init__(self, config: HTSATConfig, *, rngs: nnx.Rngs, dtype: Any = None,
                 param_dtype: Any = jnp.float32):
        self.config = config
        self.dtype = dtype
        c = config
        # bn0 normalises each mel bin over (batch, time). torch momentum 0.1 == flax momentum 0.9.
        # torch updates running_var with the unbiased batch variance, flax with the biased one: a
        # factor n/(n-1) with n = batch*1001 values per bin, negligible.
        self.bn0 = nnx.BatchNorm(c.frontend.n_mels, momentum=0.9, epsilon=1e-5,
                                 dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.patch_embed = swin.PatchEmbed(c.patch_size, c.patch_stride, 1, c.embed_dim,
                                           dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        grid = c.spec_size // c.patch_stride
        rates = c.drop_path_rates
        layers = []
        for i, (depth, heads) in enumerate(zip(c.depths, c.num_heads)):
            res = grid // 2**i
            layers.append(swin.SwinStage(
                c.embed_dim * 2**i, (res, res), depth, heads, c.window_size,
                drop_path_rates=rates[sum(c.depths[:i]):sum(c.depths[:i + 1])],
                downsample=i < len(c.depths) - 1, mlp_ratio=c.mlp_ratio, drop=c.drop_rate,
                attn_drop=c.attn_drop_rate, attention=c.attention, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
            ))
        self.layers = nnx.List(layers)
        self.norm = swin.layer_norm(c.num_features, dtype, param_dtype, rngs)
        fan_in = c.num_features * c.head_freq_bins * 3
        self.tscam_conv = nnx.Conv(
            c.num_features, c.num_classes, (c.head_freq_bins, 3), padding=((0, 0), (1, 1)),
            kernel_init=swin.torch_conv_init(fan_in), bias_init=swin.torch_conv_init(fan_in),
            dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        )

    # -- pieces -------------------------------------------------------------------------------

    def normalise(self, logmel: jax.Array, *, train: bool) -> jax.Array:
        """bn0: ``(B, T, mels)`` -> same; batch statistics (and running-stat updates) when training."""
        return self.bn0(logmel, use_running_average=not train)

    def forward_image(self, image: jax.Array, *, key: jax.Array | None = None,
                      capture: dict[str, jax.Array] | None = None) -> dict[str, jax.Array]:
        """Backbone + head on a ``(B, spec_size, spec_size)`` image."""
        c = self.config
        x = self.patch_embed(image[..., None].astype(self.dtype or image.dtype))
        if capture is not None:
            capture["after_patch_embed"] = x
        keys = [None] * len(self.layers) if key is None else list(jax.random.split(key, len(self.layers)))
        for i, layer in enumerate(self.layers):
            x = layer(x, keys[i], capture, f"layer{i}")
            if capture is not None:
                capture[f"layer{i}_out"] = x
        return self.head(x, capture=capture)

    def head(self, x: jax.Array, capture: dict[str, jax.Array] | None = None) -> dict[str, jax.Array]:
        """Final LayerNorm and the token-semantic head on the last stage's ``(B, G, G, C)`` map."""
        c = self.config
        x = self.norm(x)  # (B, G, G, C), G = final_grid
        if capture is not None:
            capture["after_final_norm"] = x
        b, g, _, ch = x.shape
        latent = jnp.mean(x, axis=(1, 2))
        # Rows are (time quarter r, freq group) pairs: regroup to (freq group, chronological time).
        r, fg = c.freq_ratio, c.head_freq_bins
        x = x.reshape(b, r, fg, g, ch).transpose(0, 2, 1, 3, 4).reshape(b, fg, r * g, ch)
        if capture is not None:
            capture["tscam_conv_in"] = x
        logits = _at_least_f32(self.tscam_conv(x)[:, 0])  # (B, steps, classes)
        if capture is not None:
            capture["tscam_conv_out"] = logits
        # Each head step covers target_frames / steps stretched frames; official upsampling repeats.
        framewise = jnp.repeat(jax.nn.sigmoid(logits), c.target_frames // logits.shape[1], axis=1)
        clip_logits = jnp.mean(logits, axis=1)
        clipwise = jax.nn.sigmoid(clip_logits) if c.loss_type == "clip_bce" else clip_logits
        return {"clipwise_output": clipwise, "framewise_output": framewise,
                "latent_output": _at_least_f32(latent)}

    def forward_logmel(
        self,
        logmel: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mixup_lambda: jax.Array | None = None,
        infer_mode: bool = False,
        capture: dict[str, jax.Array] | None = None,
    ) -> dict[str, jax.Array]:
        """Everything after the frontend, on a dB log-mel ``(B, T, mels)``."""
        c = self.config
        if train and key is None:
            raise ValueError("training forward needs an explicit PRNG key (key=...)")
        if capture is not None:
            capture["logmel_before_bn0"] = logmel
        x = self.normalise(logmel, train=train)
        if capture is not None:
            capture["after_bn0"] = x
        aug_key = crop_key = net_key = None
        if train:
            aug_key, crop_key, net_key = jax.random.split(key, 3)
            x = spec_augment(x, aug_key, c.spec_augment)
            if mixup_lambda is not None:
                x = mixup(x, mixup_lambda)
        frames, target = x.shape[1], c.target_frames
        if infer_mode:
            # Official infer mode tiles the log-mel frames floor(target / T) times before stretching;
            # the official code crashes when T > target (issue #7), so we refuse with a clear message.
            if frames > target:
                raise ValueError(
                    f"infer_mode takes at most {target} frames ({(target - 1) * c.frontend.hop_length} "
                    f"samples), got {frames}; split long audio into windows (AudioTagger does this)"
                )
            x = jnp.tile(x, (1, target // frames, 1))
        elif frames > target:
            return self._forward_long(x, train=train, crop_key=crop_key, net_key=net_key)
        image = to_image(stretch_time(x, target), c.freq_ratio)
        if capture is not None:
            capture["after_reshape_wav2img"] = image
        return self.forward_image(image, key=net_key, capture=capture)

    def _forward_long(self, x: jax.Array, *, train: bool, crop_key, net_key) -> dict[str, jax.Array]:
        """Official handling of more than ``target_frames`` frames outside infer mode."""
        c = self.config
        frames, target = x.shape[1], c.target_frames
        if train:
            # One random crop for the whole batch; the official randint excludes the last start.
            start = jax.random.randint(crop_key, (), 0, frames - target)
            crop = jax.lax.dynamic_slice_in_dim(x, start, target, axis=1)
            return self.forward_image(to_image(crop, c.freq_ratio), key=net_key)
        crop_size, hop = (frames - 1) // 2, (frames - 1) // 4
        if crop_size > target:
            raise ValueError(
                f"eval forward handles at most {2 * target + 1} frames, got {frames}; "
                "split long audio into windows (AudioTagger does this)"
            )
        outs = [self.forward_image(to_image(stretch_time(x[:, s:s + crop_size], target), c.freq_ratio))
                for s in range(0, frames - crop_size - 1, hop)]
        # The official code averages clipwise and framewise over the crops and returns no latent;
        # we also average the latent so every forward returns the same three outputs.
        return {k: sum(o[k] for o in outs) / len(outs) for k in outs[0]}

    def __call__(
        self,
        waveform: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mixup_lambda: jax.Array | None = None,
        infer_mode: bool = False,
        capture: dict[str, jax.Array] | None = None,
    ) -> dict[str, jax.Array]:
        """Forward pass from raw audio.

        Args:
          waveform: ``(batch, samples)`` float in [-1, 1] at ``config.frontend.sample_rate``.
          train: batch-statistics BatchNorm, SpecAugment, dropout and drop-path (needs ``key``).
          key: PRNG key for the training-time randomness.
          mixup_lambda: optional ``(batch,)`` mixing weights (training only, see :func:`mixup`).
          infer_mode: the official inference path (tile short inputs before stretching).
          capture: if a dict is given, intermediate activations are stored in it by name.

        Returns:
          dict with ``clipwise_output (batch, classes)``, ``framewise_output (batch,
          target_frames, classes)`` (always sigmoid) and ``latent_output (batch, num_features)``.
        """
        if waveform.ndim != 2:
            raise ValueError(f"HTSAT expects a waveform of shape (batch, samples), got {waveform.shape}")
        compute_dtype = jnp.float64 if waveform.dtype == jnp.float64 else jnp.float32
        logmel = frontend_lib.log_mel(waveform.astype(compute_dtype), self.config.frontend)
        return self.forward_logmel(logmel, train=train, key=key, mixup_lambda=mixup_lambda,
                                   infer_mode=infer_mode, capture=capture)


def count_parameters(model: HTSAT) -> int:
    """Number of trainable parameters (``nnx.Param`` leaves)."""
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


# ============================================================================ the model contract
# (htsat_jax.models): what the trainer, the tagger, export and the tools use.

Config = HTSATConfig
Model = HTSAT
VARIANTS: dict[str, dict[str, Any]] = {"base": {}, "tiny": TINY}
# Tensors of the token-semantic head: re-initialised when fine-tuning to another class count
# (the official fine-tuning pops ``head.*`` and ``tscam_conv.*``).
HEAD = ("tscam_conv",)
# Fields that must agree between a checkpoint and the config it initialises.
ARCH_FIELDS = ("embed_dim", "depths", "num_heads", "window_size", "spec_size", "patch_size",
               "patch_stride", "mlp_ratio", "frontend")


def frame_seconds(config: HTSATConfig, num_samples: int) -> float:
    """Seconds between consecutive ``framewise_output`` steps for an input of ``num_samples`` (no
    tiling): the ``T`` log-mel frames are stretched onto ``target_frames`` steps, so step ``k`` sits
    at frame ``k (T - 1) / (target_frames - 1)``."""
    frames = config.frontend.num_frames(num_samples)
    return (frames - 1) / (config.target_frames - 1) * config.frontend.hop_length / config.frontend.sample_rate


def input_limits(config: HTSATConfig) -> tuple[int, int]:
    """The official forward takes more than ``n_fft // 2`` samples and at most ``2 target + 1`` frames."""
    fe = config.frontend
    return fe.n_fft // 2 + 1, (2 * config.target_frames + 1) * fe.hop_length - 1


def infer(model: HTSAT, waveform: jax.Array) -> dict[str, jax.Array]:
    """The official inference forward: ``infer_mode`` (tile short inputs) up to ``target_frames``
    frames, the eval path (half-length crops, averaged) beyond."""
    c = model.config
    return model(waveform, infer_mode=c.frontend.num_frames(waveform.shape[1]) <= c.target_frames)


def windows(config: HTSATConfig, window_s: float = 10.0, hop_s: float = 5.0):
    """Windows of the official inference (tile + bicubic stretch), see ``htsat_windows``."""
    from htsat_jax.models import htsat_windows

    return htsat_windows.WindowSpec.from_seconds(config, window_s, hop_s)


def export_forward(model: HTSAT, num_samples: int):
    """The ONNX-lowerable inference forward on ``(batch, num_samples)``: the official ``infer_mode``
    path with the slice-framed log-mel of ``htsat_jax.inference.export`` (same values)."""
    from htsat_jax.inference import export

    fe, target = model.config.frontend, model.config.target_frames
    if num_samples <= fe.n_fft // 2:
        raise ValueError(f"num_samples {num_samples} is too short: the frontend needs more than "
                         f"{fe.n_fft // 2} samples ({fe.n_fft / 2 / fe.sample_rate * 1000:.0f} ms)")
    if fe.num_frames(num_samples) > target:
        longest = target * fe.hop_length - 1
        raise ValueError(f"num_samples {num_samples} ({num_samples / fe.sample_rate:.2f} s) is too long for the "
                         f"inference path: at most {longest} samples ({longest / fe.sample_rate:.2f} s); "
                         "export 10 s windows and cut longer audio into windows")

    # A graph with a symbolic batch and plain ops: the plain attention (the chunked loop sizes its
    # groups from the batch, and ONNX runtimes fuse the plain form themselves). Same numbers.
    plain = nnx.clone(model)
    for _, module in nnx.iter_graph(plain):
        if isinstance(module, swin.WindowAttention):
            module.attention = "plain"

    def forward(waveform: jax.Array) -> dict[str, jax.Array]:
        return plain.forward_logmel(export.log_mel(waveform, fe), train=False, infer_mode=True)

    return forward


def can_load(path: str) -> bool:
    """An official HTS-AT (or Swin ImageNet, which ``load`` refuses with its own message) torch file."""
    from htsat_jax.convert import torch_htsat

    return torch_htsat.looks_like_htsat(path)


def load(path: str, *, loss_type: str | None = None, **kwargs) -> tuple[HTSATConfig, dict, None]:
    """An official PyTorch HTS-AT checkpoint -> ``(config, weights, class names: None)``."""
    from htsat_jax.convert import torch_htsat

    config, weights = torch_htsat.load_torch_checkpoint(path, loss_type=loss_type, **kwargs)
    return config, weights, None


def init_from(path: str, config: HTSATConfig, fresh: Mapping, *, seed: int = 0) -> tuple[dict, str]:
    """Training start: a model directory or an official ``.ckpt`` gives every tensor (the head stays
    fresh when the class count differs); a Swin ImageNet ``.pth`` initialises the backbone."""
    import os

    from htsat_jax.convert import swin_imagenet, torch_htsat
    from htsat_jax.models import base

    if base.is_model_dir(path):
        weights, report = base.init_from_model_dir(path, config, fresh, arch_fields=ARCH_FIELDS, head=HEAD)
        return weights, report.summary()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"init_from={path!r}: no model directory (with config.json) or checkpoint file there")
    obj = torch_htsat.read_torch_file(path)  # read once, then dispatch on its layout
    if swin_imagenet.is_swin_state(obj):
        weights, report = swin_imagenet.import_swin_state_dict(
            swin_imagenet.swin_state_from_object(obj, path), config, fresh, source=path)
        return weights, report.summary()
    src_cfg, loaded = torch_htsat.convert_torch_object(obj, path)
    weights, report = base.merge_same_architecture(fresh, src_cfg, config, loaded, source=path,
                                                   arch_fields=ARCH_FIELDS, head=HEAD)
    return weights, report.summary()
