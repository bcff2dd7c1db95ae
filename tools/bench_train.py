r"""Train-step throughput and peak memory of HTS-AT, optionally beside the PyTorch reference, in one run.

    python tools/bench_train.py --variant base --batch 8 --steps 3 --torch          # CPU, vs PyTorch
    python tools/bench_train.py --variant base --batch 32 128 --dtype float32 bfloat16   # GPU / TPU
    python tools/bench_train.py --variant tiny --batch 8 --steps 5                  # quick check

Each row runs in its own subprocess, so its peak memory is its own: the trainer's jitted step
(``htsat_jax.training.train.make_train_step``: int16 -> float, log-mel, bn0, SpecAugment, mixup,
backbone, BCE, AdamW with clipping, donated state) on random 10 s clips split over every local
device; with ``--torch`` the same batch through ``tools/torch_reference.py`` (transformers' CLAP
audio tower = HTS-AT's Swin, plus the token-semantic head, torch.stft frontend, SpecAugment,
mixup, BCE, AdamW, clipping), float32 on the CPU with every core.

Columns: compile (or first-step) seconds, seconds per step (median of ``--steps``), clips/s,
``setup GiB`` (resident memory before the first step: libraries, weights, optimizer state,
compiled code) and ``peak GiB`` (CPU: the process's peak resident memory; GPU/TPU: the allocator's
peak). The ratio lines divide torch's time and memory by ours. ``--input_clips_per_s`` adds how
many such steps one host's input pipeline (tools/bench_input.py) could feed. ``--jsonl PATH``
appends one JSON object per printed row (failed rows too, with ``error``) as soon as it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


def random_batch(batch: int, samples: int, classes: int = 527) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"waveform": (rng.standard_normal((batch, samples)) * 3000).astype(np.int16),
            "target": (rng.uniform(size=(batch, classes)) > 0.99).astype(np.float32)}


def bench_jax(variant: str, batch: int, dtype: str, steps: int, fsdp: int, seconds: float, attention: str) -> dict:
    import jax
    import jax.numpy as jnp

    from configs import common
    from htsat_jax.models import htsat
    from htsat_jax.training import optim, sharding, train

    model_cfg = htsat.Config(**{**htsat.VARIANTS[variant], "num_classes": 527, "attention": attention})
    mesh = sharding.make_mesh(-1, fsdp)
    recipe = common.load("htsat/audioset.py", f"variant={variant}")  # the official AdamW recipe
    tx, schedule = optim.make_optimizer(recipe.optim, steps_per_epoch=1000, num_epochs=100)
    graphdef, state, state_sh = train.create_train_state(
        model_cfg, tx, mesh, seed=0, dtype=None if dtype == "float32" else jnp.bfloat16)
    rate = model_cfg.sample_rate
    step = jax.jit(train.make_train_step(graphdef, tx, schedule, loss_type="clip_bce", mixup_alpha=0.5,
                                         data_rate=rate, model_rate=rate),
                   in_shardings=(state_sh, sharding.batch_sharding(mesh), sharding.replicated(mesh)),
                   out_shardings=(state_sh, sharding.replicated(mesh)), donate_argnums=(0,))
    data = sharding.global_batch(random_batch(batch, int(seconds * rate)), mesh)
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = step.lower(state, data, key).compile()
    compile_s = time.perf_counter() - t0
    from htsat_jax.utils import host_memory

    host_memory.release_free_memory()  # as the trainer does after compiling (train.compile_on_first_call)
    mem = compiled.memory_analysis()
    setup = rss_gib()
    times = []
    for _ in range(steps + 1):  # the first run pays one-off allocation; not timed
        t0 = time.perf_counter()
        state, m = compiled(state, data, key)
        jax.block_until_ready((state, m))
        times.append(time.perf_counter() - t0)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    device_peaks = [s["peak_bytes_in_use"] for s in stats if s.get("peak_bytes_in_use") is not None]
    return {"impl": f"htsat-jax ({attention})", "params_M": params / 1e6, "batch": batch, "dtype": dtype,
            "compile_s": compile_s, "step_s": float(np.median(times[1:])), "setup_GiB": setup,
            "peak_GiB": max(device_peaks) / 2**30 if device_peaks else peak_rss_gib(),
            "xla_temp_GiB": getattr(mem, "temp_size_in_bytes", 0) / 2**30, "loss": float(m["loss"]),
            "backend": f"{jax.default_backend()}: {jax.device_count()} x {jax.devices()[0].device_kind}"}


def bench_torch(batch: int, steps: int, seconds: float) -> dict:
    import torch

    sys.path.insert(0, HERE)
    import torch_reference

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    model = torch_reference.TorchHTSAT()
    step = torch_reference.make_train_step(model)
    data = random_batch(batch, int(seconds * 32000))
    wave = torch.from_numpy(data["waveform"].astype(np.float32) / 32768.0)
    target = torch.from_numpy(data["target"])
    setup = rss_gib()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss = step(wave, target)
        times.append(time.perf_counter() - t0)
    return {"impl": "PyTorch reference", "params_M": torch_reference.parameter_count(model) / 1e6, "batch": batch,
            "dtype": "float32", "compile_s": times[0], "step_s": float(np.median(times[1:])), "setup_GiB": setup,
            "peak_GiB": peak_rss_gib(), "xla_temp_GiB": float("nan"), "loss": loss,
            "backend": f"torch {torch.__version__}, {torch.get_num_threads()} threads"}


def append_jsonl(path: str | None, row: dict) -> None:
    """One JSON object per line, appended and flushed at once (a later timeout keeps what was measured)."""
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def jsonl_row(args: argparse.Namespace, r: dict) -> dict:
    """A printed row for ``--jsonl``: every measured field plus the columns shared by the benchmark tools."""
    row = {"tool": "bench_train", "measurement": "train step", "seconds": args.seconds, **r,
           "model": "htsat-reference (torch)" if r["impl"] == "PyTorch reference" else f"htsat-{args.variant}"}
    if "error" not in r:
        row.update(clips_per_s=r["batch"] / r["step_s"], ms=1000 * r["step_s"])
        if args.input_clips_per_s:
            row["input_clips_per_s"] = args.input_clips_per_s
            row["input_per_step"] = args.input_clips_per_s * r["step_s"] / r["batch"]
    return row


def run_worker(args: argparse.Namespace, impl: str, batch: int, dtype: str, attention: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--variant", args.variant,
           "--batch", str(batch), "--dtype", dtype, "--steps", str(args.steps), "--fsdp", str(args.fsdp),
           "--seconds", str(args.seconds), "--attention", attention]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    if args.host_settings == "on":  # the trainer's own process settings, for every row alike (torch included)
        from htsat_jax.utils import host_memory

        env = host_memory.with_host_settings(env)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"impl": impl, "batch": batch, "dtype": dtype, "error": tail[:160]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="base", choices=["base", "tiny"])
    parser.add_argument("--batch", type=int, nargs="+", default=[32])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--attention", nargs="+", default=["auto"],
                        help="window-attention implementations to time (swin.ATTENTION_IMPLS)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after the compile step and one warm-up")
    parser.add_argument("--fsdp", type=int, default=1, help="fsdp axis size (1 = pure data parallel)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch reference (float32, CPU)")
    parser.add_argument("--input_clips_per_s", type=float, default=None,
                        help="input pipeline clips/s per host (tools/bench_input.py) for the ratio column")
    parser.add_argument("--host_settings", choices=["on", "off"], default="on",
                        help="run every row (PyTorch too) with the trainer's huge-page malloc tunable and XLA CPU "
                             "scheduler flag (htsat_jax/utils/host_memory.py), as htsat_jax.main does")
    parser.add_argument("--jsonl", default=None, metavar="PATH",
                        help="append one JSON object per result row to PATH (printed output unchanged)")
    parser.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:  # one measurement, JSON on stdout
        if args.worker == "jax":
            r = bench_jax(args.variant, args.batch[0], args.dtype[0], args.steps, args.fsdp, args.seconds,
                          args.attention[0])
        else:
            r = bench_torch(args.batch[0], args.steps, args.seconds)
        print(json.dumps(r))
        return

    if args.torch and args.variant != "base":
        parser.error("--torch compares the paper model: use --variant base")
    header = (f"{'implementation':24} {'params':>7} {'batch':>5} {'dtype':>8} {'compile s':>9} {'step s':>7} "
              f"{'clips/s':>7} {'setup GiB':>9} {'peak GiB':>8} {'XLA temp':>8}"
              + (f" {'input/step':>10}" if args.input_clips_per_s else ""))
    printed = False

    def report(r: dict) -> None:  # print and record each row as soon as it is measured
        nonlocal printed
        if not printed:
            print(f"backend {r.get('backend', '?')}\n{header}")
            printed = True
        append_jsonl(args.jsonl, jsonl_row(args, r))
        if "error" in r:
            print(f"{r['impl']:24} {'':>7} {r['batch']:5d} {r['dtype']:>8}  failed: {r['error']}", flush=True)
            return
        line = (f"{r['impl']:24} {r['params_M']:6.2f}M {r['batch']:5d} {r['dtype']:>8} {r['compile_s']:9.1f} "
                f"{r['step_s']:7.3f} {r['batch'] / r['step_s']:7.2f} {r['setup_GiB']:9.2f} {r['peak_GiB']:8.2f} "
                f"{r['xla_temp_GiB']:8.2f}")
        if args.input_clips_per_s:
            line += f" {args.input_clips_per_s * r['step_s'] / r['batch']:10.2f}"
        print(line, flush=True)

    for batch in args.batch:
        torch_row = run_worker(args, "torch", batch, "float32", "") if args.torch else None
        rows = []
        for dtype in args.dtype:
            for attention in args.attention:
                rows.append(run_worker(args, "jax", batch, dtype, attention))
                report(rows[-1])
        if torch_row:
            report(torch_row)
        if torch_row and "error" not in torch_row:
            for r in rows:
                if "error" not in r:
                    print(f"  {r['impl']} {r['dtype']} vs PyTorch at batch {batch}: "
                          f"{torch_row['step_s'] / r['step_s']:.2f}x faster, "
                          f"peak memory {r['peak_GiB'] / torch_row['peak_GiB']:.2f}x PyTorch's", flush=True)


if __name__ == "__main__":
    main()
