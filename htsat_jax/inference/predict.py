r"""Tags and timed events for your own audio files.

    python -m htsat_jax.predict --checkpoint CKPT INPUT [INPUT ...] [--output out.json]
        [--csv events.csv] [--plot DIR] [--top_k 5] [--window_s 10] [--hop_s 5]
        [--threshold 0.5] [--median_filter_s 0.5] [--clip_gate G] [--clip_pool max|mean]
        [--batch_size 16] [--class_names FILE] [--reference events.tsv]

CKPT is a model directory of this project (``WORKDIR/model`` written by training, or
``python -m htsat_jax.convert`` output) or a released file any registered model reads (official
HTS-AT ``.ckpt``, YAMNet ``.tflite`` / ``.h5``, ...); models with frame-level output only. INPUT is audio files or
folders (searched recursively for wav, flac, ogg, opus, mp3, m4a, webm, aac, mp4, aiff).

What happens to each file (and is reported in its ``notes``):

* any sample rate is resampled to the model's (soxr HQ); multichannel audio is averaged to mono;
* a file up to ``--window_s`` (10 s) long is one window, run as the official inference does
  (log-mel tiled ``floor(1024 / frames)`` times, then stretched to 1024 frames);
* a longer file is cut into ``--window_s`` windows every ``--hop_s`` seconds (plus one window
  ending at the file's end). Clip scores of the file are the **max over windows** (a sound
  anywhere in the file tags it; ``--clip_pool mean`` for how much of the file it fills). The
  frame-wise maps of the windows are mapped to seconds with the stretched-grid mapping
  (``htsat_jax.inference.windowing``) and averaged where windows overlap, on a 10 ms grid;
* events = runs of frames above the threshold after a median filter along time. Threshold:
  ``--threshold`` if given, else the model directory's ``event_thresholds`` (tuned on validation
  data by the trainer), else 0.5. ``--clip_gate`` (default: the model directory's
  ``event_clip_gate``) keeps a class's frames in a window only when the window's clip score
  exceeds it.

Median filter default (0.5 s = 51 frames of 10 ms). HTS-AT's frame map is piecewise constant
over blocks of 32 of its 1024 steps (0.31 s of a 10 s window), so on a single window any filter
up to ~0.6 s changes nothing; on a stitched long file it removes the sub-block fragments that
averaging overlapping windows (whose blocks do not line up) creates. Only filters of 0.7 s or
more delete one-block detections. Measured with the `make demo` model (its tuned thresholds
0.95 and clip gate 0.5) on held-out synthetic scenes, event F1 (psds-style, DTC/GTC 0.5):

    median filter            0      0.5    0.7    1.5    2.0
    validation, 10 s clips  .494   .494   .503   .515   .520
    validation, 40 s files  .492   .492   .490   .508   .515
    test,       10 s clips  .431   .431   .426   .439   .472
    test,       40 s files  .456   .458   .453   .459   .455

(filter 0 on 10 s clips reproduces the trainer's own validation/test event F1 exactly). Longer
filters help this weak demo model on these 0.4-3 s events but delete short events in general,
so the default stays at 0.5 s; raise it for long, steady sounds, set 0 to disable.

Many files run together: the windows of several files share each forward pass. A file that
cannot be read (corrupt, empty, no decoder) is reported on stderr and under ``errors`` in the
JSON, and skipped. Exit status: 0 when at least one file was tagged, 2 when none was.

From Python: ``htsat_jax.inference.predict.run(checkpoint, inputs, ...)`` returns the same dict as the
JSON, and ``AudioTagger.tag_file`` / ``events`` / ``embed`` work on single recordings.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Any, Sequence

import numpy as np

from htsat_jax.inference import tagger as api
from htsat_jax.inference import events as events_lib

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".webm", ".aac", ".mp4", ".aiff", ".aif")
PLOT_MAX_S = 600.0  # longer files: the plot shows the first 10 minutes


def find_audio_files(inputs: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Files named directly (any extension) and audio files under folders (recursive, sorted).

    Returns:
      ``(files, errors)``; a path that does not exist or a folder with no audio is an error.
    """
    files, errors = [], []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = []
            for root, dirs, names in os.walk(item):
                dirs.sort()
                found += [os.path.join(root, n) for n in sorted(names)
                          if n.lower().endswith(AUDIO_EXTENSIONS) and not n.startswith(".")]
            if not found:
                errors.append({"file": item, "error": f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in folder"})
            files += found
        elif os.path.isfile(item):
            files.append(item)
        else:
            errors.append({"file": item, "error": "no such file or folder"})
    seen, unique = set(), []
    for f in files:
        if os.path.abspath(f) not in seen:
            seen.add(os.path.abspath(f))
            unique.append(f)
    return unique, errors


def _plot_name(path: str, used: set[str]) -> str:
    stem = os.path.splitext(os.path.basename(path))[0] or "audio"
    name, n = stem, 1
    while name in used:
        name, n = f"{stem}_{n}", n + 1
    used.add(name)
    return name + ".png"


def _plot(path: str, tagger: api.AudioTagger, result: api.FileResult, top_k: int) -> None:
    from htsat_jax.evaluation import plots

    a = result.analysis
    wave, fmap = result.waveform, a.framewise
    title = os.path.basename(result.path)
    if a.duration_s > PLOT_MAX_S:
        wave = wave[:int(PLOT_MAX_S * a.sample_rate)]
        fmap = fmap[:int(PLOT_MAX_S / a.seconds_per_frame) + 1]
        title += f" (first {PLOT_MAX_S:g} s)"
    found = [events_lib.Event(e["label"], e["onset_s"], e["offset_s"], e["score"]) for e in result.record["events"]]
    plots.plot_event_map(path, wave, tagger.sample_rate, fmap, a.seconds_per_frame, tagger.names,
                         detections=found, top_k=min(top_k, tagger.config.num_classes), title=title)


def _summary(record: dict[str, Any]) -> str:
    notes = f"  [{'; '.join(record['notes'])}]" if record["notes"] else ""
    tags = " | ".join(f"{t['label']} {t['score']:.3f}" for t in record["tags"])
    lines = [f"{record['file']}  {record['duration_s']:.2f} s{notes}", f"  tags:   {tags}"]
    ev = record["events"]
    shown = ", ".join(f"{e['label']} {e['onset_s']:.2f}-{e['offset_s']:.2f} s" for e in ev[:8])
    lines.append(f"  events: {len(ev)}" + (f"  {shown}" if ev else "") + (" ..." if len(ev) > 8 else ""))
    return "\n".join(lines)


def run(checkpoint: str | api.AudioTagger, inputs: Sequence[str], *, output: str | None = None,
        csv_path: str | None = None, plot_dir: str | None = None, top_k: int = 5, window_s: float = 10.0,
        hop_s: float = 5.0, threshold: float | None = None,
        median_filter_s: float = events_lib.DEFAULT_MEDIAN_FILTER_S, clip_gate: float | None | str = api.FROM_MODEL,
        clip_pool: str = "max", batch_size: int = 16, class_names: str | None = None,
        reference: str | None = None, progress: bool = True, verbose: bool = True) -> dict[str, Any]:
    """Tag ``inputs`` (files / folders) with a checkpoint; write the requested outputs.

    Args:
      checkpoint: model directory, official ``.ckpt``, or an already loaded ``AudioTagger``.
      threshold: one frame threshold for all classes; None = the model's (see module docs).
      clip_gate: float, None (no gate) or "model".
      class_names: a ``class_labels_indices.csv`` / one-name-per-line file overriding the model's.
      reference: a strong-label file (DESED-style TSV or CSV: ``filename, onset, offset, event_label``)
        to score the files against: event-based F1 and PSDS scenarios 1 and 2 (:func:`score_reference`).
      progress / verbose: tqdm bar and a per-file summary (stdout); errors always go to stderr.

    Returns:
      ``{"checkpoint", "settings", "files": [per-file records], "errors": [{"file", "error"}]}``,
      the content of ``output``.
    """
    from tqdm import tqdm

    from htsat_jax import checkpoint as ckpt_lib

    if isinstance(checkpoint, api.AudioTagger):
        tagger, ckpt_name = checkpoint, "<AudioTagger>"
    else:
        tagger, ckpt_name = api.AudioTagger.from_checkpoint(checkpoint, batch_size=batch_size), os.fspath(checkpoint)
    if class_names:
        names = ckpt_lib.read_class_names(class_names)
        if len(names) != tagger.config.num_classes:
            raise ValueError(f"{class_names}: {len(names)} names for a {tagger.config.num_classes}-class model")
        tagger.class_names = names
    if threshold is not None:
        thr_source = f"--threshold {threshold:g}"
    elif tagger.event_thresholds is not None:
        thr_source = "model directory event_thresholds"
    else:
        thr_source = "default 0.5"
    gate = tagger.event_clip_gate if isinstance(clip_gate, str) and clip_gate == api.FROM_MODEL else clip_gate
    truth = read_reference(reference, tagger.names) if reference else None
    frame_maps: dict[str, tuple[np.ndarray, float]] = {}
    files, errors = find_audio_files(inputs)
    settings = {"model_sample_rate": tagger.sample_rate, "num_classes": tagger.config.num_classes,
                "window_s": window_s, "hop_s": hop_s, "clip_pool": clip_pool, "top_k": top_k,
                "thresholds": thr_source, "median_filter_s": median_filter_s, "clip_gate": gate}
    for e in errors:
        print(f"error: {e['file']}: {e['error']}", file=sys.stderr)
    if plot_dir:
        os.makedirs(plot_dir, exist_ok=True)
    records: dict[int, dict[str, Any]] = {}
    used_names: set[str] = set()
    bar = tqdm(total=len(files), unit="file", disable=not progress or not files, file=sys.stderr)
    try:
        for result in tagger.iter_tag_files(files, top_k=top_k, window_s=window_s, hop_s=hop_s,
                                            thresholds=threshold, median_filter_s=median_filter_s,
                                            clip_gate=gate, clip_pool=clip_pool, keep_waveform=bool(plot_dir)):
            bar.update(1)
            if result.error:
                errors.append({"file": result.path, "error": result.error})
                bar.write(f"error: {result.path}: {result.error} (skipped)", file=sys.stderr)
                continue
            if plot_dir:
                png = os.path.join(plot_dir, _plot_name(result.path, used_names))
                _plot(png, tagger, result, top_k)
                result.record["plot"] = png
            records[result.index] = result.record
            if truth is not None and os.path.basename(result.path) in truth:
                frame_maps[os.path.basename(result.path)] = (result.analysis.framewise,
                                                             result.analysis.seconds_per_frame)
            if verbose:
                bar.write(_summary(result.record), file=sys.stdout)
    finally:
        bar.close()
    report = {"checkpoint": ckpt_name, "settings": settings,
              "files": [records[i] for i in sorted(records)], "errors": errors}
    if truth is not None:
        report["reference"] = score_reference(report["files"], frame_maps, truth, tagger.names, reference)
        if verbose:
            r = report["reference"]
            print(f"against {reference}: {r['files_scored']} file(s), event F1 {r['event_f1']:.4f}, "
                  f"PSDS1 {r['psds1']:.4f}, PSDS2 {r['psds2']:.4f}", file=sys.stdout)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    if csv_path:
        os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "label", "onset_s", "offset_s", "score"])
            for rec in report["files"]:
                for e in rec["events"]:
                    writer.writerow([rec["file"], e["label"], e["onset_s"], e["offset_s"], e["score"]])
    return report


def read_reference(path: str, class_names: Sequence[str]) -> dict[str, list[events_lib.Event]]:
    """A strong-label file -> ``{file basename: [Event]}``. Tab- or comma-separated with a header
    naming ``filename``, ``onset``, ``offset`` and ``event_label`` (or ``label``); a row without
    onset/offset/label lists a file with no event. Errors name the file and line."""
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
    rows = list(csv.reader(text.splitlines(), dialect=dialect))
    if not rows:
        raise ValueError(f"{path}: empty reference file")
    header = [h.strip().lower() for h in rows[0]]
    label_col = "event_label" if "event_label" in header else "label"
    missing = [c for c in ("filename", "onset", "offset", label_col) if c not in header]
    if missing:
        raise ValueError(f"{path}:1: reference needs columns filename, onset, offset, event_label; missing {missing}")
    col = {name: header.index(name) for name in ("filename", "onset", "offset", label_col)}
    known = set(class_names)
    out: dict[str, list[events_lib.Event]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = [row[col[c]].strip() if col[c] < len(row) else "" for c in ("filename", "onset", "offset", label_col)]
        name, onset, offset, label = cells
        events = out.setdefault(os.path.basename(name), [])
        if not (onset or offset or label):
            continue
        try:
            on, off = float(onset), float(offset)
        except ValueError:
            raise ValueError(f"{path}:{line}: onset/offset {onset!r}/{offset!r} are not numbers") from None
        if not on < off:
            raise ValueError(f"{path}:{line}: onset {on} is not before offset {off}")
        if label not in known:
            raise ValueError(f"{path}:{line}: label {label!r} is not one of the model's classes")
        events.append(events_lib.Event(label, on, off, 1.0))
    return out


def score_reference(records: Sequence[dict[str, Any]], frame_maps: dict[str, tuple[np.ndarray, float]],
                    truth: dict[str, list[events_lib.Event]], class_names: Sequence[str], where: str) -> dict[str, Any]:
    """Score the tagged files that the reference lists: event-based F1 of the reported events
    (intersection-based, DTC/GTC 0.5, CTTC 0.3) and PSDS 1 and 2 of the stitched frame maps, over the
    classes the reference uses (PSDS by the maintained ``sed_scores_eval``)."""
    from htsat_jax.evaluation import metrics, psds

    scored = [r for r in records if os.path.basename(r["file"]) in truth]
    if not scored:
        raise ValueError(f"{where}: none of the tagged files is listed in the reference")
    classes = sorted({e.label for events in truth.values() for e in events})
    index = [list(class_names).index(c) for c in classes]
    keys = [os.path.basename(r["file"]) for r in scored]
    found = {k: [events_lib.Event(e["label"], e["onset_s"], e["offset_s"], e["score"]) for e in r["events"]
                 if e["label"] in classes] for k, r in zip(keys, scored)}
    durations = {k: float(r["duration_s"]) for k, r in zip(keys, scored)}
    f1 = metrics.event_f1({k: truth[k] for k in keys}, found, durations, class_names=classes)
    out = {"reference": where, "files_scored": len(scored), "classes": classes, "event_f1": float(f1["macro_f1"]),
           "event_f1_per_class": {c: float(v) for c, v in f1["f1"].items()}}
    step = frame_maps[keys[0]][1]
    for scenario in (1, 2):
        try:
            out[f"psds{scenario}"] = psds.psds([frame_maps[k][0][:, index] for k in keys], [truth[k] for k in keys],
                                               step, classes, scenario=scenario,
                                               durations=[durations[k] for k in keys])["psds"]
        except ValueError as e:
            out[f"psds{scenario}"] = float("nan")
            out[f"psds{scenario}_error"] = str(e)
    return out


def _gate_arg(text: str) -> float | None | str:
    if text.lower() == "model":
        return api.FROM_MODEL
    if text.lower() in ("none", "off"):
        return None
    return float(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m htsat_jax.predict",
                                description="Tag audio files and find timed sound events with a model of this project.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders (recursive)")
    p.add_argument("--checkpoint", required=True,
                   help="model directory (config.json + weights/) or a released checkpoint file")
    p.add_argument("--output", help="write all results as JSON here")
    p.add_argument("--csv", dest="csv_path", help="write the events as CSV (file,label,onset_s,offset_s,score)")
    p.add_argument("--plot", dest="plot_dir", help="write one PNG per file (log-mel + event map) into this folder")
    p.add_argument("--top_k", type=int, default=5, help="tags reported per file (5)")
    p.add_argument("--window_s", type=float, default=10.0, help="window length for long files, at most 10.24 s (10)")
    p.add_argument("--hop_s", type=float, default=5.0, help="hop between windows of long files (5)")
    p.add_argument("--threshold", type=float, default=None,
                   help="frame threshold for events, all classes (default: the model's tuned "
                        "event_thresholds, else 0.5)")
    p.add_argument("--median_filter_s", type=float, default=events_lib.DEFAULT_MEDIAN_FILTER_S,
                   help="median filter length in seconds along time before thresholding, 0 = off (0.5)")
    p.add_argument("--clip_gate", type=_gate_arg, default=api.FROM_MODEL,
                   help="events only for classes whose window clip score exceeds this; 'none', or 'model' "
                        "(default: the model directory's event_clip_gate)")
    p.add_argument("--clip_pool", choices=("max", "mean"), default="max",
                   help="clip scores of a long file: max (default) or mean over its windows")
    p.add_argument("--batch_size", type=int, default=16, help="windows per forward pass (16)")
    p.add_argument("--class_names", help="class_labels_indices.csv or one name per line, overriding the model's")
    p.add_argument("--reference", help="strong labels (TSV/CSV: filename, onset, offset, event_label) to score the "
                                       "files against: event F1 and PSDS 1/2 (in the JSON under 'reference')")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-file summary")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args.checkpoint, args.inputs, output=args.output, csv_path=args.csv_path,
                     plot_dir=args.plot_dir, top_k=args.top_k, window_s=args.window_s, hop_s=args.hop_s,
                     threshold=args.threshold, median_filter_s=args.median_filter_s, clip_gate=args.clip_gate,
                     clip_pool=args.clip_pool, batch_size=args.batch_size, class_names=args.class_names,
                     reference=args.reference, progress=not args.quiet, verbose=not args.quiet)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done, failed = len(report["files"]), len(report["errors"])
    print(f"{done} file(s) tagged, {failed} skipped" + (f"; results in {args.output}" if args.output else ""),
          file=sys.stderr)
    return 0 if done else 2


if __name__ == "__main__":
    sys.exit(main())
