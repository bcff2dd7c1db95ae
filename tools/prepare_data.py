"""Prepare a dataset for training: raw files -> TFDS ArrayRecord files.

    python tools/prepare_data.py NAME --manual_dir RAW --data_dir OUT [--config NAME] [--overwrite]
    python tools/prepare_data.py audio_folder --manual_dir RAW --data_dir OUT [--name NAME]
        [--classes a,b,c] [--config 32k|16k]

NAME is one of esc50, speech_commands, audioset, desed, fsd50k, audio_folder (and
synthetic_events when that builder is present). audio_folder is your own folder of recordings
with a labels.csv/.tsv or one sub-folder per class; --name stores it as OUT/audio_folder/NAME/
(open it as "audio_folder/NAME"), --classes fixes the class list and its order.
RAW is the dataset's own folder layout (see docs/DATASETS.md);
ESC-50 and Speech Commands download their public archives when --manual_dir is left out.
The result lands in OUT/{tfds name}/{version}/, next to one skipped_{split}.json per split
listing every file that was not written and why. Prints a summary at the end.

Exit codes: 0 success, 2 bad input (missing folder, malformed metadata, unknown label).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Sequence

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # run as a script: tools/ is on sys.path, the repo root is not
    sys.path.insert(0, str(_REPO_ROOT))

import tfds_builders  # noqa: E402  (light: builders are imported lazily)

# Datasets that have nothing to download and therefore need --manual_dir.
_NEEDS_MANUAL_DIR = {"audioset", "desed", "audio_folder"}
# Options only the audio_folder builder takes.
_AUDIO_FOLDER_ONLY = {"dataset_name": "--name", "classes": "--classes"}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build a TFDS (ArrayRecord) dataset from its raw files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("name", choices=sorted(tfds_builders.DATASETS), help="dataset to prepare")
    parser.add_argument("--manual_dir", type=pathlib.Path, default=None,
                        help="folder with the raw dataset (required for audioset, desed and audio_folder)")
    parser.add_argument("--data_dir", type=pathlib.Path, required=True, help="output folder for the TFDS files")
    parser.add_argument("--config", default=None,
                        help="builder config name, for builders that have several (e.g. synthetic_events: tiny; "
                             "fsd50k and audio_folder: 16k or 32k, the stored sample rate)")
    parser.add_argument("--name", dest="dataset_name", default=None,
                        help="audio_folder only: the dataset's name; written to OUT/audio_folder/NAME/ "
                             "(default: the --config name, 32k)")
    parser.add_argument("--classes", default=None,
                        help="audio_folder only: comma-separated class list, in output order; a label "
                             "outside it is an error (default: every label found, sorted)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild even if the dataset version exists")
    return parser.parse_args(argv)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    raise AssertionError("unreachable")


def summarize(builder) -> str:
    """Human-readable summary of a prepared builder: examples and skips per split, bytes on disk."""
    data_dir = pathlib.Path(os.fspath(builder.data_dir))
    lines = [f"{builder.name} {builder.version} -> {data_dir}"]
    if builder.name == "audio_folder":  # a user dataset: say how to open it and what it holds
        meta = builder.info.metadata
        kind = "multi-label" if meta["multi_label"] else "single-label"
        lines.append(f"  open as {builder.name}/{builder.builder_config.name}: {meta['num_classes']} classes, {kind}"
                     f"{', strong events' if meta['has_events'] else ''}, {meta['sample_rate']} Hz")
    for split, info in builder.info.splits.items():
        report = data_dir / f"skipped_{split}.json"
        if report.exists():
            skipped = json.loads(report.read_text())["num_skipped"]
            lines.append(f"  {split:<18} {info.num_examples:>9} examples  {skipped:>7} skipped  report: {report}")
        else:  # generated datasets have nothing to skip
            lines.append(f"  {split:<18} {info.num_examples:>9} examples  (no skip report)")
    for split, why in dict(builder.info.metadata.get("omitted_splits", {})).items():
        report = data_dir / f"skipped_{split}.json"
        extra = f"  report: {report}" if report.exists() else ""
        lines.append(f"  {split:<18} not written ({why}){extra}")
    total = sum(f.stat().st_size for f in data_dir.iterdir() if f.is_file())
    records = sum(f.stat().st_size for f in data_dir.iterdir() if ".array_record" in f.name)
    lines.append(f"  bytes written: {_human_bytes(total)} ({total} B; example records {records} B)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input)."""
    args = _parse_args(argv)
    if args.name not in tfds_builders.available():
        print(f"error: the {args.name} builder is not part of this checkout "
              f"(no package {tfds_builders.DATASETS[args.name]})", file=sys.stderr)
        return 2
    if args.manual_dir is None and args.name in _NEEDS_MANUAL_DIR:
        print(f"error: {args.name} has no public archive to download; pass --manual_dir RAW", file=sys.stderr)
        return 2
    if args.manual_dir is not None and not args.manual_dir.is_dir():
        print(f"error: raw folder {args.manual_dir} does not exist or is not a folder", file=sys.stderr)
        return 2

    used = [flag for dest, flag in _AUDIO_FOLDER_ONLY.items() if getattr(args, dest) is not None]
    if used and args.name != "audio_folder":
        print(f"error: {' and '.join(used)} only appl{'ies' if len(used) == 1 else 'y'} to audio_folder",
              file=sys.stderr)
        return 2

    from tfds_builders import common  # deferred: imports TFDS (about a second)

    try:
        extra = {"config": args.config} if args.config else {}
        if args.name == "audio_folder":
            if args.dataset_name is not None:
                extra["dataset_name"] = args.dataset_name
            if args.classes is not None:
                extra["classes"] = args.classes.split(",")
        builder = tfds_builders.build(
            args.name, data_dir=args.data_dir, manual_dir=args.manual_dir, overwrite=args.overwrite, **extra
        )
    except common.RawDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summarize(builder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
