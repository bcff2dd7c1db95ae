"""Helpers shared by the dataset builders: feature specs, raw-layout checks, metadata
parsing with line numbers, and the per-split skip report.

Kept free of dataset specifics; each builder module owns its own layout and labels.
"""

from __future__ import annotations

import csv
import logging
import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from tfds_builders import audio_io

log = logging.getLogger("tfds_builders")


class RawDataError(ValueError):
    """The raw dataset folder does not look as expected: a missing file or folder,
    a malformed metadata row, or an unknown label. The message names the file (and line)."""


def waveform_feature() -> tfds.features.Tensor:
    """Mono int16 waveform `(samples,)` stored as raw bytes (fast to write and read, no TF needed)."""
    return tfds.features.Tensor(shape=(None,), dtype=np.int16, encoding=tfds.features.Encoding.BYTES)


def events_feature() -> tfds.features.FeaturesDict:
    """Strong labels: parallel `(num_events,)` arrays; onset/offset in seconds, label = class index."""
    return tfds.features.FeaturesDict(
        {
            "onset": tfds.features.Tensor(shape=(None,), dtype=np.float32),
            "offset": tfds.features.Tensor(shape=(None,), dtype=np.float32),
            "label": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        }
    )


def explicit_manual_dir(dl_manager: tfds.download.DownloadManager) -> pathlib.Path | None:
    """The folder the user passed as `manual_dir`, or None when none was given.

    TFDS substitutes `{download_dir}/manual` when no manual_dir is set; for builders that can
    download, that default means "download" rather than "look for files". A folder the user
    named explicitly must exist: a typo must not silently trigger a multi-GB download.
    """
    manual = getattr(dl_manager, "_manual_dir", None)  # no public accessor that does not raise
    if manual is None:
        return None
    manual = pathlib.Path(os.fspath(manual))
    default = pathlib.Path(os.fspath(dl_manager.download_dir)) / "manual"
    if manual == default and not (manual.is_dir() and any(manual.iterdir())):
        return None
    if not manual.is_dir():
        raise RawDataError(f"manual_dir {manual} does not exist or is not a folder")
    return manual


def require_file(path: pathlib.Path, what: str) -> pathlib.Path:
    """Returns `path` if it is a file, else raises RawDataError naming it."""
    if not path.is_file():
        raise RawDataError(f"missing {what}: expected file {path}")
    return path


def require_dir(path: pathlib.Path, what: str) -> pathlib.Path:
    """Returns `path` if it is a folder, else raises RawDataError naming it."""
    if not path.is_dir():
        raise RawDataError(f"missing {what}: expected folder {path}")
    return path


def read_rows(
    path: pathlib.Path,
    *,
    delimiter: str = ",",
    comment: str | None = None,
    skipinitialspace: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """Yields (1-based line number, fields) for each non-blank, non-comment line of a CSV/TSV."""
    with open(path, newline="", encoding="utf-8") as f:
        lines = enumerate(f, start=1)
        for line_no, line in lines:
            if not line.strip() or (comment and line.lstrip().startswith(comment)):
                continue
            fields = next(csv.reader([line], delimiter=delimiter, skipinitialspace=skipinitialspace))
            yield line_no, [x.strip() for x in fields]


def row_error(path: os.PathLike | str, line_no: int, message: str) -> RawDataError:
    """A RawDataError that says `file:line: message`."""
    return RawDataError(f"{os.fspath(path)}:{line_no}: {message}")


def progress(items: Sequence[Any] | Iterable[Any], *, desc: str, total: int | None = None) -> Iterable[Any]:
    """tqdm over examples being generated (TFDS shows its own writer bar besides)."""
    return tqdm.tqdm(items, desc=desc, total=total, unit="clip", dynamic_ncols=True, leave=False)


def report_path(builder: tfds.core.DatasetBuilder, split: str) -> pathlib.Path:
    """Where the skip report of `split` lives: `{data_dir}/{name}/{version}/skipped_{split}.json`."""
    return pathlib.Path(os.fspath(builder.data_dir)) / f"skipped_{split}.json"


def finish_split(builder: tfds.core.DatasetBuilder, report: audio_io.SkipReport, allow_empty: bool = False) -> None:
    """Writes the split's skip report next to the dataset files and records counts in metadata.

    Called at the end of each `_generate_examples`; during `download_and_prepare` the builder's
    data_dir is TFDS's temporary folder, which is renamed to the final one on success, so the
    report ends up in the final dataset folder.

    Raises:
      RawDataError: nothing was written for the split (and `allow_empty` is False): every file
        was skipped, so the message lists the first reasons (TFDS would fail on an empty split
        anyway, and delete the report with its temporary folder).
    """
    if not report.num_written and not allow_empty:
        first = "; ".join(f"{e['path']}: {e['reason']}" for e in report.entries[:5])
        raise RawDataError(
            f"{report.dataset}/{report.split}: no example written, all {len(report)} file(s) skipped "
            f"({', '.join(f'{k}: {v}' for k, v in report.reason_counts().items())}). First: {first}"
        )
    path = report_path(builder, report.split)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.write_json(path)
    skipped = dict(builder.info.metadata.get("skipped", {}))
    skipped[report.split] = len(report)
    builder.info.metadata["skipped"] = skipped
    level = logging.WARNING if len(report) else logging.INFO
    log.log(level, "%s; report: %s", report.summary(), path.name)
