"""Model behaviour: shapes for several lengths, training mode, augmentations, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import inputs, run, tiny_checkpoint
from htsat_jax import checkpoint
from htsat_jax.models.htsat import HTSAT, HTSATConfig, SpecAugmentConfig, TINY, mixup, spec_augment


@pytest.fixture(scope="module")
def tiny_model():
    config, weights = tiny_checkpoint()
    return checkpoint.build_model(config, weights)


@pytest.mark.parametrize("seconds,infer_mode", [(1, False), (1, True), (5, True), (10, False), (12, False)])
def test_output_shapes_for_several_lengths(tiny_model, seconds, infer_mode):
    x = jnp.asarray(np.resize(inputs()["waveform_32k"][:1], (1, int(seconds * 32000))))
    out = run(tiny_model, x, infer_mode=infer_mode)
    assert out["clipwise_output"].shape == (1, 10)
    assert out["framewise_output"].shape == (1, 1024, 10)
    assert out["latent_output"].shape == (1, 128)
    assert np.all(np.isfinite(out["framewise_output"]))


def test_infer_mode_equals_eval_for_ten_seconds_and_tiles_short_inputs(tiny_model):
    x = jnp.asarray(inputs()["waveform_32k"])
    a, b = run(tiny_model, x), run(tiny_model, x, infer_mode=True)
    np.testing.assert_array_equal(a["clipwise_output"], b["clipwise_output"])
    # 5 s = 501 frames: infer mode tiles them twice before the stretch, which changes the result.
    short = x[:, :160000]
    assert not np.allclose(run(tiny_model, short)["clipwise_output"], run(tiny_model, short, infer_mode=True)["clipwise_output"])


def test_long_input_eval_averages_official_crops(tiny_model):
    x = jnp.asarray(np.concatenate([inputs()["waveform_32k"], inputs()["waveform_32k"][:, :64000]], 1))
    frames = 1 + x.shape[1] // 320  # 1201
    crop, hop = (frames - 1) // 2, (frames - 1) // 4
    from htsat_jax.models import frontend
    from htsat_jax.models.htsat import stretch_time, to_image

    graphdef, state = nnx.split(tiny_model)

    @jax.jit
    def official_crops(state, x):
        m = nnx.merge(graphdef, state)
        lm = m.normalise(frontend.log_mel(x, m.config.frontend), train=False)
        return [m.forward_image(to_image(stretch_time(lm[:, s:s + crop], 1024), 4))
                for s in range(0, frames - crop - 1, hop)]

    crops = official_crops(state, x)
    assert len(crops) == 2
    out = run(tiny_model, x)
    np.testing.assert_allclose(out["clipwise_output"], (crops[0]["clipwise_output"] + crops[1]["clipwise_output"]) / 2,
                               atol=1e-6)
    with pytest.raises(ValueError, match="infer_mode takes at most 1024 frames"):
        tiny_model(x, infer_mode=True)


def test_clip_ce_returns_the_mean_logit_and_framewise_stays_sigmoid():
    config, weights = tiny_checkpoint()
    bce = checkpoint.build_model(config, weights)
    ce = checkpoint.build_model(HTSATConfig.from_dict({**config.to_dict(), "loss_type": "clip_ce"}), weights)
    x = jnp.asarray(inputs()["waveform_32k"])
    a, b = run(bce, x), run(ce, x)
    np.testing.assert_allclose(jax.nn.sigmoid(b["clipwise_output"]), a["clipwise_output"], atol=1e-6)
    np.testing.assert_array_equal(a["framewise_output"], b["framewise_output"])


def test_training_step_under_jit_has_gradients_everywhere_and_updates_bn_stats():
    config = HTSATConfig(num_classes=5, **TINY)
    model = HTSAT(config, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jnp.asarray(inputs()["waveform_32k"][:, :96000])
    target = jnp.eye(5)[jnp.array([1, 3])]

    @jax.jit
    def loss_fn(params, rest, key):
        m = nnx.merge(graphdef, params, rest)
        lam = jnp.array([0.3, 0.8])
        out = m(x, train=True, key=key, mixup_lambda=lam)
        p = jnp.clip(out["clipwise_output"], 1e-7, 1 - 1e-7)
        loss = -jnp.mean(target * jnp.log(p) + (1 - target) * jnp.log(1 - p))
        return loss, nnx.state(m, nnx.BatchStat)

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, jax.random.key(1))
    assert np.isfinite(loss)
    norms = {"/".join(map(str, k)): float(jnp.linalg.norm(v[...])) for k, v in nnx.to_flat_state(grads)}
    assert all(np.isfinite(n) for n in norms.values())
    assert all(n > 0 for n in norms.values()), [k for k, n in norms.items() if n == 0]
    # Batch statistics moved away from the (0, 1) init with momentum 0.9.
    mean = np.asarray(nnx.to_pure_dict(stats)["bn0"]["mean"])
    assert np.all(np.abs(mean) > 1.0)
    # Different keys give different training outputs (SpecAugment / drop-path are live).
    l2 = loss_fn(params, rest, jax.random.key(2))[0]
    assert float(l2) != float(loss)
    with pytest.raises(ValueError, match="explicit PRNG key"):
        nnx.merge(graphdef, params, rest)(x, train=True)


def test_spec_augment_stripes_are_within_official_bounds():
    x = jnp.ones((64, 1001, 64))
    y = np.asarray(spec_augment(x, jax.random.key(0), SpecAugmentConfig()))
    zero_frames = (y == 0).all(axis=2).sum(axis=1)  # frames zeroed over all mels (time stripes)
    zero_bins = (y == 0).all(axis=1).sum(axis=1)  # mel bins zeroed over all frames (freq stripes)
    assert zero_frames.max() <= 2 * 63 and zero_bins.max() <= 2 * 7
    assert zero_frames.mean() > 20 and zero_bins.mean() > 2  # stripes are drawn (widths ~U[0, 64), U[0, 8))
    assert len({tuple(r) for r in (y[:, :, 0] == 0)}) > 50  # per-sample draws


def test_mixup_pairs_with_the_flipped_batch():
    x = jnp.arange(3 * 2 * 2, dtype=jnp.float32).reshape(3, 2, 2)
    lam = jnp.array([0.25, 0.5, 1.0])
    y = mixup(x, lam)
    np.testing.assert_allclose(y[0], 0.25 * x[0] + 0.75 * x[2])
    np.testing.assert_allclose(y[1], x[1])
    np.testing.assert_allclose(y[2], x[2])


def test_bfloat16_compute_runs_and_stays_close(tiny_model):
    config, weights = tiny_checkpoint()
    fast = checkpoint.build_model(config, weights, dtype=jnp.bfloat16)
    x = jnp.asarray(inputs()["waveform_32k"])
    out = run(fast, x)
    assert out["clipwise_output"].dtype == jnp.float32
    np.testing.assert_allclose(out["clipwise_output"], run(tiny_model, x)["clipwise_output"], atol=0.05)


@pytest.mark.parametrize("kwargs,message", [
    (dict(depths=(2, 2), num_heads=(2, 4, 8)), "differ in length"),
    (dict(loss_type="softmax"), "loss_type"),
    (dict(embed_dim=18, num_heads=(4, 8, 16, 32)), "not divisible"),
    (dict(spec_size=250), "multiple of n_mels"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HTSATConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown HTSATConfig fields"):
        HTSATConfig.from_dict({"num_class": 3})


def test_model_rejects_wrong_rank(tiny_model):
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        tiny_model(jnp.zeros((320000,)))
