"""LEAN (wave encoder BiLSTM + YAMNet + cross-attention): shapes and the parameter count of the
default, every config switch, chunking of any input length, ``init_from`` a YAMNet (the real
``.tflite``) or LEAN source, learning synthetic 1 s clips through the trainer (integration), and
fine-tuning from the real YAMNet on real ESC-10 clips with held-out sources (acceptance).

Spec: ../shared/reference/LEAN_YAMNET_SPEC.md §1.5 (model), §1.6 (switches), §5.3 (checks), §5.7
(chunks). Figures of the trainer runs are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, traverse_util

from conftest import SHARED, one_device_env, require
from htsat_jax import checkpoint as ckpt_lib
from htsat_jax import models
from htsat_jax.models import lean
from htsat_jax.models import yamnet

TFLITE = SHARED / "weights" / "yamnet" / "yamnet.tflite"
ESC10 = SHARED / "data" / "esc10_subset"
TINY = lean.VARIANTS["tiny"]

# The default model's trainable parameters (spec §1.5 table), derived part by part:
YAMNET_BACKBONE = 3_195_456          # 14 layers of kernels + BatchNorm beta (YAMNet without its 521-way head)
BILSTM1 = 2 * 4 * (128 * (400 + 128) + 128)    # 541,696: 40 x 400 input, 128 units, 2 directions
BILSTM2 = 2 * 4 * (128 * (256 + 128) + 128)    # 394,240: 256 = 2 x 128 input
PROJECTION = 1024 * 256 + 256                   # 262,400
HEAD = 512 * 200 + 200                          # 102,600: concat(E_yam, C_t) -> 200 FSD50K classes
DEFAULT_TOTAL = YAMNET_BACKBONE + BILSTM1 + BILSTM2 + PROJECTION + HEAD   # dot attention: 0 parameters
BN_STATISTICS = 21_888


def n_params(model, kind=nnx.Param) -> int:
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, kind))))


def tiny_config(**fields) -> lean.Config:
    return lean.Config(**{"num_classes": 10, **TINY, **fields})


def waves(batch: int, samples: int, seed: int = 0) -> jax.Array:
    return 0.3 * jax.random.normal(jax.random.key(seed), (batch, samples), jnp.float32)


# The model under nnx.jit: called eagerly, every op of the BiLSTM scans and YAMNet dispatches on its
# own (measured on one switch case: gradient 31 s and forward 8 s eagerly, 6.3 s and 1.5 s jitted,
# compilation included). Same function, same numbers at the tests' tolerances; nnx.jit hands the
# BatchNorm statistics a training call updates back to the model, as the eager call does. One
# compilation per model config and input shape (the cache is keyed on both, so tests sharing a
# config and shape share it).
@functools.partial(nnx.jit, static_argnames=("train", "unroll_lstm"))
def forward(model, x, key=None, num_samples=None, *, train=False, unroll_lstm=False):
    return model(x, train=train, key=key, num_samples=num_samples, unroll_lstm=unroll_lstm)


@functools.partial(nnx.jit, static_argnames=("output", "squared"))
def train_grads(model, x, key=None, *, output, squared=False):
    """nnx.grad of ``mean(output)`` (``mean(output ** 2)`` when ``squared``) of a training forward."""
    def loss(m):
        out = m(x, train=True, key=key)[output]
        return jnp.mean(out ** 2 if squared else out)

    return nnx.grad(loss)(model)


@pytest.fixture(scope="module")
def tiny_model():
    """``models.build(tiny_config(), seed=0)``, built once for the tests that only run it in evaluation
    (a build takes seconds; tests that train take an ``nnx.clone``)."""
    return models.build(tiny_config(), seed=0)


@pytest.fixture(scope="module")
def frozen_tiny_model():
    """``models.build(tiny_config(freeze_yamnet=True), seed=0)``, built once (see ``tiny_model``)."""
    return models.build(tiny_config(freeze_yamnet=True), seed=0)


# ============================================================================ (a) the default model


def test_default_parameter_count_is_4_50_million():
    assert DEFAULT_TOTAL == 4_496_392
    config = lean.Config()
    model = models.abstract(config)
    assert n_params(model) == DEFAULT_TOTAL == lean.parameter_budget(config)["total"]
    assert n_params(model, nnx.BatchStat) == BN_STATISTICS
    assert abs(DEFAULT_TOTAL - 4.50e6) / 4.50e6 < 0.02
    # The YAMNet branch is YAMNet's backbone exactly (its 521-way classifier is not part of LEAN).
    assert n_params(model.yamnet) == YAMNET_BACKBONE == yamnet.param_count(models.abstract(yamnet.Config())) - 534_025
    # Spec §5.3: the multi-head attention variant and the YAMNet-only baseline.
    assert n_params(models.abstract(lean.Config(attention="mha"))) == 4_759_560
    assert n_params(models.abstract(lean.Config(branches="yamnet_only"))) == 3_509_256


def test_default_shapes_and_attention():
    model = models.build(lean.Config(), seed=0)
    capture = {}
    out = nnx.jit(lambda m, x: m(x, capture=capture) | {k: capture[k] for k in
                                                       ("wave", "yamnet_map", "e_yam", "attention_weights")})(
        model, waves(2, 16000))
    assert out["clipwise_output"].shape == (2, 200)
    assert out["framewise_output"].shape == (2, 2, 200)       # two 0.5 s steps of one chunk
    assert out["latent_output"].shape == (2, 512)
    assert out["wave"].shape == (2, 40, 256)                   # H_w
    assert out["yamnet_map"].shape == (2, 1, 3, 2, 1024)       # F, one patch per chunk
    assert out["e_yam"].shape == (2, 1, 256)                   # E_yam
    assert out["attention_weights"].shape == (2, 1, 40)
    np.testing.assert_allclose(np.asarray(out["attention_weights"]).sum(-1), 1.0, rtol=1e-5)
    p = np.asarray(out["clipwise_output"])
    assert np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(np.asarray(out["framewise_output"])[:, 0], p, rtol=1e-6)


@pytest.mark.integration  # builds and differentiates whole models: minutes in all
def test_lstm_init_follows_keras_and_unrolled_loop_matches_the_scan(tiny_model):
    model = tiny_model
    cell = model.wave.lstm1.forward_rnn.cell
    units = TINY["lstm_units"]
    bias = np.asarray(cell.dense_h.bias[...])
    assert np.all(bias[units:2 * units] == 1.0) and np.all(np.delete(bias, np.s_[units:2 * units]) == 0.0)
    x = waves(2, 16000, seed=3)
    a, b = forward(model, x), forward(model, x, unroll_lstm=True)
    np.testing.assert_allclose(np.asarray(b["clipwise_output"]), np.asarray(a["clipwise_output"]), atol=1e-6)


# ============================================================================ (b) every switch

# Every value of every switch appears at least once; switches that do not interact share a model
# (each case builds, differentiates and runs a whole model eagerly: seconds apiece).
SWITCHES = [
    {},
    {"branches": "wave_only", "train_crop": "all"},
    {"branches": "yamnet_only", "logmel_norm": "none", "yamnet_freeze_bn": True},
    {"fusion": "concat_last", "logmel_norm": "band_mean", "chunk_policy": "fsd50k_baseline"},
    {"attention": "mha", "attention_scale": "learned", "yamnet_patching": "official_padded"},
    {"attention_scale": "none", "yamnet_tokens": "grid", "freeze_yamnet": True},
    {"attention_query": "wave", "yamnet_tokens": "time", "loss_type": "clip_ce"},
    {"yamnet_tokens": "time", "train_crop": "all", "chunk_policy": "fsd50k_baseline"},
]


@pytest.mark.integration  # builds and differentiates whole models: minutes in all
@pytest.mark.parametrize("fields", SWITCHES, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "tiny")
def test_each_switch_builds_trains_and_runs(fields):
    config = tiny_config(**fields)
    assert lean.Config.from_dict(config.to_dict()) == config
    model = models.build(config, seed=1)
    assert n_params(model) == lean.parameter_budget(config)["total"]
    x = waves(2, 24000, seed=2)   # 1.5 s: two chunks in evaluation, a random crop in training
    grads = train_grads(model, x, jax.random.key(0), output="chunk_logits", squared=True)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    out = forward(model, x)
    assert out["clipwise_output"].shape == (2, 10)
    assert out["framewise_output"].shape == (2, 3, 10)
    assert out["latent_output"].shape == (2, config.fused_dim)
    assert np.all(np.isfinite(np.asarray(out["clipwise_output"])))
    if config.loss_type == "clip_bce":
        chunk_p = jax.nn.sigmoid(out["chunk_logits"])
        np.testing.assert_allclose(np.asarray(out["clipwise_output"]), np.asarray(chunk_p.mean(1)), rtol=1e-5)


def test_invalid_switches_are_refused():
    with pytest.raises(ValueError, match="fusion must be one of"):
        lean.Config(fusion="sum")
    with pytest.raises(ValueError, match="projection_dim == 2 \\* lstm_units"):
        lean.Config(projection_dim=128)
    with pytest.raises(ValueError, match="only one"):
        lean.Config(attention_query="wave")
    with pytest.raises(ValueError, match="16000 Hz"):
        lean.Config(sample_rate=32000)
    lean.Config(fusion="concat_last", projection_dim=128)   # no attention: any projection width


def test_freeze_yamnet_gives_zero_gradients_and_keeps_batchnorm_statistics(tiny_model, frozen_tiny_model):
    model = nnx.clone(frozen_tiny_model)       # models.build(tiny_config(freeze_yamnet=True), seed=0)
    stats_before = jax.tree.map(np.asarray, nnx.state(model.yamnet, nnx.BatchStat))
    x = waves(4, 16000, seed=5)
    grads = train_grads(model, x, output="clipwise_output")
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(grads))
    yam = [v for k, v in flat.items() if k[0] == "yamnet"]
    rest = [v for k, v in flat.items() if k[0] != "yamnet"]
    assert yam and all(np.all(np.asarray(v) == 0) for v in yam)
    assert all(np.any(np.asarray(v) != 0) for v in rest)
    jax.tree.map(np.testing.assert_array_equal, stats_before,
                 jax.tree.map(np.asarray, nnx.state(model.yamnet, nnx.BatchStat)))
    # Not frozen: YAMNet learns and BatchNorm updates its moving statistics in training.
    model = nnx.clone(tiny_model)              # models.build(tiny_config(), seed=0)
    before = np.asarray(model.yamnet.layer3.pointwise_bn.mean[...])
    grads = train_grads(model, x, output="clipwise_output")
    assert np.any(np.asarray(grads.yamnet.layer3.pointwise_conv.kernel[...]) != 0)
    assert np.any(np.asarray(model.yamnet.layer3.pointwise_bn.mean[...]) != before)


def test_wave_branch_sees_time_order_and_silence_is_finite(tiny_model):
    model = models.build(tiny_config(branches="wave_only"), seed=0)
    x = waves(1, 16000, seed=7)
    a = np.asarray(forward(model, x)["clipwise_output"])
    b = np.asarray(forward(model, x[:, ::-1])["clipwise_output"])
    assert np.abs(a - b).max() > 1e-4
    full = tiny_model                          # models.build(tiny_config(), seed=0)
    assert np.all(np.isfinite(np.asarray(forward(full, jnp.zeros((2, 16000)))["clipwise_output"])))


# ============================================================================ chunks of any length


def test_chunk_plans_follow_the_spec_examples():
    starts = lambda n, p="lean": [s for s, _ in lean.chunk_plan(n, p)]  # noqa: E731
    assert starts(16000) == [0]
    assert starts(20000) == [0, 4000]
    assert starts(24000) == [0, 8000]
    assert len(lean.chunk_plan(30 * 16000)) == 59
    assert lean.chunk_plan(4800) == [(0, 4800)]                       # 0.3 s: tiled to one chunk
    assert lean.chunk_plan(20000, "fsd50k_baseline") == [(0, 16000), (8000, 12000), (16000, 4000)]
    assert lean.chunk_plan(16000, "fsd50k_baseline") == [(0, 16000), (8000, 8000)]


def test_short_audio_is_tiled_to_one_chunk(tiny_model):
    model = tiny_model
    x = waves(1, 4800, seed=1)
    tiled = jnp.tile(x, (1, 4))[:, :16000]
    np.testing.assert_allclose(np.asarray(forward(model, x)["clipwise_output"]),
                               np.asarray(forward(model, tiled)["clipwise_output"]), atol=1e-6)


def test_long_audio_is_the_mean_over_its_chunks(tiny_model):
    model = tiny_model
    x = waves(2, 24000, seed=2)
    out = forward(model, x)
    one = [forward(model, x[:, s:s + 16000])["clipwise_output"] for s in (0, 8000)]
    np.testing.assert_allclose(np.asarray(out["clipwise_output"]), np.asarray((one[0] + one[1]) / 2), atol=1e-6)
    # 0.5 s grid: the centres of steps 0 and 2 (4000, 20000) lie in one chunk each, step 1's (12000) in both.
    frames = np.asarray(out["framewise_output"])
    np.testing.assert_allclose(frames[:, 0], np.asarray(one[0]), atol=1e-6)
    np.testing.assert_allclose(frames[:, 2], np.asarray(one[1]), atol=1e-6)
    np.testing.assert_allclose(frames[:, 1], np.asarray((one[0] + one[1]) / 2), atol=1e-6)


@pytest.mark.integration  # builds and differentiates whole models: minutes in all
@pytest.mark.parametrize("policy", lean.CHUNK_POLICIES)
def test_padded_rows_with_num_samples_equal_the_unpadded_audio(policy, tiny_model):
    config = tiny_config(chunk_policy=policy)
    model = tiny_model if config == tiny_model.config else models.build(config, seed=0)
    lengths = [4800, 16000, 20000, 24000, 31000]
    x = np.asarray(waves(len(lengths), 32000, seed=4))
    padded = np.zeros_like(x)
    for i, n in enumerate(lengths):
        padded[i, :n] = x[i, :n]
    out = forward(model, jnp.asarray(padded), num_samples=jnp.asarray(lengths))
    for i, n in enumerate(lengths):
        alone = forward(model, jnp.asarray(x[i:i + 1, :n]))
        np.testing.assert_allclose(np.asarray(out["clipwise_output"][i]), np.asarray(alone["clipwise_output"][0]),
                                   atol=1e-6, err_msg=f"{policy} {n}")
        frames = alone["framewise_output"].shape[1]
        np.testing.assert_allclose(np.asarray(out["framewise_output"][i, :frames]),
                                   np.asarray(alone["framewise_output"][0]), atol=1e-6, err_msg=f"{policy} {n}")
        assert int(out["chunk_valid"][i].sum()) == len(lean.chunk_plan(n, policy))


def test_training_on_long_input_takes_one_random_chunk_per_clip(frozen_tiny_model):
    # Frozen YAMNet (BatchNorm on its statistics): a training forward equals the eval forward of the crop.
    model = frozen_tiny_model
    x = waves(3, 48000, seed=6)
    key = jax.random.key(11)
    out = forward(model, x, key, train=True)
    assert out["chunk_logits"].shape == (3, 1, 10)
    u = np.asarray(jax.random.uniform(key, (3,)))
    starts = np.minimum(np.floor(u * (48000 - 16000 + 1)).astype(int), 32000)
    for i, s in enumerate(starts):
        want = forward(model, x[i:i + 1, s:s + 16000])["clipwise_output"]
        np.testing.assert_allclose(np.asarray(out["clipwise_output"][i]), np.asarray(want[0]), atol=1e-6)
    other = forward(model, x, jax.random.key(12), train=True)
    assert np.abs(np.asarray(other["clipwise_output"]) - np.asarray(out["clipwise_output"])).max() > 0
    with pytest.raises(ValueError, match="pass key"):
        model(x, train=True)


def test_windows_run_each_window_as_its_own_audio(tiny_model):
    config = tiny_config()
    model = tiny_model
    win = models.get("lean").windows(config, 2.0, 1.0)
    assert win == lean.windows(config, 2.0, 1.0) and hash(win) == hash(lean.windows(config, 2.0, 1.0))
    assert (win.window, win.hop, win.frame_hop) == (32000, 16000, 8000)
    segment = np.asarray(waves(1, 20000, seed=8))[0]
    row = win.prepare(segment)
    out = win.forward(model, {k: jnp.asarray(v)[None] for k, v in row.items()})
    alone = forward(model, jnp.asarray(segment)[None])
    np.testing.assert_allclose(np.asarray(out["clipwise_output"]), np.asarray(alone["clipwise_output"]), atol=1e-6)
    with pytest.raises(ValueError, match="shorter than LEAN's 1 s chunk"):
        lean.windows(config, 0.5, 0.5)


# ============================================================================ (c) init_from


@pytest.fixture(scope="module")
def yamnet_tflite():
    config, weights, names = models.get("yamnet").load(str(require(TFLITE)))
    return config, weights


def test_init_from_the_real_tflite_fills_the_yamnet_branch_exactly(yamnet_tflite):
    _, yam_weights = yamnet_tflite
    config = lean.Config(num_classes=50)
    fresh = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(models.build(config, seed=3))))
    weights, summary = models.get("lean").init_from(str(TFLITE), config, fresh, seed=3)
    want = traverse_util.flatten_dict(yam_weights["backbone"])
    got = traverse_util.flatten_dict(weights["yamnet"])
    assert set(got) == set(want) and len(want) == 108      # 4 + 13 x 8 tensors
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg="/".join(key))
    # E.g. the last pointwise kernel, dequantized from int8: not the fresh random values.
    assert np.abs(got[("layer14", "pointwise_conv", "kernel")]
                  - fresh["yamnet"]["layer14"]["pointwise_conv"]["kernel"]).max() > 1e-3
    for part in ("wave", "projection", "head"):
        jax.tree.map(np.testing.assert_array_equal, weights[part], fresh[part])
    assert f"{TFLITE}: 108 tensors loaded" in summary
    assert "wave/lstm1" in summary and "BatchNorm is folded" in summary
    # The weights build the model (the trainer's create_train_state path).
    model = ckpt_lib.build_model(config, weights)
    assert forward(model, jnp.zeros((1, 16000)))["clipwise_output"].shape == (1, 50)


def test_init_from_model_directories(tmp_path):
    # A tiny YAMNet model directory fills a tiny LEAN's YAMNet branch.
    yam_cfg = yamnet.Config(num_classes=7, width_divisor=8)
    yam_weights = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(models.build(yam_cfg, seed=1))))
    ckpt_lib.save_weights(str(tmp_path / "yam"), yam_cfg, yam_weights)
    config = tiny_config()
    fresh = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(models.build(config, seed=2))))
    weights, report = lean.init_report(str(tmp_path / "yam"), config, fresh)
    jax.tree.map(np.testing.assert_array_equal, weights["yamnet"], yam_weights["backbone"])
    jax.tree.map(np.testing.assert_array_equal, weights["head"], fresh["head"])
    assert len(report.loaded) == 108 and all(n.startswith("yamnet/") for n in report.loaded)
    assert "head/kernel" in report.reinitialised
    # Width and branch mismatches are named.
    with pytest.raises(ValueError, match="width_divisor"):
        lean.init_from(str(tmp_path / "yam"), lean.Config(), {}, seed=0)
    with pytest.raises(ValueError, match="no YAMNet branch"):
        lean.init_from(str(tmp_path / "yam"), tiny_config(branches="wave_only"), {}, seed=0)
    # A LEAN model directory: every tensor; the head fresh for another class count.
    ckpt_lib.save_weights(str(tmp_path / "lean"), config, weights)
    other = dataclasses.replace(config, num_classes=4)
    fresh4 = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(models.build(other, seed=5))))
    again, summary = lean.init_from(str(tmp_path / "lean"), other, fresh4, seed=5)
    jax.tree.map(np.testing.assert_array_equal, again["wave"], weights["wave"])
    jax.tree.map(np.testing.assert_array_equal, again["head"], fresh4["head"])
    assert "head/kernel" in summary
    with pytest.raises(ValueError, match="lstm_units"):
        lean.init_from(str(tmp_path / "lean"), tiny_config(lstm_units=8, projection_dim=16), {}, seed=0)
    with pytest.raises(FileNotFoundError):
        lean.init_from(str(tmp_path / "missing"), config, fresh, seed=0)


def test_registered_and_configs_build():
    from configs import common
    from htsat_jax.training import train

    assert "lean" in models.names() and models.get("lean") is lean
    for path, name, classes in (("lean/fsd50k.py", "lean", 200), ("lean/esc50.py", "lean", 50),
                                ("yamnet/esc50.py", "yamnet", 50)):
        for variant in ("base", "tiny"):
            c = common.load(path, f"variant={variant}")
            cfg = train.model_config(c)
            assert models.name_of(cfg) == name and cfg.num_classes == classes, path
    c = common.load("lean/fsd50k.py")
    assert (c.batch_size, c.optim.base_lr, c.num_epochs, c.model.loss_type, c.clip_seconds) == (64, 1e-4, 40,
                                                                                               "clip_bce", 1.0)
    assert (c.best_metric, c.random_crop, c.eval_chunk_seconds, c.eval_chunk_hop_seconds) == ("pr_auc", True, 1.0, 0.5)


def test_tagger_windows_of_one_chunk_reproduce_the_clip_protocol(tiny_model):
    from htsat_jax import AudioTagger

    tagger = AudioTagger(nnx.clone(tiny_model))   # models.build(tiny_config(), seed=0)
    clip = np.asarray(waves(1, 56000, seed=9))[0]                 # 3.5 s: chunks at 0, 0.5, ..., 2.5 s
    direct = tagger(clip, 16000)
    assert direct["framewise_output"].shape == (1, 7, 10)
    analysis = tagger.analyse(clip, 16000, window_s=1.0, hop_s=0.5, clip_pool="mean")
    assert analysis.seconds_per_frame == 0.5 and analysis.framewise.shape == (7, 10)
    np.testing.assert_allclose(analysis.clip_scores, direct["clipwise_output"][0], atol=1e-6)
    np.testing.assert_allclose(analysis.framewise, direct["framewise_output"][0], atol=1e-6)


# ============================================================================ (d) the trainer, synthetic 1 s clips


@pytest.mark.integration
def test_tiny_lean_learns_synthetic_one_second_clips(tmp_path):
    """512 / 64 / 64 generated 1 s scenes at 16 kHz (1-4 events of 10 classes each); the tiny LEAN,
    from scratch, 64 steps of 32 through ``train_and_evaluate``: test mAP far above chance (the mean
    class prevalence, about 0.2)."""
    from configs import common
    from htsat_jax.data.synthetic_dataset import SyntheticEvents, SyntheticEventsConfig
    from htsat_jax.training import train

    data_dir = str(tmp_path / "data")
    SyntheticEvents(config=SyntheticEventsConfig(name="lean_1s", num_train=512, num_validation=64, num_test=64,
                                                 sample_rate=16000, duration_s=1.0, seed=1),
                    data_dir=data_dir).download_and_prepare()
    c = common.load("lean/fsd50k.py", "variant=tiny")   # the paper's recipe, tiny model, on other data
    c.update(dict(dataset="synthetic_events", builder_config="lean_1s", data_dir=data_dir, train_split="train",
                  eval_split="validation", test_split="test", eval_clip_seconds=1.0, batch_size=32,
                  eval_batch_size=64, num_epochs=4,
                  log_every_steps=16, eval_every_steps=1000, test_weights="last", keep_checkpoints=1,
                  progress_bar=False, tensorboard=False, async_checkpointing=False))
    c.model.num_classes = 10
    c.optim.base_lr = 1e-2     # a 64-step run: 100x the paper's rate
    start = time.time()
    results = train.train_and_evaluate(c, str(tmp_path / "run"))
    elapsed = time.time() - start
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    target = np.stack([np.asarray(r["labels"]) for r in _records(data_dir, "test")]).astype(float)
    chance = float(target.mean())
    print(f"tiny LEAN on synthetic 1 s clips: test mAP {results['test']['mAP']:.3f} (chance ~{chance:.2f}), "
          f"PR-AUC {results['test']['pr_auc']:.3f}, "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, {elapsed:.0f} s")
    assert results["step"] == 64 and losses[-1] < losses[0] - 0.1
    assert results["test"]["mAP"] > max(0.45, 2 * chance)


def _records(data_dir, split):
    from htsat_jax.data import pipeline

    source, _ = pipeline.open_source("synthetic_events", data_dir=data_dir, split=split, builder_config="lean_1s")
    return [source[i] for i in range(len(source))]


# ============================================================================ (e) real YAMNet, real ESC-10 clips


def _esc10_split_by_source(raw):
    """The 83 ESC-10 clips in the ESC-50 layout under ``raw`` (links to the shared files), the ``fold``
    column rewritten: 1 = held-out sources, 2 = training sources. Per class, its sources in order of
    their id go to fold 1 until it holds a quarter of the class's clips; clips of one source never
    straddle the split."""
    rows = list(csv.DictReader(open(require(ESC10 / "meta" / "esc50.csv"))))
    by_class: dict[str, dict[str, list]] = {}
    for r in rows:
        by_class.setdefault(r["category"], {}).setdefault(r["src_file"], []).append(r["filename"])
    held = set()
    for sources in by_class.values():
        total, taken = sum(map(len, sources.values())), 0
        for src in sorted(sources, key=int):
            if taken >= total / 4:
                break
            held.add(src)
            taken += len(sources[src])
    (raw / "audio").mkdir(parents=True)
    (raw / "meta").mkdir()
    with open(raw / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "fold": 1 if r["src_file"] in held else 2})
            (raw / "audio" / r["filename"]).symlink_to(ESC10 / "audio" / r["filename"])
    return rows, held


@pytest.mark.acceptance
def test_lean_from_the_real_yamnet_learns_esc10_held_out_sources(tmp_path):
    """LEAN (default size) with the YAMNet branch from ``yamnet.tflite`` (frozen: the switch), the
    wave encoder, projection and head trained on 57 ESC-10 clips; scored on the 26 clips of held-out
    source recordings (the paper's protocol: mean of 1 s chunk probabilities every 0.5 s) through
    the real entry point on one CPU device, then again from the exported model with the tagger."""
    import os
    import subprocess
    import sys

    import tfds_builders
    from conftest import REPO
    from htsat_jax import AudioTagger

    rows, held = _esc10_split_by_source(tmp_path / "raw" / "ESC-50-master")
    test_rows = [r for r in rows if r["src_file"] in held]
    train_sources = {r["src_file"] for r in rows} - held
    assert len(test_rows) == 26 and len(rows) - len(test_rows) == 57 and not held & train_sources
    assert {r["category"] for r in test_rows} == {r["category"] for r in rows}      # every class held out
    data_dir = tmp_path / "data"
    tfds_builders.build("esc50", manual_dir=tmp_path / "raw" / "ESC-50-master", data_dir=data_dir)
    workdir = tmp_path / "run"
    env = one_device_env()  # one CPU device, as a user runs it
    overrides = dict(data_dir=data_dir, init_from=require(TFLITE), cross_validation_folds="()", train_folds="(2,)",
                     eval_folds="(1,)", batch_size=16, eval_batch_size=32, num_epochs=40, eval_every_steps=100000,
                     test_weights="last", keep_checkpoints=1, progress_bar=False, tensorboard=False)
    overrides.update({"model.freeze_yamnet": True, "optim.base_lr": 3e-3})
    cmd = [sys.executable, "-m", "htsat_jax.main", "--config", str(REPO / "configs" / "lean" / "esc50.py"),
           "--workdir", str(workdir)] + [f"--config.{k}={v}" for k, v in overrides.items()]
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.time() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "108 tensors loaded" in proc.stderr                     # the YAMNet branch came from the file
    results = json.loads((workdir / "eval_results.json").read_text())
    accuracy = results["test"]["accuracy"]
    # The exported model through the tagger on the original 44.1 kHz files (resampled once, to 16 kHz).
    import soundfile as sf

    tagger = AudioTagger.from_checkpoint(str(workdir / "model"))
    names = tagger.names
    hits = 0
    for r in test_rows:
        audio, rate = sf.read(ESC10 / "audio" / r["filename"], dtype="float32")
        hits += names[int(np.argmax(tagger(audio, rate)["clipwise_output"][0]))] == r["category"]
    print(f"LEAN + yamnet.tflite on ESC-10, held-out sources: accuracy {accuracy:.3f} "
          f"({round(accuracy * len(test_rows))}/{len(test_rows)}), mAP {results['test']['mAP']:.3f}; tagger on the "
          f"original files {hits}/{len(test_rows)}; {elapsed:.0f} s")
    assert results["test"]["num_examples"] == 26
    assert accuracy >= 0.8
    assert hits >= 0.8 * len(test_rows)


def test_frozen_yamnet_gets_no_update_even_from_adamw_weight_decay():
    # An override to the HTS-AT optimiser (AdamW, decay 0.05) must not shrink the frozen YAMNet: the
    # trainer masks the model's `frozen(config)` parameters out of the update altogether.
    import importlib.util

    from conftest import REPO
    from htsat_jax.training import optim, sharding, train

    config = tiny_config(freeze_yamnet=True)
    assert lean.frozen(config) == ("yamnet",) and lean.frozen(tiny_config()) == ()
    spec = importlib.util.spec_from_file_location("cfg_audioset", REPO / "configs" / "audioset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    o = module.get_config(None).optim
    assert o.name == "adamw" and o.weight_decay > 0
    mesh = sharding.make_mesh(1, 1, devices=jax.devices()[:1])
    for frozen, yamnet_moves in ((lean.frozen(config), False), ((), True)):
        tx, schedule = optim.make_optimizer(o, steps_per_epoch=1, num_epochs=4)
        tx = train.trainable_only(tx, "all", lean.HEAD, frozen)
        graphdef, state, _ = train.create_train_state(config, tx, mesh, seed=0)
        before = traverse_util.flatten_dict(nnx.to_pure_dict(jax.tree.map(np.asarray, state.params)))
        step = jax.jit(train.make_train_step(graphdef, tx, schedule, loss_type="clip_bce", mixup_alpha=None,
                                             data_rate=16000, model_rate=16000))
        batch = {"waveform": (np.asarray(waves(2, 16000, seed=3)) * 10000).astype(np.int16),
                 "target": np.eye(10, dtype=np.float32)[[1, 4]]}
        state, _ = step(state, batch, jax.random.key(0))
        after = traverse_util.flatten_dict(nnx.to_pure_dict(jax.tree.map(np.asarray, state.params)))
        moved = {k: not np.array_equal(before[k], after[k]) for k in before}
        yam = [m for k, m in moved.items() if k[0] == "yamnet"]
        # Without the mask the decay shrinks YAMNet's kernels though no gradient reaches them (its
        # zero-initialised BatchNorm betas stay 0 either way).
        assert yam and any(yam) == yamnet_moves, frozen
        assert all(m for k, m in moved.items() if k[0] != "yamnet")
    with pytest.raises(ValueError, match="'all' or 'head'"):
        train.trainable_only(tx, "backbone", lean.HEAD)
