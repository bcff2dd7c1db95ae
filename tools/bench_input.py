"""Throughput of the grain train pipeline (clips/s) with N reader threads / worker processes.

By default it builds the synthetic_events dataset (10 s clips at 32 kHz, int16) into a
temporary directory and reads it back through ``htsat_jax.data.pipeline``; pass
``--data_dir`` (and ``--dataset`` / ``--builder_config``) to measure a prepared dataset.

    .venv/bin/python tools/bench_input.py                         # threads 0,1,2,4,8
    .venv/bin/python tools/bench_input.py --threads 2,4 --workers 0,2
    .venv/bin/python tools/bench_input.py --dataset esc50 --data_dir ~/tensorflow_datasets

Each figure is compared with what one accelerator consumes. That consumption rate is an
ASSUMPTION until the trainer benchmark measures it: the default, 1000 clips/s (about 7.8
train steps/s at batch 128), is a rough estimate for the full HTS-AT model (~31 M
parameters, 256x256 input) on one current datacenter GPU. Override it with
``--consume_clips_per_s`` (tools/accelerator_check.sh passes the train step it measured).

``--jsonl PATH`` appends one JSON object per (workers, threads) row as soon as it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

# Make the repo importable when run as a script (python tools/bench_input.py).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ASSUMED_CONSUME_CLIPS_PER_S = 1000.0


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_synthetic(data_dir: str, num_train: int) -> str:
    """Builds a synthetic_events variant with ``num_train`` train scenes; returns its config name."""
    from tfds_builders.synthetic_events import SyntheticEvents, SyntheticEventsConfig

    name = f"bench{num_train}"
    config = SyntheticEventsConfig(name=name, num_train=num_train, num_validation=1, num_test=1,
                                   description="input benchmark")
    start = time.perf_counter()
    SyntheticEvents(config=config, data_dir=data_dir).download_and_prepare()
    print(f"built synthetic_events/{name} ({num_train} train clips) in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    return name


def warm_page_cache(data_dir: str) -> None:
    """Flushes pending writes and reads every file once, so all settings start from RAM."""
    os.sync()
    for root, _, files in os.walk(data_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                while f.read(1 << 24):
                    pass


def raw_source_rate(args, builder_config: str | None, data_dir: str) -> float:
    """Records/s of plain sequential ``source[i]`` reads (read + decompress + parse)."""
    from htsat_jax.data import pipeline as input_pipeline

    source, _ = input_pipeline.open_source(args.dataset, data_dir=data_dir, split=args.split,
                                           builder_config=builder_config)
    count = min(len(source), 512)
    start = time.perf_counter()
    for i in range(count):
        source[i]
    return count / (time.perf_counter() - start)


def measure(args, builder_config: str | None, data_dir: str, num_threads: int,
            num_workers: int) -> tuple[float, float, int, str]:
    """Returns (seconds to the first batch, clips/s over the timed batches, bytes per clip, sample dtype)."""
    from htsat_jax.data import pipeline as input_pipeline

    start = time.perf_counter()
    iterator = input_pipeline.make_train_iterator(
        args.dataset, data_dir=data_dir, builder_config=builder_config, split=args.split,
        global_batch_size=args.batch_size, seed=0, process_index=0, process_count=1,
        num_threads=num_threads, num_workers=num_workers)
    batch = next(iterator)
    first = time.perf_counter() - start
    for _ in range(args.warmup_batches):
        batch = next(iterator)
    start = time.perf_counter()
    clips = 0
    for _ in range(args.num_batches):
        batch = next(iterator)
        clips += batch["waveform"].shape[0]
    rate = clips / (time.perf_counter() - start)
    if hasattr(iterator, "close"):
        iterator.close()
    return first, rate, batch["waveform"][0].nbytes, batch["waveform"].dtype.name


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="synthetic_events")
    parser.add_argument("--builder_config", default=None,
                        help="config of a prepared dataset (ignored when building a temporary one)")
    parser.add_argument("--data_dir", default=None,
                        help="prepared TFDS data_dir; default: build synthetic_events in a temp dir")
    parser.add_argument("--split", default="train")
    parser.add_argument("--num_scenes", type=int, default=512,
                        help="train scenes in the temporary synthetic dataset (640 KB each)")
    parser.add_argument("--batch_size", type=int, default=128, help="per-process batch size")
    parser.add_argument("--threads", type=_int_list, default=[0, 1, 2, 4, 8])
    parser.add_argument("--workers", type=_int_list, default=[0],
                        help="grain worker processes to try (each with every --threads value)")
    parser.add_argument("--num_batches", type=int, default=20, help="timed batches per setting")
    parser.add_argument("--warmup_batches", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per setting; the median and range are printed")
    parser.add_argument("--consume_clips_per_s", type=float, default=ASSUMED_CONSUME_CLIPS_PER_S,
                        help="clips/s one accelerator trains on at batch 128 (ASSUMED by default; "
                             "replace with the trainer benchmark's figure)")
    parser.add_argument("--jsonl", default=None, metavar="PATH",
                        help="append one JSON object per result row to PATH (printed output unchanged)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_input_") as tmp:
        if args.data_dir is None:
            if args.dataset != "synthetic_events":
                parser.error("--data_dir is required for datasets other than synthetic_events")
            data_dir, builder_config = tmp, build_synthetic(tmp, args.num_scenes)
        else:
            data_dir, builder_config = args.data_dir, args.builder_config

        from htsat_jax.data import pipeline as input_pipeline

        tfds_dir = input_pipeline.tfds_name(args.dataset, builder_config).split("/")[0]
        warm_page_cache(os.path.join(data_dir, tfds_dir))
        print(f"host: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
        print(f"dataset {args.dataset}/{builder_config or 'default'} split {args.split}, "
              f"batch {args.batch_size}, {args.num_batches} timed batches after "
              f"{args.warmup_batches} warm-up")
        print(f"accelerator consumption: {args.consume_clips_per_s:.0f} clips/s "
              f"({args.consume_clips_per_s / 128:.1f} steps/s at batch 128)"
              + (" [ASSUMED]" if args.consume_clips_per_s == ASSUMED_CONSUME_CLIPS_PER_S else ""))
        source_rate = raw_source_rate(args, builder_config, data_dir)
        print(f"baseline: sequential source[i] (read + decompress + parse), no pipeline: "
              f"{source_rate:.0f} records/s")
        print(f"{'workers':>7} {'threads':>7} {'first batch s':>13} {'clips/s':>8} "
              f"{'range':>11} {'MB/s':>6} {'x accelerator':>13}")
        for num_workers in args.workers:
            for num_threads in args.threads:
                runs = [measure(args, builder_config, data_dir, num_threads, num_workers)
                        for _ in range(args.repeats)]
                rates = sorted(r[1] for r in runs)
                rate, first, clip_bytes = float(np.median(rates)), runs[0][0], runs[0][2]
                print(f"{num_workers:>7} {num_threads:>7} {first:>13.2f} {rate:>8.0f} "
                      f"{f'{rates[0]:.0f}-{rates[-1]:.0f}':>11} {rate * clip_bytes / 1e6:>6.0f} "
                      f"{rate / args.consume_clips_per_s:>13.2f}", flush=True)
                if args.jsonl:
                    row = {"tool": "bench_input", "measurement": "input pipeline",
                           "model": f"{args.dataset}/{builder_config or 'default'}", "batch": args.batch_size,
                           "dtype": runs[0][3], "clip_bytes": clip_bytes, "workers": num_workers,
                           "threads": num_threads, "first_batch_s": first, "clips_per_s": rate,
                           "clips_per_s_range": [rates[0], rates[-1]], "ms": 1000 * args.batch_size / rate,
                           "MB_per_s": rate * clip_bytes / 1e6, "source_records_per_s": source_rate,
                           "consume_clips_per_s": args.consume_clips_per_s,
                           "consume_assumed": args.consume_clips_per_s == ASSUMED_CONSUME_CLIPS_PER_S,
                           "x_accelerator": rate / args.consume_clips_per_s, "host_cpus": os.cpu_count()}
                    with open(args.jsonl, "a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":  # grain worker processes re-import __main__
    main()
