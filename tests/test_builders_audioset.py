"""AudioSet builder: segment CSVs + downloaded clips, and the PANNs packed-HDF5 layout."""

import numpy as np
import pytest

import fake_raw
import tfds_builders
from tfds_builders import audioset, common

MIDS = [m for m, _ in fake_raw.AUDIOSET_CLASSES]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    expected = fake_raw.make_audioset(raw)
    builder = tfds_builders.build("audioset", manual_dir=raw, data_dir=tmp_path_factory.mktemp("out"))
    return builder, expected


@pytest.fixture(scope="module")
def built_packed(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw_packed")
    expected = fake_raw.make_audioset_packed(raw)
    builder = tfds_builders.build("audioset", manual_dir=raw, data_dir=tmp_path_factory.mktemp("out_packed"))
    return builder, expected, raw


def _multi_hot(indices):
    out = np.zeros(len(MIDS), np.uint8)
    out[indices] = 1
    return out


def test_info_classes_from_csv(built):
    builder, _ = built
    meta = builder.info.metadata
    assert meta["sample_rate"] == audioset.SAMPLE_RATE == 32000 and meta["clip_samples"] == 320000
    assert meta["num_classes"] == 5 and meta["class_mids"] == MIDS
    assert meta["class_names"][4] == "Human sounds, misc"
    assert builder.info.features["labels"].shape == (5,)
    assert sorted(builder.info.splits) == ["balanced_train", "eval"]


def test_every_example_labels_length_and_content(built):
    builder, expected = built
    good = {k: v for k, v in expected.items() if k != "__skipped__"}
    for split in ("balanced_train", "eval"):
        examples = fake_raw.read_split(builder, split)
        assert sorted(examples) == sorted(k for k, v in good.items() if v["split"] == split)
        for ex_id, ex in examples.items():
            want = good[ex_id]
            np.testing.assert_array_equal(ex["labels"], _multi_hot(want["labels"]))
            assert ex["labels"].dtype == np.uint8
            assert ex["waveform"].dtype == np.int16 and ex["waveform"].shape == (320000,)
            fake_raw.assert_tone(ex["waveform"], 32000, want["tone"])
            n = min(320000, round(want["tone"].seconds * 32000))
            assert np.all(ex["waveform"][n:] == 0)  # zero-padded after the clip
    bal = fake_raw.read_split(builder, "balanced_train")
    # FLAC, 44.1 kHz stereo 0.6/0.2, named Y{ytid}_{start}: mono 0.4 at 1500 Hz.
    assert fake_raw.tone_amplitude(bal["Y_bBBBBBBBB_0"]["waveform"][:16000] / 32767) == pytest.approx(0.4, rel=0.02)
    # 10.5 s clip truncated to 10 s: still sounding at the very end.
    long_clip = fake_raw.read_split(builder, "eval")["FFFFFFFFFFF_0"]["waveform"]
    assert np.abs(long_clip[-320:]).max() > 10000


def test_class_positive_counts_in_metadata(built):
    builder, expected = built
    counts = builder.info.metadata["class_positive_counts"]
    for split in ("balanced_train", "eval"):
        want = np.zeros(5, int)
        for v in expected.values():
            if isinstance(v, dict) and v.get("split") == split:
                want[v["labels"]] += 1
        assert counts[split] == want.tolist()


def test_missing_and_corrupt_clips_are_reported(built):
    builder, expected = built
    for split, want in expected["__skipped__"].items():
        report = fake_raw.read_report(builder, split)
        got = {e["path"]: e["reason"] for e in report["skipped"]}
        assert sorted(got) == sorted(want), split
        for path, reason in want.items():
            assert got[path].startswith(reason)
    # unbalanced_train: the CSV exists, none of its clips was downloaded -> not written, but reported.
    assert builder.info.metadata["omitted_splits"] == {"unbalanced_train": "none of its 1 clips was found"}
    report = fake_raw.read_report(builder, "unbalanced_train")
    assert report["num_written"] == 0 and report["skipped"][0]["path"] == "unbalanced_train_segments.csv"


def test_packed_hdf5_is_copied_exactly(built_packed):
    builder, expected, raw = built_packed
    import h5py

    assert builder.info.metadata["source"] == "packed_hdf5"
    assert sorted(builder.info.splits) == ["balanced_train", "eval"]
    assert builder.info.metadata["omitted_splits"] == {"unbalanced_train": "none of its 1 HDF5 file(s) is readable"}
    good = {k: v for k, v in expected.items() if k != "__skipped__"}
    rows = {}
    for split in ("balanced_train", "eval"):
        with h5py.File(raw / "hdf5s" / "waveforms" / f"{split}.h5") as h5:
            for name, wave in zip(h5["audio_name"][:], h5["waveform"][:]):
                rows[name.decode()[1:12]] = wave
        examples = fake_raw.read_split(builder, split)
        assert sorted(examples) == sorted(k for k, v in good.items() if v["split"] == split)
        for ex_id, ex in examples.items():
            np.testing.assert_array_equal(ex["labels"], _multi_hot(good[ex_id]["labels"]))
            np.testing.assert_array_equal(ex["waveform"], rows[ex_id])
            assert fake_raw.dominant_freq(ex["waveform"] / 32767, 32000) == pytest.approx(good[ex_id]["freq"], abs=0.2)
    for split, want in expected["__skipped__"].items():
        got = {e["path"]: e["reason"] for e in fake_raw.read_report(builder, split)["skipped"]}
        assert sorted(got) == sorted(want), split
        for path, reason in want.items():
            assert got[path].startswith(reason)
    assert builder.info.metadata["class_positive_counts"]["balanced_train"] == [1, 0, 1, 1, 0]


def _csv_raw(tmp_path, rows_text):
    raw = tmp_path / "raw"
    fake_raw.write_audioset_class_labels(raw / "class_labels_indices.csv")
    (raw / "eval_segments.csv").write_text(rows_text)
    fake_raw.write_tone(raw / "YAAAAAAAAAAA.wav", fake_raw.Tone(440.0, (0.5,), 0.1, 32000))
    return raw


def test_unknown_mid_names_file_and_line(tmp_path):
    text = fake_raw.audioset_segments_csv([("AAAAAAAAAAA", 0.0, 10.0, [MIDS[0]]), ("BBBBBBBBBBB", 0.0, 10.0, ["/m/nope"])])
    raw = _csv_raw(tmp_path, text)
    with pytest.raises(common.RawDataError, match=r"eval_segments\.csv:5: unknown label mid '/m/nope'"):
        tfds_builders.build("audioset", manual_dir=raw, data_dir=tmp_path / "out")


def test_malformed_row_names_file_and_line(tmp_path):
    text = fake_raw.audioset_segments_csv([("AAAAAAAAAAA", 0.0, 10.0, [MIDS[0]])]) + "BBBBBBBBBBB, 0.000, 10.000\n"
    raw = _csv_raw(tmp_path, text)
    with pytest.raises(common.RawDataError, match=r"eval_segments\.csv:5: expected 4 fields"):
        tfds_builders.build("audioset", manual_dir=raw, data_dir=tmp_path / "out")


def test_class_count_mismatch_is_explained(tmp_path):
    raw = _csv_raw(tmp_path, fake_raw.audioset_segments_csv([("AAAAAAAAAAA", 0.0, 10.0, [MIDS[0]])]))
    with pytest.raises(common.RawDataError, match="lists 5 classes but the builder was created for 527"):
        audioset.Audioset(data_dir=tmp_path / "out").download_and_prepare(
            download_config=__import__("tensorflow_datasets").download.DownloadConfig(manual_dir=raw)
        )


def test_missing_class_list_is_named(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "eval_segments.csv").write_text("")
    with pytest.raises(common.RawDataError, match=r"missing AudioSet class list: expected file .*class_labels_indices\.csv"):
        tfds_builders.build("audioset", manual_dir=tmp_path / "raw", data_dir=tmp_path / "out")


def test_file_name_schemes_map_to_youtube_ids(tmp_path):
    names = [
        "YAAAAAAAAAAA.wav", "BBBBBBBBBBB.flac", "CCCCCCCCCCC_30000.wav", "YDDDDDDDDDDD_30.000_40.000.wav",
        "Y-E_EEEEEEEE_1.5.wav", "unrelated.wav", "YFFFFFFFFFFF.txt",
    ]
    for n in names:
        (tmp_path / "sub").mkdir(exist_ok=True)
        (tmp_path / "sub" / n).write_bytes(b"")
    wanted = {"AAAAAAAAAAA", "BBBBBBBBBBB", "CCCCCCCCCCC", "DDDDDDDDDDD", "-E_EEEEEEEE", "FFFFFFFFFFF"}
    found = audioset.audioset.index_audio_files(tmp_path, wanted)
    assert {k: v.name for k, v in found.items()} == {
        "AAAAAAAAAAA": "YAAAAAAAAAAA.wav",
        "BBBBBBBBBBB": "BBBBBBBBBBB.flac",
        "CCCCCCCCCCC": "CCCCCCCCCCC_30000.wav",
        "DDDDDDDDDDD": "YDDDDDDDDDDD_30.000_40.000.wav",
        "-E_EEEEEEEE": "Y-E_EEEEEEEE_1.5.wav",
    }
