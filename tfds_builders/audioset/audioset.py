"""AudioSet (weakly labelled 10 s YouTube clips, 527 classes), from downloaded audio or PANNs HDF5.

Raw layout, either of:

A. Segment CSVs + a folder of downloaded clips (what the AudioSet download scripts produce):
    class_labels_indices.csv        index,mid,display_name (527 rows in the real file)
    balanced_train_segments.csv     3 '#' header lines, then `YTID, start, end, "mid1,mid2"`
    unbalanced_train_segments.csv   (each segment CSV is optional; at least one is needed)
    eval_segments.csv
    <any sub-folders>/<clip files>  searched recursively once; a file belongs to a YouTube id
                                    when its name is Y{ytid}.ext, {ytid}.ext, {ytid}_{start}.ext,
                                    Y{ytid}_{start}_{end}.ext, ... (ext: wav, flac, ogg, mp3, m4a, ...)
   The CSVs may also sit in a `metadata/` sub-folder. Clips are assumed to be the 10 s segment
   already (as every common downloader cuts them); they are not cropped by start/end.

B. PANNs-style packed HDF5 (audioset_tagging_cnn), used when a `waveforms/` folder with .h5 exists
   at the root or under `hdf5s/`:
    waveforms/balanced_train.h5, waveforms/eval.h5, waveforms/unbalanced_train/*.h5
        datasets audio_name (N,) bytes, waveform (N, 320000) int16, target (N, classes) bool
    class_labels_indices.csv (root or metadata/) for the class names.

Every clip is stored at 32 kHz, zero-padded or truncated to exactly 10 s (320000 samples), as
PANNs packs it. Missing and unreadable clips are listed in skipped_{split}.json, never written.
Per-class positive counts of each split are kept in info.metadata["class_positive_counts"].
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Iterable
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import audio_io, common

SAMPLE_RATE = 32000
CLIP_SAMPLES = 10 * SAMPLE_RATE
NUM_CLASSES = 527
# The 527 display names are not shipped here: they are read from the user's
# class_labels_indices.csv at build time and stored in info.metadata["class_names"].
# Use `read_class_labels(path)` to get them from the CSV directly.
CLASS_NAMES: tuple[str, ...] | None = None

CLASS_LABELS_CSV = "class_labels_indices.csv"
SEGMENT_CSVS: dict[str, str] = {
    "balanced_train": "balanced_train_segments.csv",
    "unbalanced_train": "unbalanced_train_segments.csv",
    "eval": "eval_segments.csv",
}
# Packed layout: split -> glob patterns relative to the waveforms/ folder.
PACKED_FILES: dict[str, tuple[str, ...]] = {
    "balanced_train": ("balanced_train.h5",),
    "unbalanced_train": ("unbalanced_train/*.h5", "unbalanced_train*.h5"),
    "eval": ("eval.h5",),
}
_METADATA_SUBDIRS = (".", "metadata")
_WAVEFORM_DIRS = ("waveforms", "hdf5s/waveforms")
_H5_CHUNK = 64  # rows read from an HDF5 file at a time (64 x 640 KB)
_YTID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclasses.dataclass(frozen=True)
class ClassLabels:
    """class_labels_indices.csv: `mids[i]` and `names[i]` belong to class index i."""

    mids: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def index(self) -> dict[str, int]:
        return {mid: i for i, mid in enumerate(self.mids)}


@dataclasses.dataclass(frozen=True)
class Segment:
    """One row of a segment CSV."""

    ytid: str
    start: float
    end: float
    labels: tuple[int, ...]
    line_no: int

    @property
    def example_id(self) -> str:
        """Stable id: YouTube id and start time in milliseconds, e.g. '--PJHxphWEs_30000'."""
        return f"{self.ytid}_{int(round(self.start * 1000))}"


def read_class_labels(path: pathlib.Path) -> ClassLabels:
    """Parses class_labels_indices.csv (header index,mid,display_name; index must count 0, 1, 2...).

    Raises:
      RawDataError: a malformed row, naming the file and line.
    """
    rows = common.read_rows(path)
    try:
        line_no, header = next(rows)
    except StopIteration:
        raise common.RawDataError(f"{path}: empty file, expected header index,mid,display_name") from None
    if header[:3] != ["index", "mid", "display_name"]:
        raise common.row_error(path, line_no, f"expected header index,mid,display_name, got {header}")
    mids, names = [], []
    for line_no, fields in rows:
        if len(fields) != 3:
            raise common.row_error(path, line_no, f"expected 3 fields (index,mid,display_name), got {len(fields)}: {fields}")
        if fields[0] != str(len(mids)):
            raise common.row_error(path, line_no, f"index {fields[0]!r} out of order, expected {len(mids)}")
        if not fields[1] or fields[1] in mids:
            raise common.row_error(path, line_no, f"empty or duplicate mid {fields[1]!r}")
        mids.append(fields[1])
        names.append(fields[2])
    if not mids:
        raise common.RawDataError(f"{path}: no classes listed")
    return ClassLabels(tuple(mids), tuple(names))


def read_segments(path: pathlib.Path, classes: ClassLabels) -> list[Segment]:
    """Parses a segment CSV: '#' comment lines, then rows `YTID, start, end, "mid1,mid2,..."`.

    Raises:
      RawDataError: a malformed row or a mid missing from class_labels_indices.csv, naming the
        file and line.
    """
    index = classes.index
    segments: list[Segment] = []
    seen: dict[str, int] = {}
    for line_no, fields in common.read_rows(path, comment="#", skipinitialspace=True):
        if len(fields) != 4:
            raise common.row_error(
                path, line_no, f'expected 4 fields `YTID, start, end, "mid1,mid2"`, got {len(fields)}: {fields}'
            )
        ytid, start_s, end_s, mids = fields
        if not _YTID_RE.match(ytid):
            raise common.row_error(path, line_no, f"malformed YouTube id {ytid!r}")
        try:
            start, end = float(start_s), float(end_s)
        except ValueError:
            raise common.row_error(path, line_no, f"start/end must be numbers, got {start_s!r}, {end_s!r}") from None
        if not 0 <= start < end:
            raise common.row_error(path, line_no, f"need 0 <= start < end, got start={start}, end={end}")
        labels = []
        for mid in (m.strip() for m in mids.split(",")):
            if mid not in index:
                raise common.row_error(path, line_no, f"unknown label mid {mid!r} (not in {CLASS_LABELS_CSV})")
            labels.append(index[mid])
        if ytid in seen:
            raise common.row_error(path, line_no, f"YouTube id {ytid} already listed on line {seen[ytid]}")
        seen[ytid] = line_no
        segments.append(Segment(ytid, start, end, tuple(sorted(set(labels))), line_no))
    return segments


def _ytid_candidates(stem: str) -> Iterable[str]:
    """Possible YouTube ids in a file stem: the whole stem, or the part before an '_' separator,
    each with and without PANNs' leading 'Y'. (Ids may themselves contain '_' and start with 'Y',
    so every reading is tried and the known ids decide.)"""
    for s in (stem, stem[1:] if stem.startswith("Y") else None):
        if not s:
            continue
        yield s
        for i, ch in enumerate(s):
            if ch == "_" and i > 0:
                yield s[:i]


def index_audio_files(root: pathlib.Path, wanted: set[str]) -> dict[str, pathlib.Path]:
    """Walks `root` once and maps each wanted YouTube id to its audio file (first in sorted order)."""
    found: dict[str, pathlib.Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in audio_io.AUDIO_EXTENSIONS:
                continue
            for ytid in _ytid_candidates(stem):
                if ytid in wanted and ytid not in found:
                    found[ytid] = pathlib.Path(dirpath) / name
    return found


def _find_first(root: pathlib.Path, name: str, subdirs: Iterable[str]) -> pathlib.Path | None:
    for sub in subdirs:
        path = root / sub / name
        if path.exists():
            return path
    return None


def find_packed_files(root: pathlib.Path) -> dict[str, list[pathlib.Path]] | None:
    """Split -> sorted .h5 files of the PANNs layout, or None when there is no waveforms/ folder."""
    for sub in _WAVEFORM_DIRS:
        folder = root / sub
        if folder.is_dir() and any(folder.rglob("*.h5")):
            files = {}
            for split, patterns in PACKED_FILES.items():
                matched = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
                if matched:
                    files[split] = matched
            if not files:
                raise common.RawDataError(
                    f"{folder}: has .h5 files but none named like {sorted(p for ps in PACKED_FILES.values() for p in ps)}"
                )
            return files
    return None


def _ytid_from_audio_name(name: str) -> str:
    """b'Y--PJHxphWEs.wav' (PANNs) -> '--PJHxphWEs'."""
    stem = os.path.splitext(os.path.basename(name))[0]
    return stem[1:] if stem.startswith("Y") and len(stem) == 12 else stem


def builder_kwargs(manual_dir: os.PathLike | str | None) -> dict[str, str]:
    """Constructor arguments for a raw folder: its class_labels_indices.csv fixes the class count."""
    if manual_dir is None:
        return {}
    path = _find_first(pathlib.Path(manual_dir), CLASS_LABELS_CSV, _METADATA_SUBDIRS)
    return {"class_labels_csv": os.fspath(path)} if path else {}


class Audioset(tfds.core.GeneratorBasedBuilder):
    """AudioSet clips, 32 kHz, 10 s, multi-hot labels; splits balanced_train/unbalanced_train/eval."""

    name = "audioset"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: 32 kHz int16 10 s waveforms, multi-hot uint8 labels."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "AudioSet audio must be downloaded from YouTube by you. Point manual_dir at a folder with "
        "class_labels_indices.csv, the *_segments.csv files and the downloaded clips (any sub-folders), "
        "or at a PANNs hdf5s/ folder (waveforms/*.h5). See docs/DATASETS.md."
    )

    def __init__(self, *, class_labels_csv: os.PathLike | str | None = None, **kwargs):
        """Args:
          class_labels_csv: the class list to size the `labels` feature with; defaults to 527
            classes (the real AudioSet), whose names are then taken from the raw folder's CSV.
          **kwargs: passed to tfds.core.GeneratorBasedBuilder (data_dir, file_format, ...).
        """
        # Read before super().__init__, which calls _info().
        self._classes = read_class_labels(pathlib.Path(class_labels_csv)) if class_labels_csv else None
        super().__init__(**kwargs)

    @property
    def num_classes(self) -> int:
        return len(self._classes.mids) if self._classes else NUM_CLASSES

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="AudioSet 10 s clips, mono 32 kHz int16, multi-hot labels over the ontology classes.",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "waveform": common.waveform_feature(),
                    "labels": tfds.features.Tensor(shape=(self.num_classes,), dtype=np.uint8),
                }
            ),
            supervised_keys=("waveform", "labels"),
            homepage="https://research.google.com/audioset/",
            metadata=tfds.core.MetadataDict(
                sample_rate=SAMPLE_RATE,
                clip_samples=CLIP_SAMPLES,
                num_classes=self.num_classes,
                class_names=list(self._classes.names) if self._classes else [],
                class_mids=list(self._classes.mids) if self._classes else [],
            ),
        )

    # -- split discovery -------------------------------------------------------------------

    def _load_classes(self, root: pathlib.Path) -> ClassLabels:
        path = _find_first(root, CLASS_LABELS_CSV, _METADATA_SUBDIRS)
        if path is None:
            raise common.RawDataError(f"missing AudioSet class list: expected file {root / CLASS_LABELS_CSV}")
        classes = read_class_labels(path)
        if len(classes.mids) != self.num_classes:
            raise common.RawDataError(
                f"{path} lists {len(classes.mids)} classes but the builder was created for {self.num_classes}; "
                f"pass class_labels_csv={os.fspath(path)!r} to the builder (tools/prepare_data.py does)"
            )
        self.info.metadata["class_names"] = list(classes.names)
        self.info.metadata["class_mids"] = list(classes.mids)
        return classes

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = common.explicit_manual_dir(dl_manager)
        if root is None:
            raise common.RawDataError(
                "AudioSet needs a local folder (manual_dir); nothing is downloaded. " + self.MANUAL_DOWNLOAD_INSTRUCTIONS
            )
        classes = self._load_classes(root)
        segments = {}
        for split, name in SEGMENT_CSVS.items():
            path = _find_first(root, name, _METADATA_SUBDIRS)
            if path is not None:
                segments[split] = read_segments(path, classes)
        self.info.metadata["omitted_splits"] = {}

        packed = find_packed_files(root)
        if packed is not None:
            self.info.metadata["source"] = "packed_hdf5"
            generators = {}
            for split, paths in packed.items():
                report = audio_io.SkipReport(self.name, split)
                readable = [p for p in paths if self._check_h5(root, p, report)]
                if not readable:
                    self._omit_split(report, f"none of its {len(paths)} HDF5 file(s) is readable")
                    continue
                generators[split] = self._generate_packed(root, split, readable, segments.get(split, []), report)
            if not generators:
                raise common.RawDataError(f"{root}: no readable packed HDF5 file (see skipped_*.json)")
            for split in SEGMENT_CSVS:
                if split not in packed:
                    self._note_omitted(split, f"no packed file {' or '.join(PACKED_FILES[split])} under waveforms/")
            return generators

        if not segments:
            raise common.RawDataError(
                f"missing AudioSet segment lists: expected at least one of "
                f"{[os.fspath(root / n) for n in SEGMENT_CSVS.values()]} (or a waveforms/ folder of packed .h5)"
            )
        wanted = {s.ytid for rows in segments.values() for s in rows}
        files = index_audio_files(root, wanted)
        if not files:
            raise common.RawDataError(
                f"{root}: no audio file matches any YouTube id of the segment CSVs "
                f"(looked for names like Y<ytid>.wav, <ytid>.flac, <ytid>_<start>.wav in all sub-folders)"
            )
        self.info.metadata["source"] = "audio_files"
        for split, name in SEGMENT_CSVS.items():
            if split not in segments:
                self._note_omitted(split, f"no {name}")
        generators = {}
        for split, rows in segments.items():
            if not any(s.ytid in files for s in rows):
                # Typical for unbalanced_train when only the balanced clips were downloaded.
                report = audio_io.SkipReport(self.name, split)
                csv_path = _find_first(root, SEGMENT_CSVS[split], _METADATA_SUBDIRS)
                report.add(csv_path.relative_to(root).as_posix(), f"split not written: none of its {len(rows)} clips was found")
                self._omit_split(report, f"none of its {len(rows)} clips was found")
                continue
            generators[split] = self._generate_examples(root, split, rows, files)
        return generators

    def _note_omitted(self, split: str, why: str) -> None:
        omitted = dict(self.info.metadata.get("omitted_splits", {}))
        omitted[split] = why
        self.info.metadata["omitted_splits"] = omitted

    def _omit_split(self, report: audio_io.SkipReport, why: str) -> None:
        """Leaves a split out (TFDS cannot write an empty split) but still writes its report."""
        common.finish_split(self, report, allow_empty=True)
        self._note_omitted(report.split, why)

    def _check_h5(self, root: pathlib.Path, path: pathlib.Path, report: audio_io.SkipReport) -> bool:
        """True when `path` opens as a PANNs waveform file; otherwise records why in `report`."""
        import h5py  # only the packed layout needs it

        rel = path.relative_to(root).as_posix()
        try:
            with h5py.File(path, "r") as h5:
                missing = [k for k in ("audio_name", "waveform", "target") if k not in h5]
                if missing:
                    report.add(rel, f"unreadable HDF5 file (no dataset(s) {missing})")
                    return False
                width = h5["target"].shape[1]
        except OSError as err:
            report.add(rel, f"unreadable HDF5 file ({err})")
            return False
        if width != self.num_classes:
            raise common.RawDataError(f"{path}: target has {width} classes, class list has {self.num_classes}")
        return True

    # -- example generation ----------------------------------------------------------------

    def _record_positive_counts(self, split: str, counts: np.ndarray) -> None:
        all_counts = dict(self.info.metadata.get("class_positive_counts", {}))
        all_counts[split] = [int(c) for c in counts]
        self.info.metadata["class_positive_counts"] = all_counts

    def _multi_hot(self, labels: Iterable[int]) -> np.ndarray:
        out = np.zeros(self.num_classes, np.uint8)
        out[list(labels)] = 1
        return out

    def _generate_examples(
        self, root: pathlib.Path, split: str, rows: list[Segment], files: dict[str, pathlib.Path]
    ) -> Iterator[tuple[str, dict]]:
        report = audio_io.SkipReport(self.name, split)
        counts = np.zeros(self.num_classes, np.int64)
        for seg in common.progress(rows, desc=f"{self.name} {split}"):
            path = files.get(seg.ytid)
            if path is None:
                report.add(seg.example_id, f"missing audio: no file for YouTube id {seg.ytid} (CSV line {seg.line_no})")
                continue
            try:
                audio = audio_io.load_mono(path, SAMPLE_RATE)
            except audio_io.AudioDecodeError as err:
                report.add_error(err, path.relative_to(root).as_posix())
                continue
            labels = self._multi_hot(seg.labels)
            counts += labels
            report.num_written += 1
            yield seg.example_id, {
                "id": seg.example_id,
                "waveform": audio_io.to_int16(audio_io.fit_length(audio.waveform, CLIP_SAMPLES)),
                "labels": labels,
            }
        self._record_positive_counts(split, counts)
        common.finish_split(self, report)

    def _generate_packed(
        self,
        root: pathlib.Path,
        split: str,
        files: list[pathlib.Path],
        rows: list[Segment],
        report: audio_io.SkipReport,
    ) -> Iterator[tuple[str, dict]]:
        import h5py  # only the packed layout needs it

        starts = {s.ytid: s for s in rows}
        counts = np.zeros(self.num_classes, np.int64)
        seen: set[str] = set()
        for path in files:
            rel = path.relative_to(root).as_posix()
            with h5py.File(path, "r") as h5:
                n = h5["target"].shape[0]
                rate = int(h5.attrs.get("sample_rate", SAMPLE_RATE))
                for lo in common.progress(range(0, n, _H5_CHUNK), desc=f"{self.name} {split} {path.name}"):
                    hi = min(n, lo + _H5_CHUNK)
                    try:
                        names = h5["audio_name"][lo:hi]
                        waves = h5["waveform"][lo:hi]
                        targets = np.asarray(h5["target"][lo:hi], dtype=np.uint8)
                    except (OSError, ValueError) as err:
                        report.add(f"{rel}[{lo}:{hi}]", f"unreadable HDF5 rows ({err})")
                        continue
                    for name, wave, target in zip(names, waves, targets):
                        name = name.decode() if isinstance(name, bytes) else str(name)
                        ytid = _ytid_from_audio_name(name)
                        seg = starts.get(ytid)
                        example_id = seg.example_id if seg else ytid
                        if not ytid or example_id in seen:
                            report.add(f"{rel}:{name!r}", "empty or duplicate audio_name")
                            continue
                        if not np.any(wave):
                            # PANNs' packer leaves a row of zeros for a clip it could not find.
                            report.add(f"{rel}:{name}", "missing audio: all-zero waveform in packed HDF5")
                            continue
                        if rate != SAMPLE_RATE:
                            wave = audio_io.to_int16(
                                audio_io.resample(wave.astype(np.float32) / audio_io.INT16_SCALE, rate, SAMPLE_RATE)
                            )
                        seen.add(example_id)
                        counts += target
                        report.num_written += 1
                        yield example_id, {
                            "id": example_id,
                            "waveform": audio_io.fit_length(np.asarray(wave, np.int16), CLIP_SAMPLES),
                            "labels": target,
                        }
        self._record_positive_counts(split, counts)
        common.finish_split(self, report)
