"""Speech Commands V2 (35 words, 1 s utterances, 16 kHz).

Raw layout (the speech_commands_v0.02 archive, extracted):
    <word>/<speaker>_nohash_<n>.wav   one folder per word (35 words)
    _background_noise_/               ignored
    validation_list.txt               lines like "right/a69b9b3e_nohash_0.wav"
    testing_list.txt

Splits follow the lists exactly: "validation" = validation_list.txt, "test" = testing_list.txt,
"train" = every other utterance. (The official HTS-AT recipe trains on train + validation:
use `split="train+validation"`.) Utterances keep their own length (up to 1 s); the
pipeline tiles them to 10 s.

Registered as "speech_commands_v2": TFDS already ships a "speech_commands" builder whose
features need TensorFlow, and two builders cannot share a name.
"""

from __future__ import annotations

import os
import pathlib
from typing import Iterator

import tensorflow_datasets as tfds

from tfds_builders import audio_io, common

SAMPLE_RATE = 16000

# Label order of the official HTS-AT SCV2 run (HTSAT_SPEC §7): index = class id.
CLASS_NAMES: tuple[str, ...] = (
    "bed", "wow", "five", "left", "down", "forward", "sheila", "go", "dog", "up",
    "zero", "yes", "learn", "two", "right", "four", "eight", "cat", "happy", "six",
    "tree", "bird", "follow", "marvin", "on", "stop", "one", "visual", "house", "off",
    "seven", "nine", "no", "three", "backward",
)

BACKGROUND_NOISE_DIR = "_background_noise_"
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
_URL = "https://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"


def read_list(path: pathlib.Path) -> list[str]:
    """Reads a split list ("word/file.wav" per line), checking each entry.

    Raises:
      RawDataError: a malformed line or an unknown word, naming the file and line.
    """
    entries = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            entry = line.strip()
            if not entry:
                continue
            parts = entry.split("/")
            if len(parts) != 2 or not parts[1]:
                raise common.row_error(path, line_no, f"expected '<word>/<file>.wav', got {entry!r}")
            if parts[0] not in CLASS_NAMES:
                raise common.row_error(path, line_no, f"unknown word {parts[0]!r} (not one of the 35 Speech Commands V2 words)")
            entries.append(entry)
    return entries


def scan_words(root: pathlib.Path) -> list[str]:
    """Returns every "word/file.wav" under the word folders of `root`, sorted.

    Raises:
      RawDataError: a folder that is not one of the 35 words (other than _background_noise_).
    """
    files = []
    with os.scandir(root) as it:
        folders = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    unknown = [d for d in folders if d not in CLASS_NAMES and d != BACKGROUND_NOISE_DIR]
    if unknown:
        raise common.RawDataError(
            f"{root}: folder(s) {unknown} are not Speech Commands V2 words; expected only the 35 words "
            f"and {BACKGROUND_NOISE_DIR}"
        )
    words = [d for d in folders if d in CLASS_NAMES]
    if not words:
        raise common.RawDataError(f"{root}: no word folders found (expected e.g. {root / 'yes'})")
    for word in words:
        with os.scandir(root / word) as it:
            files.extend(f"{word}/{e.name}" for e in it if e.is_file() and e.name.lower().endswith(".wav"))
    return sorted(files)


def split_files(root: pathlib.Path) -> dict[str, list[str]]:
    """Assigns every utterance to train/validation/test from the two list files.

    Files named in a list but absent on disk stay in that split's list; generation records
    them as missing in the skip report.
    """
    val = read_list(common.require_file(root / VALIDATION_LIST, "Speech Commands validation list"))
    test = read_list(common.require_file(root / TESTING_LIST, "Speech Commands testing list"))
    both = sorted(set(val) & set(test))
    if both:
        raise common.RawDataError(
            f"{root}: {len(both)} file(s) are in both {VALIDATION_LIST} and {TESTING_LIST}, e.g. {both[0]}"
        )
    held_out = set(val) | set(test)
    train = [f for f in scan_words(root) if f not in held_out]
    return {"train": train, "validation": sorted(set(val)), "test": sorted(set(test))}


class SpeechCommandsV2(tfds.core.GeneratorBasedBuilder):
    """Speech Commands V2 at 16 kHz, 35 words in the HTS-AT label order, train/validation/test."""

    name = "speech_commands_v2"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: 16 kHz int16 waveforms, HTS-AT label order."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional. Point manual_dir at the extracted speech_commands_v0.02 folder (word folders plus "
        "validation_list.txt and testing_list.txt). Without manual_dir the archive is downloaded."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Speech Commands V2: 35 spoken words, mono 16 kHz int16, variable length (<= 1 s).",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "waveform": common.waveform_feature(),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                }
            ),
            supervised_keys=("waveform", "label"),
            homepage="https://arxiv.org/abs/1804.03209",
            metadata=tfds.core.MetadataDict(
                sample_rate=SAMPLE_RATE, clip_samples=None, class_names=list(CLASS_NAMES)
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual = common.explicit_manual_dir(dl_manager)
        root = manual if manual is not None else pathlib.Path(dl_manager.download_and_extract(_URL))
        splits = split_files(root)
        return {name: self._generate_examples(root, name, files) for name, files in splits.items()}

    def _generate_examples(self, root: pathlib.Path, split: str, files: list[str]) -> Iterator[tuple[str, dict]]:
        report = audio_io.SkipReport(self.name, split)
        for rel in common.progress(files, desc=f"{self.name} {split}"):
            try:
                audio = audio_io.load_mono(root / rel, SAMPLE_RATE)
            except audio_io.AudioDecodeError as err:
                report.add_error(err, rel)
                continue
            report.num_written += 1
            yield rel, {
                "id": rel,
                "waveform": audio_io.to_int16(audio.waveform),
                "label": CLASS_NAMES.index(rel.split("/", 1)[0]),
            }
        common.finish_split(self, report)
