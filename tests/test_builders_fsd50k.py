"""FSD50K builder on a fake tree in the extracted Zenodo layout (44.1 kHz clips -> 16 / 32 kHz)."""

import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest

import fake_raw
import tfds_builders
from tfds_builders import common, fsd50k

NAMES = [n for n, _ in fake_raw.FSD50K_VOCAB]
MIDS = [m for _, m in fake_raw.FSD50K_VOCAB]
SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "tools" / "prepare_data.py"


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    return root, fake_raw.make_fsd50k(root)


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory):
    root, expected = raw
    builder = tfds_builders.build("fsd50k", manual_dir=root, data_dir=tmp_path_factory.mktemp("out"))
    return builder, expected


def _multi_hot(indices):
    out = np.zeros(200, np.uint8)
    out[indices] = 1
    return out


def _resampled_length(tone, rate):
    return math.ceil(tone.frames * rate / 44100)


def test_info_metadata_and_class_order(built):
    builder, _ = built
    assert builder.name == "fsd50k" and builder.builder_config.name == "16k"
    assert str(builder.data_dir).endswith("fsd50k/16k/1.0.0")
    meta = builder.info.metadata
    assert meta["sample_rate"] == fsd50k.SAMPLE_RATE == 16000
    assert meta["clip_samples"] is None and meta["num_classes"] == 200
    # vocabulary.csv rows are shuffled on disk: the index column decides the order.
    assert meta["class_names"] == NAMES and meta["class_mids"] == MIDS
    assert meta["class_names"][69] == "Electric_guitar" and meta["class_names"][151] == "Speech"
    assert builder.info.features["labels"].shape == (200,)
    assert sorted(builder.info.features) == ["duration_s", "id", "labels", "num_samples", "waveform"]
    assert list(builder.info.splits) == ["train", "validation", "test"]
    assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {
        "train": 3, "validation": 1, "test": 2
    }
    assert meta["omitted_splits"] == {}


def test_every_example_exactly(built):
    builder, expected = built
    good = {k: v for k, v in expected.items() if k != "__skipped__"}
    for split in ("train", "validation", "test"):
        examples = fake_raw.read_split(builder, split)
        assert sorted(examples) == sorted(k for k, v in good.items() if v["split"] == split), split
        for fname, ex in examples.items():
            want = good[fname]
            np.testing.assert_array_equal(ex["labels"], _multi_hot(want["labels"]))
            assert ex["labels"].dtype == np.uint8
            n = _resampled_length(want["tone"], 16000)
            assert ex["waveform"].dtype == np.int16 and ex["waveform"].shape == (n,), fname
            assert ex["num_samples"] == n
            assert ex["duration_s"] == pytest.approx(want["tone"].frames / 44100, abs=1e-6)
            fake_raw.assert_tone(ex["waveform"], 16000, want["tone"])
    train = fake_raw.read_split(builder, "train")
    # 13231 frames at 44.1 kHz -> ceil(4800.36) = 4801 samples; 1.3 s -> 20800; 2.2 s -> 35200.
    assert {k: len(v["waveform"]) for k, v in train.items()} == {"1001": 4801, "64760": 20800, "1005": 35200}
    # The quoted 5-label list of the FSD50K README example row, mapped through vocabulary.csv.
    assert np.flatnonzero(train["64760"]["labels"]).tolist() == [69, 88, 117, 118, 131]
    assert fake_raw.read_split(builder, "test")["2003"]["waveform"].shape == (4800,)


def test_class_positive_counts(built):
    builder, expected = built
    counts = builder.info.metadata["class_positive_counts"]
    for split in ("train", "validation", "test"):
        want = np.zeros(200, int)
        for v in expected.values():
            if isinstance(v, dict) and v.get("split") == split:
                want[v["labels"]] += 1
        assert counts[split] == want.tolist()


def test_skip_reports(built):
    builder, expected = built
    for split, want in expected["__skipped__"].items():
        report = fake_raw.read_report(builder, split)
        got = {e["path"]: e["reason"] for e in report["skipped"]}
        assert got.keys() == want.keys(), split
        for path, reason in want.items():
            assert got[path].startswith(reason), (path, got[path])
        assert report["num_written"] == builder.info.splits[split].num_examples
    assert builder.info.metadata["skipped"] == {"train": 1, "validation": 1, "test": 1}


def test_default_config_opens_without_naming_it(built):
    """The pipeline opens "fsd50k" from the files alone; TFDS must resolve the default config."""
    import tensorflow_datasets as tfds

    builder, _ = built
    data_dir = pathlib.Path(builder.data_dir).parents[2]
    # Without the builder code, TFDS reads the default config's name from here.
    assert json.loads((data_dir / "fsd50k" / ".config" / "metadata.json").read_text()) == {"default_config_name": "16k"}
    ro = tfds.core.read_only_builder.builder_from_files("fsd50k", data_dir=str(data_dir))
    assert ro.info.metadata["sample_rate"] == 16000 and ro.info.metadata["class_names"] == NAMES
    assert len(ro.as_data_source(split="test")) == 2


def test_prepare_data_cli_32k_config(raw, tmp_path, capsys):
    root, expected = raw
    spec = importlib.util.spec_from_file_location("prepare_data", SCRIPT)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / "out"
    code = cli.main(["fsd50k", "--manual_dir", str(root), "--data_dir", str(out), "--config", "32k"])
    assert code == 0
    stdout = capsys.readouterr().out
    dataset_dir = out / "fsd50k" / "32k" / "1.0.0"
    assert f"fsd50k 1.0.0 -> {dataset_dir}" in stdout
    assert json.loads((dataset_dir / "skipped_test.json").read_text())["num_skipped"] == 1
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(dataset_dir))
    assert builder.info.metadata["sample_rate"] == 32000
    examples = fake_raw.read_split(builder, "validation")
    tone = expected["1002"]["tone"]
    assert examples["1002"]["waveform"].shape == (_resampled_length(tone, 32000),) == (32000,)
    fake_raw.assert_tone(examples["1002"]["waveform"], 32000, tone)
    assert fsd50k.rate_config(32000) == "32k" and fsd50k.rate_config(16000) == "16k"


# -------------------------------------------------------------------------------- errors

def _raw_tree(tmp_path, dev_rows, eval_rows=None, vocab=None):
    root = tmp_path / "raw"
    gt = root / "FSD50K.ground_truth"
    fake_raw.write_fsd50k_vocabulary(gt / "vocabulary.csv", vocab)
    (gt / "dev.csv").write_text(fake_raw.FSD50K_DEV_HEADER + "".join(dev_rows))
    eval_rows = [fake_raw.fsd50k_row("9", ["Music"])] if eval_rows is None else eval_rows
    (gt / "eval.csv").write_text(fake_raw.FSD50K_EVAL_HEADER + "".join(eval_rows))
    for folder, fname in (("FSD50K.dev_audio", "1"), ("FSD50K.eval_audio", "9")):
        fake_raw.write_tone(root / folder / f"{fname}.wav", fake_raw.Tone(440.0, (0.5,), 0.1, 44100))
    return root


def _build(root, tmp_path):
    return tfds_builders.build("fsd50k", manual_dir=root, data_dir=tmp_path / "out")


def test_unknown_label_names_file_and_line(tmp_path):
    rows = [fake_raw.fsd50k_row("1", ["Music"], "train"), fake_raw.fsd50k_row("2", ["Dog", "Kazoo"], "val")]
    root = _raw_tree(tmp_path, rows)
    with pytest.raises(common.RawDataError, match=r"FSD50K\.ground_truth/dev\.csv:3: unknown label 'Kazoo'"):
        _build(root, tmp_path)
    assert not (tmp_path / "out" / "fsd50k" / "16k" / "1.0.0").exists()
    eval_rows = [fake_raw.fsd50k_row("9", ["Music"]), fake_raw.fsd50k_row("8", ["Not_a_class"])]
    root = _raw_tree(tmp_path, rows[:1], eval_rows)
    with pytest.raises(common.RawDataError, match=r"eval\.csv:3: unknown label 'Not_a_class'"):
        _build(root, tmp_path)


def test_mids_must_match_labels(tmp_path):
    row = '1,"Dog,Animal","/m/0bt9lr,/m/04rlf",train\n'  # second mid is Music, not Animal
    with pytest.raises(common.RawDataError, match=r"dev\.csv:2: mids .* do not match labels"):
        _build(_raw_tree(tmp_path, [row]), tmp_path)


def test_bad_split_and_duplicate_fname_name_the_line(tmp_path):
    rows = [fake_raw.fsd50k_row("1", ["Music"], "train"), fake_raw.fsd50k_row("2", ["Music"], "eval")]
    with pytest.raises(common.RawDataError, match=r"dev\.csv:3: split must be one of \['train', 'val'\], got 'eval'"):
        _build(_raw_tree(tmp_path, rows), tmp_path)
    rows = [fake_raw.fsd50k_row("1", ["Music"], "train"), fake_raw.fsd50k_row("1", ["Dog"], "val")]
    with pytest.raises(common.RawDataError, match=r"dev\.csv:3: fname 1 already listed on line 2"):
        _build(_raw_tree(tmp_path, rows), tmp_path)


def test_missing_column_and_missing_files_are_named(tmp_path):
    root = _raw_tree(tmp_path, [fake_raw.fsd50k_row("1", ["Music"], "train")])
    dev = root / "FSD50K.ground_truth" / "dev.csv"
    dev.write_text("fname,labels,mids\n" + fake_raw.fsd50k_row("1", ["Music"]))
    with pytest.raises(common.RawDataError, match=r"dev\.csv:1: header lacks column\(s\) \['split'\]"):
        _build(root, tmp_path)
    dev.unlink()
    with pytest.raises(common.RawDataError, match=r"missing FSD50K dev ground truth: expected file .*FSD50K\.ground_truth/dev\.csv"):
        _build(root, tmp_path)
    with pytest.raises(common.RawDataError, match=r"missing FSD50K ground truth: expected folder .*FSD50K\.ground_truth"):
        _build(tmp_path / "raw" / "FSD50K.dev_audio", tmp_path)


def test_vocabulary_checks(tmp_path):
    vocab = fake_raw.FSD50K_VOCAB[:199]
    with pytest.raises(common.RawDataError, match=r"vocabulary\.csv: lists 199 classes, FSD50K has 200 \(missing indices \[199\]"):
        _build(_raw_tree(tmp_path, [fake_raw.fsd50k_row("1", ["Music"], "train")], vocab=vocab), tmp_path)
    root = _raw_tree(tmp_path, [fake_raw.fsd50k_row("1", ["Music"], "train")])
    path = root / "FSD50K.ground_truth" / "vocabulary.csv"
    path.write_text("index,label,mid\n" + path.read_text())
    with pytest.raises(common.RawDataError, match=r"vocabulary\.csv:1: index 'index' is not an integer \(vocabulary\.csv has no header"):
        _build(root, tmp_path)


def test_parent_folder_and_empty_split(tmp_path):
    """manual_dir may hold the tree under FSD50K/; a split without rows is left out and reported."""
    root = _raw_tree(tmp_path, [fake_raw.fsd50k_row("1", ["Music"], "train")])
    parent = tmp_path / "parent"
    parent.mkdir()
    root.rename(parent / "FSD50K")
    builder = _build(parent, tmp_path)
    assert list(builder.info.splits) == ["train", "test"]
    assert builder.info.metadata["omitted_splits"] == {
        "validation": "no FSD50K.ground_truth/dev.csv rows with split=val"
    }
    assert fake_raw.read_report(builder, "validation")["num_written"] == 0


def test_without_manual_dir_nothing_is_downloaded(tmp_path):
    with pytest.raises(common.RawDataError, match="FSD50K needs a local folder"):
        fsd50k.Fsd50k(data_dir=tmp_path / "out")._split_generators(fake_raw.StubDownloads(tmp_path, tmp_path))
