r"""Inference throughput of HTS-AT on 10 s clips (the AudioTagger forward, frontend included),
optionally beside the PyTorch reference, in one run.

    python tools/bench_infer.py --variant base --batch 1 8 --torch
    python tools/bench_infer.py --checkpoint demo_out/model --batch 16

Prints, per batch size: compile seconds, seconds per batch (median of ``--repeats``), clips/s,
milliseconds per clip, XLA's FLOP count of the forward and the FLOP rate as a fraction of
a float32 2048^3 matmul timed at the start of the same run (the "matmul ceiling").
``--checkpoint`` times a real model directory or official .ckpt; otherwise a randomly initialised
model of ``--variant`` with 527 classes.

``--torch`` adds the PyTorch reference on the same clips (``tools/torch_reference.py``: torch.stft
log-mel, transformers' CLAP audio tower = HTS-AT's Swin backbone, the token-semantic head; eval
mode, ``torch.inference_mode``, every CPU thread) and the speed ratio. The process restarts once
with the trainer's host settings (``htsat_jax/utils/host_memory.py``), which apply to both.
``--jsonl PATH`` appends one JSON object per printed row (GPU/TPU: with the allocator's peak so far).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from htsat_jax.utils import host_memory  # noqa: E402  (before jax: it may restart the process)

host_memory.reexec_with_host_settings()  # measure under the trainer's own process settings

import jax  # noqa: E402
import numpy as np  # noqa: E402


def append_jsonl(path: str | None, row: dict) -> None:
    """One JSON object per line, appended and flushed at once (a later timeout keeps what was measured)."""
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def allocator_peak_gib() -> float | None:
    """The device allocator's peak so far (GPU/TPU); None on CPU, which reports none."""
    peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
    peaks = [p for p in peaks if p is not None]
    return max(peaks) / 2**30 if peaks else None


def make_tagger(args):
    from htsat_jax import AudioTagger, checkpoint
    from htsat_jax.models import htsat

    if args.checkpoint:
        return AudioTagger.from_checkpoint(args.checkpoint, batch_size=max(args.batch))
    model = checkpoint.build_model(htsat.Config(**{**htsat.VARIANTS[args.variant], "num_classes": 527}), seed=0)
    return AudioTagger(model, batch_size=max(args.batch))


def matmul_ceiling(repeats: int = 5, size: int = 2048) -> float:
    """GFLOP/s of a float32 ``size``-cube matmul through XLA: the best this machine does."""
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size)), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(f(a, a))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, a))
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / min(times) / 1e9


def forward_flops(tagger, batch: int, samples: int) -> float:
    """XLA's FLOP count of the tagger's forward on ``(batch, samples)``, from the lowered program.

    The lowered (pre-optimisation) HLO gives the same count as the compiled one (within 0.1% on the
    tiny model) without compiling the forward a second time.
    """
    from flax import nnx

    from htsat_jax.models import htsat

    graphdef, state = nnx.split(tagger.model)
    fn = jax.jit(lambda s, w: htsat.infer(nnx.merge(graphdef, s), w)["clipwise_output"])
    cost = fn.lower(state, jax.ShapeDtypeStruct((batch, samples), np.float32)).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
    return float(cost.get("flops", 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--variant", default="base", choices=["base", "tiny"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--torch", "--torch_clap", dest="torch", action="store_true",
                        help="also time the PyTorch reference (tools/torch_reference.py)")
    parser.add_argument("--jsonl", default=None, metavar="PATH",
                        help="append one JSON object per result row to PATH (printed output unchanged)")
    args = parser.parse_args()

    tagger = make_tagger(args)
    rate = tagger.sample_rate
    ceiling = matmul_ceiling()
    backend = f"{jax.default_backend()}: {jax.device_count()} x {jax.devices()[0].device_kind}"
    model_name = args.checkpoint or f"htsat-{args.variant}"
    dtype = np.dtype(getattr(tagger.model, "dtype", None) or np.float32).name
    print(f"backend {jax.default_backend()}: {jax.device_count()} x {jax.devices()[0].device_kind}; "
          f"{args.checkpoint or args.variant} model, {args.seconds:g} s clips at {rate} Hz; "
          f"matmul ceiling {ceiling:.0f} GFLOP/s")
    print(f"{'implementation':18} {'batch':>5} {'compile s':>9} {'s/batch':>8} {'clips/s':>8} {'ms/clip':>8} "
          f"{'GFLOP':>7} {'of ceiling':>10}")
    rng = np.random.default_rng(0)
    ours = {}
    for batch in args.batch:
        tagger.batch_size = batch
        clips = (rng.standard_normal((batch, int(args.seconds * rate))) * 0.1).astype(np.float32)
        t0 = time.perf_counter()
        tagger(clips, rate)
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            tagger(clips, rate)
            times.append(time.perf_counter() - t0)
        per_batch = ours[batch] = float(np.median(times))
        flops = forward_flops(tagger, batch, clips.shape[1])
        print(f"{'htsat-jax':18} {batch:5d} {compile_s:9.1f} {per_batch:8.3f} {batch / per_batch:8.1f} "
              f"{1000 * per_batch / batch:8.1f} {flops / 1e9:7.1f} {flops / per_batch / 1e9 / ceiling:10.0%}",
              flush=True)
        append_jsonl(args.jsonl, {
            "tool": "bench_infer", "measurement": "forward", "impl": "htsat-jax", "model": model_name,
            "batch": batch, "dtype": dtype, "seconds": args.seconds, "clips_per_s": batch / per_batch,
            "ms": 1000 * per_batch, "ms_per_clip": 1000 * per_batch / batch, "compile_s": compile_s,
            "gflop": flops / 1e9, "of_ceiling": flops / per_batch / 1e9 / ceiling, "ceiling_gflops": ceiling,
            "peak_GiB": allocator_peak_gib(), "peak_note": "allocator peak so far in this process",
            "backend": backend})
    if args.torch:
        theirs = bench_torch(args.batch, args.repeats, int(args.seconds * 32000), args.jsonl, args.seconds)
        for batch in args.batch:
            print(f"  htsat-jax vs PyTorch at batch {batch}: {theirs[batch] / ours[batch]:.2f}x faster")


def bench_torch(batches: list[int], repeats: int, samples: int, jsonl: str | None = None,
                seconds: float = 10.0) -> dict[int, float]:
    """Seconds per batch of the PyTorch reference (eval, inference mode, every CPU thread)."""
    import os

    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_reference

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    model = torch_reference.TorchHTSAT().eval()
    rng = np.random.default_rng(0)
    result = {}
    for batch in batches:
        clips = torch.from_numpy((rng.standard_normal((batch, samples)) * 0.1).astype(np.float32))
        with torch.inference_mode():
            t0 = time.perf_counter()
            model(clips)
            first = time.perf_counter() - t0
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(clips)
                times.append(time.perf_counter() - t0)
        per_batch = result[batch] = float(np.median(times))
        print(f"{'PyTorch reference':18} {batch:5d} {first:9.1f} {per_batch:8.3f} {batch / per_batch:8.1f} "
              f"{1000 * per_batch / batch:8.1f}", flush=True)
        append_jsonl(jsonl, {
            "tool": "bench_infer", "measurement": "forward", "impl": "PyTorch reference",
            "model": "htsat-reference (torch)", "batch": batch, "dtype": "float32", "seconds": seconds,
            "clips_per_s": batch / per_batch, "ms": 1000 * per_batch, "ms_per_clip": 1000 * per_batch / batch,
            "compile_s": first, "peak_GiB": None,
            "backend": f"torch {torch.__version__}, {torch.get_num_threads()} threads"})
    return result


if __name__ == "__main__":
    main()
