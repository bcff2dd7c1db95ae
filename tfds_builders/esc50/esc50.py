"""ESC-50 (environmental sound classification, 2000 clips x 5 s, 50 classes, 5 folds).

Raw layout (the GitHub archive `ESC-50-master/`, or a folder holding it):
    meta/esc50.csv   columns filename,fold,target,category,esc10,src_file,take
    audio/*.wav      44.1 kHz mono, 5 s

Written as one split, "train", holding all clips; the 5-fold protocol (test on fold k,
train on the other four) selects by the `fold` feature, e.g. with
`split="train"` plus a filter, so no clip is stored twice.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import audio_io, common

SAMPLE_RATE = 32000
CLIP_SECONDS = 5
CLIP_SAMPLES = SAMPLE_RATE * CLIP_SECONDS  # 160000; the pipeline repeats it to 10 s
NUM_FOLDS = 5

# ESC-50 category names, ordered by the `target` column of esc50.csv.
CLASS_NAMES: tuple[str, ...] = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm", "crying_baby", "sneezing", "clapping",
    "breathing", "coughing", "footsteps", "laughing", "brushing_teeth", "snoring",
    "drinking_sipping", "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks",
    "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick",
    "glass_breaking", "helicopter", "chainsaw", "siren", "car_horn", "engine", "train",
    "church_bells", "airplane", "fireworks", "hand_saw",
)

_URL = "https://github.com/karolpiczak/ESC-50/archive/master.zip"
_ARCHIVE_ROOT = "ESC-50-master"
META_CSV = pathlib.Path("meta") / "esc50.csv"
AUDIO_DIR = pathlib.Path("audio")
_REQUIRED_COLUMNS = ("filename", "fold", "target", "category", "esc10")


def find_root(folder: pathlib.Path) -> pathlib.Path:
    """Returns the ESC-50 root inside `folder` (itself or `folder/ESC-50-master`)."""
    for candidate in (folder, folder / _ARCHIVE_ROOT):
        if (candidate / META_CSV).is_file():
            common.require_dir(candidate / AUDIO_DIR, "ESC-50 audio folder")
            return candidate
    raise common.RawDataError(
        f"missing ESC-50 metadata: expected file {folder / META_CSV} "
        f"(or {folder / _ARCHIVE_ROOT / META_CSV})"
    )


def read_meta(csv_path: pathlib.Path) -> list[dict[str, Any]]:
    """Parses esc50.csv into [{filename, fold, target, esc10}], checking every row.

    Raises:
      RawDataError: missing columns, a malformed value, or a category that does not
        match CLASS_NAMES[target], naming the file and line.
    """
    rows = common.read_rows(csv_path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise common.RawDataError(f"{csv_path}: empty file, expected a header {','.join(_REQUIRED_COLUMNS)},...")
    missing = [c for c in _REQUIRED_COLUMNS if c not in header]
    if missing:
        raise common.row_error(csv_path, 1, f"header lacks column(s) {missing}; got {header}")
    col = {name: header.index(name) for name in _REQUIRED_COLUMNS}
    seen: set[str] = set()
    out = []
    for line_no, fields in rows:
        if len(fields) != len(header):
            raise common.row_error(csv_path, line_no, f"expected {len(header)} fields, got {len(fields)}: {fields}")
        filename, category = fields[col["filename"]], fields[col["category"]]
        try:
            fold, target = int(fields[col["fold"]]), int(fields[col["target"]])
        except ValueError:
            raise common.row_error(csv_path, line_no, f"fold and target must be integers: {fields}") from None
        esc10 = fields[col["esc10"]].lower()
        if not filename:
            raise common.row_error(csv_path, line_no, "empty filename")
        if filename in seen:
            raise common.row_error(csv_path, line_no, f"duplicate filename {filename!r}")
        if not 1 <= fold <= NUM_FOLDS:
            raise common.row_error(csv_path, line_no, f"fold {fold} outside 1..{NUM_FOLDS}")
        if category not in CLASS_NAMES:
            raise common.row_error(csv_path, line_no, f"unknown category {category!r} (not one of the 50 ESC-50 classes)")
        if not 0 <= target < len(CLASS_NAMES) or CLASS_NAMES[target] != category:
            raise common.row_error(
                csv_path, line_no,
                f"target {target} does not match category {category!r} (expected target {CLASS_NAMES.index(category)})",
            )
        if esc10 not in ("true", "false"):
            raise common.row_error(csv_path, line_no, f"esc10 must be True or False, got {fields[col['esc10']]!r}")
        seen.add(filename)
        out.append({"filename": filename, "fold": fold, "target": target, "esc10": esc10 == "true"})
    return out


class Esc50(tfds.core.GeneratorBasedBuilder):
    """ESC-50 clips at 32 kHz, 5 s (160000 samples), one "train" split with a `fold` feature."""

    name = "esc50"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: 32 kHz int16 waveforms, fold and esc10 features."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional. Point manual_dir at ESC-50-master/ (with meta/esc50.csv and audio/*.wav) "
        "or at the folder containing it. Without manual_dir the GitHub archive is downloaded."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="ESC-50: 2000 environmental recordings, 50 classes, 5 folds; mono 32 kHz int16.",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "waveform": common.waveform_feature(),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                    "fold": tfds.features.Scalar(dtype=np.int32),
                    "esc10": tfds.features.Scalar(dtype=np.bool_),
                }
            ),
            supervised_keys=("waveform", "label"),
            homepage="https://github.com/karolpiczak/ESC-50",
            metadata=tfds.core.MetadataDict(
                sample_rate=SAMPLE_RATE,
                clip_samples=CLIP_SAMPLES,
                class_names=list(CLASS_NAMES),
                num_folds=NUM_FOLDS,
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual = common.explicit_manual_dir(dl_manager)
        folder = manual if manual is not None else pathlib.Path(dl_manager.download_and_extract(_URL))
        root = find_root(folder)
        rows = read_meta(root / META_CSV)
        return {"train": self._generate_examples(root, rows)}

    def _generate_examples(self, root: pathlib.Path, rows: list[dict[str, Any]]) -> Iterator[tuple[str, dict]]:
        report = audio_io.SkipReport(self.name, "train")
        for row in common.progress(rows, desc=f"{self.name} train"):
            rel = (AUDIO_DIR / row["filename"]).as_posix()
            try:
                audio = audio_io.load_mono(root / rel, SAMPLE_RATE)
            except audio_io.AudioDecodeError as err:
                report.add_error(err, rel)
                continue
            report.num_written += 1
            yield rel, {
                "id": rel,
                "waveform": audio_io.to_int16(audio_io.fit_length(audio.waveform, CLIP_SAMPLES)),
                "label": row["target"],
                "fold": row["fold"],
                "esc10": row["esc10"],
            }
        common.finish_split(self, report)
