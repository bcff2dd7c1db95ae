"""AST: the Audio Spectrogram Transformer (Gong, Chung & Glass, Interspeech 2021), as the official
code (``YuanGongND/ast``, ``src/models/ast_models.py`` + ``src/dataloader.py``) defines it.

Waveform ``(B, samples)`` at 16 kHz -> Kaldi log fbank ``(B, frames, 128)`` (``htsat_jax.models.kaldi_fbank``)
-> zero-pad / crop to ``input_tdim`` frames -> ``(x - mean) / (2 std)`` (AudioSet statistics)
-> (SpecAugment, mixup when training) -> image ``(B, 128 freq, T time)`` -> 16x16 patches with
stride ``(fstride, tstride)`` (overlapping for stride < 16; 10 in the paper's best model)
-> [CLS, DIST, patches] + learned position embedding -> 12 pre-norm ViT blocks (DeiT-base:
dim 768, 12 heads, MLP 3072, exact GELU, qkv bias, LayerNorm eps 1e-6) -> final LayerNorm
-> mean of the CLS and distillation token outputs -> LayerNorm (eps 1e-5) + Linear head.

Where paper and code differ the code wins; each place says so in a comment. Parameter names
follow the official module (``patch_embed``, ``cls_token``, ``dist_token``, ``pos_embed``,
``blocks[i].{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``; the official
``mlp_head.0`` / ``mlp_head.1`` are ``head_norm`` / ``head``), so :mod:`htsat_jax.convert.ast`
maps keys one to one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from htsat_jax.models import kaldi_fbank
from htsat_jax.models import swin
from htsat_jax.models.htsat import LOSS_TYPES, mixup

NAME = "ast"
MODEL_TYPE = NAME
# The official DeiT backbone keeps timm's ImageNet classifiers ``v.head`` and ``v.head_dist``
# (1000 classes each) inside the model although the AST forward never uses them.
DEIT_IMAGENET_CLASSES = 1000

# Official target lengths (frames) of the released recipes: AudioSet 10 s, ESC-50 5 s, SCV2 1 s.
OFFICIAL_TDIMS = {"audioset": 1024, "esc50": 512, "speechcommands": 128}
# Official SpecAugment widths (freqm, timem) of those recipes (run scripts of the official repo).
OFFICIAL_SPEC_AUGMENT = {"audioset": (48, 192), "esc50": (24, 96), "speechcommands": (48, 48)}
# Official fbank normalisation statistics (dataset_mean, dataset_std) of those recipes' run scripts.
OFFICIAL_NORM_STATS = {"audioset": (-4.2677393, 4.5689974), "esc50": (-6.6268077, 5.358466),
                       "speechcommands": (-6.845978, 5.5654526)}


@dataclasses.dataclass(frozen=True)
class ASTConfig:
    """Architecture, frontend and augmentation of one AST. Defaults: the paper's AudioSet model
    (ImageNet DeiT-base 384 init, 16x16 patches with stride 10 on both axes, 1024 frames)."""

    num_classes: int = 527
    fstride: int = 10
    tstride: int = 10
    input_tdim: int = 1024  # frames the fbank is padded/cropped to (the official target_length)
    input_fdim: int = 128
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    # timm's create_model defaults, which the official code keeps: no dropout, no drop-path.
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    # clip_bce: clipwise_output is sigmoid(logits); clip_ce: it is the raw logits (as HTSATConfig).
    loss_type: str = "clip_bce"
    fbank: kaldi_fbank.KaldiFbankConfig = kaldi_fbank.AST_FBANK
    # AudioSet fbank statistics of the official recipe. The official ESC-50 and SCV2 recipes use
    # their own (OFFICIAL_NORM_STATS); a model must be evaluated with the statistics it was trained on.
    norm_mean: float = -4.2677393
    norm_std: float = 4.5689974
    # SpecAugment widths (torchaudio FrequencyMasking / TimeMasking mask_param); 0 disables.
    freqm: int = 48
    timem: int = 192
    # timm ViT blocks and final norm use eps 1e-6; the official mlp_head is a plain nn.LayerNorm
    # (eps 1e-5). transformers' AST uses config.layer_norm_eps (default 1e-12) for all of them.
    layer_norm_eps: float = 1e-6
    head_norm_eps: float = 1e-5
    # Written to config.json by directories made before ``model_name`` was stored (see htsat_jax.models).
    model_type: str = MODEL_TYPE
    model_name: ClassVar[str] = NAME

    def __post_init__(self):
        if isinstance(self.fbank, Mapping):
            object.__setattr__(self, "fbank", kaldi_fbank.KaldiFbankConfig(**self.fbank))
        self.validate()

    def validate(self) -> None:
        problems = []
        if self.model_type != MODEL_TYPE:
            problems.append(f"model_type must be {MODEL_TYPE!r}, got {self.model_type!r}")
        if self.loss_type not in LOSS_TYPES:
            problems.append(f"loss_type {self.loss_type!r} is not one of {LOSS_TYPES}")
        if self.input_fdim != self.fbank.num_mel_bins:
            problems.append(f"input_fdim {self.input_fdim} != fbank.num_mel_bins {self.fbank.num_mel_bins}")
        if min(self.input_fdim, self.input_tdim) < self.patch_size:
            problems.append(f"input {self.input_fdim}x{self.input_tdim} is smaller than one {self.patch_size} patch")
        if self.fstride < 1 or self.tstride < 1:
            problems.append(f"strides must be positive, got fstride {self.fstride}, tstride {self.tstride}")
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by {self.num_heads} heads")
        if self.norm_std <= 0:
            problems.append(f"norm_std must be positive, got {self.norm_std}")
        if problems:
            raise ValueError("invalid ASTConfig: " + "; ".join(problems))

    # ---- derived geometry
    @property
    def f_dim(self) -> int:
        """Patch rows along frequency: 12 for 128 bins, stride 10 (the official conv shape probe)."""
        return (self.input_fdim - self.patch_size) // self.fstride + 1

    @property
    def t_dim(self) -> int:
        """Patch columns along time: 101 for 1024 frames, stride 10."""
        return (self.input_tdim - self.patch_size) // self.tstride + 1

    @property
    def num_patches(self) -> int:
        return self.f_dim * self.t_dim

    @property
    def num_tokens(self) -> int:
        """Patches plus the CLS and distillation tokens."""
        return self.num_patches + 2

    @property
    def sample_rate(self) -> int:
        """Rate of the waveform the model takes: the fbank's (16 kHz). Data stored at another rate is
        resampled by the data side (on device in the trainer, soxr in the tagger)."""
        return self.fbank.sample_rate

    @property
    def num_features(self) -> int:
        """Width of ``latent_output``."""
        return self.embed_dim

    @property
    def pad_value(self) -> float:
        """Normalised value of a zero raw-fbank entry: what padded and masked frames hold."""
        return (0.0 - self.norm_mean) / (2.0 * self.norm_std)

    @property
    def drop_path_rates(self) -> list[float]:
        return [float(r) for r in np.linspace(0.0, self.drop_path_rate, self.depth)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ASTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        # Directories written before the model rate was the model's stored the data's rate here.
        d = {k: v for k, v in d.items() if k != "input_sample_rate"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ASTConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**dict(d))


# Small widths for tests and the demo; keep the geometry of the config they are combined with.
TINY = dict(embed_dim=64, depth=2, num_heads=4)


# ----------------------------------------------------------------------------- augmentation


def spec_augment(x: jax.Array, key: jax.Array, freqm: int, timem: int, fill: float) -> jax.Array:
    """One frequency and one time mask per example on ``(B, T, F)``, as the official dataloader
    applies ``torchaudio.transforms.FrequencyMasking(freqm)`` then ``TimeMasking(timem)``.

    torchaudio draws the width ``floor(u * mask_param)`` (so 0 .. mask_param - 1) and the start
    ``floor(u' * (size - u * mask_param))``. The official masks zero the *raw* fbank before
    normalisation, hence ``fill`` = the normalised zero (:attr:`ASTConfig.pad_value`).
    """
    b, t, f = x.shape
    keep = jnp.ones((b, t, f), bool)
    for axis, size, param in ((2, f, freqm), (1, t, timem)):
        if param <= 0:
            continue
        key, wkey, skey = jax.random.split(key, 3)
        value = jax.random.uniform(wkey, (b,)) * param
        start = jnp.floor(jax.random.uniform(skey, (b,)) * (size - value)).astype(jnp.int32)
        end = start + jnp.floor(value).astype(jnp.int32)
        pos = jnp.arange(size)[None, :]
        stripe = (pos >= start[:, None]) & (pos < end[:, None])  # (B, size)
        stripe = stripe[:, :, None] if axis == 1 else stripe[:, None, :]
        keep = keep & ~stripe
    return jnp.where(keep, x, jnp.asarray(fill, x.dtype))


# ----------------------------------------------------------------------------- the network


def _at_least_f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _layer_norm(dim: int, eps: float, dtype, param_dtype, rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def _dense(din: int, dout: int, dtype, param_dtype, rngs) -> nnx.Linear:
    # timm ViT init: trunc_normal(std=0.02) weights (bounds +-2 absolute: a plain normal), zero bias.
    return nnx.Linear(din, dout, kernel_init=swin.linear_init, bias_init=nnx.initializers.zeros_init(),
                      dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class Attention(nnx.Module):
    """timm ViT attention: fused qkv (with bias) -> softmax(q k^T / sqrt(head_dim)) v -> proj."""

    def __init__(self, dim: int, heads: int, attn_drop: float, proj_drop: float, *, dtype, param_dtype,
                 rngs: nnx.Rngs):
        self.heads = heads
        self.attn_drop, self.proj_drop = attn_drop, proj_drop
        self.qkv = _dense(dim, 3 * dim, dtype, param_dtype, rngs)
        self.proj = _dense(dim, dim, dtype, param_dtype, rngs)

    def __call__(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        """``(B, N, C)`` -> ``(B, N, C)``."""
        b, n, c = x.shape
        hd = c // self.heads
        k_attn, k_proj = swin._split(key, 2)
        # Official qkv rows are [q; k; v], each head-major: reshape (B, N, 3, heads, hd).
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, hd).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, hd)
        logits = jnp.einsum("bhqd,bhkd->bhqk", q * jnp.asarray(hd ** -0.5, q.dtype), k)
        attn = jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
        attn = swin.dropout(attn.astype(v.dtype), self.attn_drop, k_attn)
        out = jnp.einsum("bhqk,bhkd->bqhd", attn, v).reshape(b, n, c)
        return swin.dropout(self.proj(out), self.proj_drop, k_proj)


class Mlp(nnx.Module):
    def __init__(self, dim: int, hidden: int, drop: float, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.drop = drop
        self.fc1 = _dense(dim, hidden, dtype, param_dtype, rngs)
        self.fc2 = _dense(hidden, dim, dtype, param_dtype, rngs)

    def __call__(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        k1, k2 = swin._split(key, 2)
        x = swin.gelu_exact(self.fc1(x))  # nn.GELU: exact erf form
        x = swin.dropout(x, self.drop, k1)
        return swin.dropout(self.fc2(x), self.drop, k2)


class Block(nnx.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, *, eps: float, drop: float, attn_drop: float,
                 drop_path: float, dtype, param_dtype, rngs: nnx.Rngs):
        self.drop_path = drop_path
        self.norm1 = _layer_norm(dim, eps, dtype, param_dtype, rngs)
        self.attn = Attention(dim, heads, attn_drop, drop, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm2 = _layer_norm(dim, eps, dtype, param_dtype, rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        k_attn, k_dp1, k_mlp, k_dp2 = swin._split(key, 4)
        x = x + swin.drop_path(self.attn(self.norm1(x), k_attn), self.drop_path, k_dp1)
        return x + swin.drop_path(self.mlp(self.norm2(x), k_mlp), self.drop_path, k_dp2)


class AST(nnx.Module):
    """The Audio Spectrogram Transformer.

    Call with a waveform ``(batch, samples)`` at 16 kHz (``config.sample_rate``); returns
    ``clipwise_output (batch, classes)``, ``logits (batch, classes)`` and
    ``latent_output (batch, embed_dim)``. There is no frame-wise output.
    """

    def __init__(self, config: ASTConfig, *, rngs: nnx.Rngs, dtype: Any = None, param_dtype: Any = jnp.float32):
        self.config = config
        self.dtype = dtype
        c = config
        p = c.patch_size
        # The official model replaces timm's 3-channel patch conv by a 1-channel Conv2d with
        # stride (fstride, tstride), PyTorch's default init (then ImageNet weights summed over RGB).
        self.patch_embed = nnx.Conv(
            1, c.embed_dim, (p, p), strides=(c.fstride, c.tstride), padding="VALID",
            kernel_init=swin.torch_conv_init(p * p), bias_init=swin.torch_conv_init(p * p),
            dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        init = nnx.initializers.normal(stddev=0.02)  # timm trunc_normal_(std=.02)
        self.cls_token = nnx.Param(init(rngs.params(), (1, 1, c.embed_dim), param_dtype))
        self.dist_token = nnx.Param(init(rngs.params(), (1, 1, c.embed_dim), param_dtype))
        self.pos_embed = nnx.Param(init(rngs.params(), (1, c.num_tokens, c.embed_dim), param_dtype))
        self.blocks = nnx.List([
            Block(c.embed_dim, c.num_heads, c.mlp_ratio, eps=c.layer_norm_eps, drop=c.drop_rate,
                  attn_drop=c.attn_drop_rate, drop_path=rate, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            for rate in c.drop_path_rates])
        self.norm = _layer_norm(c.embed_dim, c.layer_norm_eps, dtype, param_dtype, rngs)
        # Official mlp_head = nn.Sequential(nn.LayerNorm(768), nn.Linear(768, label_dim)), torch defaults.
        self.head_norm = _layer_norm(c.embed_dim, c.head_norm_eps, dtype, param_dtype, rngs)
        self.head = nnx.Linear(c.embed_dim, c.num_classes, kernel_init=swin.torch_conv_init(c.embed_dim),
                               bias_init=swin.torch_conv_init(c.embed_dim), dtype=dtype,
                               param_dtype=param_dtype, rngs=rngs)

    # -- pieces -------------------------------------------------------------------------------

    def features(self, waveform: jax.Array) -> jax.Array:
        """Frontend: ``(B, samples)`` -> normalised fbank ``(B, input_tdim, input_fdim)``.

        As the official dataloader: Kaldi fbank, zero-pad (raw) or keep the first ``input_tdim``
        frames, then ``(x - mean) / (2 std)``.
        """
        c = self.config
        fb = kaldi_fbank.fbank(waveform, c.fbank)
        fb = kaldi_fbank.pad_or_crop(fb, c.input_tdim, 0.0)
        return kaldi_fbank.normalise(fb, c.norm_mean, c.norm_std)

    def forward_fbank(
        self,
        fbank: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mixup_lambda: jax.Array | None = None,
        capture: dict[str, jax.Array] | None = None,
    ) -> dict[str, jax.Array]:
        """The official ``ASTModel.forward`` on a normalised fbank ``(B, input_tdim, input_fdim)``.

        Args:
          fbank: normalised log fbank (what the official model and transformers' AST take),
            time-major like the official ``(batch, time_frame_num, frequency_bins)``.
          train: SpecAugment (``config.freqm`` / ``timem``), mixup, dropout and drop-path; needs ``key``.
          key: PRNG key for the training-time randomness.
          mixup_lambda: optional ``(B,)`` weights; ``x[b] <- lam x[b] + (1 - lam) x[B-1-b]`` on the
            normalised fbank (training only). The official recipe mixes *waveforms* in the
            dataloader (lambda ~ Beta(10, 10), labels mixed too); mixing the fbank instead is the
            trainer convention of this project, shared with HTS-AT.
          capture: optional dict receiving intermediate activations by name.

        Returns:
          ``clipwise_output (B, classes)`` (sigmoid for clip_bce, logits for clip_ce),
          ``logits (B, classes)`` and ``latent_output (B, embed_dim)`` (the pooled token).
        """
        c = self.config
        if fbank.ndim != 3 or fbank.shape[1:] != (c.input_tdim, c.input_fdim):
            raise ValueError(f"AST expects a fbank of shape (batch, {c.input_tdim}, {c.input_fdim}) "
                             f"(input_tdim, input_fdim), got {fbank.shape}; pad or crop with "
                             "kaldi_fbank.pad_or_crop or build the model with another input_tdim")
        if train and key is None:
            raise ValueError("training forward needs an explicit PRNG key (key=...)")
        x = fbank.astype(self.dtype or fbank.dtype)
        net_key = None
        if train:
            aug_key, net_key = jax.random.split(key)
            # Official order: masks on the raw fbank (dataloader) then normalisation; the fill value
            # makes masking after normalisation identical. Mixup is affine, so its place is free.
            x = spec_augment(x, aug_key, c.freqm, c.timem, c.pad_value)
            if mixup_lambda is not None:
                x = mixup(x, mixup_lambda)
        # (B, T, F) -> NHWC image (B, F, T, 1): the official x.unsqueeze(1).transpose(2, 3).
        image = jnp.swapaxes(x, 1, 2)[..., None]
        patches = self.patch_embed(image)  # (B, f_dim, t_dim, D)
        b = patches.shape[0]
        # Tokens frequency-major, as the official flatten(2) of (B, D, f_dim, t_dim).
        tokens = patches.reshape(b, c.num_patches, c.embed_dim)
        dt = tokens.dtype
        cls = jnp.broadcast_to(self.cls_token[...].astype(dt), (b, 1, c.embed_dim))
        dist = jnp.broadcast_to(self.dist_token[...].astype(dt), (b, 1, c.embed_dim))
        h = jnp.concatenate([cls, dist, tokens], axis=1) + self.pos_embed[...].astype(dt)
        keys = swin._split(net_key, c.depth + 1)
        h = swin.dropout(h, c.drop_rate, keys[0])  # pos_drop
        if capture is not None:
            capture["embeddings"] = h
        for i, block in enumerate(self.blocks):
            h = block(h, keys[i + 1])
            if capture is not None:
                capture[f"block{i}"] = h
        h = self.norm(h)
        latent = (h[:, 0] + h[:, 1]) / 2  # mean of the CLS and distillation token outputs
        logits = _at_least_f32(self.head(self.head_norm(latent)))
        clipwise = jax.nn.sigmoid(logits) if c.loss_type == "clip_bce" else logits
        return {"clipwise_output": clipwise, "logits": logits, "latent_output": _at_least_f32(latent)}

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
          waveform: ``(batch, samples)`` float in [-1, 1] at 16 kHz (``config.sample_rate``), at
            least 400 samples; audio is padded / cropped to ``input_tdim`` frames
            (``config.fbank.samples_for_frames(input_tdim)`` = 163,920 samples fill 1024 frames).
          train, key, mixup_lambda, capture: see :meth:`forward_fbank`.
          infer_mode: accepted for call compatibility with HTS-AT; the AST has a single path
            (short input is zero-padded, as in the official evaluation).

        Returns:
          dict with ``clipwise_output (batch, classes)``, ``logits (batch, classes)`` and
          ``latent_output (batch, embed_dim)``.
        """
        del infer_mode
        if waveform.ndim != 2:
            raise ValueError(f"AST expects a waveform of shape (batch, samples), got {waveform.shape}")
        compute_dtype = jnp.float64 if waveform.dtype == jnp.float64 else jnp.float32
        fb = self.features(waveform.astype(compute_dtype))
        if capture is not None:
            capture["fbank"] = fb
        return self.forward_fbank(fb, train=train, key=key, mixup_lambda=mixup_lambda, capture=capture)


def count_parameters(model: AST) -> int:
    """Number of trainable parameters (``nnx.Param`` leaves)."""
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def expected_parameter_count(config: ASTConfig) -> int:
    """Closed form of :func:`count_parameters` (86,594,063 for the paper's AudioSet model)."""
    c, d = config, config.embed_dim
    hidden = int(d * c.mlp_ratio)
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d)
    return ((d * c.patch_size ** 2 + d) + 2 * d + c.num_tokens * d + c.depth * block + 2 * d
            + 2 * d + d * c.num_classes + c.num_classes)


def official_parameter_count(config: ASTConfig) -> int:
    """What ``sum(p.numel() for p in ASTModel(...).parameters())`` gives for the official module:
    this model's count plus timm's unused DeiT ImageNet heads ``v.head`` and ``v.head_dist``
    (2 x (768 x 1000 + 1000) = 1,538,000), i.e. 88,132,063 for the paper's AudioSet model."""
    d = config.embed_dim
    return expected_parameter_count(config) + 2 * (d * DEIT_IMAGENET_CLASSES + DEIT_IMAGENET_CLASSES)


# ============================================================================ the model contract
# (htsat_jax.models): what the trainer, the tagger, export and the tools use.

Config = ASTConfig
Model = AST
VARIANTS: dict[str, dict[str, Any]] = {"base": {}, "tiny": TINY}
# The classifier (official ``mlp_head``): re-initialised when fine-tuning to another class count.
HEAD = ("head_norm", "head")
# Geometry a model directory must share with the config to give every tensor as it is.
GEOMETRY = ("embed_dim", "depth", "num_heads", "patch_size", "fstride", "tstride", "input_tdim", "input_fdim",
            "num_classes")


def frame_seconds(config: ASTConfig, num_samples: int) -> None:
    """The AST has no frame-level output."""
    return None


def input_limits(config: ASTConfig) -> tuple[int, int]:
    """At least one fbank frame; at most ``input_tdim`` frames (the official code would silently crop)."""
    fb = config.fbank
    return fb.window_length, fb.samples_for_frames(config.input_tdim)


def infer(model: AST, waveform: jax.Array) -> dict[str, jax.Array]:
    """The official evaluation: short audio zero-padded to ``input_tdim`` fbank frames."""
    return model(waveform)


def windows(config: ASTConfig, window_s: float = 10.0, hop_s: float = 5.0) -> None:
    """No frame-level output, so no windowed analysis (clip tags only)."""
    return None


def export_forward(model: AST, num_samples: int) -> None:
    """ONNX export is not built for the AST."""
    return None


def can_load(path: str) -> bool:
    """An official AST ``.pth``, a transformers AST file or ``save_pretrained`` folder."""
    import os

    from htsat_jax.convert import ast as ast_convert
    from htsat_jax.convert.common import CheckpointError, read_torch_file

    if os.path.isdir(path):
        return ast_convert.is_hf_model_dir(path)
    if path.endswith(".safetensors"):
        return True
    if path.endswith((".h5", ".tflite", ".json", ".onnx")):
        return False
    try:
        return ast_convert.is_ast_object(read_torch_file(path))
    except CheckpointError:
        return False


def load(path: str, *, loss_type: str | None = None, **kwargs) -> tuple[ASTConfig, dict, list[str] | None]:
    """A released AST -> ``(config, weights, class names or None)`` (see ``convert.ast.load_ast_checkpoint``)."""
    from htsat_jax.convert import ast as ast_convert

    config, weights, report = ast_convert.load_ast_checkpoint(path, loss_type=loss_type, return_report=True, **kwargs)
    return config, weights, report.class_names


def init_from(path: str, config: ASTConfig, fresh: Mapping, *, seed: int = 0) -> tuple[dict, str]:
    """Training start: a model directory of the same geometry and classes gives every tensor;
    otherwise (another length or class count, an official / transformers AST, a DeiT ImageNet
    ``.pth``) the official ``audioset_pretrain`` adaptation: position embedding cut / interpolated
    to the new grid, fresh head (e.g. the AudioSet AST, 1024 frames -> ESC-50, 512 frames)."""
    import os

    from htsat_jax import checkpoint as ckpt_lib
    from htsat_jax.convert import ast as ast_convert
    from htsat_jax.models import base

    if base.is_model_dir(path):
        src_cfg, loaded, _ = ckpt_lib.load_weights(path)
        if type(src_cfg) is not ASTConfig:
            raise ValueError(f"init_from={path} holds a {type(src_cfg).__name__}; config.model is an AST")
        if all(getattr(src_cfg, f) == getattr(config, f) for f in GEOMETRY):
            weights, report = base.merge_weights(fresh, loaded, source=path)
            return weights, report.summary()
        weights, report = ast_convert.import_pretrained_state_dict(
            ast_convert.export_state_dict(jax.tree.map(np.asarray, loaded), src_cfg), config, fresh, source=path,
            source_strides=(src_cfg.fstride, src_cfg.tstride), source_fdim=src_cfg.input_fdim)
        return weights, report.summary()
    if not os.path.isfile(path) and not os.path.isdir(path):
        raise FileNotFoundError(f"init_from={path!r}: no model directory (with config.json) or file there")
    weights, report = ast_convert.load_pretrained(path, config, fresh)
    return weights, report.summary()
