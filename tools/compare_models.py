r"""HTS-AT vs AST at the papers' sizes, measured side by side on whatever backend is present.

    python tools/compare_models.py                          # batch 8, float32, both models
    python tools/compare_models.py --batch 32 --dtype bfloat16 --steps 10     # on a GPU/TPU
    python tools/compare_models.py --models htsat --batch 2 --steps 1         # a quick check

Both models get the same batch of random 10 s clips (int16 PCM, each at its model's input rate: HTS-AT
32 kHz, AST 16 kHz) with their own frontends inside the jitted function, 527 AudioSet classes:

* parameters (trainable);
* forward clips/s: the jitted eval forward (``AudioTagger`` path, no gradients);
* train-step clips/s: the trainer's own step (``htsat_jax.training.train.make_train_step``: frontend,
  SpecAugment, mixup, forward, BCE, AdamW with clipping);
* train-step memory: XLA's own figure for the compiled step (arguments + outputs + temporaries −
  donated/aliased buffers), the same measure on every backend; on GPU/TPU also the allocator peak;
* largest batch that fits: from that memory figure at two batch sizes (it is affine in the batch),
  the largest batch whose step fits in the device memory (GPU/TPU: the allocator's limit; CPU:
  ``--memory_gib``, default the machine's RAM). ``--verify_max_batch`` then runs one step there.

Models: HTS-AT = the paper's model (Swin-T widths, 4 stages, window 8, 256x256 input);
AST = the paper's best AudioSet model (DeiT-base, 16x16 patches with stride 10 on 1024x128 fbanks,
1212 patches + 2 tokens).

``--variant tiny --seconds 1`` runs the same measurements on the registered tiny variants and short
clips (a quick check of the tool itself). ``--jsonl PATH`` appends one JSON object per model row
as soon as it is measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from htsat_jax import models
from htsat_jax.training import sharding
from htsat_jax.training import train

NUM_CLASSES = 527
CLIP_SECONDS = 10.0


@dataclasses.dataclass
class Row:
    model: str
    params_m: float
    batch: int
    dtype: str
    fwd_compile_s: float
    fwd_clips_s: float
    train_compile_s: float
    train_clips_s: float
    step_gib: float
    peak_gib: float | None
    gflops_per_clip: float | None
    max_batch: int | None


def model_config(name: str, variant: str = "base"):
    """A registered model's ``variant`` (``base``: the papers' configurations), 527 classes."""
    module = models.get(name)
    fields = {**module.Config().to_dict(), **module.VARIANTS[variant], "num_classes": NUM_CLASSES}
    return models.config_from_dict(fields, name=name)


def device_memory_limit(memory_gib: float | None) -> int:
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if memory_gib:
        return int(memory_gib * 2**30)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def allocator_peak_gib() -> float | None:
    peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
    peaks = [p for p in peaks if p is not None]
    return max(peaks) / 2**30 if peaks else None


def step_bytes(compiled) -> int:
    """XLA's footprint of one compiled call: what it holds at once, donated inputs counted once."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def step_flops(compiled) -> float | None:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and cost.get("flops") else None


class Bench:
    """One model: its train state on the mesh, the jitted step and forward, abstract inputs."""

    def __init__(self, name: str, dtype: str, seed: int = 0, variant: str = "base",
                 seconds: float = CLIP_SECONDS):
        self.name, self.dtype, self.seconds = name, dtype, seconds
        self.cfg = model_config(name, variant)
        self.mesh = sharding.make_mesh(-1, 1)
        self.rate = self.cfg.sample_rate
        # The HTS-AT recipe's optimiser for every model (AdamW 1e-3, weight decay 0.05, clip 1.0).
        tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=0.05))
        schedule = optax.constant_schedule(1e-3)
        compute = None if dtype == "float32" else jnp.bfloat16
        self.graphdef, self.state, state_sh = train.create_train_state(self.cfg, tx, self.mesh, seed=seed,
                                                                       dtype=compute)
        self.params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.state.params))
        self.batch_sh = sharding.batch_sharding(self.mesh)
        self.repl = sharding.replicated(self.mesh)
        self.step = jax.jit(train.make_train_step(self.graphdef, tx, schedule, loss_type="clip_bce",
                                                  mixup_alpha=0.5, data_rate=self.rate, model_rate=self.rate),
                            in_shardings=(state_sh, self.batch_sh, self.repl),
                            out_shardings=(state_sh, self.repl), donate_argnums=(0,))
        graphdef, module = self.graphdef, models.module_of(self.cfg)

        def forward(state, waveform):
            model = nnx.merge(graphdef, state.params, state.rest)
            return module.infer(model, waveform.astype(jnp.float32) / 32768.0)["clipwise_output"]

        self.forward = jax.jit(forward, in_shardings=(state_sh, self.batch_sh), out_shardings=self.repl)

    def batch(self, n: int, abstract: bool = False) -> dict:
        shapes = {"waveform": ((n, int(self.seconds * self.rate)), np.int16),
                  "target": ((n, NUM_CLASSES), np.float32)}
        if abstract:
            return {k: jax.ShapeDtypeStruct(s, d, sharding=self.batch_sh) for k, (s, d) in shapes.items()}
        rng = np.random.default_rng(n)
        local = {"waveform": (rng.standard_normal(shapes["waveform"][0]) * 3000).astype(np.int16),
                 "target": (rng.uniform(size=shapes["target"][0]) > 0.99).astype(np.float32)}
        return sharding.global_batch(local, self.mesh)

    def compile_step(self, n: int):
        abstract_state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                                      self.state)
        return self.step.lower(abstract_state, self.batch(n, abstract=True), jax.random.key(0)).compile()

    def time_forward(self, n: int, steps: int) -> tuple[float, float]:
        x = self.batch(n)["waveform"]
        t0 = time.perf_counter()
        compiled = self.forward.lower(self.state, x).compile()
        jax.block_until_ready(compiled(self.state, x))
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            out = compiled(self.state, x)
        jax.block_until_ready(out)
        return compile_s, n * steps / (time.perf_counter() - t0)

    def time_train(self, n: int, steps: int) -> tuple[float, float, object]:
        data, key = self.batch(n), jax.random.key(0)
        t0 = time.perf_counter()
        compiled = self.compile_step(n)
        self.state, m = compiled(self.state, data, key)
        jax.block_until_ready(m)
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            self.state, m = compiled(self.state, data, key)
        jax.block_until_ready((self.state, m))
        if not np.isfinite(float(m["loss"])):
            raise FloatingPointError(f"{self.name}: non-finite loss {float(m['loss'])}")
        return compile_s, n * steps / (time.perf_counter() - t0), compiled


def largest_batch(bench: Bench, compiled_at_b, b: int, limit: int) -> tuple[int, float]:
    """Largest batch whose step fits in ``limit`` bytes, from the compiled footprint at ``b`` and ``2b``."""
    at_b = step_bytes(compiled_at_b)
    at_2b = step_bytes(bench.compile_step(2 * b))
    per_clip = max((at_2b - at_b) / b, 1.0)
    fixed = at_b - per_clip * b
    n = int((limit - fixed) // per_clip)
    ndev = len(jax.devices())
    return max(n // ndev * ndev, 0), per_clip


def run_one(name: str, batch: int, dtype: str, steps: int, limit: int, search: bool, verify: bool,
            variant: str = "base", seconds: float = CLIP_SECONDS) -> Row:
    bench = Bench(name, dtype, variant=variant, seconds=seconds)
    fwd_compile, fwd_rate = bench.time_forward(batch, steps)
    train_compile, train_rate, compiled = bench.time_train(batch, steps)
    max_batch = None
    if search:
        max_batch, _ = largest_batch(bench, compiled, batch, limit)
        if verify and max_batch > 0:
            bench.time_train(max_batch, 1)  # raises on out-of-memory: the estimate was wrong
    flops = step_flops(compiled)
    return Row(name, bench.params / 1e6, batch, dtype, fwd_compile, fwd_rate, train_compile, train_rate,
               step_bytes(compiled) / 2**30, allocator_peak_gib(),
               flops / batch / 1e9 if flops else None, max_batch)


def print_table(rows: list[Row]) -> None:
    print(f"\n{'model':6} {'params':>8} {'batch':>5} {'dtype':>8} {'fwd clips/s':>11} {'train clips/s':>13} "
          f"{'step GiB':>8} {'alloc peak':>10} {'train GFLOP/clip':>16} {'max batch':>9}")
    for r in rows:
        peak = f"{r.peak_gib:10.2f}" if r.peak_gib is not None else f"{'-':>10}"
        gfl = f"{r.gflops_per_clip:16.1f}" if r.gflops_per_clip else f"{'-':>16}"
        mb = f"{r.max_batch:9d}" if r.max_batch is not None else f"{'-':>9}"
        print(f"{r.model:6} {r.params_m:7.2f}M {r.batch:5d} {r.dtype:>8} {r.fwd_clips_s:11.2f} {r.train_clips_s:13.2f} "
              f"{r.step_gib:8.2f} {peak} {gfl} {mb}")
    h = rows[0]
    for a in rows[1:]:
        print(f"\n{h.model} / {a.model}: parameters {h.params_m / a.params_m:.2f}x, forward speed "
              f"{h.fwd_clips_s / a.fwd_clips_s:.2f}x, train speed {h.train_clips_s / a.train_clips_s:.2f}x, "
              f"step memory {h.step_gib / a.step_gib:.2f}x"
              + (f", largest batch {h.max_batch / a.max_batch:.2f}x" if h.max_batch and a.max_batch else ""))


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["htsat", "ast"], choices=models.names(),
                   help="registered model names (their base variants); ratios are the first against each other")
    p.add_argument("--batch", type=int, default=8, help="clips per step (global, split over the devices)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--steps", type=int, default=3, help="timed calls after the compiling one")
    p.add_argument("--memory_gib", type=float, default=None,
                   help="memory budget for the largest-batch search on CPU (default: the machine's RAM)")
    p.add_argument("--no_max_batch", action="store_true", help="skip the largest-batch search (one compile less)")
    p.add_argument("--verify_max_batch", action="store_true", help="run one step at the largest batch found")
    p.add_argument("--variant", default="base", help="registered variant of every model (tiny: a quick check)")
    p.add_argument("--seconds", type=float, default=CLIP_SECONDS, help="clip length")
    p.add_argument("--jsonl", default=None, metavar="PATH",
                   help="append one JSON object per model row to PATH (printed output unchanged)")
    args = p.parse_args(argv)
    for name in args.models:
        if args.variant not in models.get(name).VARIANTS:
            p.error(f"model {name} has no variant {args.variant!r} ({', '.join(models.get(name).VARIANTS)})")

    dev = jax.devices()[0]
    limit = device_memory_limit(args.memory_gib)
    print(f"backend {jax.default_backend()}: {jax.device_count()} x {dev.device_kind}; host {platform.node()} "
          f"({os.cpu_count()} CPUs); memory budget {limit / 2**30:.1f} GiB per device; jax {jax.__version__}")
    backend = f"{jax.default_backend()}: {jax.device_count()} x {dev.device_kind}"
    rows = []
    for name in args.models:
        t0 = time.perf_counter()
        rows.append(run_one(name, args.batch, args.dtype, args.steps, limit, not args.no_max_batch,
                            args.verify_max_batch, args.variant, args.seconds))
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps({"tool": "compare_models", "measurement": "compare", **dataclasses.asdict(rows[-1]),
                                    "variant": args.variant, "seconds": args.seconds, "backend": backend,
                                    "peak_note": "allocator peak so far in this process (all models before)"})
                        + "\n")
        print(f"{name}: done in {time.perf_counter() - t0:.0f} s (peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB)", flush=True)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
