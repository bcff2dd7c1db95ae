"""DESED (domestic sound event detection, DCASE task 4): 10 classes, weak and strong labels.

Raw layout, as DESED ships it (audio/ + metadata/); each split's folder and TSV are listed in
SPLITS below, the single place to look (or edit) for other layouts:
    audio/train/weak/*.wav                       metadata/train/weak.tsv          (weak)
    audio/train/synthetic21_train/soundscapes/   metadata/train/synthetic21_train/soundscapes.tsv
    audio/validation/*.wav (or validation/validation/)   metadata/validation/validation.tsv
    audio/eval/public/*.wav                      metadata/eval/public.tsv
Strong TSV: header `filename onset offset event_label` (tab-separated), one row per event.
Weak TSV:   header `filename event_labels`, labels comma-separated.

A split is written when its TSV exists; splits whose TSV is absent are left out (listed in
info.metadata["omitted_splits"]). Every clip is resampled to 32 kHz and zero-padded or
truncated to 10 s; `duration_s` keeps the original length so predictions for short clips can
be cropped (HTS-AT keeps ceil((real_len // 320) * 1.024) of its 1024 frames).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import audio_io, common

SAMPLE_RATE = 32000
CLIP_SAMPLES = 10 * SAMPLE_RATE

CLASS_NAMES: tuple[str, ...] = (
    "Alarm_bell_ringing", "Blender", "Cat", "Dishes", "Dog",
    "Electric_shaver_toothbrush", "Frying", "Running_water", "Speech", "Vacuum_cleaner",
)


@dataclasses.dataclass(frozen=True)
class SplitSource:
    """Where a split lives: (audio folder, TSV) pairs relative to the raw root, first complete
    pair wins; `strong` selects the TSV format (events with onset/offset vs clip tags)."""

    candidates: tuple[tuple[str, str], ...]
    strong: bool


SPLITS: dict[str, SplitSource] = {
    "weak": SplitSource((("audio/train/weak", "metadata/train/weak.tsv"),), strong=False),
    "synthetic_train": SplitSource(
        (
            ("audio/train/synthetic21_train/soundscapes", "metadata/train/synthetic21_train/soundscapes.tsv"),
            ("audio/train/synthetic20/soundscapes", "metadata/train/synthetic20/soundscapes.tsv"),
        ),
        strong=True,
    ),
    "validation": SplitSource(
        (
            ("audio/validation/validation", "metadata/validation/validation.tsv"),
            ("audio/validation", "metadata/validation/validation.tsv"),
        ),
        strong=True,
    ),
    "eval": SplitSource((("audio/eval/public", "metadata/eval/public.tsv"),), strong=True),
}

_STRONG_HEADER = ["filename", "onset", "offset", "event_label"]
_WEAK_HEADER = ["filename", "event_labels"]


@dataclasses.dataclass
class Clip:
    """Labels of one clip gathered from a TSV; events are (onset, offset, class index)."""

    filename: str
    labels: set[int] = dataclasses.field(default_factory=set)
    events: list[tuple[float, float, int]] = dataclasses.field(default_factory=list)


def _label_index(path: pathlib.Path, line_no: int, label: str) -> int:
    if label not in CLASS_NAMES:
        raise common.row_error(path, line_no, f"unknown label {label!r} (DESED classes: {', '.join(CLASS_NAMES)})")
    return CLASS_NAMES.index(label)


def read_tsv(path: pathlib.Path, strong: bool) -> list[Clip]:
    """Parses a DESED strong or weak TSV into clips, in order of first appearance.

    Strong rows with empty onset/offset/label declare a clip without events.

    Raises:
      RawDataError: wrong header, malformed row or unknown label, naming the file and line.
    """
    rows = common.read_rows(path, delimiter="\t")
    expected = _STRONG_HEADER if strong else _WEAK_HEADER
    try:
        line_no, header = next(rows)
    except StopIteration:
        raise common.RawDataError(f"{path}: empty file, expected header {' '.join(expected)}") from None
    if header != expected:
        raise common.row_error(path, line_no, f"expected header {expected}, got {header}")
    clips: dict[str, Clip] = {}
    for line_no, fields in rows:
        while len(fields) > 1 and fields[-1] == "":
            fields.pop()  # trailing tabs
        filename = fields[0]
        if not filename:
            raise common.row_error(path, line_no, "empty filename")
        if strong:
            clip = clips.setdefault(filename, Clip(filename))
            if len(fields) == 1:
                continue  # clip without events
            if len(fields) != 4:
                raise common.row_error(path, line_no, f"expected 4 tab-separated fields {expected}, got {fields}")
            try:
                onset, offset = float(fields[1]), float(fields[2])
            except ValueError:
                raise common.row_error(path, line_no, f"onset/offset must be numbers, got {fields[1:3]}") from None
            if not 0 <= onset <= offset:
                raise common.row_error(path, line_no, f"need 0 <= onset <= offset, got onset={onset}, offset={offset}")
            label = _label_index(path, line_no, fields[3])
            clip.labels.add(label)
            clip.events.append((onset, offset, label))
        else:
            if len(fields) != 2 or not fields[1]:
                raise common.row_error(path, line_no, f"expected 2 tab-separated fields {expected}, got {fields}")
            if filename in clips:
                raise common.row_error(path, line_no, f"clip {filename!r} listed twice")
            labels = {_label_index(path, line_no, lab.strip()) for lab in fields[1].split(",") if lab.strip()}
            clips[filename] = Clip(filename, labels)
    return list(clips.values())


def resolve_split(root: pathlib.Path, split: str) -> tuple[pathlib.Path, pathlib.Path] | None:
    """(audio folder, TSV) of `split` under `root`, or None when its TSV is absent.

    Raises:
      RawDataError: the TSV exists but none of its audio folders does.
    """
    source = SPLITS[split]
    for audio, tsv in source.candidates:
        if (root / tsv).is_file() and (root / audio).is_dir():
            return root / audio, root / tsv
    for audio, tsv in source.candidates:
        if (root / tsv).is_file():
            wanted = [os.fspath(root / a) for a, t in source.candidates if t == tsv]
            raise common.RawDataError(f"{root / tsv} exists but its audio folder is missing: expected {wanted}")
    return None


class Desed(tfds.core.GeneratorBasedBuilder):
    """DESED clips at 32 kHz, 10 s, multi-hot clip labels plus strong events."""

    name = "desed"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: 32 kHz int16 10 s waveforms, labels, events, duration_s."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download DESED with its own scripts (https://github.com/turpaultn/DESED) and point manual_dir "
        "at the folder holding audio/ and metadata/."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="DESED domestic sound events: 10 classes, weak (clip) and strong (event) labels; 32 kHz int16.",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "waveform": common.waveform_feature(),
                    "labels": tfds.features.Tensor(shape=(len(CLASS_NAMES),), dtype=np.uint8),
                    "events": common.events_feature(),
                    "duration_s": tfds.features.Scalar(dtype=np.float32),
                }
            ),
            supervised_keys=("waveform", "labels"),
            homepage="https://project.inria.fr/desed/",
            metadata=tfds.core.MetadataDict(
                sample_rate=SAMPLE_RATE, clip_samples=CLIP_SAMPLES, class_names=list(CLASS_NAMES)
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = common.explicit_manual_dir(dl_manager)
        if root is None:
            raise common.RawDataError("DESED needs a local folder (manual_dir). " + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        generators, sources, omitted = {}, {}, {}
        for split, source in SPLITS.items():
            found = resolve_split(root, split)
            if found is None:
                omitted[split] = f"no {' or '.join(sorted({t for _, t in source.candidates}))}"
                continue
            audio_dir, tsv = found
            clips = read_tsv(tsv, source.strong)
            sources[split] = {"audio": audio_dir.relative_to(root).as_posix(), "tsv": tsv.relative_to(root).as_posix()}
            generators[split] = self._generate_examples(root, split, audio_dir, tsv, clips)
        if not generators:
            expected = [os.fspath(root / t) for s in SPLITS.values() for _, t in s.candidates]
            raise common.RawDataError(f"no DESED metadata found under {root}: expected at least one of {expected}")
        self.info.metadata["sources"] = sources
        self.info.metadata["omitted_splits"] = omitted
        return generators

    def _generate_examples(
        self, root: pathlib.Path, split: str, audio_dir: pathlib.Path, tsv: pathlib.Path, clips: list[Clip]
    ) -> Iterator[tuple[str, dict]]:
        report = audio_io.SkipReport(self.name, split)
        listed = {c.filename for c in clips}
        tsv_rel = tsv.relative_to(root).as_posix()
        for name in sorted(os.listdir(audio_dir)):
            if name.lower().endswith(audio_io.AUDIO_EXTENSIONS) and name not in listed:
                report.add((audio_dir / name).relative_to(root).as_posix(), f"not listed in {tsv_rel}")
        for clip in common.progress(clips, desc=f"{self.name} {split}"):
            rel = (audio_dir / clip.filename).relative_to(root).as_posix()
            try:
                audio = audio_io.load_mono(root / rel, SAMPLE_RATE)
            except audio_io.AudioDecodeError as err:
                report.add_error(err, rel)
                continue
            events = sorted(clip.events)
            labels = np.zeros(len(CLASS_NAMES), np.uint8)
            labels[sorted(clip.labels)] = 1
            report.num_written += 1
            yield rel, {
                "id": rel,
                "waveform": audio_io.to_int16(audio_io.fit_length(audio.waveform, CLIP_SAMPLES)),
                "labels": labels,
                "events": {
                    "onset": np.array([e[0] for e in events], np.float32),
                    "offset": np.array([e[1] for e in events], np.float32),
                    "label": np.array([e[2] for e in events], np.int32),
                },
                "duration_s": np.float32(audio.source_duration_s),
            }
        common.finish_split(self, report)
