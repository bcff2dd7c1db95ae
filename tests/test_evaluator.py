"""The evaluation module with a fake model of fixed outputs: the metrics it reports are exactly what
the outputs and the labels give, through the trainer's path (sharded batches, padding masks, class
groups as for DESED, clip gating, the tuned threshold, test-time shifts, PSDS)."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sklearn.metrics import average_precision_score

from htsat_jax import models
from htsat_jax.data import experiment
from htsat_jax.evaluation import evaluator, metrics, psds
from htsat_jax.inference import events as events_lib
from htsat_jax.training import sharding

from htsat_jax.data.synthetic import CLASS_NAMES

STEPS = 40  # frame steps per 10 s clip
CLASSES = 20  # model classes; the dataset's 10 classes are groups of them
# Event class k = the max over model classes k and 19 - k (the DESED "any member above threshold"
# rule, as for an AudioSet model scored on DESED's 10 classes).
GROUPS = tuple((k, CLASSES - 1 - k) for k in range(10))
GROUP_NAMES = tuple(CLASS_NAMES)


@dataclasses.dataclass(frozen=True)
class FakeConfig:
    num_classes: int = CLASSES
    sample_rate: int = 32000
    loss_type: str = "clip_bce"
    model_name = "fixed_outputs"


def fake_outputs(waveform: np.ndarray, classes: int = CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """The fake model's outputs from int16-scaled audio (B, S), in numpy: frame c of class k is the
    mean |x| of the frame's samples, scaled per class, squashed to (0, 1)."""
    b, s = waveform.shape
    seg = s // STEPS
    energy = np.abs(waveform[:, :seg * STEPS]).reshape(b, STEPS, seg).mean(axis=2)  # (B, STEPS)
    scale = np.linspace(5.0, 50.0, CLASSES)[:classes]
    frames = np.tanh(energy[:, :, None] * scale[None, None, :])
    return frames.mean(axis=1), frames


class FakeModel(nnx.Module):
    def __init__(self, config, *, rngs=None, dtype=None, param_dtype=jnp.float32):
        self.config = config
        self.w = nnx.Param(jnp.ones((1,), param_dtype))  # something to shard; multiplies by 1

    def __call__(self, waveform, *, train=False, key=None, mixup_lambda=None):
        b, s = waveform.shape
        seg = s // STEPS
        energy = jnp.abs(waveform[:, :seg * STEPS]).reshape(b, STEPS, seg).mean(axis=2)
        scale = jnp.linspace(5.0, 50.0, CLASSES)[:self.config.num_classes]
        frames = jnp.tanh(energy[:, :, None] * scale[None, None, :]) * self.w[0]
        return {"clipwise_output": frames.mean(axis=1), "framewise_output": frames,
                "latent_output": energy}


FAKE = types.SimpleNamespace(
    NAME="fixed_outputs", Config=FakeConfig, VARIANTS={"base": {}, "tiny": {}}, Model=FakeModel,
    frame_seconds=lambda config, n: n / config.sample_rate / STEPS, infer=lambda m, x: m(x),
    input_limits=lambda c: (STEPS, None), windows=lambda *a: None, can_load=lambda p: False,
    load=None, init_from=None, export_forward=lambda m, n: None)


@pytest.fixture(scope="module")
def setup(synthetic_tiny_dir):
    from test_train import tiny_synthetic_config

    models.register(FAKE.NAME, FAKE)
    config = tiny_synthetic_config(synthetic_tiny_dir, event_psds_scenarios=(1, 2))
    config.event_class_names = GROUP_NAMES
    config.event_class_groups = GROUPS
    config.event_clip_gate = 0.3
    config.event_threshold_grid = (0.2, 0.5, 0.8)
    config.test_time_shifts = (0, 3200)
    model_cfg = FakeConfig()
    model = FakeModel(model_cfg)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    mesh = sharding.make_mesh(-1, 1)
    _, spec = experiment.open_split(config, config.eval_split)
    shard = jax.tree.map(lambda _: sharding.replicated(mesh), (params, rest))
    ev = evaluator.Evaluator(config, model_cfg, graphdef, mesh, shard, spec, None)
    return config, ev, params, rest, spec


def expected_predictions(config, split, shifts=(0,)):
    """Labels and the fake outputs (class groups applied) straight from the dataset, in numpy."""
    rows = {"target": [], "events": [], "clipwise": [], "frames": []}
    for batch in experiment.make_eval_data(config, split, max_events=config.eval_max_events):
        keep = batch["mask"].astype(bool)
        wave = batch["waveform"].astype(np.float32) / 32768.0
        clip = np.mean([fake_outputs(np.roll(wave, -s, axis=1))[0] for s in shifts], axis=0)
        frames = fake_outputs(wave)[1]
        clip = np.stack([clip[:, list(g)].max(-1) for g in GROUPS], -1)
        frames = np.stack([frames[..., list(g)].max(-1) for g in GROUPS], -1)
        for k, v in (("target", batch["target"]), ("events", batch["events"]), ("clipwise", clip),
                     ("frames", frames)):
            rows[k].append(np.asarray(v)[keep])
    return {k: np.concatenate(v) for k, v in rows.items()}


def event_f1_of(preds, threshold, gate, step, clip_seconds):
    truth, found = {}, {}
    for i, (fmap, rows) in enumerate(zip(preds["frames"], preds["events"])):
        gated = fmap * (preds["clipwise"][i] > gate)[None, :]
        found[i] = events_lib.framewise_to_events(gated, step, GROUP_NAMES, threshold=threshold,
                                                  max_seconds=clip_seconds)
        truth[i] = [events_lib.Event(GROUP_NAMES[int(lab)], float(a), float(b), 1.0) for a, b, lab in rows if lab >= 0]
    names = {i: f"c{i}" for i in truth}
    return metrics.event_f1({names[i]: v for i, v in truth.items()}, {names[i]: v for i, v in found.items()},
                            {names[i]: clip_seconds for i in truth}, class_names=GROUP_NAMES)["macro_f1"]


def test_collected_predictions_are_the_fixed_outputs_with_class_groups(setup):
    config, ev, params, rest, _ = setup
    got = ev.predictions(params, rest, config.eval_split, progress=False)
    want = expected_predictions(config, config.eval_split)
    assert got["clipwise"].shape == (8, len(GROUPS)) and got["frames"].shape == (8, STEPS, len(GROUPS))
    for key in ("target", "events"):
        np.testing.assert_array_equal(got[key], want[key])
    np.testing.assert_allclose(got["clipwise"], want["clipwise"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["frames"], want["frames"], rtol=1e-5, atol=1e-6)


def expected_map(preds):
    aps = [average_precision_score(preds["target"][:, c], preds["clipwise"][:, c])
           for c in range(preds["target"].shape[1]) if preds["target"][:, c].any()]
    return float(np.mean(aps))


def test_metrics_are_exactly_those_of_the_outputs(setup):
    config, ev, params, rest, spec = setup
    result = ev.evaluate(params, rest)
    want = expected_predictions(config, config.eval_split)
    assert result["num_examples"] == 8
    assert result["mAP"] == pytest.approx(expected_map(want), abs=1e-6)
    step = ev.settings.seconds_per_step
    assert step == pytest.approx(spec.clip_seconds / STEPS)
    assert result["event_f1"] == pytest.approx(event_f1_of(want, 0.5, 0.3, step, spec.clip_seconds), abs=1e-12)
    for scenario in (1, 2):
        gated = want["frames"] * (want["clipwise"] > 0.3)[:, None, :]
        truth = [[events_lib.Event(GROUP_NAMES[int(lab)], float(a), float(b), 1.0) for a, b, lab in rows if lab >= 0]
                 for rows in want["events"]]
        try:
            expected = psds.psds(gated, truth, step, GROUP_NAMES, scenario=scenario, durations=spec.clip_seconds)["psds"]
        except ValueError:  # a class without any event in the 8 clips: reported as NaN
            assert np.isnan(result[f"psds{scenario}"])
        else:
            assert result[f"psds{scenario}"] == pytest.approx(expected, abs=1e-9)


def test_final_test_tunes_the_threshold_and_averages_shifts(setup, tmp_path):
    config, ev, params, rest, spec = setup
    out = ev.test(params, rest, workdir=str(tmp_path))
    valid = expected_predictions(config, config.eval_split)
    step = ev.settings.seconds_per_step
    f1s = {thr: event_f1_of(valid, thr, 0.3, step, spec.clip_seconds) for thr in config.event_threshold_grid}
    best = max(f1s, key=lambda t: (f1s[t], -t))
    assert out["event_threshold"] == best and out[f"{config.eval_split}_event_f1_at_threshold"] == pytest.approx(f1s[best])
    test = expected_predictions(config, config.test_split, shifts=config.test_time_shifts)
    assert out["test"]["event_f1"] == pytest.approx(event_f1_of(test, best, 0.3, step, spec.clip_seconds), abs=1e-12)
    assert out["test"]["mAP"] == pytest.approx(expected_map(test), abs=1e-6)  # clip scores over both shifts
    assert ev.export_extra()["event_thresholds"] == [best] * len(GROUPS)


def test_chunks_cover_the_clip_and_tile_short_clips():
    x = jnp.arange(3 * 10, dtype=jnp.float32).reshape(3, 10)
    chunks, valid = evaluator.chunk_waveforms(x, jnp.array([10, 3, 9]), size=4, hop=2)
    assert chunks.shape == (3, 5, 4)    # 4 grid starts (0, 2, 4, 6) + the end-aligned candidate
    np.testing.assert_array_equal(chunks[0, :4], [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]])
    np.testing.assert_array_equal(valid[0], [True, True, True, True, False])  # the grid reaches the end
    np.testing.assert_array_equal(chunks[1, 0], [10, 11, 12, 10])  # 3 real samples, tiled to 4
    np.testing.assert_array_equal(valid[1], [True, False, False, False, False])
    # 9 samples: the grid's last full chunk is [4, 8); one more ends at the clip's end, [5, 9).
    np.testing.assert_array_equal(valid[2], [True, True, True, False, True])
    np.testing.assert_array_equal(chunks[2, 4], [25, 26, 27, 28])
    # The same chunks as LEAN's own plan (spec §5.7): 16000 -> [0]; 20000 -> [0, 4000]; 24000 -> [0, 8000].
    from htsat_jax.models import lean

    for n in (16000, 20000, 24000, 30000, 5000, 47999):
        wave = jnp.arange(48000, dtype=jnp.float32)[None]
        chunks, valid = evaluator.chunk_waveforms(wave, jnp.array([n]), size=16000, hop=8000)
        got = [int(c[0]) for c, v in zip(chunks[0], valid[0]) if v]
        assert got == [s for s, _ in lean.chunk_plan(n, "lean")], n


def test_chunked_evaluation_is_the_mean_over_the_chunks_of_each_clip(setup):
    config, _, params, rest, _ = setup
    chunked = type(config)(config.to_dict())
    chunked.unlock()
    chunked.event_eval, chunked.event_class_groups = False, None
    chunked.eval_chunk_seconds, chunked.eval_chunk_hop_seconds = 1.0, 0.5
    chunked.eval_metrics = ("lwlrap", "pr_auc")
    graphdef = nnx.split(FakeModel(FakeConfig(num_classes=10)), nnx.Param, ...)[0]
    mesh = sharding.make_mesh(-1, 1)
    _, spec = experiment.open_split(chunked, chunked.eval_split)
    shard = jax.tree.map(lambda _: sharding.replicated(mesh), (params, rest))
    ev = evaluator.Evaluator(chunked, FakeConfig(num_classes=10), graphdef, mesh, shard, spec, None)
    got = ev.predictions(params, rest, chunked.eval_split, progress=False)
    rate = spec.sample_rate
    want = []
    for batch in experiment.make_eval_data(chunked, chunked.eval_split):
        wave = batch["waveform"].astype(np.float32) / 32768.0
        for row, keep in zip(wave, batch["mask"]):
            if keep:  # 10 s clips: 19 chunks of 1 s every 0.5 s, the last one ends at the clip's end
                scores = [fake_outputs(row[None, s:s + rate], 10)[0][0] for s in range(0, 9 * rate + 1, rate // 2)]
                want.append(np.mean(scores, axis=0))
    np.testing.assert_allclose(got["clipwise"], np.stack(want), rtol=1e-5, atol=1e-6)
    result = evaluator.score(got, ev.settings)
    assert result["lwlrap"] == pytest.approx(metrics.lwlrap(got["target"], got["clipwise"]))
    assert 0.0 < result["pr_auc"] <= 1.0
