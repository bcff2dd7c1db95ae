"""Swin Transformer v1 parts, as HTS-AT uses them (HTSAT_SPEC §3).

Feature maps are kept as ``(batch, height, width, channels)`` throughout; the official code's
``(batch, tokens, channels)`` is the row-major flattening of the same grid.

The fixed buffers of the official model (relative position index, shifted-window attention
mask) are not parameters here: they are numpy constants derived from the geometry, so they
are neither stored nor trained; the converter checks a checkpoint's copies against them.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Dtype = Any

# The official block uses nn.LayerNorm's default epsilon (Flax's default is 1e-6; it fails parity).
LAYER_NORM_EPS = 1e-5
# Value added to attention logits between tokens of different regions in shifted windows.
# The official code uses -100, not -inf (identical after softmax in float32, kept for exactness).
MASK_VALUE = -100.0

# Official init (timm trunc_normal_ with absolute bounds of +-2 at std 0.02, i.e. a plain normal).
linear_init = nnx.initializers.normal(stddev=0.02)


def torch_conv_init(fan_in: int):
    """PyTorch's default Conv2d init (kaiming_uniform a=sqrt(5)): U(+-1/sqrt(fan_in)) for weight and bias."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# ----------------------------------------------------------------------------- stochastic layers


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout; the identity when ``rate == 0`` or ``key is None`` (eval)."""
    if rate == 0.0 or key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def drop_path(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Stochastic depth: drop the whole residual branch per sample, scale the kept ones by 1/keep."""
    if rate == 0.0 or key is None:
        return x
    keep_prob = 1.0 - rate
    keep = jax.random.bernoulli(key, keep_prob, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))


def _split(key: jax.Array | None, num: int) -> list[jax.Array | None]:
    return [None] * num if key is None else list(jax.random.split(key, num))


# ----------------------------------------------------------------------------- window geometry


def window_partition(x: jax.Array, window: int) -> jax.Array:
    """``(B, H, W, C)`` -> ``(B, num_windows, window*window, C)``; windows row-major over the grid."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // window) * (w // window), window * window, c)


def window_reverse(windows: jax.Array, window: int, height: int, width: int) -> jax.Array:
    """Exact inverse of :func:`window_partition`: ``(B, nW, window*window, C)`` -> ``(B, H, W, C)``."""
    b, _, _, c = windows.shape
    x = windows.reshape(b, height // window, width // window, window, window, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, height, width, c)


@functools.lru_cache(maxsize=None)
def relative_position_index(window: int) -> np.ndarray:
    """``(N, N)`` int32 index into the ``((2w-1)^2, heads)`` bias table, N = window*window.

    ``index[i, j] = (h_i - h_j + w - 1) * (2w - 1) + (w_i - w_j + w - 1)`` with tokens row-major.
    """
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    index = rel[0] * (2 * window - 1) + rel[1]
    index.setflags(write=False)
    return index.astype(np.int32)


@functools.lru_cache(maxsize=None)
def shifted_window_mask(height: int, width: int, window: int, shift: int) -> np.ndarray:
    """Additive attention mask ``(num_windows, N, N)`` float32 for a cyclically shifted map.

    After rolling by ``-shift``, each window may hold tokens from up to 3x3 regions that were
    not neighbours before the roll; pairs from different regions get ``MASK_VALUE``.
    """
    region = np.zeros((height, width), np.int32)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    count = 0
    for hs in bounds:
        for ws in bounds:
            region[hs, ws] = count
            count += 1
    ids = window_partition(region[None, :, :, None], window)[0, :, :, 0]  # (nW, N)
    ids = np.asarray(ids)
    mask = np.where(ids[:, :, None] != ids[:, None, :], MASK_VALUE, 0.0).astype(np.float32)
    mask.setflags(write=False)
    return mask


def effective_window_and_shift(resolution: tuple[int, int], window: int, shift: int) -> tuple[int, int]:
    """The official block's rule: a window covering the whole map never shifts."""
    if min(resolution) <= window:
        return min(resolution), 0
    return window, shift


# ----------------------------------------------------------------------------- layers


class WindowAttention(nnx.Module):
    """Multi-head self-attention inside windows with a learned relative position bias."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        *,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dtype: Dtype = None,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.window = dim, num_heads, window
        self.attn_drop, self.proj_drop = attn_drop, proj_drop
        self.dtype = dtype
        dense = dict(kernel_init=linear_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        # q, k, v stay fused with the official layout: output rows [q | k | v], head-major inside each.
        self.qkv = nnx.Linear(dim, 3 * dim, **dense)
        self.proj = nnx.Linear(dim, dim, **dense)
        self.relative_position_bias_table = nnx.Param(
            linear_init(rngs.params(), ((2 * window - 1) ** 2, num_heads), param_dtype)
        )

    def __call__(self, windows: jax.Array, mask: np.ndarray | None, key: jax.Array | None = None) -> jax.Array:
        """``(B, nW, N, C)`` -> ``(B, nW, N, C)``; ``mask`` is ``(nW, N, N)`` or None."""
        b, nw, n, c = windows.shape
        head_dim = c // self.num_heads
        qkv = self.qkv(windows).reshape(b, nw, n, 3, self.num_heads, head_dim)
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]  # (B, nW, N, heads, hd)
        q = q * head_dim**-0.5  # scaled before the product, as the official code does
        logits = jnp.einsum("bwqhd,bwkhd->bwhqk", q, k)
        table = self.relative_position_bias_table[...]
        bias = table[relative_position_index(self.window)]  # (N, N, heads)
        logits = logits + jnp.transpose(bias, (2, 0, 1)).astype(logits.dtype)
        if mask is not None:
            logits = logits + jnp.asarray(mask, logits.dtype)[None, :, None]
        attn_key, proj_key = _split(key, 2)
        probs = dropout(jax.nn.softmax(logits, axis=-1), self.attn_drop, attn_key)
        out = jnp.einsum("bwhqk,bwkhd->bwqhd", probs, v).reshape(b, nw, n, c)
        return dropout(self.proj(out), self.proj_drop, proj_key)


class Mlp(nnx.Module):
    """Linear -> exact (erf) GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, *, drop: float, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
        dense = dict(kernel_init=linear_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = nnx.Linear(dim, hidden, **dense)
        self.fc2 = nnx.Linear(hidden, dim, **dense)
        self.drop = drop

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        k1, k2 = _split(key, 2)
        x = jax.nn.gelu(self.fc1(x), approximate=False)  # torch nn.GELU is exact; jax defaults to tanh
        return dropout(self.fc2(dropout(x, self.drop, k1)), self.drop, k2)


def layer_norm(dim: int, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=LAYER_NORM_EPS, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class SwinBlock(nnx.Module):
    """Pre-norm Swin v1 block: (shifted) window attention and MLP, each with a residual and drop-path."""

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        num_heads: int,
        window: int,
        shift: int,
        *,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path_rate: float = 0.0,
        dtype: Dtype = None,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.resolution = tuple(resolution)
        self.window, self.shift = effective_window_and_shift(self.resolution, window, shift)
        if self.resolution[0] % self.window or self.resolution[1] % self.window:
            raise ValueError(f"feature map {self.resolution} is not a multiple of window {self.window}")
        self.drop_path_rate = drop_path_rate
        self.norm1 = layer_norm(dim, dtype, param_dtype, rngs)
        self.attn = WindowAttention(
            dim, num_heads, self.window, attn_drop=attn_drop, proj_drop=drop,
            dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        )
        self.norm2 = layer_norm(dim, dtype, param_dtype, rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def attention_mask(self) -> np.ndarray | None:
        if self.shift == 0:
            return None
        return shifted_window_mask(*self.resolution, self.window, self.shift)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``; ``key`` enables dropout / drop-path (training)."""
        h, w = x.shape[1:3]
        if (h, w) != self.resolution:
            raise ValueError(f"SwinBlock built for {self.resolution} got a {(h, w)} feature map")
        attn_key, mlp_key, dp1, dp2 = _split(key, 4)
        y = self.norm1(x)
        if self.shift:
            y = jnp.roll(y, (-self.shift, -self.shift), axis=(1, 2))
        y = window_reverse(self.attn(window_partition(y, self.window), self.attention_mask(), attn_key),
                           self.window, h, w)
        if self.shift:
            y = jnp.roll(y, (self.shift, self.shift), axis=(1, 2))
        x = x + drop_path(y, self.drop_path_rate, dp1)
        return x + drop_path(self.mlp(self.norm2(x), mlp_key), self.drop_path_rate, dp2)


class PatchEmbed(nnx.Module):
    """Non-overlapping ``patch x patch`` conv on a 1-channel image, then LayerNorm (patch_norm=True)."""

    def __init__(self, patch: int, stride: int, in_chans: int, dim: int, *, dtype: Dtype = None,
                 param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        fan_in = in_chans * patch * patch
        pad = (patch - stride) // 2
        self.proj = nnx.Conv(
            in_chans, dim, (patch, patch), (stride, stride), padding=((pad, pad), (pad, pad)),
            kernel_init=torch_conv_init(fan_in), bias_init=torch_conv_init(fan_in),
            dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        )
        self.norm = layer_norm(dim, dtype, param_dtype, rngs)

    def __call__(self, image: jax.Array) -> jax.Array:
        """``(B, H, W, in_chans)`` -> ``(B, H/stride, W/stride, dim)``."""
        return self.norm(self.proj(image))


class PatchMerging(nnx.Module):
    """2x2 neighbourhood concat ([even/even, odd/even, even/odd, odd/odd] rows/cols) -> LN -> Linear(4C, 2C)."""

    def __init__(self, dim: int, *, dtype: Dtype = None, param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        self.norm = layer_norm(4 * dim, dtype, param_dtype, rngs)
        self.reduction = nnx.Linear(4 * dim, 2 * dim, use_bias=False, kernel_init=linear_init,
                                    dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, C)`` -> ``(B, H/2, W/2, 2C)``."""
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.reduction(self.norm(jnp.concatenate(parts, axis=-1)))


class SwinStage(nnx.Module):
    """``depth`` blocks alternating unshifted / shifted windows, then an optional patch merging."""

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window: int,
        *,
        drop_path_rates: list[float],
        downsample: bool,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        dtype: Dtype = None,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.blocks = nnx.List([
            SwinBlock(
                dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2,
                mlp_ratio=mlp_ratio, drop=drop, attn_drop=attn_drop, drop_path_rate=drop_path_rates[i],
                dtype=dtype, param_dtype=param_dtype, rngs=rngs,
            )
            for i in range(depth)
        ])
        self.downsample = PatchMerging(dim, dtype=dtype, param_dtype=param_dtype, rngs=rngs) if downsample else None

    def __call__(self, x: jax.Array, key: jax.Array | None = None,
                 capture: dict[str, jax.Array] | None = None, name: str = "") -> jax.Array:
        keys = _split(key, len(self.blocks))
        for i, block in enumerate(self.blocks):
            x = block(x, keys[i])
            if capture is not None:
                capture[f"{name}_block{i}_out"] = x
        if self.downsample is not None:
            x = self.downsample(x)
        return x
