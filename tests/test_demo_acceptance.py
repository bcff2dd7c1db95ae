"""Acceptance of the inference path with a model trained by the demo config (issue 5).

One short demo run (``configs/demo.py`` for 2 epochs = 60 steps on the generated data, ~2-3 min on
2 cores) trains from weak labels and exports ``WORKDIR/model`` with its tuned event threshold and
clip gate. The predict CLI then reads held-out scenes as audio files:

* the 64 test scenes as 10 s files: the CLI's events score the same event-based F1 as the
  trainer's own test evaluation of the same scenes (both paths agree), and clearly above chance;
* the same scenes joined into 40 s recordings: windowed (10 s windows, 5 s hop), stitched, and
  scored against the true onsets/offsets shifted to their absolute times.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from htsat_jax.inference import events as events_lib
from htsat_jax.evaluation import metrics
from htsat_jax.inference import predict
from htsat_jax.data import synthetic

from conftest import one_device_env

REPO = pathlib.Path(__file__).resolve().parents[1]
TEST_STREAM = 2  # the synthetic_events builder's test split (seed 0)
NUM_TEST = 64    # builder config "demo": 480 / 64 / 64 scenes
SCENES_PER_LONG_FILE = 4

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> pathlib.Path:
    """Trains the demo config briefly with the real entry point (one process, one CPU device)."""
    workdir = tmp_path_factory.mktemp("demo_run")
    env = one_device_env()  # one CPU device, as a user runs it
    cmd = [sys.executable, "-m", "htsat_jax.main", "--config", str(REPO / "configs" / "demo.py"),
           "--workdir", str(workdir), "--config.num_epochs=2", "--config.plot_events=0"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (workdir / "model" / "config.json").exists()
    return workdir


@pytest.fixture(scope="module")
def test_scenes():
    waves, truth = synthetic.make_scenes(NUM_TEST, 0, stream=TEST_STREAM)
    return waves, truth


def _truth(scene_events, names, offset_s=0.0):
    return [events_lib.Event(names[c], on + offset_s, off + offset_s, 1.0) for on, off, c in scene_events]


def _detections(record) -> list[events_lib.Event]:
    return [events_lib.Event(e["label"], e["onset_s"], e["offset_s"], e["score"]) for e in record["events"]]


def _write_pcm16(path, waveform, rate):
    # The builder stores int16 PCM; writing PCM_16 gives the CLI the very samples the trainer saw.
    sf.write(path, waveform, rate, subtype="PCM_16")


def test_cli_events_on_held_out_scenes_match_the_true_onsets(demo_run, test_scenes, tmp_path):
    waves, truth = test_scenes
    clip_dir = tmp_path / "clips"
    clip_dir.mkdir()
    for i, w in enumerate(waves):
        _write_pcm16(clip_dir / f"scene_{i:03d}.wav", w, synthetic.DEFAULT_SAMPLE_RATE)
    out = tmp_path / "clips.json"
    names = list(synthetic.CLASS_NAMES)
    reference = tmp_path / "events.tsv"  # DESED-style strong labels of the scenes
    with open(reference, "w") as f:
        f.write("filename\tonset\toffset\tevent_label\n")
        for i in range(NUM_TEST):
            for on, off, c in truth[i]:
                f.write(f"scene_{i:03d}.wav\t{on}\t{off}\t{names[c]}\n")
    code = predict.main(["--checkpoint", str(demo_run / "model"), str(clip_dir), "--output", str(out),
                         "--median_filter_s", "0", "--quiet", "--reference", str(reference)])
    assert code == 0
    report = json.loads(out.read_text())
    records = {pathlib.Path(r["file"]).stem: r for r in report["files"]}
    assert len(records) == NUM_TEST
    gt = {f"scene_{i:03d}": _truth(truth[i], names) for i in range(NUM_TEST)}
    det = {k: _detections(records[k]) for k in gt}
    f1 = metrics.event_f1(gt, det, {k: 10.0 for k in gt}, class_names=names)["macro_f1"]

    trained = json.loads((demo_run / "eval_results.json").read_text())
    print(f"\nCLI event F1 on {NUM_TEST} held-out 10 s scenes: {f1:.4f} "
          f"(trainer's test evaluation: {trained['test']['event_f1']:.4f}; test mAP "
          f"{trained['test']['mAP']:.4f}; chance ~0)")
    # Same weights, threshold, gate and scenes: the CLI path reproduces the trainer's number.
    assert f1 == pytest.approx(trained["test"]["event_f1"], abs=0.01)
    assert f1 > 0.15, "a briefly trained demo model localises clearly above chance (measured 0.28)"
    # --reference scores the same files itself: the same F1, and PSDS from the stitched frame maps.
    scored = report["reference"]
    assert scored["files_scored"] == NUM_TEST and scored["event_f1"] == pytest.approx(f1, abs=1e-9)
    # PSDS is threshold-free and strict about false positives per hour: a 2-epoch model scores near 0.
    assert 0.0 <= scored["psds1"] <= 1.0 and 0.0 <= scored["psds2"] <= 1.0
    print(f"--reference: event F1 {scored['event_f1']:.4f}, PSDS1 {scored['psds1']:.4f}, PSDS2 {scored['psds2']:.4f}")


def test_cli_events_of_long_recordings_are_at_absolute_times(demo_run, test_scenes, tmp_path):
    waves, truth = test_scenes
    names = list(synthetic.CLASS_NAMES)
    long_dir = tmp_path / "long"
    long_dir.mkdir()
    gt, durations = {}, {}
    for j in range(NUM_TEST // SCENES_PER_LONG_FILE):
        idx = range(j * SCENES_PER_LONG_FILE, (j + 1) * SCENES_PER_LONG_FILE)
        _write_pcm16(long_dir / f"long_{j:02d}.wav", np.concatenate([waves[i] for i in idx]),
                     synthetic.DEFAULT_SAMPLE_RATE)
        gt[f"long_{j:02d}"] = [e for k, i in enumerate(idx) for e in _truth(truth[i], names, 10.0 * k)]
        durations[f"long_{j:02d}"] = 10.0 * SCENES_PER_LONG_FILE
    out = tmp_path / "long.json"
    csv_path = tmp_path / "long.csv"
    code = predict.main(["--checkpoint", str(demo_run / "model"), str(long_dir), "--output", str(out),
                         "--csv", str(csv_path), "--quiet"])
    assert code == 0
    records = {pathlib.Path(r["file"]).stem: r for r in json.loads(out.read_text())["files"]}
    for rec in records.values():
        assert rec["windows"]["count"] == 7  # 40 s, 10 s windows, 5 s hop
        assert max(e["offset_s"] for e in rec["events"]) <= 40.0 + 1e-6
    det = {k: _detections(records[k]) for k in gt}
    f1 = metrics.event_f1(gt, det, durations, class_names=names)["macro_f1"]
    # The same detections placed at the wrong absolute times (each scene's events shifted by one
    # scene) score near zero, so this F1 measures where the stitched events land in time.
    wrong = {k: [events_lib.Event(e.label, e.onset_s + 10.0, e.offset_s + 10.0, 1.0) for e in v]
             for k, v in gt.items()}
    f1_shifted = metrics.event_f1(wrong, det, {k: d + 10.0 for k, d in durations.items()},
                                  class_names=names)["macro_f1"]
    print(f"\nCLI event F1 on {len(gt)} windowed 40 s recordings: {f1:.4f} "
          f"(against truth shifted by 10 s: {f1_shifted:.4f})")
    assert f1 > 0.15
    assert f1 > 3 * f1_shifted
    assert csv_path.read_text().count("\n") == 1 + sum(len(v) for v in det.values())
