"""DESED builder on a fake audio/ + metadata/ layout."""

import numpy as np
import pytest

import fake_raw
import tfds_builders
from tfds_builders import common, desed

STRONG_HEADER = "filename\tonset\toffset\tevent_label\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    expected = fake_raw.make_desed(raw)
    builder = tfds_builders.build("desed", manual_dir=raw, data_dir=tmp_path_factory.mktemp("out"))
    return builder, expected


def test_info(built):
    builder, _ = built
    assert builder.info.metadata["sample_rate"] == desed.SAMPLE_RATE == 32000
    assert builder.info.metadata["class_names"] == list(desed.CLASS_NAMES)
    assert len(desed.CLASS_NAMES) == 10 and desed.CLASS_NAMES[5] == "Electric_shaver_toothbrush"
    assert sorted(builder.info.splits) == ["eval", "validation", "weak"]
    assert "synthetic_train" in builder.info.metadata["omitted_splits"]
    assert builder.info.metadata["sources"]["eval"] == {"audio": "audio/eval/public", "tsv": "metadata/eval/public.tsv"}


def test_every_example_labels_events_duration_and_content(built):
    builder, expected = built
    good = {k: v for k, v in expected.items() if k != "__skipped__"}
    names = list(desed.CLASS_NAMES)
    for split in ("weak", "validation", "eval"):
        examples = fake_raw.read_split(builder, split)
        assert sorted(examples) == sorted(k for k, v in good.items() if v["split"] == split)
        for ex_id, ex in examples.items():
            want = good[ex_id]
            labels = np.zeros(10, np.uint8)
            labels[[names.index(n) for n in want["labels"]]] = 1
            np.testing.assert_array_equal(ex["labels"], labels)
            ev = ex["events"]
            assert [names[int(c)] for c in ev["label"]] == [e[2] for e in want["events"]]
            np.testing.assert_allclose(ev["onset"], [e[0] for e in want["events"]], atol=1e-6)
            np.testing.assert_allclose(ev["offset"], [e[1] for e in want["events"]], atol=1e-6)
            assert ev["onset"].dtype == np.float32 and ev["label"].dtype == np.int32
            assert ex["duration_s"] == pytest.approx(want["tone"].seconds, abs=1e-6)
            assert ex["waveform"].dtype == np.int16 and ex["waveform"].shape == (320000,)
            fake_raw.assert_tone(ex["waveform"], 32000, want["tone"])
    weak = fake_raw.read_split(builder, "weak")
    stereo = weak["audio/train/weak/Yw1_0.000_10.000.wav"]["waveform"]
    assert fake_raw.tone_amplitude(stereo[:64000] / 32767) == pytest.approx(0.4, rel=0.02)  # (0.6 + 0.2) / 2
    assert np.all(stereo[64000:] == 0)  # 2 s clip padded to 10 s
    long_clip = fake_raw.read_split(builder, "validation")["audio/validation/Yv2.wav"]
    assert long_clip["duration_s"] == pytest.approx(10.5)  # original length kept, waveform cut to 10 s


def test_skip_reports(built):
    builder, expected = built
    for split, want in expected["__skipped__"].items():
        report = fake_raw.read_report(builder, split)
        got = {e["path"]: e["reason"] for e in report["skipped"]}
        assert sorted(got) == sorted(want), split
        for path, reason in want.items():
            assert got[path].startswith(reason)
    assert builder.info.metadata["skipped"] == {"weak": 2, "validation": 0, "eval": 2}


def _eval_only_raw(tmp_path, tsv_text):
    raw = tmp_path / "raw"
    fake_raw.write_tone(raw / "audio/eval/public/a.wav", fake_raw.Tone(440.0, (0.5,), 0.2, 16000))
    (raw / "metadata/eval").mkdir(parents=True)
    (raw / "metadata/eval/public.tsv").write_text(tsv_text)
    return raw


def test_only_eval_present_builds_eval(tmp_path):
    raw = _eval_only_raw(tmp_path, STRONG_HEADER + "a.wav\t0.0\t0.1\tCat\n")
    builder = tfds_builders.build("desed", manual_dir=raw, data_dir=tmp_path / "out")
    assert list(builder.info.splits) == ["eval"]


def test_unknown_label_names_file_and_line(tmp_path):
    raw = _eval_only_raw(tmp_path, STRONG_HEADER + "a.wav\t0.0\t0.1\tCat\na.wav\t0.2\t0.3\tDoggo\n")
    with pytest.raises(common.RawDataError, match=r"public\.tsv:3: unknown label 'Doggo'"):
        tfds_builders.build("desed", manual_dir=raw, data_dir=tmp_path / "out")


def test_malformed_row_names_file_and_line(tmp_path):
    raw = _eval_only_raw(tmp_path, STRONG_HEADER + "a.wav\tzero\t0.1\tCat\n")
    with pytest.raises(common.RawDataError, match=r"public\.tsv:2: onset/offset must be numbers"):
        tfds_builders.build("desed", manual_dir=raw, data_dir=tmp_path / "out")


def test_unknown_weak_label_names_file_and_line(tmp_path):
    raw = _eval_only_raw(tmp_path, STRONG_HEADER + "a.wav\t0.0\t0.1\tCat\n")
    (raw / "audio/train/weak").mkdir(parents=True)
    (raw / "metadata/train").mkdir(parents=True)
    (raw / "metadata/train/weak.tsv").write_text("filename\tevent_labels\nx.wav\tDog,Toaster\n")
    with pytest.raises(common.RawDataError, match=r"weak\.tsv:2: unknown label 'Toaster'"):
        tfds_builders.build("desed", manual_dir=raw, data_dir=tmp_path / "out")


def test_tsv_without_audio_folder_is_named(tmp_path):
    raw = _eval_only_raw(tmp_path, STRONG_HEADER + "a.wav\t0.0\t0.1\tCat\n")
    (raw / "metadata/validation").mkdir(parents=True)
    (raw / "metadata/validation/validation.tsv").write_text(STRONG_HEADER)
    with pytest.raises(common.RawDataError, match=r"validation\.tsv exists but its audio folder is missing"):
        tfds_builders.build("desed", manual_dir=raw, data_dir=tmp_path / "out")


def test_no_metadata_at_all_lists_expected_files(tmp_path):
    (tmp_path / "raw" / "audio").mkdir(parents=True)
    with pytest.raises(common.RawDataError, match=r"no DESED metadata found .*metadata/eval/public\.tsv"):
        tfds_builders.build("desed", manual_dir=tmp_path / "raw", data_dir=tmp_path / "out")
