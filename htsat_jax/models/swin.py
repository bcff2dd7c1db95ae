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


# How window attention is computed (same numbers, different speed; see BENCHMARKS.md "Profile"):
#   "plain"    all windows' logits at once, one batched matmul per product (XLA on any backend);
#   "chunked"  windows in groups inside a loop, so one group's logits (CHUNK_LOGITS_BYTES) stay in
#              cache between the two products, bias and softmax, with a backward that recomputes them
#              per group; on CPU the plain path is memory-bound on the (batch*windows*heads, 64, 64)
#              logits of the early stages. Stages whose single window's logits exceed the cache run
#              plain (nothing to gain);
#   "fused"    jax.nn.dot_product_attention (cuDNN's fused kernel on GPU when the dtype allows,
#              XLA elsewhere); the shifted-window mask and the position bias go in as one bias;
#   "auto"     chunked on CPU (plain for heads narrower than CHUNK_MIN_HEAD_DIM), fused on GPU,
#              plain on TPU (XLA fuses it well there).
ATTENTION_IMPLS = ("auto", "plain", "chunked", "fused")
# Per-group logits budget of the chunked path: half of this CPU's 1 MiB of L2, the largest group
# that still measured at full speed (BENCHMARKS.md).
CHUNK_LOGITS_BYTES = 1 << 20
# "auto" chunks only heads at least this wide: each group's products do 4 * head_dim FLOPs per
# logit, and with narrow heads the loop's fixed cost per group outweighs the cache it saves (the
# tiny model, head_dim 8, takes 11 % longer per train step chunked; the paper model, head_dim 24,
# gains; BENCHMARKS.md).
CHUNK_MIN_HEAD_DIM = 16


def resolve_attention(impl: str, backend: str | None = None, head_dim: int | None = None) -> str:
    """The concrete implementation ``impl`` stands for on ``backend`` (default: JAX's default
    backend) for heads ``head_dim`` wide (None: any width). An explicit choice always holds."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    backend = backend or jax.default_backend()
    impl = {"cpu": "chunked", "gpu": "fused", "cuda": "fused", "rocm": "fused"}.get(backend, "plain")
    if impl == "chunked" and head_dim is not None and head_dim < CHUNK_MIN_HEAD_DIM:
        return "plain"
    return impl


def attention_groups(batch: int, windows: int, heads: int, n: int, itemsize: int = 4,
                     budget: int = CHUNK_LOGITS_BYTES) -> int:
    """How many groups the chunked path splits ``windows`` into: the fewest (a divisor of
    ``windows``) whose ``(batch, windows/groups, heads, n, n)`` logits fit in ``budget`` bytes."""
    per_window = batch * heads * n * n * itemsize
    for groups in range(1, windows + 1):
        if windows % groups == 0 and per_window * windows // groups <= budget:
            return groups
    return windows


def sum_leading(x: jax.Array, num: int) -> jax.Array:
    """``x`` summed over its first ``num`` axes, as a ``ones @ x`` matmul.

    The gradient of a bias shared by every clip (and window) is such a sum. XLA:CPU reduces over
    leading axes of a large tensor at ~0.5-3 GB/s (stage 0's (8, 64, 4, 64, 64) d-logits: 56 ms),
    while the same sum as a matrix-vector product streams at memory speed (0.8 ms); the paper
    model's train step at batch 8 took 3.04-3.25 s instead of 3.27-3.75 s in back-to-back runs
    (BENCHMARKS.md). Full precision on every backend (a TPU's default bfloat16 matmul passes would
    round the sum)."""
    lead = int(np.prod(x.shape[:num], dtype=np.int64))
    ones = jnp.ones((1, lead), x.dtype)
    out = jnp.matmul(ones, x.reshape(lead, -1), precision=jax.lax.Precision.HIGHEST)
    return out.reshape(x.shape[num:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def broadcast_leading(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jnp.broadcast_to(x, shape)`` for an ``x`` that differs from ``shape`` only in leading axes
    (missing or of size 1), with the gradient summed by :func:`sum_leading`."""
    return jnp.broadcast_to(x, shape)


def _broadcast_leading_fwd(x, shape):
    return jnp.broadcast_to(x, shape), x.shape


def _broadcast_leading_bwd(shape, x_shape, g):
    core = tuple(x_shape)
    while core and core[0] == 1:
        core = core[1:]
    if tuple(shape[len(shape) - len(core):]) != core:
        raise ValueError(f"broadcast_leading: {x_shape} -> {shape} broadcasts more than leading axes")
    return (sum_leading(g, len(shape) - len(core)).reshape(x_shape).astype(g.dtype),)


broadcast_leading.defvjp(_broadcast_leading_fwd, _broadcast_leading_bwd)


def add_shared_bias(logits: jax.Array, bias: jax.Array) -> jax.Array:
    """``logits + bias`` for a ``bias`` shared over leading axes (clips, windows), its gradient
    summed by :func:`sum_leading`."""
    return logits + broadcast_leading(bias, logits.shape)


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array) -> jax.Array:
    """Softmax attention ``(..., heads, N, d)`` x3 + ``bias (..., heads, N, N)`` -> ``(..., N, heads, d)``.

    ``q`` is already scaled. Logits and softmax are float32 whatever the compute dtype
    (bfloat16 logits lose the -100 mask and the small position biases).
    """
    acc = jnp.promote_types(q.dtype, jnp.float32)  # float64 stays float64 (parity runs)
    logits = jnp.einsum("...hqd,...hkd->...hqk", q, k, preferred_element_type=acc)
    probs = jax.nn.softmax(add_shared_bias(logits, bias.astype(acc)), axis=-1).astype(v.dtype)
    return jnp.einsum("...hqk,...hkd->...qhd", probs, v)


def _group_qkv(x: jax.Array, kernel: jax.Array, qkv_bias: jax.Array, scale: float):
    """``x (B, per, N, C)``, ``kernel (C, 3, heads, d)``, ``qkv_bias (3, heads, 1, d)`` -> q (scaled), k, v
    each ``(B, per, heads, N, d)``."""
    qkv = jnp.einsum("bwnc,cthd->tbwhnd", x, kernel) + qkv_bias[:, None, None]
    return qkv[0] * jnp.asarray(scale, qkv.dtype), qkv[1], qkv[2]


def _group_probs(q: jax.Array, k: jax.Array, bias: jax.Array) -> jax.Array:
    acc = jnp.promote_types(q.dtype, jnp.float32)
    logits = jnp.einsum("bwhqd,bwhkd->bwhqk", q, k, preferred_element_type=acc)
    return jax.nn.softmax(logits + bias.astype(acc), axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def grouped_window_attention(xs: jax.Array, kernel: jax.Array, qkv_bias: jax.Array, bias: jax.Array,
                             scale: float) -> jax.Array:
    """qkv projection + attention for groups of windows, one group per loop iteration.

    ``xs (G, B, per, N, C)``, ``kernel (C, 3, heads, d)``, ``qkv_bias (3, heads, 1, d)``,
    ``bias (G, per, heads, N, N)`` -> ``(G, B, per, N, heads, d)``. The backward recomputes each
    group's probabilities instead of storing them (flash-attention style): the logits of a group
    are produced, used and dropped while they are in cache, in both directions, and the
    ``(B, nW, heads, N, N)`` probabilities are never kept for the backward pass.
    """
    def body(_, args):
        x, group_bias = args
        q, k, v = _group_qkv(x, kernel, qkv_bias, scale)
        probs = _group_probs(q, k, group_bias).astype(v.dtype)
        return None, jnp.einsum("bwhqk,bwhkd->bwqhd", probs, v)

    return jax.lax.scan(body, None, (xs, bias))[1]


def _grouped_fwd(xs, kernel, qkv_bias, bias, scale):
    return grouped_window_attention(xs, kernel, qkv_bias, bias, scale), (xs, kernel, qkv_bias, bias)


def _grouped_bwd(scale, residuals, d_out):
    xs, kernel, qkv_bias, bias = residuals
    acc = jnp.promote_types(kernel.dtype, jnp.float32)  # parameter gradients summed over groups in float32

    def body(carry, args):
        d_kernel, d_qkv_bias = carry
        x, group_bias, do = args
        q, k, v = _group_qkv(x, kernel, qkv_bias, scale)
        probs = _group_probs(q, k, group_bias)  # (B, per, heads, N, N), float32
        do = jnp.swapaxes(do, 2, 3)  # (B, per, heads, N, d)
        dv = jnp.einsum("bwhqk,bwhqd->bwhkd", probs.astype(do.dtype), do)
        dp = jnp.einsum("bwhqd,bwhkd->bwhqk", do, v, preferred_element_type=probs.dtype)
        d_logits = probs * (dp - jnp.sum(dp * probs, axis=-1, keepdims=True))  # softmax backward
        d_bias = sum_leading(d_logits, 1)  # the bias is shared by every clip
        d_logits = d_logits.astype(q.dtype)
        dq = jnp.einsum("bwhqk,bwhkd->bwhqd", d_logits, k) * jnp.asarray(scale, q.dtype)
        dk = jnp.einsum("bwhqk,bwhqd->bwhkd", d_logits, q)
        d_qkv = jnp.stack([dq, dk, dv])  # (3, B, per, heads, N, d)
        d_kernel = d_kernel + jnp.einsum("bwnc,tbwhnd->cthd", x, d_qkv, preferred_element_type=acc)
        d_qkv_bias = d_qkv_bias + jnp.sum(d_qkv.astype(acc), axis=(1, 2, 4))[:, :, None, :]
        dx = jnp.einsum("tbwhnd,cthd->bwnc", d_qkv, kernel)
        return (d_kernel, d_qkv_bias), (dx, d_bias.astype(bias.dtype))

    init = (jnp.zeros(kernel.shape, acc), jnp.zeros(qkv_bias.shape, acc))
    (d_kernel, d_qkv_bias), (d_xs, d_bias) = jax.lax.scan(body, init, (xs, bias, d_out))
    return d_xs, d_kernel.astype(kernel.dtype), d_qkv_bias.astype(qkv_bias.dtype), d_bias


grouped_window_attention.defvjp(_grouped_fwd, _grouped_bwd)


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
        attention: str = "auto",
        dtype: Dtype = None,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        resolve_attention(attention)  # fail at build time on a bad name
        self.dim, self.num_heads, self.window = dim, num_heads, window
        self.attn_drop, self.proj_drop = attn_drop, proj_drop
        self.attention = attention
        self.dtype = dtype
        dense = dict(kernel_init=linear_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        # q, k, v stay fused with the official layout: output rows [q | k | v], head-major inside each.
        self.qkv = nnx.Linear(dim, 3 * dim, **dense)
        self.proj = nnx.Linear(dim, dim, **dense)
        self.relative_position_bias_table = nnx.Param(
            linear_init(rngs.params(), ((2 * window - 1) ** 2, num_heads), param_dtype)
        )

    def bias(self, mask: np.ndarray | None) -> jax.Array:
        """Position bias plus shifted-window mask, summed once: ``(nW or 1, heads, N, N)``, float32
        (float64 with float64 parameters)."""
        table = self.relative_position_bias_table[...]
        table = table.astype(jnp.promote_types(table.dtype, jnp.float32))
        bias = jnp.transpose(table[relative_position_index(self.window)], (2, 0, 1))[None]  # (1, heads, N, N)
        if mask is not None:
            bias = bias + jnp.asarray(mask, table.dtype)[:, None]
        return bias

    def project_qkv(self, windows: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(..., N, C)`` -> q (scaled), k, v each ``(..., heads, N, head_dim)``.

        One matmul against the fused kernel viewed as ``(C, 3, heads, head_dim)`` writes the three
        head-major tensors directly: no slicing of a fused output, so the backward has no
        pad/concatenate of the q, k, v gradients.
        """
        c, h = self.dim, self.num_heads
        kernel = self.qkv.kernel[...].reshape(c, 3, h, c // h)
        bias = self.qkv.bias[...].reshape(3, h, 1, c // h)
        x, kernel, bias = nnx.nn.dtypes.promote_dtype((windows, kernel, bias), dtype=self.dtype)
        qkv = jnp.einsum("...nc,cthd->t...hnd", x, kernel) + bias.reshape((3,) + (1,) * (x.ndim - 2) + bias.shape[1:])
        # Scaled before the product, as the official code does.
        return qkv[0] * jnp.asarray((c // h) ** -0.5, qkv.dtype), qkv[1], qkv[2]

    def __call__(self, windows: jax.Array, mask: np.ndarray | None, key: jax.Array | None = None) -> jax.Array:
        """``(B, nW, N, C)`` -> ``(B, nW, N, C)``; ``mask`` is ``(nW, N, N)`` or None."""
        b, nw, n, c = windows.shape
        attn_key, proj_key = _split(key, 2)
        impl = resolve_attention(self.attention, head_dim=c // self.num_heads)
        bias = self.bias(mask)
        if self.attn_drop and attn_key is not None:
            impl = "plain"  # attention dropout needs the whole probability tensor
        if impl == "chunked":
            out = self._chunked(windows, bias)
        elif impl == "fused":
            q, k, v = self.project_qkv(windows.reshape(b * nw, n, c))
            heads_last = lambda t: jnp.swapaxes(t, 1, 2)  # (B*nW, N, heads, d)
            # (1, heads, N, N) broadcasts inside the kernel; a per-window mask must be spelled out per clip.
            full_bias = bias if bias.shape[0] == 1 else jnp.broadcast_to(bias, (b,) + bias.shape).reshape(
                b * nw, *bias.shape[1:])
            out = jax.nn.dot_product_attention(heads_last(q), heads_last(k), heads_last(v),
                                               bias=full_bias.astype(q.dtype), scale=1.0)
        else:
            q, k, v = self.project_qkv(windows)  # (B, nW, heads, N, d)
            if self.attn_drop and attn_key is not None:
                acc = jnp.promote_types(q.dtype, jnp.float32)
                logits = jnp.einsum("...hqd,...hkd->...hqk", q, k, preferred_element_type=acc)
                probs = dropout(jax.nn.softmax(add_shared_bias(logits, bias.astype(acc)), axis=-1), self.attn_drop,
                                attn_key)
                out = jnp.einsum("...hqk,...hkd->...qhd", probs.astype(v.dtype), v)
            else:
                out = _attend(q, k, v, bias)
        return dropout(self.proj(out.reshape(b, nw, n, c)), self.proj_drop, proj_key)

    def _chunked(self, windows: jax.Array, bias: jax.Array) -> jax.Array:
        """The plain computation, one group of windows per loop iteration (see ATTENTION_IMPLS)."""
        b, nw, n, c = windows.shape
        groups = attention_groups(b, nw, self.num_heads, n)
        if groups == 1 or b * self.num_heads * n * n * 4 > 2 * CHUNK_LOGITS_BYTES:
            # One group holds everything, or even one window's logits overflow the cache (the
            # paper model's stages 2-3 at batch 8): the loop would only add a recomputed projection.
            return _attend(*self.project_qkv(windows), bias)
        per, h = nw // groups, self.num_heads
        xs = jnp.moveaxis(windows.reshape(b, groups, per, n, c), 1, 0)  # (groups, B, per, N, C)
        bias = broadcast_leading(bias, (nw,) + bias.shape[1:]).reshape(groups, per, *bias.shape[1:])
        kernel = self.qkv.kernel[...].reshape(c, 3, h, c // h)
        qkv_bias = self.qkv.bias[...].reshape(3, h, 1, c // h)
        xs, kernel, qkv_bias = nnx.nn.dtypes.promote_dtype((xs, kernel, qkv_bias), dtype=self.dtype)
        out = grouped_window_attention(xs, kernel, qkv_bias, bias, (c // h) ** -0.5)  # (groups, B, per, N, h, d)
        return jnp.moveaxis(out, 0, 1).reshape(b, nw, n, h, c // h)


def gelu_exact(x: jax.Array) -> jax.Array:
    """Exact GELU, ``x * Phi(x)``, written as torch's ``nn.GELU()`` computes it:
    ``0.5 x (1 + erf(x / sqrt(2)))``.

    ``jax.nn.gelu(approximate=False)`` computes the same function through ``erfc``, which XLA:CPU
    evaluates as several full-size passes (with the derivative's ``exp`` another one): in an
    op-level trace ~77 ms of a stage-0 MLP's 272 ms forward + backward at batch 8. With the ``erf``
    form the paper model's step took 0.15 GiB less memory, and in back-to-back runs the median train
    step went 4.04 -> 3.71 s and the median eval forward at batch 8 1.21 -> 1.06 s (BENCHMARKS.md);
    values differ by float32 rounding only.
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(1.0 / math.sqrt(2.0), x.dtype)))


class Mlp(nnx.Module):
    """Linear -> exact (erf) GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, *, drop: float, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
        dense = dict(kernel_init=linear_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = nnx.Linear(dim, hidden, **dense)
        self.fc2 = nnx.Linear(hidden, dim, **dense)
        self.drop = drop

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        k1, k2 = _split(key, 2)
        x = gelu_exact(self.fc1(x))  # torch nn.GELU is exact; jax.nn.gelu defaults to tanh
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
        attention: str = "auto",
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
            dim, num_heads, self.window, attn_drop=attn_drop, proj_drop=drop, attention=attention,
            dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        )
        self.norm2 = layer_norm(dim, dtype, param_dtype, rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def attention_mask(self) -> np.ndarray | None:
        if self.shift == 0:
            return None
        return shifted_window_mask(*self.resolution, self.window, self.shift)

    def attention_branch(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """LayerNorm, (shifted) window attention, drop-path: the first residual branch, ``(B, H, W, C)``."""
        h, w = x.shape[1:3]
        attn_key, dp_key = _split(key, 2)
        y = self.norm1(x)
        if self.shift:
            y = jnp.roll(y, (-self.shift, -self.shift), axis=(1, 2))
        y = window_reverse(self.attn(window_partition(y, self.window), self.attention_mask(), attn_key),
                           self.window, h, w)
        if self.shift:
            y = jnp.roll(y, (self.shift, self.shift), axis=(1, 2))
        return drop_path(y, self.drop_path_rate, dp_key)

    def mlp_branch(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """LayerNorm, MLP, drop-path: the second residual branch, ``(B, H, W, C)``."""
        mlp_key, dp_key = _split(key, 2)
        return drop_path(self.mlp(self.norm2(x), mlp_key), self.drop_path_rate, dp_key)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``; ``key`` enables dropout / drop-path (training)."""
        h, w = x.shape[1:3]
        if (h, w) != self.resolution:
            raise ValueError(f"SwinBlock built for {self.resolution} got a {(h, w)} feature map")
        attn_key, mlp_key = _split(key, 2)
        x = x + self.attention_branch(x, attn_key)
        return x + self.mlp_branch(x, mlp_key)


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
        attention: str = "auto",
        dtype: Dtype = None,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.blocks = nnx.List([
            SwinBlock(
                dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2,
                mlp_ratio=mlp_ratio, drop=drop, attn_drop=attn_drop, drop_path_rate=drop_path_rates[i],
                attention=attention, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
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
