"""Inference on files: windowing / stitching math, the predict CLI end to end, the class list."""

import csv
import json
import os
import pathlib

import numpy as np
import pytest
import soundfile as sf

from conftest import SHARED
from htsat_jax import checkpoint
from htsat_jax.inference import tagger as api
from htsat_jax.inference import events
from htsat_jax.inference import predict
from htsat_jax.inference import windowing
from htsat_jax.models import htsat_windows
from htsat_jax.models.htsat import TINY, HTSATConfig

FSDD = SHARED / "data" / "fsdd_speechcommands_subset"
CONFIG = HTSATConfig(num_classes=10, **TINY)
SR, HOP = 32000, 320


def _tiled_step_times(start: int, frames: int, target: int = 1024) -> np.ndarray:
    """Seconds (in the recording) of each framewise step of a window: the forward mapping."""
    tiled = (target // frames) * frames
    pos = np.arange(target) * (tiled - 1) / (target - 1)  # stretched step -> tiled frame
    return (start + np.round(pos).astype(int) % frames * HOP) / SR


# ------------------------------------------------------------------------------ pure windowing math


def test_stretch_taps_equal_official_tile_then_stretch():
    import jax.numpy as jnp

    from htsat_jax.models.htsat import stretch_time

    rng = np.random.default_rng(0)
    for frames in (1001, 301, 700, 1024, 2):
        x = rng.normal(size=(1, frames, 3)).astype(np.float32)
        ref = np.asarray(stretch_time(jnp.tile(jnp.asarray(x), (1, 1024 // frames, 1)), 1024))[0]
        idx, w = htsat_windows.stretch_taps(frames, 1024)
        np.testing.assert_allclose((x[0][idx] * w[..., None]).sum(1), ref, atol=2e-6)


def test_buffer_gives_the_recordings_own_frames():
    import jax.numpy as jnp

    from htsat_jax.models import frontend

    spec = htsat_windows.WindowSpec.from_seconds(CONFIG)
    x = np.random.default_rng(1).normal(size=40000).astype(np.float32) * 0.1
    own = np.asarray(frontend.log_mel(jnp.asarray(x[None]), CONFIG.frontend))[0]
    buffered = np.asarray(frontend.log_mel(jnp.asarray(spec.buffer(x)[None]), CONFIG.frontend))[0]
    np.testing.assert_array_equal(buffered[:own.shape[0]], own)


def test_windows_cover_the_recording_with_one_shape():
    spec = htsat_windows.WindowSpec.from_seconds(CONFIG, 10.0, 5.0)
    assert spec.starts(320000) == [0] and spec.starts(100000) == [0]
    starts = spec.starts(25 * SR + 77)
    assert starts == [0, 160000, 320000, 480000 + 0]  # the last one ends at the end (whole hops)
    assert spec.starts(23 * SR) == [0, 160000, 320000, 416000]
    with pytest.raises(ValueError, match="longer than the model's input"):
        htsat_windows.WindowSpec.from_seconds(CONFIG, 11.0, 5.0)
    with pytest.raises(ValueError, match="hop_s=12"):
        htsat_windows.WindowSpec.from_seconds(CONFIG, 10.0, 12.0)


def stitch(window_maps, starts, num_samples, spec):
    """Window frame maps at sample offsets ``starts`` -> the recording's frame map, as AudioTagger
    stitches them (``Windows.local_frames`` + ``windowing.Stitcher``)."""
    st = windowing.Stitcher(spec.num_frames(num_samples), window_maps[0].shape[1])
    for fmap, start in zip(window_maps, starts):
        st.add(start // spec.frame_hop, spec.local_frames(np.asarray(fmap), min(spec.window, num_samples)))
    return st.result()


@pytest.mark.parametrize("seconds,on,off", [(47.3, 12.34, 14.9), (23.0, 9.2, 17.75), (3.0, 1.0, 2.0)])
def test_stitched_window_maps_give_events_at_absolute_times(seconds, on, off):
    """Window maps built with the model's step -> time mapping come back as events at the true times."""
    spec = htsat_windows.WindowSpec.from_seconds(CONFIG, 10.0, 5.0)
    n = int(seconds * SR)
    starts = spec.starts(n)
    frames = spec.num_frames(min(n, spec.window))
    maps = []
    for s in starts:
        t = _tiled_step_times(s, frames)
        fmap = np.zeros((1024, 2), np.float32)
        fmap[:, 0] = (t >= on) & (t < off)
        fmap[:, 1] = 0.2  # never above threshold
        maps.append(fmap)
    stitched = stitch(maps, starts, n, spec)
    assert stitched.shape == (1 + n // HOP, 2)
    found = events.detect_events(stitched, spec.seconds_per_frame, ["a", "b"], threshold=0.5, max_seconds=n / SR)
    assert [e.label for e in found] == ["a"]
    assert found[0].onset_s == pytest.approx(on, abs=0.011)
    assert found[0].offset_s == pytest.approx(off, abs=0.011)
    # The 10 s / 1024 mapping of the DESED scripts would put a late onset 0.2 % later; ours does not drift.
    assert abs(found[0].onset_s - on) < 0.002 * on + 0.011


def test_window_frames_average_the_copies_of_a_tiled_window():
    fmap = np.zeros((1024, 1))
    fmap[:512] = 1.0  # first half of the stretched input = first of two copies
    local = htsat_windows.window_frames(fmap, 512)
    np.testing.assert_allclose(local[:, 0], 0.5)


def test_clip_pooling():
    scores = np.array([[0.1, 0.9], [0.7, 0.3]])
    np.testing.assert_allclose(windowing.pool_clip(scores, "max"), [0.7, 0.9])
    np.testing.assert_allclose(windowing.pool_clip(scores, "mean"), [0.4, 0.6])
    with pytest.raises(ValueError, match="clip_pool"):
        windowing.pool_clip(scores, "median")


# ------------------------------------------------------------------------------ the class list


def test_audioset_class_list_is_shipped_and_used_for_527_class_models():
    names = api.audioset_class_names()
    assert len(names) == 527 and names[0] == "Speech" and names[137] == "Music"
    assert names[1] == "Male speech, man speaking"  # quoted CSV fields parsed
    tagger = api.AudioTagger(checkpoint.abstract_model(HTSATConfig(**TINY)))  # 527 classes, shapes only
    assert tagger.names == names
    assert api.AudioTagger(checkpoint.abstract_model(CONFIG)).names[3] == "class_3"


# ------------------------------------------------------------------------------ end to end with a fake model


def _energy_model(tagger: api.AudioTagger):
    """Replace the network by "class 0 = loud": frame k is on where the window's audio is loud.

    It reads the very buffers the real network gets, so the whole chain (reading, resampling,
    windows, buffers, tiling, step -> frame mapping, stitching, events) is checked against
    sample-exact ground truth without a trained model.
    """
    target = tagger.config.target_frames

    def run_windows(windows, rows):
        fw = np.zeros((len(rows), target, tagger.config.num_classes), np.float32)
        for j, row in enumerate(rows):
            buf, frames = row["buffer"], int(row["taps"].max()) + 1  # the stretch reads every frame
            tiled = (target // frames) * frames
            q = np.round(np.arange(target) * (tiled - 1) / (target - 1)).astype(int) % frames
            rms = np.array([np.sqrt(np.mean(buf[max(0, c * HOP - HOP // 2):c * HOP + HOP // 2] ** 2) + 1e-12)
                            for c in range(frames)])
            fw[j, :, 0] = (rms[q] > 0.05).astype(np.float32)
        return {"framewise_output": fw, "clipwise_output": fw.max(axis=1),
                "latent_output": np.zeros((len(rows), 4), np.float32),
                "frame_features": np.zeros((len(rows), 32, 4), np.float32)}

    tagger._run_windows = run_windows
    return tagger


def test_cli_events_of_a_long_file_are_at_the_true_times(tmp_path):
    tagger = _energy_model(api.AudioTagger(checkpoint.build_model(CONFIG), batch_size=3))
    rate = 22050
    x = np.zeros(int(37.5 * rate), np.float32)
    bursts = [(3.2, 4.0), (9.7, 10.6), (19.95, 25.4), (36.0, 37.5)]
    rng = np.random.default_rng(0)
    for on, off in bursts:
        x[int(on * rate):int(off * rate)] = 0.3 * rng.standard_normal(int(off * rate) - int(on * rate))
    path = tmp_path / "scene.flac"
    sf.write(path, np.stack([x, x], 1), rate)  # stereo, 22.05 kHz
    report = predict.run(tagger, [str(path)], threshold=0.5, median_filter_s=0, progress=False, verbose=False)
    rec = report["files"][0]
    assert "resampled 22050 Hz -> 32000 Hz" in rec["notes"]
    assert "mixed 2 channels to mono (mean)" in rec["notes"]
    assert rec["windows"]["count"] == 7
    found = [(e["onset_s"], e["offset_s"]) for e in rec["events"] if e["label"] == "class_0"]
    assert len(found) == len(bursts)
    for (on, off), (a, b) in zip(bursts, found):
        assert a == pytest.approx(on, abs=0.02) and b == pytest.approx(off, abs=0.02)


# ------------------------------------------------------------------------------ end to end with a real network


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("predict_model") / "model"
    checkpoint.save_model(str(path), checkpoint.build_model(CONFIG, seed=3),
                          class_names=[f"digit_{i}" for i in range(10)], extra={"event_thresholds": [0.6] * 10})
    return str(path)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict_audio")
    wavs = sorted(FSDD.glob("*/*.wav"))
    assert len(wavs) >= 30, f"FSDD subset missing under {FSDD}"
    short = d / "short"
    short.mkdir()
    for w in wavs[:3]:
        (short / f"{w.parent.name}_{w.name}").write_bytes(w.read_bytes())
    parts = [sf.read(w, dtype="float32")[0] for w in wavs[3:]]
    long = np.concatenate(parts)[:25 * 8000]
    assert len(long) == 25 * 8000
    sf.write(d / "long_8k.wav", long, 8000)
    t = np.arange(int(2.5 * 44100)) / 44100
    sf.write(d / "stereo_44k.wav", np.stack([0.3 * np.sin(2 * np.pi * 440 * t),
                                             0.3 * np.sin(2 * np.pi * 660 * t)], 1).astype(np.float32), 44100)
    (d / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 20)
    return d


@pytest.fixture(scope="module")
def cli_run(model_dir, audio_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict_out")
    code = predict.main(["--checkpoint", model_dir, str(audio_dir), "--output", str(out / "r.json"),
                         "--csv", str(out / "events.csv"), "--plot", str(out / "plots"), "--top_k", "3",
                         "--batch_size", "4", "--quiet"])
    return code, json.loads((out / "r.json").read_text()), out


def test_cli_tags_resampled_windowed_files_and_writes_outputs(cli_run):
    code, report, out = cli_run
    assert code == 0
    by_name = {pathlib.Path(r["file"]).name: r for r in report["files"]}
    assert len(by_name) == 5  # 3 short + long + stereo; corrupt skipped
    long = by_name["long_8k.wav"]
    assert long["duration_s"] == pytest.approx(25.0)
    assert "resampled 8000 Hz -> 32000 Hz" in long["notes"]
    assert long["windows"]["count"] == 4 and long["windows"]["starts_s"] == [0.0, 5.0, 10.0, 15.0]
    assert any("clip scores = max over windows" in n for n in long["notes"])
    short = [r for n, r in by_name.items() if n not in ("long_8k.wav", "stereo_44k.wav")]
    for rec in short:
        assert rec["source_sample_rate"] == 8000 and rec["windows"]["tiled"] > 1
        assert any("tiled" in n for n in rec["notes"])
    for rec in by_name.values():
        assert len(rec["tags"]) == 3 and all(t["label"].startswith("digit_") for t in rec["tags"])
        scores = [t["score"] for t in rec["tags"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        for e in rec["events"]:
            assert 0 <= e["onset_s"] < e["offset_s"] <= rec["duration_s"] + 1e-6 and e["score"] > 0.6
        assert os.path.getsize(rec["plot"]) > 10_000
    assert report["settings"]["thresholds"] == "model directory event_thresholds"
    with open(out / "events.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(r["events"]) for r in report["files"])


def test_cli_mixes_and_resamples_stereo(cli_run):
    _, report, _ = cli_run
    rec = next(r for r in report["files"] if r["file"].endswith("stereo_44k.wav"))
    assert rec["source_channels"] == 2 and rec["source_sample_rate"] == 44100
    assert rec["notes"][:2] == ["resampled 44100 Hz -> 32000 Hz", "mixed 2 channels to mono (mean)"]


def test_cli_reports_and_skips_a_corrupt_file(cli_run, model_dir, audio_dir, capsys):
    _, report, _ = cli_run
    assert [pathlib.Path(e["file"]).name for e in report["errors"]] == ["corrupt.wav"]
    assert "AudioDecodeError" in report["errors"][0]["error"]
    code = predict.main(["--checkpoint", model_dir, str(audio_dir / "corrupt.wav"), "--quiet"])
    assert code == 2
    assert "corrupt.wav" in capsys.readouterr().err


def test_tag_file_matches_the_cli_record(cli_run, model_dir, audio_dir):
    _, report, _ = cli_run
    tagger = api.AudioTagger.from_checkpoint(model_dir, batch_size=4)
    rec = tagger.tag_file(str(audio_dir / "long_8k.wav"), top_k=3)
    ref = next(r for r in report["files"] if r["file"].endswith("long_8k.wav"))
    assert [t["label"] for t in rec["tags"]] == [t["label"] for t in ref["tags"]]
    np.testing.assert_allclose([t["score"] for t in rec["tags"]], [t["score"] for t in ref["tags"]], atol=1e-5)
    with pytest.raises(api.AudioInputError, match="AudioDecodeError"):
        tagger.tag_file(str(audio_dir / "corrupt.wav"))


def test_reference_file_is_read_with_clear_errors(tmp_path):
    names = ["dog", "cat"]
    good = tmp_path / "ref.tsv"
    good.write_text("filename\tonset\toffset\tevent_label\na/x.wav\t0.5\t1.5\tdog\nx.wav\t2\t3\tcat\ny.wav\t\t\t\n")
    ref = predict.read_reference(str(good), names)
    assert [(e.label, e.onset_s, e.offset_s) for e in ref["x.wav"]] == [("dog", 0.5, 1.5), ("cat", 2.0, 3.0)]
    assert ref["y.wav"] == []  # listed, no event
    for body, message in (("filename,onset,offset,event_label\nx.wav,2,1,dog\n", r"ref.csv:2: onset 2.0 is not before"),
                          ("filename,onset,offset,event_label\nx.wav,0,1,bird\n", r"ref.csv:2: label 'bird'"),
                          ("filename,onset,event_label\nx.wav,0,dog\n", r"ref.csv:1: .*missing \['offset'\]"),
                          ("filename,onset,offset,label\nx.wav,a,1,dog\n", r"ref.csv:2: onset/offset")):
        bad = tmp_path / "ref.csv"
        bad.write_text(body)
        with pytest.raises(ValueError, match=message):
            predict.read_reference(str(bad), names)
