"""audio_folder: any folder of recordings plus a labels file (or one folder per class).

Raw layout (`manual_dir`, called RAW below; any sub-folders; hidden files and folders are ignored):

    RAW/labels.csv  (or labels.tsv, tab-separated; at most one of the two)
    RAW/**/<audio files>     wav, flac, ogg, opus, mp3, aiff (libsndfile); m4a, webm, aac, mp4
                             (librosa/audioread, needs ffmpeg); any rate and channel count

  or, without a labels file, one folder per class:

    RAW/<class name>/**/<audio files>

The labels file has a header line; column names are case-insensitive, extra columns are ignored:

  * `filename` (required): the path relative to RAW (`dogs/a.wav`), or a bare file name that
    matches exactly one audio file under RAW.
  * `label` or `labels` (or `event_label`/`event_labels`, DESED's names): class names; several
    separated by `;` (`dog;speech`) on rows without onset/offset.
  * `onset`, `offset` (seconds; both or neither): strong labels, one row per event, DESED style.
    A clip's events also give its clip labels. In such a file a row with empty onset and offset
    gives weak labels only (that clip is stored without events, `strong = False`), and a row whose
    onset, offset and label are all empty declares a strongly labelled clip with no event.
  * `split` (`train`/`validation`/`test`; `val` is accepted) or `fold` (an integer): the split.
    With neither, clips are split at random, 80/10/10 by default (`split_fractions`), seeded by
    `split_seed` (default 0), stratified by label, and grouped by
  * `group` or `source`: clips with the same value (cut from one recording) land in one split.

A file may list a clip on several rows (events, or one row per label); their split, fold and
group must agree. Every error in the labels file names the file and line: a missing column, a
file that is not on disk, an empty label, a label not in `classes`, onset >= offset, an onset at
or past the end of the audio, a split value that is not one of the three. Audio files that cannot
be decoded are skipped and listed in the skip report; audio files under RAW that the labels file
does not list (or that lie outside the class folders) are skipped and reported as well.

Single-label vs multi-label: when no clip has strong labels and every clip has exactly one
label, the dataset is single-label (`label` ClassLabel, like ESC-50); otherwise `labels` is a
multi-hot uint8 vector (like AudioSet/FSD50K). `info.metadata` says which (`multi_label`) and
holds `class_names`: the `classes` argument in its order, else the names found, sorted.

Every clip keeps its own length (like FSD50K), mono int16 at the config's rate: "32k" (the
default; HTS-AT/AST) or "16k" (YAMNet/LEAN). `dataset_name` stores a dataset under its own
config name instead (`OUT/audio_folder/<name>/1.0.0`, at the rate of `config`), so one data_dir
can hold several user datasets. A fold column writes one `train` split with a `fold` feature
(as ESC-50 does); otherwise the splits are `train`, `validation`, `test` (an empty one is left
out and listed in `info.metadata["omitted_splits"]`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import re
from collections.abc import Sequence
from typing import Any, Iterator

import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds

from tfds_builders import audio_io, common

SAMPLE_RATE = 32000  # rate of the default config "32k"
# The class names are the user's: read from the raw folder at build time and stored in
# info.metadata["class_names"] (and in the `label` ClassLabel of a single-label dataset).
CLASS_NAMES: tuple[str, ...] | None = None

LABEL_FILES = ("labels.csv", "labels.tsv")
SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_SPLIT_SEED = 0
LABEL_SEPARATOR = ";"
# Audio files looked for under RAW (files the labels file names are read whatever their suffix).
AUDIO_EXTENSIONS = tuple(audio_io.AUDIO_EXTENSIONS) + (".aiff", ".aif")

_FILENAME_COLUMN = "filename"
_LABEL_COLUMNS = ("label", "labels", "event_label", "event_labels")
_GROUP_COLUMNS = ("group", "source")
_SPLIT_VALUES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
_CONFIG_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
FOLDERS_FORMAT, WEAK_FORMAT, STRONG_FORMAT = "class_folders", "weak", "strong"


# ------------------------------------------------------------------------------ raw folder

@dataclasses.dataclass
class Clip:
    """One audio file and everything the labels say about it.

    Attributes:
      rel: path relative to the raw root (posix); the example id and key.
      line_no: first labels-file line naming the clip (None for class folders).
      label_names: class names, in order of first mention; label_lines: name -> first line.
      events: (onset s, offset s, class name, line number) per event row.
      strong: the clip's labels are strong (events rows, or a declared clip without events).
      weak_line: a line that gave the clip weak labels (rows without onset/offset), else None.
      split, fold, group: values of the optional columns (None when absent).
      labels, event_labels: class indices, filled once the class list is known.
    """

    rel: str
    line_no: int | None = None
    label_names: list[str] = dataclasses.field(default_factory=list)
    label_lines: dict[str, int] = dataclasses.field(default_factory=dict)
    events: list[tuple[float, float, str, int]] = dataclasses.field(default_factory=list)
    strong: bool = False
    weak_line: int | None = None
    split: str | None = None
    fold: int | None = None
    group: str | None = None
    labels: tuple[int, ...] = ()
    event_labels: tuple[int, ...] = ()


@dataclasses.dataclass
class RawFolder:
    """A parsed raw folder: its clips with labels and split, the class list and the label kind.

    Attributes:
      root: the raw folder.
      labels_file: the labels file, or None for class folders.
      label_format: "weak", "strong" (the file has onset/offset columns) or "class_folders".
      class_names: class i is class_names[i].
      clips: in labels-file (or path) order, labels and events resolved to class indices.
      multi_label: False when every clip has exactly one label and none is strong.
      has_events: some clip has strong labels (the `events` and `strong` features are written).
      split_method: "split_column", "fold_column" or "seeded".
      group_column: "group", "source" or None.
      splits: split name -> its clips (`train` only for a fold column).
      unlisted: (path, reason) of audio files under root that are not used.
      fingerprint: a digest of the labels file, the audio files (names and sizes) and the build
        arguments; an existing dataset prepared from something else is not reused.
    """

    root: pathlib.Path
    labels_file: pathlib.Path | None
    label_format: str
    class_names: tuple[str, ...]
    clips: list[Clip]
    multi_label: bool
    has_events: bool
    split_method: str
    group_column: str | None
    splits: dict[str, list[Clip]]
    unlisted: list[tuple[str, str]]
    fingerprint: str

    @property
    def labels_name(self) -> str:
        return self.labels_file.name if self.labels_file is not None else "the class folders"


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def find_audio_files(root: pathlib.Path) -> list[str]:
    """Paths (relative to `root`, posix, sorted) of the audio files under `root`, at any depth;
    hidden files and folders (".git", macOS "._x.wav") are skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in filenames:
            if not _is_hidden(name) and name.lower().endswith(AUDIO_EXTENSIONS):
                found.append(pathlib.Path(dirpath, name).relative_to(root).as_posix())
    return sorted(found)


def find_labels_file(root: pathlib.Path) -> pathlib.Path | None:
    """RAW/labels.csv or RAW/labels.tsv, None when neither exists.

    Raises:
      RawDataError: both exist.
    """
    present = [root / name for name in LABEL_FILES if (root / name).is_file()]
    if len(present) > 1:
        raise common.RawDataError(f"{root}: both {' and '.join(p.name for p in present)} exist; keep one labels file")
    return present[0] if present else None


def _check_classes(classes: Sequence[str] | None) -> tuple[str, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = classes.split(",")
    names = tuple(c.strip() for c in classes)
    if not names or any(not c for c in names):
        raise common.RawDataError(f"the class list {list(classes)!r} has an empty name")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise common.RawDataError(f"the class list names {dup} more than once")
    return names


def _single_column(header: list[str], candidates: Sequence[str], path: pathlib.Path, line_no: int) -> str | None:
    present = [c for c in candidates if c in header]
    if len(present) > 1:
        raise common.row_error(path, line_no, f"header has several of the columns {present}; keep one")
    return present[0] if present else None


class _FileIndex:
    """Resolves a labels-file `filename` to a file under the raw root."""

    def __init__(self, root: pathlib.Path, audio_files: list[str]):
        self.root = root
        self.by_basename: dict[str, list[str]] = {}
        for rel in audio_files:
            self.by_basename.setdefault(rel.rsplit("/", 1)[-1], []).append(rel)

    def resolve(self, value: str, path: pathlib.Path, line_no: int) -> str:
        name = value.replace("\\", "/")
        while name.startswith("./"):
            name = name[2:]
        if not name:
            raise common.row_error(path, line_no, "empty filename")
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or "" in parts:
            raise common.row_error(path, line_no, f"filename {value!r} must be a relative path inside {self.root}")
        if (self.root / name).is_file():
            return name
        if len(parts) == 1:
            matches = self.by_basename.get(name, [])
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise common.row_error(
                    path, line_no, f"filename {value!r} matches several files ({', '.join(matches)}); give the path"
                )
        raise common.row_error(path, line_no, f"unknown file {value!r}: no such file under {self.root}")


def _parse_float(text: str, what: str, path: pathlib.Path, line_no: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise common.row_error(path, line_no, f"{what} must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise common.row_error(path, line_no, f"{what} must be finite, got {text!r}")
    return value


def _set_once(clip: Clip, attr: str, value: Any, what: str, path: pathlib.Path, line_no: int) -> None:
    """Sets clip.split/fold/group, checking that every row of a clip agrees."""
    previous = getattr(clip, attr)
    if previous is not None and previous != value:
        raise common.row_error(
            path, line_no,
            f"{what} {value!r} for {clip.rel} differs from {previous!r} given on an earlier row "
            f"(first listed on line {clip.line_no})",
        )
    setattr(clip, attr, value)


def read_labels_file(
    path: pathlib.Path, root: pathlib.Path, audio_files: list[str]
) -> tuple[list[Clip], dict[str, Any]]:
    """Parses labels.csv / labels.tsv into clips (label names, events, split/fold/group values).

    Returns:
      (clips in order of first appearance, {"label_format", "split_column", "group_column"}).

    Raises:
      RawDataError: naming the file and line, for a missing or doubled column, a row with too
        many fields, an unknown or ambiguous filename, an empty label, a malformed onset/offset,
        onset >= offset, a split value other than train/validation/test, a non-integer fold, or
        rows of one clip that disagree (split, fold, group; event rows mixed with weak rows).
    """
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = common.read_rows(path, delimiter=delimiter)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise common.RawDataError(f"{path}: empty file, expected a header with filename and label columns") from None
    header = [h.lstrip("\ufeff").strip().lower() for h in header]  # Excel writes a byte-order mark
    doubled = sorted({h for h in header if h and header.count(h) > 1})
    if doubled:
        raise common.row_error(path, header_line, f"header names column(s) {doubled} more than once")
    if _FILENAME_COLUMN not in header:
        raise common.row_error(path, header_line, f"header lacks column 'filename'; got {header}")
    label_col = _single_column(header, _LABEL_COLUMNS, path, header_line)
    if label_col is None:
        raise common.row_error(path, header_line, f"header lacks a label column ('label' or 'labels'); got {header}")
    if ("onset" in header) != ("offset" in header):
        missing = "offset" if "onset" in header else "onset"
        raise common.row_error(path, header_line, f"header lacks column '{missing}' (strong labels need both)")
    strong_file = "onset" in header
    split_col = _single_column(header, ("split", "fold"), path, header_line)
    group_col = _single_column(header, _GROUP_COLUMNS, path, header_line)
    col = {name: i for i, name in enumerate(header)}
    index = _FileIndex(root, audio_files)

    clips: dict[str, Clip] = {}
    for line_no, fields in rows:
        if len(fields) > len(header):
            raise common.row_error(
                path, line_no, f"expected {len(header)} fields {header}, got {len(fields)}: {fields}"
            )
        fields = fields + [""] * (len(header) - len(fields))  # trailing empty fields may be left out
        rel = index.resolve(fields[col[_FILENAME_COLUMN]], path, line_no)
        clip = clips.get(rel)
        if clip is None:
            clip = clips[rel] = Clip(rel, line_no)
        label_text = fields[col[label_col]]
        onset_text = fields[col["onset"]] if strong_file else ""
        offset_text = fields[col["offset"]] if strong_file else ""
        if strong_file and (onset_text or offset_text):
            if not (onset_text and offset_text):
                raise common.row_error(path, line_no, "onset and offset must both be given or both be empty")
            onset = _parse_float(onset_text, "onset", path, line_no)
            offset = _parse_float(offset_text, "offset", path, line_no)
            if onset < 0:
                raise common.row_error(path, line_no, f"onset {onset} is negative")
            if onset >= offset:
                raise common.row_error(
                    path, line_no, f"onset {onset} >= offset {offset}: an event must end after it starts"
                )
            if not label_text:
                raise common.row_error(path, line_no, f"empty label for the event {onset}-{offset} s of {rel}")
            if LABEL_SEPARATOR in label_text:
                raise common.row_error(path, line_no, f"an event row takes one label, got {label_text!r}")
            if clip.weak_line is not None:
                raise common.row_error(
                    path, line_no, f"{rel} has event rows and rows without onset/offset (line {clip.weak_line}); "
                    "a clip is either strongly or weakly labelled"
                )
            clip.strong = True
            clip.events.append((onset, offset, label_text, line_no))
            if label_text not in clip.label_names:
                clip.label_names.append(label_text)
                clip.label_lines[label_text] = line_no
        elif strong_file and not label_text:
            if clip.weak_line is not None:
                raise common.row_error(
                    path, line_no, f"{rel} is declared without events but has weak labels on line {clip.weak_line}"
                )
            clip.strong = True  # a strongly labelled clip in which nothing happens
        else:
            names = [x.strip() for x in label_text.split(LABEL_SEPARATOR)]
            if not label_text or any(not x for x in names):
                raise common.row_error(path, line_no, f"empty label for {rel} (got {label_text!r})")
            if clip.strong:
                raise common.row_error(
                    path, line_no, f"{rel} has event rows (line {clip.line_no}) and rows without onset/offset; "
                    "a clip is either strongly or weakly labelled"
                )
            clip.weak_line = clip.weak_line or line_no
            for name in names:
                if name not in clip.label_names:
                    clip.label_names.append(name)
                    clip.label_lines[name] = line_no
        if split_col == "split":
            value = fields[col["split"]].lower()
            if value not in _SPLIT_VALUES:
                raise common.row_error(
                    path, line_no, f"split must be one of train, validation, test; got {fields[col['split']]!r}"
                )
            _set_once(clip, "split", _SPLIT_VALUES[value], "split", path, line_no)
        elif split_col == "fold":
            try:
                fold = int(fields[col["fold"]])
            except ValueError:
                raise common.row_error(path, line_no, f"fold must be an integer, got {fields[col['fold']]!r}") from None
            _set_once(clip, "fold", fold, "fold", path, line_no)
        if group_col is not None:
            _set_once(clip, "group", fields[col[group_col]] or None, group_col, path, line_no)
    if not clips:
        raise common.RawDataError(f"{path}: lists no clips (only a header line)")
    fmt = STRONG_FORMAT if any(c.strong for c in clips.values()) else WEAK_FORMAT
    return list(clips.values()), {"label_format": fmt, "split_column": split_col, "group_column": group_col}


def read_class_folders(root: pathlib.Path, audio_files: list[str]) -> tuple[list[Clip], list[tuple[str, str]]]:
    """One class per top-level folder: every audio file below RAW/<class>/ is one clip of it.

    Returns:
      (clips sorted by path, [(path, reason)] for audio files directly in RAW).

    Raises:
      RawDataError: no audio file in any sub-folder.
    """
    clips, unlisted = [], []
    for rel in audio_files:
        if "/" not in rel:
            unlisted.append((rel, f"not in a class folder (no {' or '.join(LABEL_FILES)} in the raw folder)"))
            continue
        clips.append(Clip(rel, label_names=[rel.split("/", 1)[0]]))
    if not clips:
        raise common.RawDataError(
            f"{root}: no labels file ({' or '.join(LABEL_FILES)}) and no audio files in class folders "
            f"(expected {root}/<class>/<file>.wav)"
        )
    return clips, unlisted


def _resolve_classes(
    clips: list[Clip], classes: tuple[str, ...] | None, labels_file: pathlib.Path | None, root: pathlib.Path
) -> tuple[str, ...]:
    """The class list (given, else the sorted names found); sets clip.labels / clip.event_labels.

    Raises:
      RawDataError: a name outside `classes`, naming the labels-file line (or the class folder).
    """
    if classes is None:
        classes = tuple(sorted({n for c in clips for n in c.label_names}))
    lookup = {name: i for i, name in enumerate(classes)}
    for clip in clips:
        for name in clip.label_names:
            if name not in lookup:
                if labels_file is None:
                    raise common.RawDataError(
                        f"{root / clip.rel.split('/', 1)[0]}: class folder {name!r} is not in the class list "
                        f"({', '.join(classes)})"
                    )
                raise common.row_error(
                    labels_file, clip.label_lines[name],
                    f"label {name!r} is not in the class list ({', '.join(classes)})",
                )
        clip.labels = tuple(sorted(lookup[n] for n in clip.label_names))
        clip.event_labels = tuple(lookup[e[2]] for e in clip.events)
    return classes


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(f < 0 or not math.isfinite(f) for f in values) or values[0] <= 0:
        raise common.RawDataError(
            f"split_fractions must be 3 numbers (train > 0, validation, test >= 0), got {fractions}"
        )
    if abs(sum(values) - 1.0) > 1e-6:
        raise common.RawDataError(f"split_fractions must add up to 1, got {fractions} (sum {sum(values)})")
    return values  # type: ignore[return-value]


def seeded_split(clips: list[Clip], seed: int, fractions: Sequence[float]) -> dict[str, list[Clip]]:
    """Assigns whole groups (`clip.group`, else the clip alone) to train/validation/test.

    Groups are stratified by their set of labels; strata (in random order) and the groups inside
    each (shuffled) are dealt with numpy's PCG64 seeded by `seed`:

    1. validation and test each first get the stratum's smallest group when their share of the
       stratum is over half a clip (a class of 6+ clips at 10 %) and a group is left for train,
       so small classes still appear in every split (ESC-10's 8-clip classes: 6/1/1);
    2. every other group goes to the split furthest below its share of the stratum's clips,
       plus half of what earlier strata left it owed (ties drawn at random), so the totals
       follow `fractions` even when every stratum is tiny (multi-label label sets).

    Clips of one group never straddle splits; the result depends only on the seed, the fractions
    and the labels file, not on the file order on disk.
    """
    fractions = np.asarray(_check_fractions(fractions))
    groups: dict[str, list[Clip]] = {}
    for clip in clips:
        groups.setdefault(clip.group if clip.group is not None else f"\0{clip.rel}", []).append(clip)
    strata: dict[tuple[int, ...], list[str]] = {}
    for key, members in groups.items():
        strata.setdefault(tuple(sorted({i for c in members for i in c.labels})), []).append(key)
    rng = np.random.default_rng(seed)
    order = sorted(strata)
    owed = np.zeros(3)  # clips each split is owed (negative: taken in excess) by the strata so far
    assigned: dict[str, int] = {}
    for s in rng.permutation(len(order)):
        keys = sorted(strata[order[s]])
        keys = [keys[i] for i in rng.permutation(len(keys))]
        share = fractions * sum(len(groups[k]) for k in keys)
        count = np.zeros(3)
        for split in (1, 2):
            if share[split] > 0.5 and len(keys) >= 2:
                key = min(keys, key=lambda k: len(groups[k]))  # first of the smallest, in shuffled order
                keys.remove(key)
                assigned[key] = split
                count[split] += len(groups[key])
        for key in keys:
            deficit = np.round(share - count + 0.5 * owed, 9)
            best = np.flatnonzero(deficit == deficit.max())
            choice = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
            assigned[key] = choice
            count[choice] += len(groups[key])
        owed += share - count
    out: dict[str, list[Clip]] = {s: [] for s in SPLITS}
    for key, members in groups.items():
        out[SPLITS[assigned[key]]].extend(members)
    return out


def _fingerprint(
    root: pathlib.Path, labels_file: pathlib.Path | None, audio_files: list[str], settings: dict[str, Any]
) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True).encode())
    if labels_file is not None:
        digest.update(labels_file.read_bytes())
    for rel in audio_files:
        digest.update(f"\n{rel}\t{(root / rel).stat().st_size}".encode())
    return digest.hexdigest()


def scan_folder(
    root: os.PathLike | str,
    *,
    classes: Sequence[str] | str | None = None,
    split_seed: int = DEFAULT_SPLIT_SEED,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    sample_rate: int = SAMPLE_RATE,
) -> RawFolder:
    """Reads a raw folder's labels (labels.csv/.tsv or class folders) and assigns the splits.

    Args:
      root: the raw folder.
      classes: the class list, in output order (a list or "a,b,c"); None = the names found, sorted.
      split_seed, split_fractions: the seeded split, used when there is no split or fold column.
      sample_rate: only enters the fingerprint (the rate the dataset is stored at).

    Raises:
      RawDataError: see `read_labels_file`; also an unknown class, an empty folder, bad arguments.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise common.RawDataError(f"raw folder {root} does not exist or is not a folder")
    class_list = _check_classes(classes)
    labels_file = find_labels_file(root)
    audio_files = find_audio_files(root)
    if labels_file is not None:
        clips, info = read_labels_file(labels_file, root, audio_files)
        listed = {c.rel for c in clips}
        unlisted = [(rel, f"not listed in {labels_file.name}") for rel in audio_files if rel not in listed]
    else:
        clips, unlisted = read_class_folders(root, audio_files)
        info = {"label_format": FOLDERS_FORMAT, "split_column": None, "group_column": None}
    class_names = _resolve_classes(clips, class_list, labels_file, root)
    has_events = any(c.strong for c in clips)
    multi_label = has_events or any(len(c.labels) != 1 for c in clips)
    if info["split_column"] == "split":
        splits = {s: [c for c in clips if c.split == s] for s in SPLITS}
        split_method = "split_column"
    elif info["split_column"] == "fold":
        splits = {"train": list(clips)}
        split_method = "fold_column"
    else:
        splits = seeded_split(clips, int(split_seed), split_fractions)
        split_method = "seeded"
    settings = {
        "classes": list(class_list) if class_list else None, "split_seed": int(split_seed),
        "split_fractions": [float(f) for f in split_fractions], "sample_rate": int(sample_rate),
    }
    return RawFolder(
        root=root,
        labels_file=labels_file,
        label_format=info["label_format"],
        class_names=class_names,
        clips=clips,
        multi_label=multi_label,
        has_events=has_events,
        split_method=split_method,
        group_column=info["group_column"],
        splits=splits,
        unlisted=unlisted,
        fingerprint=_fingerprint(root, labels_file, audio_files, settings),
    )


def _probe_duration(path: pathlib.Path) -> float | None:
    """The file's length in seconds from its header (libsndfile), None when it cannot tell."""
    try:
        info = sf.info(os.fspath(path))
    except Exception:  # unreadable here: decoded (or skipped) when the split is written
        return None
    return info.frames / info.samplerate if info.frames > 0 and info.samplerate > 0 else None


def check_events_in_audio(raw: RawFolder, clip: Clip, duration_s: float) -> None:
    """Raises RawDataError naming the labels-file line of an event that starts at or past the end."""
    for onset, _, _, line_no in clip.events:
        if onset >= duration_s:
            raise common.row_error(
                raw.labels_file, line_no,
                f"onset {onset} s is at or past the end of {clip.rel} ({duration_s:.3f} s long)",
            )


# ---------------------------------------------------------------------------------- builder

@dataclasses.dataclass
class AudioFolderConfig(tfds.core.BuilderConfig):
    """The rate a dataset is stored at; the config name is the dataset's name under audio_folder/."""

    sample_rate: int = SAMPLE_RATE


def builder_kwargs(manual_dir: os.PathLike | str | None) -> dict[str, str]:
    """Constructor arguments for a raw folder (used by tfds_builders.build and prepare_data.py):
    the features (classes, single/multi-label, events) depend on the folder, so the builder reads
    it when it is created."""
    return {"raw_dir": os.fspath(manual_dir)} if manual_dir is not None else {}


class AudioFolder(tfds.core.GeneratorBasedBuilder):
    """A user's folder of recordings + labels.csv/.tsv (or class folders); clips at their own
    length, mono int16; single-label `label` or multi-hot `labels`, strong `events` if given."""

    name = "audio_folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: variable-length int16 waveforms, weak and strong labels."}
    BUILDER_CONFIGS = [
        AudioFolderConfig(name="32k", sample_rate=32000, description="32 kHz, the HTS-AT / AST input rate."),
        AudioFolderConfig(name="16k", sample_rate=16000, description="16 kHz, the YAMNet / LEAN input rate."),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "32k"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point manual_dir at your folder of audio files holding labels.csv (or labels.tsv) with columns "
        "filename and label (optional: onset, offset, split or fold, group or source), or holding one "
        "sub-folder per class. See docs/DATASETS.md, section audio_folder."
    )

    def __init__(
        self,
        *,
        raw_dir: os.PathLike | str | None = None,
        classes: Sequence[str] | str | None = None,
        dataset_name: str | None = None,
        split_seed: int = DEFAULT_SPLIT_SEED,
        split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
        config: str | AudioFolderConfig | None = None,
        **kwargs,
    ):
        """Args:
          raw_dir: the raw folder to prepare (the same as download_and_prepare's manual_dir;
            tfds_builders.build passes it). None opens an already prepared dataset.
          classes: class list in output order (names outside it are an error); None = the names
            found, sorted.
          dataset_name: store the dataset as config `dataset_name` (OUT/audio_folder/<name>/1.0.0)
            at the rate of `config`; None = the config's own name ("32k" or "16k").
          split_seed, split_fractions: the seeded train/validation/test split (no split/fold column).
          config: "32k" (default) or "16k", or an AudioFolderConfig.
          **kwargs: passed to tfds.core.GeneratorBasedBuilder (data_dir, file_format, ...).

        Raises:
          RawDataError: a bad raw folder, class list, config or dataset name.
        """
        config = _resolve_config(config, dataset_name)
        rate = config.sample_rate if isinstance(config, AudioFolderConfig) else self.builder_configs[config].sample_rate
        # Read before super().__init__, which calls _info(): the features depend on the folder.
        self._raw = (
            scan_folder(raw_dir, classes=classes, split_seed=split_seed, split_fractions=split_fractions,
                        sample_rate=rate)
            if raw_dir is not None else None
        )
        self._split_seed = int(split_seed)
        self._split_fractions = [float(f) for f in split_fractions]
        self._stale: bool | None = None  # data_dir holds this config prepared from other files
        self._rebuilding = False  # download_and_prepare is overwriting a stale dataset
        self._fresh_info: tfds.core.DatasetInfo | None = None
        self._file_format = kwargs.get("file_format")
        super().__init__(config=config, **kwargs)

    @property
    def sample_rate(self) -> int:
        return int(self.builder_config.sample_rate)

    @property
    def info(self) -> tfds.core.DatasetInfo:
        # Replaced when a stale dataset is overwritten (see download_and_prepare).
        return self._fresh_info if self._fresh_info is not None else super().info

    def _stored_fingerprint(self) -> tuple[bool, str | None]:
        """(a prepared dataset exists at data_dir, its source_fingerprint)."""
        path = pathlib.Path(os.fspath(self.data_path))
        if not (path / "dataset_info.json").is_file():
            return False, None
        try:
            return True, json.loads((path / "metadata.json").read_text()).get("source_fingerprint")
        except (OSError, ValueError):
            return True, None

    def _info(self) -> tfds.core.DatasetInfo:
        if self._raw is None:
            return self._stored_info()
        if self._stale is None:
            exists, stored = self._stored_fingerprint()
            self._stale = exists and stored != self._raw.fingerprint
        if self._stale and not self._rebuilding:
            # The features of a dataset prepared from other files may differ (other classes):
            # describe what is on disk; download_and_prepare refuses to reuse it.
            return self._stored_info()
        raw = self._raw
        features: dict[str, Any] = {
            "id": tfds.features.Text(),  # path relative to the raw folder
            "waveform": common.waveform_feature(),
            "num_samples": tfds.features.Scalar(dtype=np.int32),  # len(waveform)
            "duration_s": tfds.features.Scalar(dtype=np.float32),  # the file's own length
        }
        if raw.multi_label:
            features["labels"] = tfds.features.Tensor(shape=(len(raw.class_names),), dtype=np.uint8)
        else:
            features["label"] = tfds.features.ClassLabel(names=list(raw.class_names))
        if raw.has_events:
            features["events"] = common.events_feature()
            features["strong"] = tfds.features.Scalar(dtype=np.bool_)
        if raw.split_method == "fold_column":
            features["fold"] = tfds.features.Scalar(dtype=np.int32)
        if raw.group_column is not None:
            features["group"] = tfds.features.Text()
        return self.dataset_info_from_configs(
            description=f"User audio dataset from {raw.root.name}/ ({raw.labels_name}), mono int16 at its own length.",
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("waveform", "labels" if raw.multi_label else "label"),
            metadata=tfds.core.MetadataDict(
                sample_rate=self.sample_rate,
                clip_samples=None,  # variable length
                num_classes=len(raw.class_names),
                class_names=list(raw.class_names),
                multi_label=raw.multi_label,
                has_events=raw.has_events,
                dataset_name=self.builder_config.name,
                label_format=raw.label_format,
                labels_file=raw.labels_file.name if raw.labels_file is not None else None,
                split_method=raw.split_method,
                split_seed=self._split_seed,
                split_fractions=self._split_fractions,
                group_column=raw.group_column,
            ),
        )

    def _stored_info(self) -> tfds.core.DatasetInfo:
        """Info of an already prepared dataset, features read from its files (or a placeholder)."""
        path = pathlib.Path(os.fspath(self.data_path))
        if (path / "features.json").is_file():
            features = tfds.features.FeatureConnector.from_config(os.fspath(path))
        else:
            features = tfds.features.FeaturesDict({"id": tfds.features.Text(), "waveform": common.waveform_feature()})
        return self.dataset_info_from_configs(
            description="User audio dataset (audio_folder).", features=features, metadata=tfds.core.MetadataDict()
        )

    def download_and_prepare(self, *, download_dir=None, download_config=None, **kwargs):
        """As TFDS's, but a dataset prepared from other files (or other arguments) under the same
        name is rebuilt only in an overwrite mode; otherwise it is an error, never silently reused."""
        config = download_config or tfds.download.DownloadConfig()
        if self._raw is not None and self._stale and self._fresh_info is None:
            mode = tfds.download.GenerateMode(config.download_mode)
            if not mode.overwrite_dataset:
                raw_dir = dict(super().info.metadata or {}).get("raw_dir", "other files")
                raise common.RawDataError(
                    f"{self.data_dir} already holds an audio_folder dataset named {self.builder_config.name!r} "
                    f"prepared from {raw_dir} (other files, classes or settings than {self._raw.root}); "
                    "rebuild it with --overwrite (overwrite=True) or give this one another --name"
                )
            self._rebuilding = True
            fresh = self._info()
            fresh.set_file_format(self._file_format)  # as GeneratorBasedBuilder.__init__ does
            self._fresh_info = fresh
        return super().download_and_prepare(download_dir=download_dir, download_config=download_config, **kwargs)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        raw = self._raw
        manual = common.explicit_manual_dir(dl_manager)
        if raw is None:
            raise common.RawDataError(
                "audio_folder reads the raw folder when the builder is created: use "
                "tfds_builders.build('audio_folder', manual_dir=RAW, data_dir=OUT) or AudioFolder(raw_dir=RAW, ...)"
            )
        if manual is not None and manual.resolve() != raw.root.resolve():
            raise common.RawDataError(f"manual_dir {manual} differs from the builder's raw_dir {raw.root}")
        self._check_event_times()
        meta = self.info.metadata
        meta["raw_dir"] = os.fspath(raw.root.resolve())
        meta["source_fingerprint"] = raw.fingerprint
        meta["omitted_splits"] = {}
        meta["skipped"] = {}
        meta["class_positive_counts"] = {}
        if raw.split_method == "fold_column":
            folds = sorted({c.fold for c in raw.clips})
            meta["folds"] = folds
            meta["num_folds"] = len(folds)
        written = [split for split, clips in raw.splits.items() if clips]
        unlisted_split = "train" if "train" in written else written[0]  # reports the unused files
        generators = {}
        for split, clips in raw.splits.items():
            if clips:
                unlisted = raw.unlisted if split == unlisted_split else ()
                generators[split] = self._generate_examples(split, clips, unlisted=unlisted)
            else:
                # TFDS cannot write an empty split (e.g. too few clips for a 10 % test split).
                report = audio_io.SkipReport(self.name, split)
                common.finish_split(self, report, allow_empty=True)
                omitted = dict(meta["omitted_splits"])
                omitted[split] = (
                    f"no {raw.labels_name} rows with split={split}" if raw.split_method == "split_column"
                    else f"no clip drawn for it ({len(raw.clips)} clips, fractions {self._split_fractions})"
                )
                meta["omitted_splits"] = omitted
        return generators

    def _check_event_times(self) -> None:
        """Events must start inside the audio: checked here from file headers, before anything is
        written (files libsndfile cannot probe are checked once decoded)."""
        raw = self._raw
        for clip in raw.clips:
            if clip.events:
                duration = _probe_duration(raw.root / clip.rel)
                if duration is not None:
                    check_events_in_audio(raw, clip, duration)

    def _generate_examples(
        self, split: str, clips: list[Clip], unlisted: Sequence[tuple[str, str]] = ()
    ) -> Iterator[tuple[str, dict]]:
        raw = self._raw
        num_classes = len(raw.class_names)
        report = audio_io.SkipReport(self.name, split)
        for rel, reason in unlisted:
            report.add(rel, reason)
        counts = np.zeros(num_classes, np.int64)
        for clip in common.progress(clips, desc=f"{self.name} {split}"):
            try:
                audio = audio_io.load_mono(raw.root / clip.rel, self.sample_rate)
            except audio_io.AudioDecodeError as err:
                report.add_error(err, clip.rel)
                continue
            check_events_in_audio(raw, clip, audio.source_duration_s)
            example: dict[str, Any] = {
                "id": clip.rel,
                "waveform": audio_io.to_int16(audio.waveform),
                "num_samples": np.int32(audio.waveform.shape[0]),
                "duration_s": np.float32(audio.source_duration_s),
            }
            if raw.multi_label:
                labels = np.zeros(num_classes, np.uint8)
                labels[list(clip.labels)] = 1
                example["labels"] = labels
            else:
                example["label"] = clip.labels[0]
            counts[list(clip.labels)] += 1
            if raw.has_events:
                events = sorted(zip((e[0] for e in clip.events), (e[1] for e in clip.events), clip.event_labels))
                example["events"] = {
                    "onset": np.array([e[0] for e in events], np.float32),
                    "offset": np.array([e[1] for e in events], np.float32),
                    "label": np.array([e[2] for e in events], np.int32),
                }
                example["strong"] = clip.strong
            if raw.split_method == "fold_column":
                example["fold"] = np.int32(clip.fold)
            if raw.group_column is not None:
                example["group"] = clip.group if clip.group is not None else ""
            report.num_written += 1
            yield clip.rel, example
        all_counts = dict(self.info.metadata.get("class_positive_counts", {}))
        all_counts[split] = [int(c) for c in counts]
        self.info.metadata["class_positive_counts"] = all_counts
        common.finish_split(self, report)


def _resolve_config(config: str | AudioFolderConfig | None, dataset_name: str | None) -> str | AudioFolderConfig:
    """The builder config for a rate config (name or object) and an optional dataset name."""
    predefined = AudioFolder.builder_configs
    if config is None:
        config = AudioFolder.DEFAULT_BUILDER_CONFIG_NAME
    if isinstance(config, str):
        if config not in predefined:
            raise common.RawDataError(
                f"unknown audio_folder config {config!r}: the configs set the sample rate, "
                f"{', '.join(f'{n} ({c.sample_rate} Hz)' for n, c in predefined.items())}; name a dataset with --name"
            )
        base = predefined[config]
    else:
        base = config
    if dataset_name is None or dataset_name == base.name:
        return base.name if isinstance(config, str) else config
    if not _CONFIG_NAME_RE.match(dataset_name):
        raise common.RawDataError(
            f"dataset name {dataset_name!r} must be letters, digits, '_', '-' or '.' (it becomes a folder name)"
        )
    if dataset_name in predefined:
        raise common.RawDataError(
            f"dataset name {dataset_name!r} is the name of the {predefined[dataset_name].sample_rate} Hz config; "
            f"use --config {dataset_name} without --name, or another name"
        )
    return AudioFolderConfig(
        name=dataset_name, sample_rate=base.sample_rate,
        description=f"User dataset {dataset_name!r} at {base.sample_rate} Hz.",
    )


def rate_config(sample_rate: int) -> str:
    """Name of the predefined config that stores `sample_rate` (e.g. 16000 -> "16k")."""
    for config in AudioFolder.BUILDER_CONFIGS:
        if config.sample_rate == sample_rate:
            return config.name
    raise ValueError(f"no audio_folder config stores {sample_rate} Hz; configs: "
                     f"{[(c.name, c.sample_rate) for c in AudioFolder.BUILDER_CONFIGS]}")
