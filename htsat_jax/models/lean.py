r"""LEAN (Choudhary et al., "LEAN: Light and Efficient Audio Classification Network", INDICON 2022,
arXiv 2305.12712): a raw-waveform BiLSTM "wave encoder" and a pretrained YAMNet joined by
cross-attention, in Flax NNX.

The paper's text available to the project is partial (no figure, no attention section), so this is
the reconstruction of ``../shared/reference/LEAN_YAMNET_SPEC.md`` §1.5, with the alternatives of
§1.6 as :class:`Config` switches. Per 1 s chunk of 16 kHz audio (16000 samples):

* **wave encoder**: the chunk reshaped to ``(40, 400)`` (40 non-overlapping 25 ms steps), then
  ``lstm_layers`` (2) bidirectional LSTMs of ``lstm_units`` (128) per direction, full sequences,
  forward and backward outputs concatenated: ``H_w (40, 256)``. Keras' LSTM defaults: Glorot-uniform
  input kernel, orthogonal recurrent kernel, zero bias but the forget gate's at 1.
* **YAMNet branch**: the official YAMNet log-mel (``yamnet_frontend``) of the chunk *without* the
  official padding (98 frames, the first 96 form one patch; ``yamnet_patching="official_padded"``:
  the official padding, 2 patches), normalised (``logmel_norm``, default ``patch_mean``: the
  patch's mean removed, the paper's "mean normalized" log-mel), YAMNet's MobileNet backbone
  (``htsat_jax.models.yamnet.Backbone``: ``(3, 2, 1024)`` per patch), tokens (``yamnet_tokens``:
  ``pooled`` = one 1024-d mean, ``time`` = 3, ``grid`` = 6), a linear projection to
  ``projection_dim`` (256): ``E_yam (n, 256)``.
* **cross-attention realignment** (``fusion="attention"``): query ``E_yam``, keys = values ``H_w``,
  parameter-free scaled dot product (``attention="dot"``, scale ``1/sqrt(256)``) or 4-head
  ``nnx.MultiHeadAttention`` (``"mha"``): the context ``C_t (n, 256)``.
  ``attention_query="wave"`` swaps the roles (40 queries over the YAMNet tokens, mean over time).
  ``fusion="concat_last"``: no attention, ``C_t`` = the last forward and backward states.
* **head**: ``concat(E_yam, C_t)`` (512; mean over the ``n`` tokens), Dense(``num_classes``),
  sigmoid per class.

``branches`` keeps one branch only (``yamnet_only``: ``E_yam`` -> head; ``wave_only``: the mean of
``H_w`` over time -> head). ``freeze_yamnet`` stops the gradient at the YAMNet tokens and keeps its
BatchNorm in inference mode (the optimiser then leaves it unchanged, since its gradients are zero
and the recipes use no weight decay).

**Audio of any length.** LEAN itself sees 1 s chunks. Longer input is cut into chunks (§5.7 of
the spec, ``chunk_policy``): ``"lean"`` = starts every 0.5 s plus one chunk ending at the end, never
padded; ``"fsd50k_baseline"`` = starts every 0.5 s while inside the audio, short tails tiled.
Audio shorter than 1 s is tiled (repeated) to 1 s. The clip output is the **mean of the chunk
probabilities** (the paper's evaluation: 1 s chunks, 50 % overlap, mean per clip); a 1 s input is
exactly one chunk. In training (``train=True``), input longer than 1 s gives one uniformly random
1 s chunk per clip drawn with ``key`` (``train_crop="random"``, the spec's ``random_crop``
option) or every chunk, pooled as in evaluation (``"all"``).

Outputs of ``Model(waveform)``:

``clipwise_output (batch, classes)``
    mean over chunks of the chunk probabilities, clipped to ``[1e-7, 1 - 1e-7]`` as Keras' binary
    cross-entropy clips them (``clip_ce``: the mean of the chunk logits).
``framewise_output (batch, frames, classes)``
    a 0.5 s grid (:func:`frame_seconds`): step ``g`` covers ``[0.5 g, 0.5 g + 0.5)`` s and is the
    mean probability of the chunks containing its centre (each chunk is 1 s, so two steps).
``latent_output (batch, 512)``
    mean over chunks of the fused embedding (the head's input).
``chunk_logits (batch, chunks, classes)``, ``chunk_valid (batch, chunks)``
    every chunk's logits and whether it is a real chunk of the audio.

``num_samples (batch,)`` (optional) gives each row's true length in a zero-padded batch: the
chunks are then those of the unpadded audio (the windowed analysis and padded evaluation batches
use it).

Parameters of the default (200 classes): **4,496,392** trainable + 21,888 BatchNorm statistics,
see :func:`parameter_budget`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from htsat_jax.inference import windowing
from htsat_jax.models import base
from htsat_jax.models import yamnet as yamnet_lib
from htsat_jax.models import yamnet_frontend as frontend

NAME = "lean"

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 16000          # LEAN's input: 1 s at 16 kHz
CHUNK_HOP = 8000               # 50 % overlap
WAVE_STEPS = 40                # the wave encoder's 40 x 400 reshape (25 ms steps)
WAVE_STEP_SAMPLES = CHUNK_SAMPLES // WAVE_STEPS
FRAME_HOP = CHUNK_HOP          # framewise_output grid: 0.5 s
FRAME_SECONDS = FRAME_HOP / SAMPLE_RATE
PROB_EPSILON = 1e-7            # clip probabilities as Keras' binary cross-entropy does

LOSS_TYPES = ("clip_bce", "clip_ce")
BRANCHES = ("both", "yamnet_only", "wave_only")
FUSIONS = ("attention", "concat_last")
ATTENTIONS = ("dot", "mha")
ATTENTION_SCALES = ("sqrt_d", "none", "learned")
ATTENTION_QUERIES = ("yamnet", "wave")
YAMNET_TOKENS = ("pooled", "time", "grid")
YAMNET_PATCHINGS = ("single", "official_padded")
LOGMEL_NORMS = ("patch_mean", "band_mean", "none")
CHUNK_POLICIES = ("lean", "fsd50k_baseline")
TRAIN_CROPS = ("random", "all")


@dataclasses.dataclass(frozen=True)
class Config:
    """LEAN. Defaults: the spec's reconstruction (§1.5); the other values: its ablations (§1.6).

    Attributes:
      num_classes: outputs (200: FSD50K).
      loss_type: ``clip_bce`` (sigmoid per class, the paper's BCE) or ``clip_ce`` (clip output =
        mean chunk logits, softmax cross-entropy).
      sample_rate: 16000 (the wave encoder and YAMNet's frontend are defined there).
      branches: ``both``, ``yamnet_only`` or ``wave_only``.
      fusion: ``attention`` (cross-attention realignment) or ``concat_last`` (the BiLSTM's last
        forward and backward states instead of attention).
      attention: ``dot`` (parameter-free scaled dot product) or ``mha`` (multi-head attention with
        Q/K/V/O projections, ``attention_heads`` heads).
      attention_scale: of ``dot``: ``sqrt_d`` (1/sqrt(projection_dim)), ``none`` (1, Keras'
        ``Attention`` default) or ``learned`` (one trained scalar, starting at 1/sqrt(d)).
      attention_query: ``yamnet`` (YAMNet tokens query the wave steps) or ``wave`` (the 40 wave
        steps query the YAMNet tokens; needs more than one token).
      attention_heads: heads of ``mha``.
      yamnet_tokens: ``pooled`` (1 token per patch), ``time`` (3) or ``grid`` (6).
      yamnet_patching: ``single`` (one 96-frame patch of the unpadded chunk) or ``official_padded``
        (YAMNet's own padding: 2 patches per chunk).
      logmel_norm: ``patch_mean``, ``band_mean`` (each mel band's mean over the patch) or ``none``.
      freeze_yamnet: no gradient into YAMNet, BatchNorm in inference mode.
      yamnet_width_divisor: YAMNet's channels divided by this (1: YAMNet; ``tiny``: 8).
      yamnet_bn_momentum: YAMNet BatchNorm momentum in training (Keras 0.99).
      yamnet_freeze_bn: YAMNet BatchNorm uses its moving statistics in training (fine-tuning weights
        from a ``.tflite``, whose BatchNorm is folded).
      lstm_units: units per direction of each BiLSTM (128).
      lstm_layers: stacked BiLSTMs (2).
      projection_dim: the YAMNet projection's width; attention needs ``2 * lstm_units``.
      chunk_policy: how input longer than 1 s is chunked (module docstring).
      train_crop: training on input longer than 1 s: ``random`` (one random chunk per clip) or
        ``all`` (every chunk, pooled).
    """

    num_classes: int = 200
    loss_type: str = "clip_bce"
    sample_rate: int = SAMPLE_RATE
    branches: str = "both"
    fusion: str = "attention"
    attention: str = "dot"
    attention_scale: str = "sqrt_d"
    attention_query: str = "yamnet"
    attention_heads: int = 4
    yamnet_tokens: str = "pooled"
    yamnet_patching: str = "single"
    logmel_norm: str = "patch_mean"
    freeze_yamnet: bool = False
    yamnet_width_divisor: int = 1
    yamnet_bn_momentum: float = 0.99
    yamnet_freeze_bn: bool = False
    lstm_units: int = 128
    lstm_layers: int = 2
    projection_dim: int = 256
    chunk_policy: str = "lean"
    train_crop: str = "random"
    model_name: ClassVar[str] = NAME

    def __post_init__(self):
        choices = {"loss_type": LOSS_TYPES, "branches": BRANCHES, "fusion": FUSIONS, "attention": ATTENTIONS,
                   "attention_scale": ATTENTION_SCALES, "attention_query": ATTENTION_QUERIES,
                   "yamnet_tokens": YAMNET_TOKENS, "yamnet_patching": YAMNET_PATCHINGS,
                   "logmel_norm": LOGMEL_NORMS, "chunk_policy": CHUNK_POLICIES, "train_crop": TRAIN_CROPS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"LEAN {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if int(self.sample_rate) != SAMPLE_RATE:
            raise ValueError(f"LEAN is defined at {SAMPLE_RATE} Hz, got sample_rate={self.sample_rate} (audio of "
                             "other rates is resampled before the model)")
        for name in ("num_classes", "lstm_units", "lstm_layers", "projection_dim", "attention_heads"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"LEAN {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.uses_attention:
            if self.projection_dim != 2 * self.lstm_units:
                raise ValueError(f"cross-attention needs projection_dim == 2 * lstm_units (the BiLSTM's width), got "
                                 f"{self.projection_dim} and {self.lstm_units} (or use fusion='concat_last')")
            if self.attention == "mha" and self.projection_dim % self.attention_heads:
                raise ValueError(f"projection_dim={self.projection_dim} is not a multiple of attention_heads="
                                 f"{self.attention_heads}")
            if self.attention_query == "wave" and self.tokens_per_chunk == 1:
                raise ValueError("attention_query='wave' attends over the YAMNet tokens, and there is only one: use "
                                 "yamnet_tokens='time' or 'grid' (or yamnet_patching='official_padded')")
        self.yamnet_config  # validates the YAMNet fields

    @property
    def has_wave(self) -> bool:
        return self.branches in ("both", "wave_only")

    @property
    def has_yamnet(self) -> bool:
        return self.branches in ("both", "yamnet_only")

    @property
    def uses_attention(self) -> bool:
        return self.branches == "both" and self.fusion == "attention"

    @property
    def yamnet_config(self) -> yamnet_lib.Config:
        """The YAMNet branch's own config (its backbone; the 521-class head is not part of LEAN)."""
        return yamnet_lib.Config(width_divisor=self.yamnet_width_divisor, bn_momentum=self.yamnet_bn_momentum,
                                 freeze_bn=self.yamnet_freeze_bn)

    @property
    def patches_per_chunk(self) -> int:
        if self.yamnet_patching == "single":
            return 1
        return frontend.official_num_patches(CHUNK_SAMPLES)

    @property
    def tokens_per_chunk(self) -> int:
        """``n`` in ``E_yam (n, projection_dim)``."""
        return self.patches_per_chunk * {"pooled": 1, "time": 3, "grid": 6}[self.yamnet_tokens]

    @property
    def wave_dim(self) -> int:
        return 2 * self.lstm_units

    @property
    def fused_dim(self) -> int:
        """Width of the head's input (``latent_output``)."""
        if self.branches == "yamnet_only":
            return self.projection_dim
        if self.branches == "wave_only":
            return self.wave_dim
        return self.projection_dim + self.wave_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown LEAN config fields {unknown}; known: {sorted(known)}")
        return cls(**dict(d))


VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    # CPU tests: 16-unit BiLSTMs, YAMNet at 1/8 width (4 ... 128 channels).
    "tiny": {"lstm_units": 16, "projection_dim": 32, "yamnet_width_divisor": 8},
}
# The classifier: re-initialised when fine-tuning to another class count.
HEAD = ("head",)


def frozen(config: Config) -> tuple[str, ...]:
    """Top-level parameters held fixed for ``config``: YAMNet when ``freeze_yamnet`` (the trainer then
    gives them no update at all, weight decay included; the forward already stops their gradient)."""
    return ("yamnet",) if config.freeze_yamnet else ()

# ONNX export's default input: one 1 s chunk (the on-device model's input).
EXPORT_SECONDS = CHUNK_SAMPLES / SAMPLE_RATE
# Fields a LEAN model directory must share with the config it initialises (they set tensor shapes).
ARCH_FIELDS = ("branches", "fusion", "attention", "attention_scale", "attention_heads", "yamnet_width_divisor",
               "lstm_units", "lstm_layers", "projection_dim")


# ============================================================================ parameter budget


def parameter_budget(config: Config) -> dict[str, int]:
    """Trainable parameters of each part, from the formulas (``total`` included); the test checks
    them against the built model.

    LSTM (Keras and ``nnx.OptimizedLSTMCell`` alike): ``4 * (units * (inputs + units) + units)`` per
    direction. YAMNet backbone: kernels + BatchNorm beta (no gamma, no conv bias).
    """
    c = config
    out: dict[str, int] = {}
    if c.has_yamnet:
        channels, cin, total = c.yamnet_config.channels, 1, 0
        for i, cout in enumerate(channels):
            total += 9 * cout + cout if i == 0 else (9 * cin + cin) + (cin * cout + cout)
            cin = cout
        out["yamnet_backbone"] = total
        out["projection"] = channels[-1] * c.projection_dim + c.projection_dim
    if c.has_wave:
        fin = WAVE_STEP_SAMPLES
        for i in range(c.lstm_layers):
            out[f"bilstm{i + 1}"] = 2 * 4 * (c.lstm_units * (fin + c.lstm_units) + c.lstm_units)
            fin = 2 * c.lstm_units
    if c.uses_attention:
        if c.attention == "mha":
            d = c.projection_dim
            out["attention"] = 4 * (d * d + d)
        else:
            out["attention"] = 1 if c.attention_scale == "learned" else 0
    out["head"] = c.fused_dim * c.num_classes + c.num_classes
    out["total"] = sum(out.values())
    return out


def param_count(model: "Model") -> int:
    """Trainable parameters (``nnx.Param`` leaves) of a built model."""
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


# ============================================================================ chunks of the input


def chunk_plan(num_samples: int, policy: str = "lean") -> list[tuple[int, int]]:
    """The chunks of ``num_samples`` samples: ``(start, span)``; the chunk is the samples
    ``start + (i mod span)`` for ``i < 16000`` (``span < 16000``: tiled).

    ``lean``: ``[0, 8000, ...]`` full chunks plus one ending at the end when the grid misses it;
    ``fsd50k_baseline``: a chunk at every 8000 samples inside the audio, the tail tiled. Both: one
    tiled chunk for audio shorter than 1 s. Examples (lean): 16000 -> [0]; 20000 -> [0, 4000];
    24000 -> [0, 8000].
    """
    n, c, h = int(num_samples), CHUNK_SAMPLES, CHUNK_HOP
    if n < 1:
        raise ValueError(f"no audio (num_samples={n})")
    if policy not in CHUNK_POLICIES:
        raise ValueError(f"chunk_policy must be one of {CHUNK_POLICIES}, got {policy!r}")
    if n < c:
        return [(0, n)]
    if policy == "lean":
        plan = [(k * h, c) for k in range((n - c) // h + 1)]
        if plan[-1][0] + c < n:
            plan.append((n - c, c))
        return plan
    return [(s, min(c, n - s)) for s in range(0, n, h)]


def _traced_plan(width: int, num_samples, policy: str):
    """Candidate chunks of a zero-padded ``(batch, width)`` buffer whose rows hold ``num_samples``
    real samples: ``(starts, spans, valid)``, each ``(batch, K)``; the valid ones are exactly
    :func:`chunk_plan` of each row's length."""
    n = jnp.clip(jnp.asarray(num_samples, jnp.int32), 1, width)[:, None]
    c, h = CHUNK_SAMPLES, CHUNK_HOP
    if policy == "lean":
        grid = jnp.arange((width - c) // h + 1 if width >= c else 0, dtype=jnp.int32)[None, :] * h
        grid_valid = grid + c <= n
        # The extra chunk: the whole (tiled) audio below 1 s, else the one ending at the end.
        extra_start = jnp.maximum(n - c, 0)
        extra_valid = (n < c) | ((n - c) % h != 0)
        starts = jnp.concatenate([jnp.broadcast_to(grid, (n.shape[0], grid.shape[1])), extra_start], axis=1)
        spans = jnp.concatenate([jnp.full((n.shape[0], grid.shape[1]), c, jnp.int32), jnp.minimum(n, c)], axis=1)
        valid = jnp.concatenate([jnp.broadcast_to(grid_valid, (n.shape[0], grid.shape[1])), extra_valid], axis=1)
        return starts, spans, valid
    grid = jnp.arange(-(-width // h), dtype=jnp.int32)[None, :] * h
    starts = jnp.broadcast_to(grid, (n.shape[0], grid.shape[1]))
    return starts, jnp.clip(n - starts, 1, c), starts < n


def _gather_chunks(waveform, starts, spans):
    """``(batch, samples)``, ``(batch, K)`` starts/spans -> ``(batch, K, 16000)``."""
    offsets = jnp.arange(CHUNK_SAMPLES, dtype=jnp.int32)
    index = starts[..., None] + offsets % spans[..., None]
    index = jnp.clip(index, 0, waveform.shape[1] - 1)
    batch, k = starts.shape
    return jnp.take_along_axis(waveform, index.reshape(batch, k * CHUNK_SAMPLES), axis=1).reshape(
        batch, k, CHUNK_SAMPLES)


def _frame_weights(width: int, num_samples, starts, spans, valid):
    """``(batch, frames, K)`` weights: frame ``g`` averages the valid chunks that contain its centre
    (the clip's chunks if none, i.e. frames past the audio)."""
    frames = max(1, -(-width // FRAME_HOP))
    n = jnp.clip(jnp.asarray(num_samples, jnp.int32), 1, width)[:, None]
    lo = jnp.arange(frames, dtype=jnp.int32)[None, :] * FRAME_HOP
    hi = jnp.minimum(lo + FRAME_HOP, jnp.maximum(n, lo + 1))
    centre = ((lo + hi) // 2)[..., None]                                    # (B, F, 1)
    cover = valid[:, None, :] & (starts[:, None, :] <= centre) & (centre < (starts + spans)[:, None, :])
    fallback = jnp.broadcast_to(valid[:, None, :], cover.shape)
    w = jnp.where(cover.any(-1, keepdims=True), cover, fallback).astype(jnp.float32)
    return w / jnp.maximum(w.sum(-1, keepdims=True), 1.0)


# ============================================================================ the network


def _lstm_cell(fin: int, units: int, *, rngs, dtype, param_dtype) -> nnx.OptimizedLSTMCell:
    """An LSTM cell with Keras' initialisation: forget-gate bias 1 (``unit_forget_bias``)."""
    cell = nnx.OptimizedLSTMCell(fin, units, kernel_init=nnx.initializers.glorot_uniform(),
                                 recurrent_kernel_init=nnx.initializers.orthogonal(), dtype=dtype,
                                 param_dtype=param_dtype, rngs=rngs)
    bias = cell.dense_h.bias
    bias[...] = bias[...].at[units:2 * units].set(1.0)   # gates i, f, g, o
    return cell


def _lstm_unrolled(cell: nnx.OptimizedLSTMCell, xs, *, reverse: bool):
    """The same recurrence as ``nnx.RNN(cell)`` as a Python loop with the input projections of all
    steps in one matmul (for export: no ``Loop`` op). ``xs (N, T, F)`` -> ``((c, h), outputs)``."""
    units = cell.hidden_features
    params = (cell.dense_i.kernel[...], cell.dense_h.kernel[...], cell.dense_h.bias[...])
    dtype = cell.dtype or jnp.result_type(xs, *params)
    xs, wi, wh, b = (jnp.asarray(a, dtype) for a in (xs, *params))
    projected = jnp.einsum("ntf,fg->ntg", xs, wi)
    h = jnp.zeros(xs.shape[:1] + (units,), projected.dtype)
    c = h
    outs = [None] * xs.shape[1]
    for t in (reversed(range(xs.shape[1])) if reverse else range(xs.shape[1])):
        i, f, g, o = jnp.split(projected[:, t] + h @ wh + b, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        outs[t] = h
    return (c, h), jnp.stack(outs, axis=1)


class WaveEncoder(nnx.Module):
    """``(N, 16000)`` -> ``(N, 40, 400)`` -> BiLSTM x ``lstm_layers``: ``H_w (N, 40, 2 units)`` and the
    last layer's final forward and backward states ``(N, 2 units)``. Attributes ``lstm1``, ``lstm2``
    (``nnx.Bidirectional`` of two ``nnx.RNN(nnx.OptimizedLSTMCell)``)."""

    def __init__(self, config: Config, *, rngs: nnx.Rngs, dtype: Any = None, param_dtype: Any = jnp.float32):
        self.units = config.lstm_units
        self.layers = config.lstm_layers
        fin = WAVE_STEP_SAMPLES
        for i in range(config.lstm_layers):
            kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
            forward = nnx.RNN(_lstm_cell(fin, config.lstm_units, **kw), rngs=False)
            backward = nnx.RNN(_lstm_cell(fin, config.lstm_units, **kw), rngs=False)
            setattr(self, f"lstm{i + 1}", nnx.Bidirectional(forward, backward, rngs=False))
            fin = 2 * config.lstm_units

    def __call__(self, chunks, *, unroll: bool = False):
        x = chunks.reshape(chunks.shape[0], WAVE_STEPS, WAVE_STEP_SAMPLES)
        last = None
        for i in range(1, self.layers + 1):
            layer = getattr(self, f"lstm{i}")
            if unroll:
                (_, h_f), out_f = _lstm_unrolled(layer.forward_rnn.cell, x, reverse=False)
                (_, h_b), out_b = _lstm_unrolled(layer.backward_rnn.cell, x, reverse=True)
                x = jnp.concatenate([out_f, out_b], axis=-1)
            else:
                zeros = jnp.zeros((x.shape[0], self.units), x.dtype if layer.forward_rnn.cell.dtype is None
                                  else layer.forward_rnn.cell.dtype)
                carry = ((zeros, zeros), (zeros, zeros))  # OptimizedLSTMCell carry: (c, h)
                ((_, h_f), (_, h_b)), x = layer(x, initial_carry=carry, return_carry=True)
            last = jnp.concatenate([h_f, h_b], axis=-1)
        return x, last


def _normalise_patches(patches, how: str):
    if how == "patch_mean":
        return patches - patches.mean(axis=(-2, -1), keepdims=True)
    if how == "band_mean":
        return patches - patches.mean(axis=-2, keepdims=True)
    return patches


class Model(nnx.Module):
    """LEAN: 16 kHz waveform of any length -> clip and 0.5 s frame scores (see the module docstring).

    Attributes: ``wave`` (:class:`WaveEncoder`), ``yamnet`` (``yamnet.Backbone``, layers
    ``layer1`` ... ``layer14``), ``projection``, ``attention`` (``mha`` only), ``attention_scale``
    (``learned`` only), ``head``.
    """

    def __init__(self, config: Config, *, rngs: nnx.Rngs, dtype: Any = None, param_dtype: Any = jnp.float32):
        self.config = config
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        dense = dict(kernel_init=nnx.initializers.glorot_uniform(), **kw)   # Keras Dense defaults
        if config.has_wave:
            self.wave = WaveEncoder(config, **kw)
        if config.has_yamnet:
            self.yamnet = yamnet_lib.Backbone(config.yamnet_config, **kw)
            self.projection = nnx.Linear(config.yamnet_config.embedding_dim, config.projection_dim, **dense)
        if config.uses_attention and config.attention == "mha":
            self.attention = nnx.MultiHeadAttention(
                config.attention_heads, config.projection_dim, qkv_features=config.projection_dim,
                out_features=config.projection_dim, decode=False, keep_rngs=False, **kw)
        if config.uses_attention and config.attention == "dot" and config.attention_scale == "learned":
            self.attention_scale = nnx.Param(jnp.asarray(1.0 / math.sqrt(config.projection_dim), param_dtype))
        self.head = nnx.Linear(config.fused_dim, config.num_classes, **dense)

    # ------------------------------------------------------------------ one batch of 1 s chunks

    def yamnet_tokens(self, chunks, *, train: bool = False, capture: dict | None = None):
        """``(N, 16000)`` -> ``E_yam (N, n, projection_dim)`` (before the projection when frozen, the
        gradient stops)."""
        c = self.config
        if c.yamnet_patching == "single":
            log_mel = frontend.log_mel(chunks)                                  # (N, 98, 64)
            patches = log_mel[:, None, :frontend.PATCH_FRAMES]                  # (N, 1, 96, 64)
        else:
            patches = frontend.patches(frontend.log_mel(frontend.pad_waveform(chunks)))   # (N, 2, 96, 64)
        patches = _normalise_patches(patches, c.logmel_norm)
        n, p = patches.shape[:2]
        fmap = self.yamnet(patches.reshape((n * p,) + patches.shape[2:]), train=train and not c.freeze_yamnet)
        if c.yamnet_tokens == "pooled":
            tokens = fmap.mean(axis=(1, 2))[:, None]
        elif c.yamnet_tokens == "time":
            tokens = fmap.mean(axis=2)
        else:
            tokens = fmap.reshape(fmap.shape[0], -1, fmap.shape[-1])
        tokens = tokens.reshape(n, -1, tokens.shape[-1])
        if c.freeze_yamnet:
            tokens = jax.lax.stop_gradient(tokens)
        if capture is not None:
            capture.update(patches=patches, yamnet_map=fmap.reshape((n, p) + fmap.shape[1:]))
        return self.projection(tokens)

    def _attend(self, query, keys, capture):
        c = self.config
        if c.attention == "mha":
            return self.attention(query, keys, keys, deterministic=True)
        if c.attention_scale == "sqrt_d":
            scale = 1.0 / math.sqrt(c.projection_dim)
        elif c.attention_scale == "learned":
            scale = self.attention_scale[...]
        else:
            scale = 1.0
        scores = jnp.einsum("nqd,nkd->nqk", query, keys) * scale
        weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(keys.dtype)
        if capture is not None:
            capture["attention_weights"] = weights
        return jnp.einsum("nqk,nkd->nqd", weights, keys)

    def forward_chunks(self, chunks, *, train: bool = False, unroll_lstm: bool = False,
                       capture: dict | None = None) -> tuple[jax.Array, jax.Array]:
        """``(N, 16000)`` chunks -> ``(logits (N, classes), fused embedding (N, fused_dim))``."""
        c = self.config
        if chunks.ndim != 2 or chunks.shape[1] != CHUNK_SAMPLES:
            raise ValueError(f"LEAN chunks must be (N, {CHUNK_SAMPLES}), got {chunks.shape}")
        h_w = last = e_yam = None
        if c.has_wave:
            h_w, last = self.wave(chunks, unroll=unroll_lstm)
        if c.has_yamnet:
            e_yam = self.yamnet_tokens(chunks, train=train, capture=capture)
        if capture is not None:
            capture.update(wave=h_w, wave_last=last, e_yam=e_yam)
        if c.branches == "wave_only":
            fused = h_w.mean(axis=1)
        elif c.branches == "yamnet_only":
            fused = e_yam.mean(axis=1)
        elif c.fusion == "concat_last":
            fused = jnp.concatenate([e_yam.mean(axis=1), last.astype(e_yam.dtype)], axis=-1)
        elif c.attention_query == "yamnet":
            context = self._attend(e_yam, h_w.astype(e_yam.dtype), capture)             # (N, n, 256)
            fused = jnp.concatenate([e_yam, context], axis=-1).mean(axis=1)
        else:
            context = self._attend(h_w.astype(e_yam.dtype), e_yam, capture)             # (N, 40, 256)
            fused = jnp.concatenate([e_yam.mean(axis=1), context.mean(axis=1)], axis=-1)
        if capture is not None:
            capture["fused"] = fused
        return self.head(fused), fused

    # ------------------------------------------------------------------ any length

    def __call__(self, waveform, *, train: bool = False, key=None, mixup_lambda=None, num_samples=None,
                 unroll_lstm: bool = False, capture: dict | None = None) -> dict[str, jax.Array]:
        """Forward from raw audio.

        Args:
          waveform: ``(batch, samples)`` float in [-1, 1] at 16 kHz, any length (1 s = one chunk).
          train: BatchNorm batch statistics in YAMNet (unless frozen) and, for input longer than
            1 s, the training crop (``Config.train_crop``, drawn with ``key``).
          key: PRNG key of the random training crop.
          mixup_lambda: optional ``(batch,)``: waveforms become ``lam x + (1 - lam) x[::-1]``
            (targets are not mixed, as in the other models).
          num_samples: optional ``(batch,)`` true lengths of zero-padded rows.
          unroll_lstm: run the LSTMs as unrolled Python loops (export); same numbers.
          capture: a dict to receive intermediate tensors (``wave``, ``e_yam``, ``attention_weights``...).
        """
        c = self.config
        if waveform.ndim != 2:
            raise ValueError(f"LEAN expects a waveform of shape (batch, samples), got {waveform.shape}")
        compute = jnp.float64 if waveform.dtype == jnp.float64 else jnp.float32
        x = waveform.astype(compute)
        batch, width = x.shape
        if mixup_lambda is not None:
            lam = jnp.asarray(mixup_lambda, compute)[:, None]
            x = lam * x + (1.0 - lam) * x[::-1]
        dynamic = num_samples is not None
        lengths = (jnp.asarray(num_samples, jnp.int32) if dynamic else jnp.full((batch,), width, jnp.int32))
        cropped = train and c.train_crop == "random" and (width > CHUNK_SAMPLES or dynamic)
        if cropped:
            if key is None:
                raise ValueError("LEAN training on input longer than 1 s draws a random 1 s chunk: pass key")
            n = jnp.clip(lengths, 1, width)
            starts = jnp.floor(jax.random.uniform(key, (batch,)) * (jnp.maximum(n - CHUNK_SAMPLES, 0) + 1))
            starts = jnp.minimum(starts.astype(jnp.int32), jnp.maximum(n - CHUNK_SAMPLES, 0))[:, None]
            spans, valid = jnp.minimum(n, CHUNK_SAMPLES)[:, None], jnp.ones((batch, 1), bool)
        elif dynamic:
            starts, spans, valid = _traced_plan(width, lengths, c.chunk_policy)
        else:
            plan = chunk_plan(width, c.chunk_policy)
            starts = jnp.broadcast_to(jnp.asarray([s for s, _ in plan], jnp.int32), (batch, len(plan)))
            spans = jnp.broadcast_to(jnp.asarray([m for _, m in plan], jnp.int32), (batch, len(plan)))
            valid = jnp.ones((batch, len(plan)), bool)
        if starts.shape[1] == 1 and width == CHUNK_SAMPLES and not dynamic:
            chunks = x[:, None]                              # exactly one 1 s chunk
        else:
            chunks = _gather_chunks(x, starts, spans)
        k = chunks.shape[1]
        logits, fused = self.forward_chunks(chunks.reshape(batch * k, CHUNK_SAMPLES), train=train,
                                            unroll_lstm=unroll_lstm, capture=capture)
        logits = logits.astype(compute).reshape(batch, k, -1)
        fused = fused.astype(compute).reshape(batch, k, -1)
        w = valid.astype(compute)
        w = w / jnp.maximum(w.sum(axis=1, keepdims=True), 1.0)
        probs = jax.nn.sigmoid(logits) if c.loss_type == "clip_bce" else jax.nn.softmax(logits, axis=-1)
        clip = jnp.einsum("bk,bkc->bc", w, probs if c.loss_type == "clip_bce" else logits)
        if c.loss_type == "clip_bce":
            # Keras' binary cross-entropy clips probabilities to [1e-7, 1 - 1e-7]; without it a sigmoid
            # saturating to exactly 0 or 1 in float32 gives a NaN gradient through log(p).
            clip = jnp.clip(clip, PROB_EPSILON, 1.0 - PROB_EPSILON)
        if cropped:
            frames = probs                                   # the crop only
        else:
            weights = _frame_weights(width, lengths, starts, spans, valid).astype(compute)
            frames = jnp.einsum("bfk,bkc->bfc", weights, probs)
        latent = jnp.einsum("bk,bkd->bd", w, fused)
        return {"clipwise_output": clip, "framewise_output": frames, "latent_output": latent,
                "chunk_logits": logits, "chunk_valid": valid}


# ============================================================================ the model contract
# (htsat_jax.models): what the trainer, the tagger, export and the tools use.


def frame_seconds(config: Config, num_samples: int) -> float:
    """``framewise_output`` is on a 0.5 s grid (the chunk hop)."""
    return FRAME_SECONDS


def input_limits(config: Config) -> tuple[int, None]:
    """Any length: audio under 1 s is tiled to one chunk, longer audio is chunked."""
    return 1, None


def infer(model: Model, waveform) -> dict[str, jax.Array]:
    """The paper's evaluation of each row: 1 s chunks every 0.5 s, mean of the chunk probabilities."""
    return model(waveform)


class ChunkWindows(windowing.PlainWindows):
    """Windows of ``window_s`` (at least 1 s) every ``hop_s`` (rounded to whole 0.5 s steps), each run
    as LEAN runs the window's audio alone: the buffer is zero-padded past a short recording and
    ``num_samples`` keeps the padding out of the chunks. Window starts are multiples of 0.5 s, so the
    chunks of overlapping windows coincide; with ``window_s=1, hop_s=0.5`` every window is one
    chunk and ``clip_pool="mean"`` is the paper's clip score."""

    def __init__(self, config: Config, window_s: float, hop_s: float):
        if window_s * SAMPLE_RATE < CHUNK_SAMPLES - 1e-6:
            raise ValueError(f"window_s={window_s} is shorter than LEAN's 1 s chunk")
        super().__init__(infer, sample_rate=SAMPLE_RATE, window_s=window_s, hop_s=hop_s,
                         seconds_per_step=FRAME_SECONDS, min_samples=1)
        self.config = config

    def _key(self):
        return (self.config, self.window, self.hop)

    def prepare(self, segment: np.ndarray) -> dict[str, np.ndarray]:
        buffer = np.zeros(self.window, np.float32)
        buffer[:segment.shape[0]] = segment
        return {"waveform": buffer, "num_samples": np.asarray(segment.shape[0], np.int32)}

    def forward(self, model: Model, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return model(inputs["waveform"], num_samples=inputs["num_samples"])

    def short_note(self, segment_samples: int) -> str | None:
        if segment_samples < CHUNK_SAMPLES:
            return "shorter than LEAN's 1 s chunk: tiled to 1 s"
        return None


def windows(config: Config, window_s: float = 10.0, hop_s: float = 5.0) -> ChunkWindows:
    """Long audio in windows of 1 s chunks (see :class:`ChunkWindows`)."""
    return ChunkWindows(config, window_s, hop_s)


# The export's default input (``htsat_jax.inference.export``): one 1 s chunk, what LEAN sees.
EXPORT_SECONDS = CHUNK_SAMPLES / SAMPLE_RATE


def export_forward(model: Model, num_samples: int):
    """The ONNX-lowerable forward of one 1 s chunk, ``(batch, 16000)`` -> ``clipwise_output (batch,
    classes)`` (the chunk's sigmoid scores; logits for ``clip_ce``) and ``latent_output (batch,
    fused_dim)``: :meth:`Model.forward_chunks` with the LSTMs unrolled (no ``Loop``/``Scan`` op) and
    YAMNet's frontend from export-friendly pieces (``yamnet_frontend.export_mode``). On a 1 s
    input ``Model(waveform)`` gives the same. Longer audio: 1 s chunks every 0.5 s through the file,
    mean of the chunk scores (the paper's evaluation)."""
    if num_samples != CHUNK_SAMPLES:
        raise ValueError(f"LEAN exports its 1 s chunk: num_samples must be {CHUNK_SAMPLES}, got {num_samples}; "
                         "run longer audio as 1 s chunks every 0.5 s and average the chunk scores")
    bce = model.config.loss_type == "clip_bce"

    def forward(waveform: jax.Array) -> dict[str, jax.Array]:
        with frontend.export_mode():
            logits, fused = model.forward_chunks(waveform, train=False, unroll_lstm=True)
        clip = jnp.clip(jax.nn.sigmoid(logits), PROB_EPSILON, 1.0 - PROB_EPSILON) if bce else logits   # as __call__
        return {"clipwise_output": clip, "latent_output": fused}

    return forward


can_load = base.no_foreign_files
load = base.load_unsupported


def init_from(path: str, config: Config, fresh: Mapping, *, seed: int = 0) -> tuple[dict, str]:
    """Training start from a LEAN model directory (every tensor; the head fresh when the class count
    differs), or from YAMNet -- a YAMNet model directory, ``yamnet.h5`` or a YAMNet ``.tflite`` --
    which fills the YAMNet branch only (the wave encoder, projection and head stay fresh)."""
    weights, report = init_report(path, config, fresh)
    return weights, report.summary()


def init_report(path: str, config: Config, fresh: Mapping) -> tuple[dict, base.InitReport]:
    """:func:`init_from` with the :class:`~htsat_jax.models.base.InitReport` itself."""
    from htsat_jax import checkpoint as ckpt_lib
    from htsat_jax.convert import yamnet as yamnet_convert
    from htsat_jax.convert.common import normalise_keys

    path = os.fspath(path)
    notes: list[str] = []
    if base.is_model_dir(path):
        src_cfg, loaded, _ = ckpt_lib.load_weights(path)
        if isinstance(src_cfg, Config):
            return base.merge_same_architecture(fresh, src_cfg, config, loaded, source=path,
                                                arch_fields=ARCH_FIELDS, head=HEAD)
        if not isinstance(src_cfg, yamnet_lib.Config):
            raise ValueError(f"init_from={path} holds a {type(src_cfg).__name__}; LEAN starts from a LEAN or a "
                             "YAMNet model directory, a yamnet.h5 or a YAMNet .tflite")
        if src_cfg.freeze_bn:
            notes.append("the YAMNet directory was trained with freeze_bn (folded BatchNorm?): consider "
                         "yamnet_freeze_bn=True or freeze_yamnet=True")
    elif os.path.isfile(path):
        if yamnet_lib.file_kind(path) is None:
            raise ValueError(f"init_from={path}: neither a model directory nor a yamnet .h5 / .tflite file")
        src_cfg, loaded, conv_report = yamnet_convert.load_yamnet(path, require_head=False)
        notes.extend(conv_report.notes)
    else:
        raise FileNotFoundError(f"init_from={path!r}: no model directory (with config.json) or YAMNet file there")
    if not config.has_yamnet:
        raise ValueError(f"init_from={path} is YAMNet, but this LEAN config has no YAMNet branch "
                         f"(branches={config.branches!r})")
    if src_cfg.width_divisor != config.yamnet_width_divisor:
        raise ValueError(f"init_from={path} does not match config.model: YAMNet width_divisor: file "
                         f"{src_cfg.width_divisor} vs config yamnet_width_divisor {config.yamnet_width_divisor}")
    fresh = normalise_keys(dict(fresh))
    loaded = normalise_keys(dict(loaded))
    if "backbone" not in loaded:
        raise ValueError(f"init_from={path}: no YAMNet backbone in it (has {sorted(loaded)})")
    branch, sub = base.merge_weights(fresh["yamnet"], loaded["backbone"], source=path)
    weights = dict(fresh)
    weights["yamnet"] = branch
    others = ["/".join(map(str, k)) for k in traverse_util.flatten_dict({k: v for k, v in fresh.items()
                                                                          if k != "yamnet"})]
    notes.insert(0, "YAMNet branch from YAMNet's backbone (its classifier is not part of LEAN)")
    return weights, base.InitReport(path, [f"yamnet/{n}" for n in sub.loaded], others, notes)
