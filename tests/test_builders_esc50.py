"""ESC-50 builder on a fake ESC-50-master folder."""

import numpy as np
import pytest

import fake_raw
import tfds_builders
from tfds_builders import common, esc50


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw") / "ESC-50-master"
    expected = fake_raw.make_esc50(raw)
    # The parent of ESC-50-master is accepted as well as the folder itself.
    builder = tfds_builders.build("esc50", manual_dir=raw.parent, data_dir=tmp_path_factory.mktemp("out"))
    return builder, expected


def test_info_and_metadata(built):
    builder, _ = built
    assert builder.name == "esc50"
    assert list(builder.info.splits) == ["train"]
    assert builder.info.metadata["sample_rate"] == esc50.SAMPLE_RATE == 32000
    assert builder.info.metadata["clip_samples"] == 160000
    assert builder.info.features["label"].names == list(esc50.CLASS_NAMES)
    assert esc50.CLASS_NAMES[13] == "crickets" and esc50.CLASS_NAMES[49] == "hand_saw"


def test_every_example_label_length_and_content(built):
    builder, expected = built
    examples = fake_raw.read_split(builder, "train")
    good = {k: v for k, v in expected.items() if k != "__skipped__"}
    assert sorted(examples) == sorted(good)
    label_names = builder.info.features["label"]
    for ex_id, ex in examples.items():
        want = good[ex_id]
        assert ex["label"] == want["label"]
        assert ex_id.split("/")[1].split("-")[-1] == f"{want['label']}.wav"
        assert label_names.int2str(ex["label"]) == esc50.CLASS_NAMES[want["label"]]
        assert ex["fold"] == want["fold"] and bool(ex["esc10"]) == want["esc10"]
        assert ex["waveform"].dtype == np.int16 and ex["waveform"].shape == (160000,)
        fake_raw.assert_tone(ex["waveform"], 32000, want["tone"])
    # Stereo 0.6 / 0.2 -> mono 0.4 (not the left channel's 0.6).
    assert fake_raw.tone_amplitude(examples["audio/2-200-A-1.wav"]["waveform"] / 32767) == pytest.approx(0.4, rel=0.02)
    # The 3 s clip (48 kHz) is zero-padded from 3 s = 96000 samples on.
    frog = examples["audio/4-400-A-4.wav"]["waveform"]
    assert np.all(frog[96000:] == 0) and np.abs(frog[95000:96000]).max() > 1000


def test_skip_report(built):
    builder, expected = built
    report = fake_raw.read_report(builder, "train")
    assert report["num_written"] == 4 and report["num_skipped"] == 3
    got = {e["path"]: e["reason"] for e in report["skipped"]}
    assert sorted(got) == sorted(expected["__skipped__"])
    for path, reason in expected["__skipped__"].items():
        assert got[path].startswith(reason), (path, got[path])
    assert builder.info.metadata["skipped"] == {"train": 3}


def _raw_with_rows(tmp_path, rows):
    raw = tmp_path / "ESC-50-master"
    fake_raw.write_tone(raw / "audio" / "1-1-A-0.wav", fake_raw.Tone(440.0, (0.5,), 0.1, 44100))
    (raw / "meta").mkdir(parents=True)
    (raw / "meta" / "esc50.csv").write_text(fake_raw.ESC50_HEADER + "".join(rows))
    return raw


def test_malformed_row_names_file_and_line(tmp_path):
    raw = _raw_with_rows(tmp_path, ["1-1-A-0.wav,1,0,dog,True,1,A\n", "1-2-A-0.wav,one,0,dog,True,2,A\n"])
    with pytest.raises(common.RawDataError, match=r"esc50\.csv:3: fold and target must be integers"):
        tfds_builders.build("esc50", manual_dir=raw, data_dir=tmp_path / "out")


def test_unknown_category_names_file_line_and_label(tmp_path):
    raw = _raw_with_rows(tmp_path, ["1-1-A-0.wav,1,0,dog,True,1,A\n", "1-2-A-0.wav,1,0,kitten,True,2,A\n"])
    with pytest.raises(common.RawDataError, match=r"esc50\.csv:3: unknown category 'kitten'"):
        tfds_builders.build("esc50", manual_dir=raw, data_dir=tmp_path / "out")


def test_target_category_mismatch_is_an_error(tmp_path):
    raw = _raw_with_rows(tmp_path, ["1-1-A-0.wav,1,5,dog,True,1,A\n"])
    with pytest.raises(common.RawDataError, match=r"esc50\.csv:2: target 5 does not match category 'dog'"):
        tfds_builders.build("esc50", manual_dir=raw, data_dir=tmp_path / "out")


def test_missing_metadata_names_the_file(tmp_path):
    (tmp_path / "raw" / "audio").mkdir(parents=True)
    with pytest.raises(common.RawDataError, match=r"missing ESC-50 metadata: expected file .*meta/esc50\.csv"):
        tfds_builders.build("esc50", manual_dir=tmp_path / "raw", data_dir=tmp_path / "out")


def test_split_with_only_bad_files_fails_with_reasons(tmp_path):
    raw = _raw_with_rows(tmp_path, ["1-9-A-0.wav,1,0,dog,True,9,A\n"])  # listed, not on disk
    with pytest.raises(common.RawDataError, match=r"esc50/train: no example written.*1-9-A-0\.wav: missing file"):
        tfds_builders.build("esc50", manual_dir=raw, data_dir=tmp_path / "out")


def test_explicit_manual_dir_that_does_not_exist_is_not_a_download(tmp_path):
    with pytest.raises(common.RawDataError, match="does not exist"):
        tfds_builders.build("esc50", manual_dir=tmp_path / "nope", data_dir=tmp_path / "out")


def test_without_manual_dir_the_github_archive_is_used(tmp_path):
    extracted = tmp_path / "extracted"
    fake_raw.make_esc50(extracted / "ESC-50-master")  # the zip's top-level folder
    stub = fake_raw.StubDownloads(tmp_path, extracted)
    generators = esc50.Esc50(data_dir=tmp_path / "out")._split_generators(stub)
    assert list(generators) == ["train"]
    assert stub.urls == ["https://github.com/karolpiczak/ESC-50/archive/master.zip"]
