"""audio_folder builder: a user's folder of recordings with labels.csv/.tsv or class folders,
on fake folders (weak, strong, class folders, grouped / explicit / fold splits, --classes, every
bad input) and on the real ESC-10 recordings copied into a plain folder."""

import csv
import importlib.util
import json
import math
import pathlib
import shutil

import numpy as np
import pytest

import fake_raw
import tfds_builders
from conftest import SHARED, require
from tfds_builders import audio_folder, common

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "tools" / "prepare_data.py"
ESC10 = SHARED / "data" / "esc10_subset"


def _build(raw, out, **kwargs):
    return tfds_builders.build("audio_folder", manual_dir=raw, data_dir=out, **kwargs)


def _length(tone, rate):
    return math.ceil(tone.frames * rate / tone.rate)


def _all_examples(builder):
    examples = {}
    for split in builder.info.splits:
        for key, ex in fake_raw.read_split(builder, split).items():
            examples[key] = dict(ex, split=split)
    return examples


def _cli():
    spec = importlib.util.spec_from_file_location("prepare_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- weak labels

@pytest.fixture(scope="module")
def weak(tmp_path_factory):
    raw = tmp_path_factory.mktemp("weak_raw")
    expected = fake_raw.make_audio_folder_weak(raw)
    return _build(raw, tmp_path_factory.mktemp("weak_out")), expected, raw


def test_weak_multi_label_info(weak):
    builder, _, raw = weak
    assert builder.name == "audio_folder" and builder.builder_config.name == "32k"
    assert str(builder.data_dir).endswith("audio_folder/32k/1.0.0")
    meta = builder.info.metadata
    assert meta["class_names"] == ["cat", "dog", "speech"]  # inferred, sorted
    assert meta["num_classes"] == 3 and meta["sample_rate"] == 32000 and meta["clip_samples"] is None
    assert meta["multi_label"] is True and meta["has_events"] is False
    assert meta["label_format"] == "weak" and meta["labels_file"] == "labels.csv"
    assert meta["split_method"] == "seeded" and meta["split_seed"] == 0 and meta["split_fractions"] == [0.8, 0.1, 0.1]
    assert meta["group_column"] is None and meta["raw_dir"] == str(raw.resolve())
    features = builder.info.features
    assert sorted(features) == ["duration_s", "id", "labels", "num_samples", "waveform"]
    assert features["labels"].shape == (3,) and features["labels"].np_dtype == np.uint8
    assert features["waveform"].shape == (None,) and features["waveform"].np_dtype == np.int16
    assert builder.info.supervised_keys == ("waveform", "labels")


def test_weak_every_example(weak):
    builder, expected, _ = weak
    good = {k: v for k, v in expected.items() if k != "__skipped__"}
    examples = _all_examples(builder)
    assert sorted(examples) == sorted(good)
    names = builder.info.metadata["class_names"]
    for rel, ex in examples.items():
        want = good[rel]
        assert np.flatnonzero(ex["labels"]).tolist() == sorted(names.index(n) for n in want["labels"]), rel
        n = _length(want["tone"], 32000)  # own length: nothing padded or cut
        assert ex["waveform"].dtype == np.int16 and ex["waveform"].shape == (n,) and ex["num_samples"] == n, rel
        assert ex["duration_s"] == pytest.approx(want["tone"].seconds, abs=1e-6)
        fake_raw.assert_tone(ex["waveform"], 32000, want["tone"])
    counts = builder.info.metadata["class_positive_counts"]
    total = np.sum([counts[s] for s in builder.info.splits], axis=0)
    want = [sum(n in v["labels"] for v in good.values()) for n in names]
    assert total.tolist() == want and want[0] >= 3  # per class, over the written clips


def test_weak_skip_report_lists_bad_and_unlisted_files(weak):
    builder, expected, _ = weak
    got = {}
    for split in builder.info.splits:
        report = fake_raw.read_report(builder, split)
        assert report["num_written"] == builder.info.splits[split].num_examples
        got.update({e["path"]: e["reason"] for e in report["skipped"]})
    assert sorted(got) == sorted(expected["__skipped__"])
    for path, reason in expected["__skipped__"].items():
        assert got[path].startswith(reason), (path, got[path])
    assert "extra/unlisted.wav" in {e["path"] for e in fake_raw.read_report(builder, "train")["skipped"]}


def test_prepared_dataset_opens_from_files_and_from_code(weak):
    import tensorflow_datasets as tfds

    builder, _, raw = weak
    data_dir = pathlib.Path(builder.data_dir).parents[2]
    ro = tfds.core.read_only_builder.builder_from_files("audio_folder", data_dir=str(data_dir))
    assert ro.info.metadata["class_names"] == ["cat", "dog", "speech"]
    assert len(ro.as_data_source(split="train")) == builder.info.splits["train"].num_examples
    # The builder code without the raw folder reads the stored features, not placeholders.
    code = audio_folder.AudioFolder(data_dir=data_dir)
    assert code.info.features["labels"].shape == (3,)
    assert len(code.as_data_source(split="train")) == builder.info.splits["train"].num_examples
    with pytest.raises(common.RawDataError, match="reads the raw folder when the builder is created"):
        code._split_generators(fake_raw.StubDownloads(data_dir, raw))


def test_same_folder_again_is_reused_another_needs_overwrite(weak, tmp_path, capsys):
    _, _, raw = weak
    data_dir = tmp_path / "out"
    first = _build(raw, data_dir)
    capsys.readouterr()
    again = _build(raw, data_dir)
    assert "downloaded and prepared" not in capsys.readouterr().out  # reused, not rebuilt
    assert again.info.splits["train"].num_examples == first.info.splits["train"].num_examples
    other = tmp_path / "other"
    fake_raw.make_audio_folder_classes(other)  # other classes, single-label, same default name "32k"
    with pytest.raises(common.RawDataError, match=r"already holds an audio_folder dataset named '32k' prepared from"):
        _build(other, data_dir)
    assert fake_raw.read_split(first, "train")  # untouched
    with pytest.raises(common.RawDataError, match="already holds"):  # other build settings count too
        _build(raw, data_dir, split_seed=1)
    rebuilt = _build(other, data_dir, overwrite=True)
    assert "downloaded and prepared" in capsys.readouterr().out
    assert rebuilt.info.metadata["class_names"] == ["crying_baby", "rain", "rooster"]
    assert rebuilt.info.features["label"].names == ["crying_baby", "rain", "rooster"]
    assert sorted(_all_examples(rebuilt)) == ["crying_baby/c.wav", "rain/day1/x.flac", "rain/day2/x.flac",
                                              "rooster/r1.wav", "rooster/r2.wav"]


# -------------------------------------------------------------------------- strong labels

@pytest.fixture(scope="module")
def strong(tmp_path_factory):
    raw = tmp_path_factory.mktemp("strong_raw")
    expected = fake_raw.make_audio_folder_strong(raw)
    return _build(raw, tmp_path_factory.mktemp("strong_out")), expected


def test_strong_labels_events_and_explicit_split(strong):
    builder, expected = strong
    meta = builder.info.metadata
    assert meta["class_names"] == ["alarm", "dog", "speech"]
    assert meta["multi_label"] is True and meta["has_events"] is True and meta["label_format"] == "strong"
    assert meta["split_method"] == "split_column" and meta["labels_file"] == "labels.tsv"
    features = builder.info.features
    assert sorted(features) == ["duration_s", "events", "id", "labels", "num_samples", "strong", "waveform"]
    assert sorted(features["events"]) == ["label", "offset", "onset"]
    names = meta["class_names"]
    examples = _all_examples(builder)
    assert sorted(examples) == sorted(expected)
    for rel, ex in examples.items():
        want = expected[rel]
        assert ex["split"] == want["split"], rel
        assert np.flatnonzero(ex["labels"]).tolist() == [names.index(n) for n in want["labels"]], rel
        ev = ex["events"]
        assert ev["onset"].dtype == np.float32 and ev["offset"].dtype == np.float32 and ev["label"].dtype == np.int32
        np.testing.assert_allclose(ev["onset"], [e[0] for e in want["events"]])
        np.testing.assert_allclose(ev["offset"], [e[1] for e in want["events"]])
        assert [names[i] for i in ev["label"]] == [e[2] for e in want["events"]], rel
        assert bool(ex["strong"]) is want["strong"], rel
        assert ex["waveform"].shape == (_length(want["tone"], 32000),)
        fake_raw.assert_tone(ex["waveform"], 32000, want["tone"])
    a = examples["scenes/a.wav"]["events"]  # sorted by onset; the last event runs past the end (kept)
    assert a["onset"].tolist() == [0.25, 1.5, 2.0] and a["offset"].tolist() == [1.0, 2.75, 3.5]
    assert examples["scenes/d.wav"]["labels"].sum() == 0 and len(examples["scenes/d.wav"]["events"]["label"]) == 0
    assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {
        "train": 2, "validation": 2, "test": 1
    }


def test_strong_dataset_through_the_input_pipeline(strong):
    """The pipeline reads the stored layout (variable length, multi-hot, events) unchanged."""
    from htsat_jax.data import pipeline

    builder, _ = strong
    name = "audio_folder_test_strong"  # a private registry name, so the real one is not replaced
    pipeline.register_dataset(pipeline.DatasetSpec(
        name, 32000, 320000, None, multi_label=True, has_events=True, tfds_name="audio_folder"))
    data_dir = pathlib.Path(builder.data_dir).parents[2]
    source, spec = pipeline.open_source(name, data_dir=data_dir, split="train", builder_config="32k")
    assert spec.num_classes == 3 and len(source) == 2


# -------------------------------------------------------------------- class per folder

def test_class_folders_single_label(tmp_path):
    raw = tmp_path / "raw"
    expected = fake_raw.make_audio_folder_classes(raw)
    builder = _build(raw, tmp_path / "out")
    meta = builder.info.metadata
    assert meta["class_names"] == ["crying_baby", "rain", "rooster"] and meta["label_format"] == "class_folders"
    assert meta["multi_label"] is False and meta["has_events"] is False and meta["labels_file"] is None
    assert builder.info.features["label"].names == meta["class_names"]
    assert builder.info.supervised_keys == ("waveform", "label")
    good = {k: v for k, v in expected.items() if k != "__skipped__"}
    examples = _all_examples(builder)
    assert sorted(examples) == sorted(good)
    for rel, ex in examples.items():
        assert meta["class_names"][ex["label"]] == good[rel]["label"]
        fake_raw.assert_tone(ex["waveform"], 32000, good[rel]["tone"])
    skipped = {e["path"]: e["reason"] for e in fake_raw.read_report(builder, "train")["skipped"]}
    assert list(skipped) == ["stray.wav"] and skipped["stray.wav"].startswith("not in a class folder")


def test_class_folders_with_classes_and_16k_name(tmp_path):
    raw = tmp_path / "raw"
    fake_raw.make_audio_folder_classes(raw)
    builder = _build(raw, tmp_path / "out", config="16k", dataset_name="my_sounds",
                     classes=["rooster", "rain", "crying_baby", "thunder"])
    assert str(builder.data_dir).endswith("audio_folder/my_sounds/1.0.0")
    meta = builder.info.metadata
    assert meta["class_names"] == ["rooster", "rain", "crying_baby", "thunder"]  # given order, unused class kept
    assert meta["num_classes"] == 4 and meta["sample_rate"] == 16000 and meta["dataset_name"] == "my_sounds"
    ex = _all_examples(builder)["rooster/r1.wav"]
    assert ex["label"] == 0 and ex["waveform"].shape == (8000,)
    import tensorflow_datasets as tfds

    ro = tfds.core.read_only_builder.builder_from_files("audio_folder/my_sounds", data_dir=str(tmp_path / "out"))
    assert ro.info.metadata["sample_rate"] == 16000 and ro.info.features["label"].num_classes == 4
    with pytest.raises(common.RawDataError, match=r"class folder 'crying_baby' is not in the class list \(rooster\)"):
        audio_folder.AudioFolder(raw_dir=raw, classes=["rooster"], data_dir=tmp_path / "out2")


# -------------------------------------------------------------------------------- splits

def _grouped_raw(root, n_classes=6, recordings=7):
    """n_classes x `recordings` source recordings, each cut into 1-3 clips."""
    rows = []
    for c in range(n_classes):
        for r in range(recordings):
            for k in range(1 + (r % 3)):
                rel = f"class{c}/rec{r}_{k}.wav"
                fake_raw.write_tone(root / rel, fake_raw.Tone(200.0 + 50 * c, (0.5,), 0.1, 16000))
                rows.append([rel, f"class{c}", f"src{c}-{r}"])
    fake_raw.write_labels(root / "labels.csv", ["filename", "label", "source"], rows)
    return rows


def test_grouped_seeded_split_keeps_sources_together(tmp_path):
    raw = tmp_path / "raw"
    rows = _grouped_raw(raw)
    builder = _build(raw, tmp_path / "out")
    meta = builder.info.metadata
    assert meta["multi_label"] is False and meta["group_column"] == "source" and meta["split_method"] == "seeded"
    examples = _all_examples(builder)
    assert len(examples) == len(rows) == 78
    split_of_group = {}
    for ex in examples.values():
        split_of_group.setdefault(ex["group"].decode(), set()).add(ex["split"])
    assert len(split_of_group) == 42 and all(len(s) == 1 for s in split_of_group.values())  # no straddling
    sizes = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
    assert sizes["train"] + sizes["validation"] + sizes["test"] == 78
    assert 56 <= sizes["train"] <= 68 and 5 <= sizes["validation"] <= 11 and 5 <= sizes["test"] <= 11, sizes
    for split in ("train", "validation", "test"):  # stratified: every class in every split
        assert {ex["label"] for ex in examples.values() if ex["split"] == split} == set(range(6)), split


def test_seeded_split_is_reproducible_and_seed_dependent(tmp_path):
    raw = tmp_path / "raw"
    _grouped_raw(raw)

    def assignment(**kwargs):
        folder = audio_folder.scan_folder(raw, **kwargs)
        return {c.rel: s for s, clips in folder.splits.items() for c in clips}

    first = assignment()
    assert first == assignment() == assignment(split_seed=0)
    other = assignment(split_seed=1)
    assert other != first and sorted(other) == sorted(first)
    halves = assignment(split_fractions=(0.5, 0.5, 0.0))
    assert set(halves.values()) == {"train", "validation"}


def test_explicit_split_column_and_omitted_split(tmp_path):
    raw = tmp_path / "raw"
    tone = fake_raw.Tone(440.0, (0.5,), 0.2, 16000)
    rows = [["a.wav", "x", "train"], ["b.wav", "y", "TRAIN"], ["c.wav", "x", "val"], ["d.wav", "y", "validation"]]
    for name, *_ in rows:
        fake_raw.write_tone(raw / name, tone)
    fake_raw.write_labels(raw / "labels.csv", ["filename", "label", "split"], rows)
    builder = _build(raw, tmp_path / "out")
    assert {s: sorted(fake_raw.read_split(builder, s)) for s in builder.info.splits} == {
        "train": ["a.wav", "b.wav"], "validation": ["c.wav", "d.wav"]
    }
    assert builder.info.metadata["omitted_splits"] == {"test": "no labels.csv rows with split=test"}
    assert fake_raw.read_report(builder, "test")["num_written"] == 0


def test_fold_column_writes_one_train_split_with_folds(tmp_path):
    raw = tmp_path / "raw"
    tone = fake_raw.Tone(440.0, (0.5,), 0.2, 16000)
    rows = [["a.wav", "x", 1], ["b.wav", "y", 2], ["c.wav", "x", 3], ["d.wav", "y", 3]]
    for name, *_ in rows:
        fake_raw.write_tone(raw / name, tone)
    fake_raw.write_labels(raw / "labels.csv", ["filename", "label", "fold"], rows)
    builder = _build(raw, tmp_path / "out")
    assert list(builder.info.splits) == ["train"]
    assert builder.info.metadata["folds"] == [1, 2, 3] and builder.info.metadata["num_folds"] == 3
    assert builder.info.metadata["omitted_splits"] == {}
    examples = fake_raw.read_split(builder, "train")
    assert {k: int(v["fold"]) for k, v in examples.items()} == {"a.wav": 1, "b.wav": 2, "c.wav": 3, "d.wav": 3}


# --------------------------------------------------------------------------- bad inputs

def _raw_with_labels(tmp_path, header, rows, name="labels.csv", seconds=1.0):
    raw = tmp_path / "raw"
    for row in rows:
        rel = str(row[0])
        if rel and not rel.startswith("missing") and not (raw / rel).exists():
            fake_raw.write_tone(raw / rel, fake_raw.Tone(440.0, (0.5,), seconds, 16000))
    fake_raw.write_labels(raw / name, header, rows)
    return raw


@pytest.mark.parametrize("header, rows, message", [
    (["file", "label"], [["a.wav", "x"]], r"labels\.csv:1: header lacks column 'filename'"),
    (["filename", "class"], [["a.wav", "x"]], r"labels\.csv:1: header lacks a label column"),
    (["filename", "onset", "label"], [["a.wav", "0", "x"]], r"labels\.csv:1: header lacks column 'offset'"),
    (["filename", "label", "labels"], [["a.wav", "x", "y"]], r"labels\.csv:1: header has several of the columns"),
    (["filename", "label", "split", "fold"], [["a.wav", "x", "train", "1"]], r"labels\.csv:1: header has several"),
    (["filename", "label"], [["a.wav", "x"], ["missing.wav", "y"]],
     r"labels\.csv:3: unknown file 'missing\.wav': no such file under"),
    (["filename", "label"], [["a.wav", "x"], ["b.wav", ""]], r"labels\.csv:3: empty label for b\.wav"),
    (["filename", "labels"], [["a.wav", "x;;y"]], r"labels\.csv:2: empty label for a\.wav"),
    (["filename", "onset", "offset", "label"], [["a.wav", "0.5", "0.5", "x"]],
     r"labels\.csv:2: onset 0\.5 >= offset 0\.5"),
    (["filename", "onset", "offset", "label"], [["a.wav", "0.9", "0.2", "x"]], r"labels\.csv:2: onset 0\.9 >= offset"),
    (["filename", "onset", "offset", "label"], [["a.wav", "0.1", "0.2", "x"], ["a.wav", "0.3", "0.4", ""]],
     r"labels\.csv:3: empty label for the event"),
    (["filename", "onset", "offset", "label"], [["a.wav", "0.1", "", "x"]],
     r"labels\.csv:2: onset and offset must both"),
    (["filename", "onset", "offset", "label"], [["a.wav", "abc", "1", "x"]], r"labels\.csv:2: onset must be a number"),
    (["filename", "onset", "offset", "label"], [["a.wav", "-0.5", "1", "x"]], r"labels\.csv:2: onset -0\.5 is negative"),
    (["filename", "onset", "offset", "label"], [["a.wav", "0.1", "0.2", "x;y"]],
     r"labels\.csv:2: an event row takes one label, got 'x;y'"),
    (["filename", "onset", "offset", "label"], [["a.wav", "0.1", "0.2", "x"], ["a.wav", "", "", "y"]],
     r"labels\.csv:3: a\.wav has event rows .* and rows without onset/offset"),
    (["filename", "label", "split"], [["a.wav", "x", "training"]],
     r"labels\.csv:2: split must be one of train, validation, test; got 'training'"),
    (["filename", "label", "split"], [["a.wav", "x", "train"], ["a.wav", "y", "test"]],
     r"labels\.csv:3: split 'test' for a\.wav differs from 'train'"),
    (["filename", "label", "fold"], [["a.wav", "x", "one"]], r"labels\.csv:2: fold must be an integer"),
    (["filename", "label"], [["a.wav", "x", "extra"]], r"labels\.csv:2: expected 2 fields"),
    (["filename", "label"], [["../a.wav", "x"]], r"labels\.csv:2: filename '\.\./a\.wav' must be a relative path"),
    (["filename", "label"], [], r"labels\.csv: lists no clips"),
])
def test_bad_labels_file_names_file_and_line(tmp_path, header, rows, message):
    raw = _raw_with_labels(tmp_path, header, rows)
    with pytest.raises(common.RawDataError, match=message):
        _build(raw, tmp_path / "out")
    assert not (tmp_path / "out" / "audio_folder" / "32k" / "1.0.0").exists()


def test_label_not_in_classes_names_the_line(tmp_path):
    raw = _raw_with_labels(tmp_path, ["filename", "labels"], [["a.wav", "dog"], ["b.wav", "cat;bird"]])
    with pytest.raises(common.RawDataError, match=r"labels\.csv:3: label 'bird' is not in the class list \(dog, cat\)"):
        _build(raw, tmp_path / "out", classes=["dog", "cat"])
    with pytest.raises(common.RawDataError, match=r"names \['dog'\] more than once"):
        _build(raw, tmp_path / "out", classes=["dog", "cat", "dog"])


def test_onset_past_the_end_of_the_audio(tmp_path):
    rows = [["a.wav", "0.1", "0.5", "x"], ["b.wav", "0.2", "0.4", "x"], ["b.wav", "1.0", "1.5", "y"]]
    raw = _raw_with_labels(tmp_path, ["filename", "onset", "offset", "label"], rows, seconds=1.0)
    message = r"labels\.csv:4: onset 1\.0 s is at or past the end of b\.wav \(1\.000 s"
    with pytest.raises(common.RawDataError, match=message):
        _build(raw, tmp_path / "out")
    assert not (tmp_path / "out" / "audio_folder" / "32k" / "1.0.0").exists()


def test_layout_errors(tmp_path):
    raw = _raw_with_labels(tmp_path, ["filename", "label"], [["a.wav", "x"]])
    (raw / "labels.tsv").write_text("filename\tlabel\na.wav\tx\n")
    with pytest.raises(common.RawDataError, match=r"both labels\.csv and labels\.tsv exist"):
        _build(raw, tmp_path / "out")
    (raw / "labels.tsv").unlink()
    fake_raw.write_tone(raw / "sub" / "a.wav", fake_raw.Tone(440.0, (0.5,), 0.2, 16000))  # a.wav: root and sub/
    assert audio_folder.scan_folder(raw).clips[0].rel == "a.wav"  # an exact path wins
    (raw / "a.wav").unlink()
    (raw / "other").mkdir()
    shutil.copy(raw / "sub" / "a.wav", raw / "other" / "a.wav")
    with pytest.raises(common.RawDataError, match=r"labels\.csv:2: filename 'a\.wav' matches several files"):
        _build(raw, tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(common.RawDataError, match=r"no labels file .* and no audio files in class folders"):
        _build(empty, tmp_path / "out")
    with pytest.raises(common.RawDataError, match=r"unknown audio_folder config '8k'"):
        _build(raw, tmp_path / "out", config="8k")
    with pytest.raises(common.RawDataError, match=r"dataset name 'a b' must be letters"):
        _build(raw, tmp_path / "out", dataset_name="a b")
    with pytest.raises(common.RawDataError, match=r"dataset name '16k' is the name of the 16000 Hz config"):
        _build(raw, tmp_path / "out", dataset_name="16k")


def test_unreadable_audio_is_skipped_not_fatal(tmp_path):
    raw = _raw_with_labels(tmp_path, ["filename", "label", "split"], [["a.wav", "x", "train"]])
    fake_raw.write_corrupt(raw / "bad.wav")
    (raw / "labels.csv").write_text("filename,label,split\na.wav,x,train\nbad.wav,y,train\n")
    builder = _build(raw, tmp_path / "out")
    report = fake_raw.read_report(builder, "train")
    assert report["num_written"] == 1 and report["skipped"][0]["path"] == "bad.wav"
    assert report["skipped"][0]["reason"].startswith("unreadable audio")
    assert builder.info.metadata["class_names"] == ["x", "y"]  # the class list comes from the labels


# ----------------------------------------------------------------------------------- CLI

def test_prepare_data_cli_name_and_classes(tmp_path, capsys):
    raw = tmp_path / "raw"
    fake_raw.make_audio_folder_classes(raw)
    out = tmp_path / "out"
    cli = _cli()
    code = cli.main(["audio_folder", "--manual_dir", str(raw), "--data_dir", str(out), "--name", "farm",
                     "--classes", "rooster,rain,crying_baby"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    dataset_dir = out / "audio_folder" / "farm" / "1.0.0"
    assert f"audio_folder 1.0.0 -> {dataset_dir}" in stdout
    assert "open as audio_folder/farm: 3 classes, single-label, 32000 Hz" in stdout
    meta = json.loads((dataset_dir / "metadata.json").read_text())
    assert meta["class_names"] == ["rooster", "rain", "crying_baby"] and meta["dataset_name"] == "farm"
    code = cli.main(["audio_folder", "--manual_dir", str(raw), "--data_dir", str(out), "--classes", "rooster"])
    assert code == 2 and "is not in the class list (rooster)" in capsys.readouterr().err
    code = cli.main(["esc50", "--manual_dir", str(raw), "--data_dir", str(out), "--name", "x"])
    assert code == 2 and "--name only applies to audio_folder" in capsys.readouterr().err
    code = cli.main(["audio_folder", "--data_dir", str(out)])
    assert code == 2 and "pass --manual_dir RAW" in capsys.readouterr().err


# ----------------------------------------------------------------- real ESC-10 recordings

def test_esc10_real_recordings_as_a_plain_folder(tmp_path):
    """The ESC-10 clips copied into a plain folder with labels.csv (filename,label,source =
    ESC-50's src_file), prepared with the seeded grouped split."""
    meta_csv = require(ESC10 / "meta" / "esc50.csv")
    with open(meta_csv, newline="") as f:
        meta_rows = list(csv.DictReader(f))
    raw = tmp_path / "my_sounds"
    rows = []
    for row in meta_rows:
        rel = f"recordings/{row['filename']}"
        (raw / "recordings").mkdir(parents=True, exist_ok=True)
        shutil.copy(ESC10 / "audio" / row["filename"], raw / rel)
        rows.append([rel, row["category"], row["src_file"]])
    fake_raw.write_labels(raw / "labels.csv", ["filename", "label", "source"], rows)
    builder = _build(raw, tmp_path / "out", dataset_name="esc10")
    meta = builder.info.metadata
    categories = sorted({r["category"] for r in meta_rows})
    assert len(meta_rows) == 83 and len(categories) == 10
    assert meta["class_names"] == categories and meta["multi_label"] is False and meta["group_column"] == "source"
    sizes = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
    assert sum(sizes.values()) == 83 and set(sizes) == {"train", "validation", "test"}
    # 80/10/10 of 83 clips, but each of the 10 classes (8-10 clips) keeps a clip in every split.
    assert sizes == {"train": 59, "validation": 11, "test": 13}  # seed 0; docs/DATASETS.md quotes it
    assert all(fake_raw.read_report(builder, s)["num_skipped"] == 0 for s in sizes)
    examples = _all_examples(builder)
    by_id = {f"recordings/{r['filename']}": r for r in meta_rows}
    assert sorted(examples) == sorted(by_id)
    splits_of_source = {}
    for rel, ex in examples.items():
        assert categories[ex["label"]] == by_id[rel]["category"]
        assert ex["group"].decode() == by_id[rel]["src_file"]
        assert ex["waveform"].shape == (160000,) and ex["duration_s"] == pytest.approx(5.0)
        splits_of_source.setdefault(by_id[rel]["src_file"], set()).add(ex["split"])
    assert all(len(s) == 1 for s in splits_of_source.values())  # no source recording straddles splits
    for split in sizes:
        assert {categories[ex["label"]] for ex in examples.values() if ex["split"] == split} == set(categories)
