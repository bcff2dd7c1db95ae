"""The performance paths: window-attention implementations ("plain", "chunked", "fused"), bfloat16
mixed precision (model and train step) and the host-memory process settings.

Compiling is what costs here (on 2 CPU cores one tiny-model train step takes ~15 s to compile, one
forward ~3-8 s), so the tests compile few programs: module fixtures share the model, its weights
and its forward outputs, and the model is a two-stage cut of the TINY variant.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from conftest import REPO
from helpers import inputs, run
from configs import common
from htsat_jax import checkpoint, models
from htsat_jax.models import htsat, swin
from htsat_jax.models.htsat import TINY, HTSATConfig
from htsat_jax.training import optim, sharding, train
from htsat_jax.utils import host_memory

IMPLS = ("plain", "chunked", "fused")
OUTPUTS = ("clipwise_output", "framewise_output", "latent_output")


def _max_rel_diff(a, b) -> float:
    """max |a - b| over max |b|: one number per tensor, whatever its scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _float_dtypes(tree) -> set[str]:
    return {str(a.dtype) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)}


# ----------------------------------------------------------------------------- window attention

# 8x8 windows of 64 tokens, 4 heads, batch 2. On a 32x32 map (16 windows) the float32 logits take
# 2 MiB, so the chunked path (budget CHUNK_LOGITS_BYTES = 1 MiB) runs 2 groups of 8 windows; on a
# 16x16 map (4 windows, 512 KiB) it runs them in one. The budget is attention_groups' default
# argument, bound when swin is imported: monkeypatching swin.CHUNK_LOGITS_BYTES would not reach
# the model, hence sizes that need the split with the real budget.
DIM, HEADS, WINDOW, BATCH = 32, 4, 8, 2
MAPS = {32: 2, 16: 1}  # map size -> chunked groups


@pytest.fixture(scope="module")
def attention_modules():
    """One WindowAttention per implementation, all holding the same (non-trivial) parameters, and
    a ``(batch, windows, tokens, dim)`` input per map size."""
    rng = np.random.default_rng(0)
    abstract = nnx.eval_shape(lambda: swin.WindowAttention(DIM, HEADS, WINDOW, rngs=nnx.Rngs(0)))
    # Unit-scale logits and position biases (the std-0.02 init gives almost uniform attention), so
    # the implementations are compared on attention that weighs every token pair differently.
    def draw(a):  # kernels (DIM, ...) scaled by 1/sqrt(DIM), biases and bias table unit normal
        return jnp.asarray(rng.standard_normal(a.shape) * (DIM ** -0.5 if a.ndim == 2 and a.shape[0] == DIM else 1.0),
                           jnp.float32)

    state = jax.tree.map(draw, nnx.state(abstract))
    modules = {}
    for impl in IMPLS:
        modules[impl] = nnx.eval_shape(
            lambda: swin.WindowAttention(DIM, HEADS, WINDOW, attention=impl, rngs=nnx.Rngs(0)))
        nnx.update(modules[impl], state)
    xs = {size: jnp.asarray(rng.standard_normal((BATCH, (size // WINDOW) ** 2, WINDOW * WINDOW, DIM)), jnp.float32)
          for size in MAPS}
    return modules, xs


@pytest.fixture(scope="module")
def attention_results(attention_modules):
    """``{(impl, map size, masked): (output, gradients w.r.t. (parameters, input))}`` of
    ``mean(y**2)``, all from one compiled program (compiling is the slow part)."""
    modules, xs = attention_modules
    split = {impl: nnx.split(m) for impl, m in modules.items()}

    @jax.jit
    def everything(states, xs):
        out = {}
        for impl, (graphdef, _) in split.items():
            for size, x in xs.items():
                for masked in (False, True):
                    mask = swin.shifted_window_mask(size, size, WINDOW, WINDOW // 2) if masked else None

                    def loss(state, x):
                        y = nnx.merge(graphdef, state)(x, mask)
                        return jnp.mean(y ** 2), y

                    (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(states[impl], x)
                    out[impl, size, masked] = (y, grads)
        return out

    return jax.tree.map(np.asarray, everything({impl: state for impl, (_, state) in split.items()}, xs))


@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "shifted_window_mask"])
@pytest.mark.parametrize("size", list(MAPS))
def test_window_attention_implementations_agree_in_value_and_gradient(attention_modules, attention_results,
                                                                      size, masked):
    modules, xs = attention_modules
    x = xs[size]
    mask = swin.shifted_window_mask(size, size, WINDOW, WINDOW // 2) if masked else None
    assert swin.attention_groups(BATCH, (size // WINDOW) ** 2, HEADS, WINDOW * WINDOW) == MAPS[size]
    # With several groups the chunked module loops over them (a scan); otherwise, and in the plain
    # module, there is no loop.
    has_scan = "scan" in str(jax.make_jaxpr(lambda x: modules["chunked"](x, mask))(x))
    assert has_scan == (MAPS[size] > 1)
    assert "scan" not in str(jax.make_jaxpr(lambda x: modules["plain"](x, mask))(x))
    # "auto" on CPU chunks heads at least CHUNK_MIN_HEAD_DIM wide only: these 8-wide heads run plain,
    # the same layer with 2 heads of 16 loops wherever its logits need groups (at batch 8: 4 groups
    # on the 32x32 map, one on the 16x16 map).
    def auto_has_scan(heads, batch):
        auto = swin.WindowAttention(DIM, heads, WINDOW, rngs=nnx.Rngs(0))
        xb = jnp.tile(x, (batch // BATCH, 1, 1, 1))
        return "scan" in str(jax.make_jaxpr(lambda x: auto(x, mask))(xb))
    assert DIM // HEADS < swin.CHUNK_MIN_HEAD_DIM <= DIM // 2
    assert not auto_has_scan(HEADS, BATCH)
    assert swin.attention_groups(8, (size // WINDOW) ** 2, 2, WINDOW * WINDOW) == {32: 4, 16: 1}[size]
    assert auto_has_scan(2, 8) == (size == 32)

    ref_y, ref_grads = attention_results["plain", size, masked]
    if masked:  # the mask matters for these inputs, so agreeing with it is not vacuous
        assert _max_rel_diff(attention_results["plain", size, False][0], ref_y) > 1e-2
    for impl in IMPLS[1:]:
        y, grads = attention_results[impl, size, masked]
        np.testing.assert_allclose(y, ref_y, rtol=1e-6, atol=1e-6, err_msg=impl)
        leaves, ref_leaves = jax.tree.leaves(grads), jax.tree.leaves(ref_grads)
        assert len(leaves) == len(ref_leaves) == 6  # qkv and proj kernel and bias, bias table; input
        for got, want in zip(leaves, ref_leaves):
            # Measured: at most 9e-7 of each tensor's largest entry (the summation order differs).
            assert _max_rel_diff(got, want) < 1e-5, impl


def test_shared_bias_gradient_sums_like_autodiff():
    # The position bias (1 or nW, heads, N, N) is shared by every clip (and window): its gradient is a
    # sum over those leading axes, done as a ones-matmul (swin.sum_leading) instead of XLA's reduce.
    rng = np.random.default_rng(3)
    g = jnp.asarray(rng.standard_normal((3, 5, 4, 8, 8)), jnp.float32)
    for shape in [(1, 4, 8, 8), (5, 4, 8, 8), (4, 8, 8), (3, 5, 4, 8, 8)]:
        x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        y, pullback = jax.vjp(lambda b: swin.broadcast_leading(b, g.shape), x)
        want_y, want_pullback = jax.vjp(lambda b: jnp.broadcast_to(b, g.shape), x)
        np.testing.assert_array_equal(y, want_y)
        (got,), (want,) = pullback(g), want_pullback(g)
        assert got.shape == shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=str(shape))
        logits = jnp.asarray(rng.standard_normal(g.shape), jnp.float32)
        d = jax.grad(lambda l, b: jnp.sum(jnp.sin(swin.add_shared_bias(l, b))), argnums=(0, 1))(logits, x)
        d_ref = jax.grad(lambda l, b: jnp.sum(jnp.sin(l + b)), argnums=(0, 1))(logits, x)
        for a, b in zip(d, d_ref):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="more than leading axes"):
        jax.vjp(lambda b: swin.broadcast_leading(b, g.shape), jnp.ones((5, 1, 8, 8)))[1](g)


def test_gelu_exact_is_torch_gelu_in_the_erf_form():
    torch = pytest.importorskip("torch")
    x = np.linspace(-12.0, 12.0, 4001, dtype=np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = torch.nn.functional.gelu(tx)  # exact (erf) GELU, HTS-AT's and AST's nn.GELU()
    ty.backward(torch.ones_like(ty))
    y = swin.gelu_exact(jnp.asarray(x))
    grad = jax.grad(lambda v: jnp.sum(swin.gelu_exact(v)))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), ty.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), tx.grad.numpy(), rtol=1e-5, atol=1e-6)
    # The same function as jax's erfc-based exact GELU, not its tanh approximation.
    np.testing.assert_allclose(np.asarray(y), np.asarray(jax.nn.gelu(jnp.asarray(x), approximate=False)),
                               rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(y) - np.asarray(jax.nn.gelu(jnp.asarray(x)))).max() > 1e-4


def test_attention_groups_picks_the_fewest_divisor_groups_under_the_budget():
    mib = 1 << 20
    assert swin.CHUNK_LOGITS_BYTES == mib
    # Paper model, stage 0, batch 8: one window's logits 8*4*64*64*4 B = 0.5 MiB -> 2 per group.
    assert swin.attention_groups(8, 64, 4, 64) == 32
    assert swin.attention_groups(8, 64, 4, 64, itemsize=2) == 16
    # TINY at batch 2: stage 0 (64 windows, 2 heads) 4 MiB -> 4 groups; stage 1 (16 windows,
    # 4 heads) 2 MiB -> 2 groups; stage 2 (4 windows, 8 heads) exactly 1 MiB and the last stage
    # (1 window, 16 heads) fit whole.
    assert swin.attention_groups(2, 64, 2, 64) == 4
    assert swin.attention_groups(2, 16, 4, 64) == 2
    assert swin.attention_groups(2, 4, 8, 64) == 1
    assert swin.attention_groups(2, 1, 16, 64) == 1
    # Groups divide the windows: 12 windows of 40 B under 100 B need 5 groups -> 6 (2 windows each).
    assert swin.attention_groups(1, 12, 1, 1, itemsize=40, budget=100) == 6
    # A single window over the budget: one window per group.
    assert swin.attention_groups(1, 3, 1, 1, itemsize=200, budget=100) == 3


def test_resolve_attention_and_config_validation():
    assert swin.ATTENTION_IMPLS == ("auto", "plain", "chunked", "fused")
    expected = {"cpu": "chunked", "gpu": "fused", "cuda": "fused", "rocm": "fused", "tpu": "plain"}
    for backend, impl in expected.items():
        assert swin.resolve_attention("auto", backend) == impl, backend
    assert swin.resolve_attention("auto") == "chunked"  # the tests run on CPU
    # Narrow heads: "auto" leaves the CPU loop out (its fixed cost per group outweighs the gain).
    assert swin.resolve_attention("auto", "cpu", head_dim=swin.CHUNK_MIN_HEAD_DIM) == "chunked"
    assert swin.resolve_attention("auto", "cpu", head_dim=swin.CHUNK_MIN_HEAD_DIM - 1) == "plain"
    assert swin.resolve_attention("auto", "gpu", head_dim=8) == "fused"
    assert swin.resolve_attention("chunked", "cpu", head_dim=8) == "chunked"
    for impl in IMPLS:  # an explicit choice holds on every backend
        assert {swin.resolve_attention(impl, b) for b in expected} == {impl}
    with pytest.raises(ValueError, match="attention must be one of"):
        swin.resolve_attention("flash", "gpu")
    with pytest.raises(ValueError, match="attention must be one of"):
        swin.WindowAttention(DIM, HEADS, WINDOW, attention="flash", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="attention 'bogus'"):
        HTSATConfig(attention="bogus")
    # The field survives the config round trip and reaches every block of the model.
    cfg = HTSATConfig.from_dict({**HTSATConfig(num_classes=3, **TINY).to_dict(), "attention": "fused"})
    assert cfg.attention == "fused"
    model = nnx.eval_shape(lambda: htsat.HTSAT(cfg, rngs=nnx.Rngs(0)))
    attns = [block.attn.attention for layer in model.layers for block in layer.blocks]
    assert len(attns) == sum(TINY["depths"]) and set(attns) == {"fused"}


# ----------------------------------------------------------------------------- whole model

# TINY's first two stages (the head on the 32x32 map of stage 1): frontend, bn0, a shifted block
# with its mask, chunked attention in 4 groups (stage 0) and 2 groups (stage 1), patch merging and
# the head, at about half the compile time of the four TINY stages. (The window tests above cover
# the single-group case; test_model.py runs the whole TINY model in bfloat16.)
SMALL = {**TINY, "depths": (2, 1), "num_heads": (2, 4)}


@pytest.fixture(scope="module")
def small():
    """``(config, weights, waveform)``: the two-stage tiny model (10 classes, attention "auto"),
    its random initial weights and 1 s of audio, batch 2."""
    config = HTSATConfig(num_classes=10, **SMALL)
    # Drawn with the "rbg" PRNG: threefry's unrolled rounds take seconds to compile per draw.
    init = jax.jit(lambda: nnx.to_pure_dict(nnx.state(
        htsat.HTSAT(config, rngs=nnx.Rngs(jax.random.key(0, impl="rbg"))))))
    return config, init(), jnp.asarray(inputs()["waveform_32k"][:, :32000])


@pytest.fixture(scope="module")
def forward(small):
    """The model built with each attention implementation (float32) and in bfloat16 ("auto"), same
    weights, and their eval outputs, all from one compiled program."""
    config, weights, x = small
    models_ = {impl: checkpoint.build_model(HTSATConfig.from_dict({**config.to_dict(), "attention": impl}), weights)
               for impl in IMPLS}
    models_["bfloat16"] = checkpoint.build_model(config, weights, dtype=jnp.bfloat16)
    split = {name: nnx.split(m) for name, m in models_.items()}

    @jax.jit
    def outputs(states, x):
        return {name: nnx.merge(graphdef, states[name])(x) for name, (graphdef, _) in split.items()}

    outs = outputs({name: state for name, (_, state) in split.items()}, x)
    return models_, jax.tree.map(np.asarray, outs)


def test_model_forward_agrees_across_attention_implementations(small, forward):
    config = small[0]
    grid = config.spec_size // config.patch_stride  # 64x64, then 32x32 patches
    assert [swin.attention_groups(2, (grid // 2**i // config.window_size) ** 2, heads, config.window_size ** 2)
            for i, heads in enumerate(config.num_heads)] == [4, 2]
    outs = forward[1]
    ref = outs["plain"]
    assert ref["clipwise_output"].shape == (2, 10) and ref["framewise_output"].shape == (2, 1024, 10)
    assert np.all(np.isfinite(ref["framewise_output"])) and np.std(ref["latent_output"]) > 0.1
    for impl in IMPLS[1:]:
        for key in OUTPUTS:
            # Measured: identical (0.0) on CPU; the tolerance allows another summation order.
            np.testing.assert_allclose(outs[impl][key], ref[key], rtol=1e-5, atol=1e-5, err_msg=f"{impl} {key}")


# ----------------------------------------------------------------------------- bfloat16


def test_bfloat16_model_keeps_float32_state_and_outputs(small, forward):
    x = small[2]
    model, outs = forward[0]["bfloat16"], forward[1]
    params, stats = nnx.state(model, nnx.Param), nnx.state(model, nnx.BatchStat)
    assert jax.tree.leaves(stats), "bn0 running statistics are BatchStat variables"
    assert _float_dtypes(params) == {"float32"}
    assert _float_dtypes(stats) == {"float32"}
    # The backbone really computes in bfloat16 (traced for shapes and dtypes only, not compiled).
    graphdef, state = nnx.split(model)

    def captured(state, x):
        capture = {}
        nnx.merge(graphdef, state)(x, capture=capture)
        return capture

    inner = jax.eval_shape(captured, state, x)
    assert {inner[k].dtype for k in ("after_patch_embed", "layer0_block1_out", "layer1_out")} == {
        jnp.dtype(jnp.bfloat16)}
    out, ref = outs["bfloat16"], outs["plain"]  # "auto" is "plain" for TINY's 8-wide heads on CPU
    for key in OUTPUTS:
        assert out[key].dtype == np.float32, key
    diffs = {key: np.abs(out[key] - ref[key]) for key in OUTPUTS}
    assert all(d.max() > 0 for d in diffs.values())  # another computation, not the float32 one
    # Measured max (mean) abs differences: clipwise 1.1e-3 (4.6e-4), framewise probabilities
    # 5.7e-2 (2.1e-3; the max is a frame whose logit sits near 0, where the sigmoid is steepest),
    # latent 1.1e-2 (3.0e-3; its values have std ~1). Bounds with a 4-10x margin:
    assert diffs["clipwise_output"].max() < 1e-2
    assert diffs["framewise_output"].max() < 0.15 and diffs["framewise_output"].mean() < 1e-2
    assert diffs["latent_output"].max() < 5e-2


def test_bfloat16_train_steps_track_float32(small):
    model_cfg, weights, _ = small
    recipe = common.load("htsat/audioset.py", "variant=tiny")  # AdamW, clipping at 1, mixup 0.5
    tx, schedule = optim.make_optimizer(recipe.optim, steps_per_epoch=1, num_epochs=4)
    mesh = sharding.make_mesh(1, 1, devices=jax.devices()[:1])
    # The train state of a bfloat16 run: float32 parameters and optimizer state. The float32 run
    # starts from the very same state (create_train_state only differs in the graphdef's dtype).
    graphdef16, start, state_sh = train.create_train_state(model_cfg, tx, mesh, seed=0, dtype=jnp.bfloat16,
                                                           init_weights=weights)
    graphdefs = {"float32": nnx.split(models.abstract(model_cfg), nnx.Param, ...)[0], "bfloat16": graphdef16}
    assert _float_dtypes(start.params) == _float_dtypes(start.opt_state) == _float_dtypes(start.rest) == {"float32"}
    jax.tree.map(np.testing.assert_array_equal, weights,
                 nnx.to_pure_dict(nnx.state(train.merged_model(graphdef16, start.params, start.rest))))
    # rbg keeps the step's SpecAugment / mixup / drop-path draws cheap to compile; the same key
    # makes them identical in both runs.
    key = jax.random.key(7, impl="rbg")
    rng = np.random.default_rng(0)
    batch = sharding.global_batch({"waveform": (rng.standard_normal((2, 32000)) * 3000).astype(np.int16),
                                   "target": (rng.uniform(size=(2, 10)) > 0.6).astype(np.float32)}, mesh)
    runs = {}
    for name, graphdef in graphdefs.items():
        recipe.dtype = name
        assert (train.compute_dtype(recipe) is None) == (name == "float32")
        step = jax.jit(train.make_train_step(graphdef, tx, schedule, loss_type="clip_bce",
                                             mixup_alpha=recipe.mixup_alpha, data_rate=32000, model_rate=32000),
                       in_shardings=(state_sh, sharding.batch_sharding(mesh), sharding.replicated(mesh)),
                       out_shardings=(state_sh, sharding.replicated(mesh)))
        state, losses = start, []
        for _ in range(3):
            state, metrics = step(state, batch, key)
            losses.append(float(metrics["loss"]))
        runs[name] = (state, np.array(losses))
    (f32, f32_losses), (bf16, bf16_losses) = runs["float32"], runs["bfloat16"]

    for state in (f32, bf16):
        assert int(state.step) == 3
        assert _float_dtypes(state.params) == _float_dtypes(state.opt_state) == {"float32"}
        assert _float_dtypes(state.rest) == {"float32"}  # BatchNorm running statistics
    assert np.all(np.isfinite(bf16_losses)) and np.all(np.isfinite(f32_losses))
    # Measured losses: float32 0.6612, 0.6576, 0.6316; bfloat16 0.6613, 0.6564, 0.6306, i.e. at
    # most 1.2e-3 apart: the bound leaves an 8x margin.
    np.testing.assert_allclose(bf16_losses, f32_losses, atol=1e-2)
    # Training makes progress on this fixed batch in both precisions (measured drop 0.03 each).
    assert bf16_losses[-1] < bf16_losses[0] and f32_losses[-1] < f32_losses[0]

    # The updates point the same way: cosine of the bf16 and f32 parameter changes (measured 0.997).
    def delta(s):
        return np.concatenate([np.ravel(np.asarray(a) - np.asarray(b))
                               for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(start.params))])

    d32, d16 = delta(f32), delta(bf16)
    cos = float(d32 @ d16 / (np.linalg.norm(d32) * np.linalg.norm(d16)))
    assert cos > 0.9
    # bn0's running statistics moved, and the same way in both runs (measured: mean and variance
    # within 2e-4 and 1.1e-3 of the float32 run's, relative to their largest entry).
    for got, want, init in zip(jax.tree.leaves(bf16.rest), jax.tree.leaves(f32.rest), jax.tree.leaves(start.rest)):
        assert not np.array_equal(np.asarray(want), np.asarray(init))
        assert _max_rel_diff(got, want) < 1e-2


def test_compute_dtype_from_config():
    assert train.compute_dtype(ml_collections.ConfigDict({"dtype": "float32"})) is None
    assert train.compute_dtype(ml_collections.ConfigDict({"dtype": "bfloat16"})) == jnp.bfloat16
    with pytest.raises(ValueError, match="float32' or 'bfloat16"):
        train.compute_dtype(ml_collections.ConfigDict({"dtype": "float16"}))


# ----------------------------------------------------------------------------- host memory

HUGE = "glibc.malloc.hugetlb=1"
SCHED = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def test_with_host_settings_adds_and_respects_existing_settings():
    assert (host_memory.HUGEPAGE_TUNABLE, host_memory.CPU_SCHEDULER_FLAG) == (HUGE, SCHED)
    assert host_memory.with_host_settings({}) == {"GLIBC_TUNABLES": HUGE, "XLA_FLAGS": SCHED}
    # Existing tunables and flags are kept, the settings appended; the input is not modified.
    env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "HOME": "/home/x"}
    before = dict(env)
    out = host_memory.with_host_settings(env)
    assert env == before
    assert out == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:" + HUGE,
                   "XLA_FLAGS": "--xla_force_host_platform_device_count=8 " + SCHED, "HOME": "/home/x"}
    assert host_memory.with_host_settings(out) == out  # idempotent
    # A user's own choice of either setting wins.
    own = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0",
           "XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}
    assert host_memory.with_host_settings(own) == own
    assert host_memory.host_settings_active(own)
    assert not host_memory.host_settings_active({})
    assert not host_memory.host_settings_active({"GLIBC_TUNABLES": HUGE})  # flag still missing
    assert host_memory.host_settings_active(host_memory.with_host_settings({"XLA_FLAGS": "--foo"}))


def test_reexec_with_host_settings_in_process(monkeypatch):
    calls = []
    monkeypatch.setattr(host_memory.os, "execve", lambda *args: calls.append(args))
    monkeypatch.setattr(host_memory.sys, "platform", "linux")
    monkeypatch.setattr(host_memory.sys, "orig_argv", ["python", "-m", "htsat_jax.main", "--workdir", "w"])
    for var in ("GLIBC_TUNABLES", "XLA_FLAGS", "HTSAT_JAX_HOST_SETTINGS"):
        monkeypatch.delenv(var, raising=False)
    # Opted out: returns without re-executing.
    monkeypatch.setenv("HTSAT_JAX_HOST_SETTINGS", "0")
    assert host_memory.reexec_with_host_settings() is None and calls == []
    # Not opted out: re-executes the same command line with the settings and the loop guard.
    monkeypatch.delenv("HTSAT_JAX_HOST_SETTINGS")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    host_memory.reexec_with_host_settings()
    assert len(calls) == 1
    executable, argv, env = calls[0]
    assert executable == sys.executable and argv == ["python", "-m", "htsat_jax.main", "--workdir", "w"]
    assert env["GLIBC_TUNABLES"] == HUGE and env["HTSAT_JAX_HOST_SETTINGS"] == "0"
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8 " + SCHED
    # Settings already there (as in the re-executed process, even without the guard): no re-exec.
    monkeypatch.setenv("GLIBC_TUNABLES", env["GLIBC_TUNABLES"])
    monkeypatch.setenv("XLA_FLAGS", env["XLA_FLAGS"])
    host_memory.reexec_with_host_settings()
    assert len(calls) == 1
    # Off Linux: nothing to do.
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setattr(host_memory.sys, "platform", "darwin")
    host_memory.reexec_with_host_settings()
    assert len(calls) == 1


@pytest.mark.parametrize("opt_out", [False, True], ids=["reexec", "opted_out"])
def test_reexec_with_host_settings_in_a_subprocess(opt_out):
    code = ("from htsat_jax.utils import host_memory; host_memory.reexec_with_host_settings(); import os; "
            "print(os.environ.get('GLIBC_TUNABLES'), os.environ.get('XLA_FLAGS'), "
            "os.environ.get('HTSAT_JAX_HOST_SETTINGS'), flush=True)")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "XLA_FLAGS", "HTSAT_JAX_HOST_SETTINGS")}
    if opt_out:
        env["HTSAT_JAX_HOST_SETTINGS"] = "0"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    # One line: printed once, by the re-executed process only (the first one never got there).
    expected = "None None 0" if opt_out else f"{HUGE} {SCHED} 0"
    assert proc.stdout.splitlines() == [expected]
