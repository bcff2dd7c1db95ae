r"""Train-step throughput and peak memory of HTS-AT on whatever backend is present.

    python tools/bench_train.py --variant base --batch 32 128 --dtype float32 bfloat16
    python tools/bench_train.py --variant tiny --batch 8 --steps 5          # quick CPU check

Runs the trainer's own jitted step (``htsat_jax.training.train.make_train_step``: frontend, SpecAugment,
mixup, backbone, BCE, AdamW) on random 10 s int16 clips split over every local device, and
prints one row per (batch, dtype): compile seconds, seconds per step, clips/s, and peak device
memory (GPU/TPU allocator peak; on CPU the process's peak resident memory). The last column is
the ratio to the input pipeline figure given with ``--input_clips_per_s`` (how many accelerators
one host's reader threads can feed).
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np


def peak_memory_gib() -> float:
    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    peaks = [s.get("peak_bytes_in_use") for s in stats if s.get("peak_bytes_in_use") is not None]
    if peaks:
        return max(peaks) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


def bench(variant: str, batch: int, dtype: str, steps: int, fsdp: int, seconds: float) -> dict:
    from configs import common
    from htsat_jax.models import htsat
    from htsat_jax.training import optim
    from htsat_jax.training import sharding
    from htsat_jax.training import train

    model_cfg = htsat.Config(**{**htsat.VARIANTS[variant], "num_classes": 527})
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
    rng = np.random.default_rng(0)
    samples = int(seconds * model_cfg.frontend.sample_rate)
    local = {"waveform": (rng.standard_normal((batch, samples)) * 3000).astype(np.int16),
             "target": (rng.uniform(size=(batch, 527)) > 0.99).astype(np.float32)}
    data = sharding.global_batch(local, mesh)
    key = jax.random.key(0)
    t0 = time.perf_counter()
    state, m = step(state, data, key)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, data, key)
    jax.block_until_ready((state, m))
    per_step = (time.perf_counter() - t0) / steps
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    return {"variant": variant, "params_M": params / 1e6, "batch": batch, "dtype": dtype,
            "compile_s": compile_s, "step_s": per_step, "clips_per_s": batch / per_step,
            "peak_mem_GiB": peak_memory_gib(), "loss": float(m["loss"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="base", choices=["base", "tiny"])
    parser.add_argument("--batch", type=int, nargs="+", default=[32])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps after the compile step")
    parser.add_argument("--fsdp", type=int, default=1, help="fsdp axis size (1 = pure data parallel)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--input_clips_per_s", type=float, default=None,
                        help="input pipeline clips/s per host (tools/bench_input.py) for the ratio column")
    args = parser.parse_args()

    device = jax.devices()[0]
    print(f"backend {jax.default_backend()}: {jax.device_count()} x {device.device_kind}")
    header = f"{'variant':8} {'params':>8} {'batch':>5} {'dtype':>9} {'compile s':>9} {'step s':>8} " \
             f"{'clips/s':>8} {'peak GiB':>8}" + (f" {'input/step':>10}" if args.input_clips_per_s else "")
    print(header)
    for dtype in args.dtype:
        for batch in args.batch:
            try:
                r = bench(args.variant, batch, dtype, args.steps, args.fsdp, args.seconds)
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: report and go on
                print(f"{args.variant:8} {'':>8} {batch:5d} {dtype:>9}  failed: {type(e).__name__}: "
                      f"{str(e).splitlines()[0][:120]}")
                continue
            line = (f"{r['variant']:8} {r['params_M']:7.2f}M {r['batch']:5d} {r['dtype']:>9} {r['compile_s']:9.1f} "
                    f"{r['step_s']:8.3f} {r['clips_per_s']:8.1f} {r['peak_mem_GiB']:8.2f}")
            if args.input_clips_per_s:
                line += f" {args.input_clips_per_s / r['clips_per_s']:10.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
