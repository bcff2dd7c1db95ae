"""Speech Commands V2 builder: a fake layout and the real FSDD subset (8 kHz speech)."""

import math
import pathlib

import numpy as np
import pytest
import soundfile as sf

import fake_raw
import tfds_builders
from tfds_builders import common, speech_commands

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FSDD = REPO_ROOT.parent / "shared" / "data" / "fsdd_speechcommands_subset"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    expected = fake_raw.make_speech_commands(raw)
    builder = tfds_builders.build("speech_commands", manual_dir=raw, data_dir=tmp_path_factory.mktemp("out"))
    return builder, expected


def test_label_order_is_the_official_htsat_one():
    names = speech_commands.CLASS_NAMES
    assert len(names) == 35 == len(set(names))
    assert names[:3] == ("bed", "wow", "five") and names[10] == "zero" and names[34] == "backward"


def test_splits_labels_lengths_and_content(built):
    builder, expected = built
    assert builder.name == "speech_commands_v2"
    assert builder.info.metadata["sample_rate"] == speech_commands.SAMPLE_RATE == 16000
    assert builder.info.features["label"].names == list(speech_commands.CLASS_NAMES)
    good = {k: v for k, v in expected.items() if k != "__skipped__"}
    for split in ("train", "validation", "test"):
        examples = fake_raw.read_split(builder, split)
        assert sorted(examples) == sorted(k for k, v in good.items() if v["split"] == split)
        for ex_id, ex in examples.items():
            want = good[ex_id]
            assert builder.info.features["label"].int2str(ex["label"]) == want["label"]
            tone = want["tone"]
            assert ex["waveform"].dtype == np.int16
            assert ex["waveform"].shape == (math.ceil(tone.frames * 16000 / tone.rate),)
            fake_raw.assert_tone(ex["waveform"], 16000, tone)
    # 8 kHz 0.5 s -> 8000 samples at 16 kHz; stereo 0.8/0.2 -> 0.5 mono amplitude.
    assert fake_raw.read_split(builder, "test")["no/aaa_nohash_0.wav"]["waveform"].shape == (8000,)
    stereo = fake_raw.read_split(builder, "validation")["yes/bbb_nohash_0.wav"]["waveform"] / 32767
    assert fake_raw.tone_amplitude(stereo) == pytest.approx(0.5, rel=0.02)


def test_background_noise_is_not_a_class(built):
    builder, _ = built
    ids = [i for s in builder.info.splits for i in fake_raw.read_split(builder, s)]
    assert not any(i.startswith("_background_noise_") for i in ids)


def test_skip_reports(built):
    builder, expected = built
    for split, want in expected["__skipped__"].items():
        report = fake_raw.read_report(builder, split)
        got = {e["path"]: e["reason"] for e in report["skipped"]}
        assert sorted(got) == sorted(want), split
        for path, reason in want.items():
            assert got[path].startswith(reason)
    assert builder.info.metadata["skipped"] == {"train": 1, "validation": 1, "test": 1}


def _minimal_raw(tmp_path):
    raw = tmp_path / "raw"
    fake_raw.write_tone(raw / "yes" / "a_nohash_0.wav", fake_raw.Tone(440.0, (0.5,), 0.1, 16000))
    (raw / "validation_list.txt").write_text("")
    (raw / "testing_list.txt").write_text("")
    return raw


def test_unknown_word_folder_is_named(tmp_path):
    raw = _minimal_raw(tmp_path)
    (raw / "kitten").mkdir()
    (raw / "_background_noise_").mkdir()
    with pytest.raises(common.RawDataError, match=r"folder\(s\) \['kitten'\] are not Speech Commands V2 words"):
        tfds_builders.build("speech_commands", manual_dir=raw, data_dir=tmp_path / "out")


def test_unknown_word_in_list_names_file_and_line(tmp_path):
    raw = _minimal_raw(tmp_path)
    (raw / "testing_list.txt").write_text("yes/a_nohash_0.wav\nkitten/b_nohash_0.wav\n")
    with pytest.raises(common.RawDataError, match=r"testing_list\.txt:2: unknown word 'kitten'"):
        tfds_builders.build("speech_commands", manual_dir=raw, data_dir=tmp_path / "out")


def test_malformed_list_line_names_file_and_line(tmp_path):
    raw = _minimal_raw(tmp_path)
    (raw / "validation_list.txt").write_text("\nno_slash_here.wav\n")
    with pytest.raises(common.RawDataError, match=r"validation_list\.txt:2: expected '<word>/<file>\.wav'"):
        tfds_builders.build("speech_commands", manual_dir=raw, data_dir=tmp_path / "out")


def test_missing_list_file_is_named(tmp_path):
    raw = _minimal_raw(tmp_path)
    (raw / "testing_list.txt").unlink()
    with pytest.raises(common.RawDataError, match=r"missing Speech Commands testing list: expected file .*testing_list\.txt"):
        tfds_builders.build("speech_commands", manual_dir=raw, data_dir=tmp_path / "out")


@pytest.mark.skipif(not FSDD.is_dir(), reason=f"shared FSDD subset not found at {FSDD}")
def test_fsdd_subset_builds_at_16k_with_list_splits(tmp_path):
    builder = tfds_builders.build("speech_commands", manual_dir=FSDD, data_dir=tmp_path)
    sizes = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
    assert sizes == {"train": 200, "validation": 100, "test": 100}
    takes = {"train": set(range(10, 20)), "validation": set(range(5, 10)), "test": set(range(0, 5))}
    labels = builder.info.features["label"]
    for split in sizes:
        examples = fake_raw.read_split(builder, split)
        assert len(examples) == sizes[split]
        for ex_id, ex in examples.items():
            word, name = ex_id.split("/")
            assert labels.int2str(ex["label"]) == word
            assert int(name.split("_")[-1].removesuffix(".wav")) in takes[split]
            info = sf.info(FSDD / ex_id)
            assert info.samplerate == 8000
            assert ex["waveform"].shape == (round(info.frames * 2),)
            assert np.abs(ex["waveform"]).max() > 0
        assert fake_raw.read_report(builder, split)["num_skipped"] == 0


def test_without_manual_dir_the_public_archive_is_used(tmp_path):
    extracted = tmp_path / "extracted"
    fake_raw.make_speech_commands(extracted)  # the tarball has no top-level folder
    stub = fake_raw.StubDownloads(tmp_path, extracted)
    generators = speech_commands.SpeechCommandsV2(data_dir=tmp_path / "out")._split_generators(stub)
    assert sorted(generators) == ["test", "train", "validation"]
    assert stub.urls == ["https://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"]
