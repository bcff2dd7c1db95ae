"""Tiny fake raw datasets in each dataset's real folder layout, for the builder tests.

Every audio file is a pure tone whose frequency and amplitude the tests know, so they can
check resampling (the tone stays at its frequency) and mono mixing (channel amplitudes are
averaged). Each layout also holds the bad cases the builders must skip and report: a
corrupt file (random bytes named .wav), a truncated WAV, and a listed-but-missing file.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import soundfile as sf


@dataclasses.dataclass(frozen=True)
class Tone:
    """What a written file contains: a sine at `freq` Hz; `amps` per channel; `seconds` long at `rate`."""

    freq: float
    amps: tuple[float, ...]
    seconds: float
    rate: int

    @property
    def mono_amp(self) -> float:
        return float(np.mean(self.amps))

    @property
    def frames(self) -> int:
        return int(round(self.seconds * self.rate))


def write_tone(path: pathlib.Path, tone: Tone, subtype: str = "PCM_16") -> Tone:
    """Writes `tone` (channels = len(amps)) to `path`; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(tone.frames) / tone.rate
    wave = np.stack([a * np.sin(2 * np.pi * tone.freq * t) for a in tone.amps], axis=1)
    sf.write(path, wave.astype(np.float32), tone.rate, subtype=subtype)
    return tone


def write_corrupt(path: pathlib.Path, seed: int = 0) -> None:
    """Random bytes under an audio file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4000, dtype=np.uint8).tobytes())


def write_truncated(path: pathlib.Path) -> None:
    """A valid 1 s WAV header whose data chunk is cut in half (as an interrupted copy leaves it)."""
    write_tone(path, Tone(440.0, (0.5,), 1.0, 16000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_text(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------- ESC-50

ESC50_HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def make_esc50(root: pathlib.Path) -> dict[str, dict]:
    """ESC-50-master layout. Returns {id: expectation} for the clips that must be written,
    and {"__skipped__": {id: reason fragment}} for those that must be skipped."""
    audio = root / "audio"
    good = {
        # filename: (fold, target, category, esc10, tone)
        "1-100-A-0.wav": (1, 0, "dog", True, Tone(440.0, (0.5,), 5.0, 44100)),
        "2-200-A-1.wav": (2, 1, "rooster", True, Tone(1000.0, (0.6, 0.2), 5.0, 44100)),  # stereo
        "3-300-A-2.wav": (3, 2, "pig", False, Tone(2000.0, (0.3,), 5.0, 22050)),  # other rate
        "4-400-A-4.wav": (4, 4, "frog", False, Tone(700.0, (0.4,), 3.0, 48000)),  # short: padded
    }
    rows = []
    expected: dict[str, dict] = {}
    for name, (fold, target, category, esc10, tone) in good.items():
        write_tone(audio / name, tone)
        rows.append(f"{name},{fold},{target},{category},{esc10},{name.split('-')[1]},A\n")
        expected[f"audio/{name}"] = {"fold": fold, "label": target, "esc10": esc10, "tone": tone}
    write_corrupt(audio / "5-500-A-13.wav")
    rows.append("5-500-A-13.wav,5,13,crickets,False,500,A\n")
    write_truncated(audio / "5-600-A-49.wav")
    rows.append("5-600-A-49.wav,5,49,hand_saw,False,600,A\n")
    rows.append("5-700-A-3.wav,5,3,cow,False,700,A\n")  # listed, no file
    _write_text(root / "meta" / "esc50.csv", ESC50_HEADER + "".join(rows))
    expected["__skipped__"] = {
        "audio/5-500-A-13.wav": "unreadable audio",
        "audio/5-600-A-49.wav": "truncated",
        "audio/5-700-A-3.wav": "missing file",
    }
    return expected


# ------------------------------------------------------------------------- Speech Commands

def make_speech_commands(root: pathlib.Path) -> dict[str, dict]:
    """Speech Commands V2 layout: word folders, the two list files, _background_noise_."""
    files = {
        # rel path: (split, tone or None for bad files)
        "yes/aaa_nohash_0.wav": ("train", Tone(500.0, (0.5,), 1.0, 16000)),
        "yes/bbb_nohash_0.wav": ("validation", Tone(800.0, (0.8, 0.2), 0.8, 16000)),  # stereo
        "no/aaa_nohash_0.wav": ("test", Tone(300.0, (0.4,), 0.5, 8000)),  # 8 kHz
        "bed/ccc_nohash_1.wav": ("train", Tone(1200.0, (0.3,), 1.0, 44100)),  # 44.1 kHz
        "backward/ddd_nohash_0.wav": ("train", Tone(600.0, (0.5,), 0.75, 16000)),
    }
    expected: dict[str, dict] = {}
    for rel, (split, tone) in files.items():
        write_tone(root / rel, tone)
        expected[rel] = {"split": split, "label": rel.split("/")[0], "tone": tone}
    write_corrupt(root / "no" / "eee_nohash_1.wav")  # train
    write_truncated(root / "backward" / "fff_nohash_0.wav")  # test
    write_tone(root / "_background_noise_" / "white_noise.wav", Tone(100.0, (0.1,), 2.0, 16000))
    _write_text(root / "validation_list.txt", "yes/bbb_nohash_0.wav\nbed/ggg_nohash_0.wav\n")  # 2nd is missing
    _write_text(root / "testing_list.txt", "no/aaa_nohash_0.wav\nbackward/fff_nohash_0.wav\n")
    _write_text(root / "LICENSE", "fake\n")
    expected["__skipped__"] = {
        "train": {"no/eee_nohash_1.wav": "unreadable audio"},
        "validation": {"bed/ggg_nohash_0.wav": "missing file"},
        "test": {"backward/fff_nohash_0.wav": "truncated"},
    }
    return expected


# -------------------------------------------------------------------------------- AudioSet

AUDIOSET_CLASSES = [
    ("/m/09x0r", "Speech"),
    ("/m/04rlf", "Music"),
    ("/m/0jbk", "Animal"),
    ("/m/07yv9", "Vehicle"),
    ("/m/0fake", "Human sounds, misc"),  # a comma inside a quoted display name
]


def write_audioset_class_labels(path: pathlib.Path) -> None:
    lines = ["index,mid,display_name\n"] + [f'{i},{mid},"{name}"\n' for i, (mid, name) in enumerate(AUDIOSET_CLASSES)]
    _write_text(path, "".join(lines))


def audioset_segments_csv(rows: list[tuple[str, float, float, list[str]]]) -> str:
    """The real file's format: 3 comment lines, then `YTID, start, end, "mid1,mid2"`."""
    head = (
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        f"# num_ytids={len(rows)}, num_segs={len(rows)}, num_unique_labels=5, num_positive_labels=7\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
    )
    return head + "".join(f'{y}, {s:.3f}, {e:.3f}, "{",".join(m)}"\n' for y, s, e, m in rows)


def make_audioset(root: pathlib.Path) -> dict[str, dict]:
    """Segment CSVs + downloaded clips in the usual naming schemes, in per-split sub-folders."""
    write_audioset_class_labels(root / "class_labels_indices.csv")
    mids = [m for m, _ in AUDIOSET_CLASSES]
    balanced = [
        ("AAAAAAAAAAA", 30.0, 40.0, [mids[0], mids[1]]),
        ("Y_bBBBBBBBB", 0.0, 10.0, [mids[2]]),  # id starting with 'Y' and holding '_'
        ("CCCCCCCCCCC", 12.5, 22.5, [mids[3]]),  # corrupt file
        ("DDDDDDDDDDD", 5.0, 15.0, [mids[4]]),  # never downloaded
    ]
    evaluation = [
        ("EEEEEEEEEEE", 10.0, 20.0, [mids[4], mids[0]]),
        ("FFFFFFFFFFF", 0.0, 10.0, [mids[1]]),
    ]
    _write_text(root / "balanced_train_segments.csv", audioset_segments_csv(balanced))
    _write_text(root / "eval_segments.csv", audioset_segments_csv(evaluation))
    _write_text(root / "unbalanced_train_segments.csv", audioset_segments_csv([("GGGGGGGGGGG", 0.0, 10.0, [mids[3]])]))
    clips = {
        "AAAAAAAAAAA": ("audio/balanced_train/YAAAAAAAAAAA.wav", Tone(1000.0, (0.5,), 0.5, 32000)),
        "Y_bBBBBBBBB": ("audio/balanced_train/Y_bBBBBBBBB_0.flac", Tone(1500.0, (0.6, 0.2), 0.5, 44100)),
        "EEEEEEEEEEE": ("audio/eval/EEEEEEEEEEE_10.000.wav", Tone(2000.0, (0.5,), 0.5, 16000)),
        "FFFFFFFFFFF": ("audio/eval/sub/FFFFFFFFFFF.wav", Tone(800.0, (0.5,), 10.5, 32000)),  # > 10 s: cut
    }
    expected: dict[str, dict] = {}
    for split, rows in (("balanced_train", balanced), ("eval", evaluation)):
        for ytid, start, _, labels in rows:
            if ytid not in clips:
                continue
            rel, tone = clips[ytid]
            write_tone(root / rel, tone)
            expected[f"{ytid}_{int(start * 1000)}"] = {
                "split": split, "labels": sorted(mids.index(m) for m in labels), "tone": tone
            }
    write_corrupt(root / "audio" / "balanced_train" / "CCCCCCCCCCC.wav")
    expected["__skipped__"] = {
        "balanced_train": {
            "audio/balanced_train/CCCCCCCCCCC.wav": "unreadable audio",
            "DDDDDDDDDDD_5000": "missing audio",
        },
        "eval": {},
    }
    return expected


def make_audioset_packed(root: pathlib.Path) -> dict[str, dict]:
    """PANNs layout: hdf5s/waveforms/{balanced_train,eval}.h5 + a corrupt unbalanced part."""
    import h5py

    write_audioset_class_labels(root / "metadata" / "class_labels_indices.csv")
    waves_dir = root / "hdf5s" / "waveforms"
    waves_dir.mkdir(parents=True)
    n_cls = len(AUDIOSET_CLASSES)
    expected: dict[str, dict] = {}
    tables = {
        "balanced_train": [("HHHHHHHHHHH", 440.0, [0, 2]), ("IIIIIIIIIII", None, [1]), ("JJJJJJJJJJJ", 900.0, [3])],
        "eval": [("KKKKKKKKKKK", 1200.0, [4])],
    }
    t = np.arange(320000) / 32000
    for split, table in tables.items():
        with h5py.File(waves_dir / f"{split}.h5", "w") as h5:
            h5.attrs["sample_rate"] = 32000
            names = h5.create_dataset("audio_name", shape=(len(table),), dtype="S20")
            wave = h5.create_dataset("waveform", shape=(len(table), 320000), dtype=np.int16)
            target = h5.create_dataset("target", shape=(len(table), n_cls), dtype=bool)
            for i, (ytid, freq, labels) in enumerate(table):
                names[i] = f"Y{ytid}.wav".encode()
                if freq is not None:  # None: PANNs leaves zeros for a clip it did not find
                    wave[i] = np.round(0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
                    expected[ytid] = {"split": split, "labels": labels, "freq": freq}
                row = np.zeros(n_cls, bool)
                row[labels] = True
                target[i] = row
    write_corrupt(waves_dir / "unbalanced_train" / "unbalanced_train_part00.h5")
    expected["__skipped__"] = {
        "balanced_train": {"hdf5s/waveforms/balanced_train.h5:YIIIIIIIIIII.wav": "missing audio"},
        "unbalanced_train": {"hdf5s/waveforms/unbalanced_train/unbalanced_train_part00.h5": "unreadable HDF5"},
        "eval": {},
    }
    return expected


# ----------------------------------------------------------------------------------- DESED

def make_desed(root: pathlib.Path) -> dict[str, dict]:
    """DESED layout: audio/{train/weak, validation, eval/public} + metadata TSVs."""
    weak_dir, eval_dir = root / "audio/train/weak", root / "audio/eval/public"
    _write_text(
        root / "metadata/train/weak.tsv",
        "filename\tevent_labels\n"
        "Yw1_0.000_10.000.wav\tDog,Speech\n"
        "Yw2_0.000_10.000.wav\tCat\n"
        "Yw3_0.000_10.000.wav\tBlender\n",
    )
    _write_text(
        root / "metadata/validation/validation.tsv",
        "filename\tonset\toffset\tevent_label\n"
        "Yv1.wav\t0.500\t1.250\tDog\n"
        "Yv1.wav\t0.100\t0.400\tSpeech\n"
        "Yv2.wav\t0.000\t9.000\tFrying\n",
    )
    _write_text(
        root / "metadata/eval/public.tsv",
        "filename\tonset\toffset\tevent_label\n"
        "Ye1.wav\t0.2\t0.9\tAlarm_bell_ringing\n"
        "Ye2.wav\t1.0\t2.0\tVacuum_cleaner\n"  # listed, no audio
        "Ye3.wav\t0.0\t1.0\tDishes\n",  # truncated audio
    )
    s, d, c, fr, al = "Speech", "Dog", "Cat", "Frying", "Alarm_bell_ringing"
    clips = {
        "audio/train/weak/Yw1_0.000_10.000.wav": ("weak", Tone(1000.0, (0.6, 0.2), 2.0, 44100), [d, s], []),
        "audio/train/weak/Yw2_0.000_10.000.wav": ("weak", Tone(1500.0, (0.5,), 1.0, 16000), [c], []),
        "audio/validation/Yv1.wav": ("validation", Tone(700.0, (0.4,), 1.5, 48000), [d, s],
                                     [(0.1, 0.4, s), (0.5, 1.25, d)]),
        "audio/validation/Yv2.wav": ("validation", Tone(500.0, (0.5,), 10.5, 32000), [fr], [(0.0, 9.0, fr)]),
        "audio/eval/public/Ye1.wav": ("eval", Tone(2500.0, (0.5,), 0.9, 22050), [al], [(0.2, 0.9, al)]),
    }
    expected: dict[str, dict] = {}
    for rel, (split, tone, labels, events) in clips.items():
        write_tone(root / rel, tone)
        expected[rel] = {"split": split, "tone": tone, "labels": labels, "events": events}
    write_corrupt(weak_dir / "Yw3_0.000_10.000.wav")
    write_tone(weak_dir / "Yextra.wav", Tone(100.0, (0.1,), 0.5, 16000))  # not in weak.tsv
    write_truncated(eval_dir / "Ye3.wav")
    expected["__skipped__"] = {
        "weak": {
            "audio/train/weak/Yw3_0.000_10.000.wav": "unreadable audio",
            "audio/train/weak/Yextra.wav": "not listed in metadata/train/weak.tsv",
        },
        "validation": {},
        "eval": {"audio/eval/public/Ye2.wav": "missing file", "audio/eval/public/Ye3.wav": "truncated"},
    }
    return expected


# ------------------------------------------------------------------------------- checking

def dominant_freq(x: np.ndarray, rate: int) -> float:
    """Frequency (Hz) of the strongest FFT bin of `x` (Hann-windowed)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def tone_amplitude(x: np.ndarray) -> float:
    """Amplitude of a sine from its RMS (robust to the resampler's edge ripple: middle half only)."""
    n = len(x)
    mid = x[n // 4 : 3 * n // 4]
    return float(np.sqrt(2.0 * np.mean(mid.astype(np.float64) ** 2)))


def list_files(root: pathlib.Path) -> list[str]:
    return sorted(os.path.relpath(p, root) for p in root.rglob("*") if p.is_file())


def read_split(builder, split: str) -> dict[str, dict]:
    """All examples of a built split, keyed by their decoded "id" (order on disk is hashed)."""
    import tensorflow_datasets as tfds

    source = tfds.builder_from_directory(os.fspath(builder.data_dir)).as_data_source(split=split)
    out = {}
    for i in range(len(source)):
        ex = source[i]
        out[ex["id"].decode()] = ex
    return out


def read_report(builder, split: str) -> dict:
    """The skip report JSON of `split`, read from the built dataset folder."""
    import json

    return json.loads((pathlib.Path(os.fspath(builder.data_dir)) / f"skipped_{split}.json").read_text())


def assert_tone(wave_int16: np.ndarray, rate: int, tone: Tone, *, freq_tol: float = 2.0, amp_rtol: float = 0.02) -> None:
    """The first `tone.seconds` of a stored waveform hold `tone` (frequency and mono-mixed amplitude)."""
    n = min(len(wave_int16), int(round(tone.seconds * rate)))
    x = wave_int16[:n].astype(np.float64) / 32767.0
    got_f = dominant_freq(x, rate)
    assert abs(got_f - tone.freq) <= max(freq_tol, rate / n), (got_f, tone)
    got_a = tone_amplitude(x)
    assert abs(got_a - tone.mono_amp) <= amp_rtol * tone.mono_amp, (got_a, tone)


class StubDownloads:
    """Stands in for tfds.download.DownloadManager when no manual_dir is given: records the URL
    a builder asks for and hands back a local folder instead of downloading."""

    def __init__(self, tmp_path: pathlib.Path, extracted: pathlib.Path):
        self.download_dir = tmp_path / "downloads"
        self._manual_dir = self.download_dir / "manual"  # TFDS's default when none is given
        self.urls: list[str] = []
        self._extracted = extracted

    def download_and_extract(self, url: str) -> pathlib.Path:
        self.urls.append(url)
        return self._extracted


# ---------------------------------------------------------------------------------- FSD50K

# Real FSD50K names and mids for the classes the fake clips use; the rest of the 200-row
# vocabulary is filler. `FSD50K_VOCAB[i]` is class i (the vocabulary.csv index).
_FSD50K_USED = {
    3: ("Accelerating_and_revving_and_vroom", "/m/07q2z82"),
    17: ("Animal", "/m/0jbk"),
    40: ("Dog", "/m/0bt9lr"),
    45: ("Domestic_animals_and_pets", "/m/068hy"),
    69: ("Electric_guitar", "/m/02sgy"),
    88: ("Guitar", "/m/0342h"),
    100: ("Human_voice", "/m/09l8g"),
    117: ("Music", "/m/04rlf"),
    118: ("Musical_instrument", "/m/04szw"),
    131: ("Plucked_string_instrument", "/m/0fx80y"),
    151: ("Speech", "/m/09x0r"),
}
FSD50K_VOCAB: list[tuple[str, str]] = [
    _FSD50K_USED.get(i, (f"Filler_class_{i:03d}", f"/m/fake{i:03d}")) for i in range(200)
]


def write_fsd50k_vocabulary(path: pathlib.Path, vocab: list[tuple[str, str]] | None = None) -> None:
    """Headerless `index,label,mid` rows, written in a shuffled (but fixed) order: the index
    column, not the row order, defines the class order."""
    vocab = FSD50K_VOCAB if vocab is None else vocab
    order = np.random.default_rng(50).permutation(len(vocab))
    _write_text(path, "".join(f"{i},{vocab[i][0]},{vocab[i][1]}\n" for i in order))


def fsd50k_row(fname: str, labels: list[str], split: str | None = None) -> str:
    """One dev.csv (with `split`) or eval.csv row, with quoted label and mid lists as in the real files."""
    mids = dict(FSD50K_VOCAB)
    row = f'{fname},"{",".join(labels)}","{",".join(mids.get(lab, "/m/unknown") for lab in labels)}"'
    return row + (f",{split}\n" if split is not None else "\n")


FSD50K_DEV_HEADER = "fname,labels,mids,split\n"
FSD50K_EVAL_HEADER = "fname,labels,mids\n"


def make_fsd50k(root: pathlib.Path) -> dict[str, dict]:
    """The extracted Zenodo layout: FSD50K.{dev,eval}_audio/<fname>.wav + FSD50K.ground_truth/.
    Clips are 44.1 kHz mono 16-bit, 0.3-2.2 s. Returns {fname: {split, labels (class indices),
    tone}} plus "__skipped__": {split: {path: reason prefix}}."""
    names = [n for n, _ in FSD50K_VOCAB]
    guitar = ["Electric_guitar", "Guitar", "Plucked_string_instrument", "Musical_instrument", "Music"]
    dog = ["Dog", "Domestic_animals_and_pets", "Animal"]
    speech = ["Speech", "Human_voice"]
    dev = [
        # fname, labels, split, tone (None: bad file, see below)
        ("64760", guitar, "train", Tone(440.0, (0.5,), 1.3, 44100)),
        ("1001", dog, "train", Tone(1000.0, (0.4,), 13231 / 44100, 44100)),  # 0.3 s + 1 frame: ceil matters
        ("1002", speech, "val", Tone(700.0, (0.6,), 1.0, 44100)),
        ("1003", ["Music"], "train", None),  # listed, no file
        ("1004", guitar[1:], "val", None),  # truncated
        ("1005", ["Accelerating_and_revving_and_vroom", "Music"], "train", Tone(300.0, (0.5,), 2.2, 44100)),
    ]
    evaluation = [
        ("2001", ["Music", "Musical_instrument"], Tone(1500.0, (0.3,), 2.2, 44100)),
        ("2002", dog, None),  # corrupt
        ("2003", speech, Tone(2000.0, (0.5,), 0.3, 44100)),
    ]
    gt = root / "FSD50K.ground_truth"
    write_fsd50k_vocabulary(gt / "vocabulary.csv")
    _write_text(gt / "dev.csv", FSD50K_DEV_HEADER + "".join(fsd50k_row(f, labs, s) for f, labs, s, _ in dev))
    _write_text(gt / "eval.csv", FSD50K_EVAL_HEADER + "".join(fsd50k_row(f, labs) for f, labs, _ in evaluation))
    split_names = {"train": "train", "val": "validation"}
    expected: dict[str, dict] = {}
    clips = [(f, labs, split_names[s], t, "FSD50K.dev_audio") for f, labs, s, t in dev]
    clips += [(f, labs, "test", t, "FSD50K.eval_audio") for f, labs, t in evaluation]
    for fname, labels, split, tone, folder in clips:
        if tone is not None:
            write_tone(root / folder / f"{fname}.wav", tone)
            expected[fname] = {"split": split, "labels": sorted(names.index(x) for x in labels), "tone": tone}
    write_truncated(root / "FSD50K.dev_audio" / "1004.wav")
    write_corrupt(root / "FSD50K.eval_audio" / "2002.wav")
    (root / "FSD50K.metadata").mkdir()  # present in the release, not read
    expected["__skipped__"] = {
        "train": {"FSD50K.dev_audio/1003.wav": "missing file"},
        "validation": {"FSD50K.dev_audio/1004.wav": "truncated"},
        "test": {"FSD50K.eval_audio/2002.wav": "unreadable audio"},
    }
    return expected


# ---------------------------------------------------------------------------- audio_folder

def write_labels(path: pathlib.Path, header: list[str], rows: list[list[object]]) -> pathlib.Path:
    """A labels.csv (comma) or labels.tsv (tab) file: `header`, then one line per row."""
    sep = "\t" if path.suffix == ".tsv" else ","
    lines = [sep.join(header)] + [sep.join(str(x) for x in row) for row in rows]
    return _write_text(path, "\n".join(lines) + "\n")


def make_audio_folder_weak(root: pathlib.Path) -> dict[str, dict]:
    """A user's folder with sub-folders, mixed formats/rates/channels and a weak labels.csv
    (`filename,labels`, `;`-separated, some clips with two labels: a multi-label dataset).
    Returns {rel path: {"labels": [names], "tone": Tone}} and "__skipped__": {rel: reason prefix}
    (over all splits: the split is drawn at random)."""
    clips = {
        # rel path: (labels, tone)
        "dogs/bark1.wav": (["dog"], Tone(440.0, (0.5,), 0.6, 44100)),
        "dogs/bark2.flac": (["dog", "speech"], Tone(900.0, (0.6, 0.2), 0.4, 48000)),  # stereo flac
        "dogs/deep/bark3.wav": (["dog"], Tone(300.0, (0.4,), 1.25, 16000)),
        "cats/meow1.ogg": (["cat"], Tone(1200.0, (0.5,), 0.5, 22050)),
        "cats/meow2.wav": (["cat", "speech"], Tone(700.0, (0.3,), 0.3, 32000)),
        "talk.wav": (["speech"], Tone(1500.0, (0.5,), 0.7, 8000)),
        "dogs/bark4.wav": (["dog"], Tone(500.0, (0.5,), 0.5, 32000)),
        "cats/meow3.wav": (["cat"], Tone(650.0, (0.5,), 0.5, 32000)),
    }
    for i in range(12):  # enough clips that every split of the random 80/10/10 draw gets good ones
        name = ("dog", "cat", "speech")[i % 3]
        clips[f"more/{name}{i}.wav"] = ([name], Tone(400.0 + 50 * i, (0.5,), 0.2, 16000))
    expected: dict[str, dict] = {}
    rows = []
    for rel, (labels, tone) in clips.items():
        write_tone(root / rel, tone, subtype="VORBIS" if rel.endswith(".ogg") else "PCM_16")
        expected[rel] = {"labels": labels, "tone": tone}
        rows.append([rel, ";".join(labels)])
    write_corrupt(root / "cats" / "broken.wav")
    rows.append(["cats/broken.wav", "cat"])
    write_truncated(root / "dogs" / "cut.wav")
    rows.append(["cut.wav", "dog"])  # a bare file name that is unique under the root
    write_tone(root / "extra" / "unlisted.wav", Tone(100.0, (0.1,), 0.2, 16000))
    write_corrupt(root / "dogs" / "._bark1.wav")  # macOS resource fork: hidden, ignored
    _write_text(root / "notes.txt", "not audio\n")
    write_labels(root / "labels.csv", ["filename", "labels"], rows)
    expected["__skipped__"] = {
        "cats/broken.wav": "unreadable audio",
        "dogs/cut.wav": "truncated",
        "extra/unlisted.wav": "not listed in labels.csv",
    }
    return expected


def make_audio_folder_strong(root: pathlib.Path) -> dict[str, dict]:
    """Strong labels in labels.tsv (`filename onset offset event_label split`), DESED style, one
    row per event; one clip with weak labels only (empty onset/offset) and one strongly labelled
    clip without events. Returns {rel: {"split", "labels", "events": [(on, off, name)], "strong",
    "tone"}}."""
    clips = {
        "scenes/a.wav": ("train", Tone(440.0, (0.5,), 3.0, 44100),
                         [("1.5", "2.75", "dog"), ("0.25", "1.0", "speech"), ("2.0", "3.5", "speech")]),
        "scenes/b.wav": ("train", Tone(800.0, (0.5, 0.3), 2.0, 16000), [("0.0", "2.0", "alarm")]),
        "scenes/c.wav": ("validation", Tone(600.0, (0.5,), 1.0, 32000), [("", "", "dog;alarm")]),  # weak only
        "scenes/d.wav": ("validation", Tone(1000.0, (0.4,), 1.0, 32000), [("", "", "")]),  # no events
        "scenes/e.wav": ("test", Tone(300.0, (0.5,), 1.5, 22050), [("0.5", "1.0", "dog")]),
    }
    rows, expected = [], {}
    for rel, (split, tone, events) in clips.items():
        write_tone(root / rel, tone)
        split_value = "val" if split == "validation" else split
        rows += [[rel, on, off, lab, split_value] for on, off, lab in events]
        strong_events = [(float(on), float(off), lab) for on, off, lab in events if on]
        weak = [n for on, _, lab in events if not on and lab for n in lab.split(";")]
        expected[rel] = {
            "split": split, "tone": tone, "events": sorted(strong_events),
            "labels": sorted({e[2] for e in strong_events} | set(weak)),
            "strong": not weak,
        }
    write_labels(root / "labels.tsv", ["filename", "onset", "offset", "event_label", "split"], rows)
    return expected


def make_audio_folder_classes(root: pathlib.Path) -> dict[str, dict]:
    """One folder per class, no labels file; nested folders inside a class, a stray file at the
    root (reported), hidden files and an empty folder (ignored). Returns {rel: {"label", "tone"}}."""
    clips = {
        "rooster/r1.wav": Tone(1000.0, (0.5,), 0.5, 44100),
        "rooster/r2.wav": Tone(1100.0, (0.5,), 0.4, 44100),
        "rain/day1/x.flac": Tone(300.0, (0.4, 0.2), 0.5, 48000),
        "rain/day2/x.flac": Tone(350.0, (0.4,), 0.3, 48000),
        "crying_baby/c.wav": Tone(2000.0, (0.5,), 0.25, 16000),
    }
    expected = {}
    for rel, tone in clips.items():
        write_tone(root / rel, tone)
        expected[rel] = {"label": rel.split("/")[0], "tone": tone}
    write_tone(root / "stray.wav", Tone(100.0, (0.2,), 0.2, 16000))
    write_corrupt(root / ".git" / "objects" / "x.wav")
    (root / "empty_folder").mkdir()
    expected["__skipped__"] = {"stray.wav": "not in a class folder"}
    return expected
