r"""Where the time and memory of HTS-AT's forward and train step go, part by part.

    python tools/profile_step.py --variant base --batch 8                  # the table (CPU: ~4 min)
    python tools/profile_step.py --variant base --batch 8 --trace /tmp/tr  # + a jax.profiler trace
    python tools/profile_step.py --variant base --batch 8 --torch          # + PyTorch, group by group
    python tools/profile_step.py --variant tiny --batch 4 --repeats 2      # quick check

Each part of the model is jitted on its own with the activations it sees in a real training
forward, and timed forward only and forward + backward (``jax.vjp`` with a ones cotangent; the
frontend has no parameters and is timed forward only): the log-mel frontend; bn0 + SpecAugment +
mixup + bicubic stretch + image; the patch embedding; in every Swin block its attention branch
(LayerNorm, shift, window partition, qkv, attention core, projection, reverse) and its MLP branch
(LayerNorm, fc1, GELU, fc2); each patch merging; the final norm + token-semantic head; the BCE
loss; the AdamW update with clipping. Per part: milliseconds, XLA's own FLOP count (cost
analysis of the compiled part), the FLOP rate, that rate as a fraction of a plain float32
matmul on the same machine (measured at the start: the "matmul ceiling"), and the compiled
part's temporary memory. Then the whole compiled train step and eval forward: time, FLOPs,
XLA's memory analysis (arguments, outputs, temporaries), so the sum of the parts can be set
against the fused whole. ``--trace DIR`` also writes a ``jax.profiler`` trace of two train
steps (open it in TensorBoard's profile plugin or Perfetto). ``--torch`` then cuts the PyTorch
reference (``tools/torch_reference.py``) into the same groups, times each the same way and prints
both side by side with the whole train steps: where the difference between the two lies.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from htsat_jax.utils import host_memory  # noqa: E402  (before jax: it may restart the process)

host_memory.reexec_with_host_settings()  # measure under the trainer's own process settings

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed(fn: Callable, *args, repeats: int) -> float:
    """Median seconds of ``fn(*args)`` after a warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def compiled_facts(fn: Callable, *args) -> tuple[Callable, float, float]:
    """``(compiled, flops, temp_bytes)`` of ``jax.jit(fn)`` at ``args``."""
    compiled = jax.jit(fn).lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
    mem = compiled.memory_analysis()
    return compiled, float(cost.get("flops", 0.0)), float(getattr(mem, "temp_size_in_bytes", 0))


def matmul_ceiling(repeats: int, size: int = 2048) -> float:
    """GFLOP/s of a float32 ``size``-cube matmul: what this machine's XLA reaches at best."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size)), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    return 2 * size**3 / timed(f, a, a, repeats=max(repeats, 5)) / 1e9


def batched_matmul_rates(repeats: int) -> list[tuple[str, float, float | None]]:
    """GFLOP/s of the attention products' shapes -- many small ``(64 x d) @ (d x 64)`` matmuls --
    through XLA, and through torch's ``bmm`` when torch is installed (the same machine's BLAS)."""
    shapes = [("stage 0 QK^T: 2048 x (64x24 @ 24x64)", 2048, 24), ("stage 1 QK^T: 1024 x (64x24 @ 24x64)", 1024, 24),
              ("stage 2 QK^T: 512 x (64x24 @ 24x64)", 512, 24)]
    try:
        import torch
    except ImportError:
        torch = None
    rows = []
    for name, batch, d in shapes:
        rng = np.random.default_rng(0)
        q, k = (rng.standard_normal((batch, 64, d)).astype(np.float32) for _ in range(2))
        flops = 2 * batch * 64 * 64 * d
        f = jax.jit(lambda a, b: jnp.einsum("bqd,bkd->bqk", a, b))
        xla = flops / timed(f, jnp.asarray(q), jnp.asarray(k), repeats=max(repeats, 5)) / 1e9
        ref = None
        if torch is not None:
            tq, tk = torch.from_numpy(q), torch.from_numpy(k).transpose(1, 2)
            times = []
            for _ in range(max(repeats, 5) + 1):
                t0 = time.perf_counter()
                torch.bmm(tq, tk)
                times.append(time.perf_counter() - t0)
            ref = flops / float(np.median(times[1:])) / 1e9
        rows.append((name, xla, ref))
    return rows


class Part:
    """One module call ``apply(module, x, key)`` with its own parameters, timed in isolation."""

    def __init__(self, name: str, group: str, module: nnx.Module | None, apply: Callable, x: jax.Array,
                 backward: bool = True):
        self.name, self.group, self.x, self.backward = name, group, x, backward
        if module is None:
            self.graphdef, self.params, self.rest = None, {}, {}
        else:
            self.graphdef, self.params, self.rest = nnx.split(module, nnx.Param, ...)
        self.apply = apply

    def forward(self, params, x, key):
        # fresh Variables at this trace level (BatchNorm updates its statistics in training mode)
        module = None if self.graphdef is None else nnx.merge(self.graphdef, jax.tree.map(lambda a: a, params),
                                                              jax.tree.map(lambda a: a, self.rest))
        return self.apply(module, x, key)

    def forward_backward(self, params, x, key):
        y, pullback = jax.vjp(lambda p, v: self.forward(p, v, key), params, x)
        return pullback(jax.tree.map(jnp.ones_like, y))


def model_parts(model, batch: int, seconds: float, key: jax.Array) -> tuple[list[Part], dict]:
    """The parts of one training forward, each with the input it gets there."""
    from htsat_jax.models import frontend as frontend_lib
    from htsat_jax.models import htsat

    c = model.config
    rng = np.random.default_rng(0)
    wave = jnp.asarray(rng.standard_normal((batch, int(seconds * c.sample_rate))) * 0.1, jnp.float32)
    lam = jnp.asarray(rng.beta(0.5, 0.5, batch), jnp.float32)
    parts = [Part("frontend (log-mel)", "frontend", None,
                  lambda m, x, k: frontend_lib.log_mel(x, c.frontend), wave, backward=False)]
    logmel = frontend_lib.log_mel(wave, c.frontend)

    def to_image(m, x, k):
        x = m.normalise(x, train=True)
        x = htsat.mixup(htsat.spec_augment(x, k, c.spec_augment), lam)
        return htsat.to_image(htsat.stretch_time(x, c.target_frames), c.freq_ratio)

    parts.append(Part("bn0+specaug+mixup+stretch", "frontend", model, to_image, logmel))
    image = to_image(model, logmel, key)
    parts.append(Part("patch embed", "patch embed", model.patch_embed, lambda m, x, k: m(x[..., None]), image))
    x = model.patch_embed(image[..., None])
    for i, stage in enumerate(model.layers):
        for j, block in enumerate(stage.blocks):
            tag = f"stage {i} block {j}" + (" (shifted)" if block.shift else "")
            parts.append(Part(f"{tag} attention", f"stage {i} attention", block,
                              lambda m, v, k: m.attention_branch(v, k), x))
            parts.append(Part(f"{tag} mlp", f"stage {i} mlp", block, lambda m, v, k: m.mlp_branch(v, k), x))
            x = block(x, key)
        if stage.downsample is not None:
            parts.append(Part(f"stage {i} patch merging", "patch merging", stage.downsample,
                              lambda m, v, k: m(v), x))
            x = stage.downsample(x)
    parts.append(Part("final norm + token-semantic head", "head", model,
                      lambda m, v, k: m.head(v)["clipwise_output"], x))
    return parts, {"waveform": wave, "lam": lam}


def torch_group_times(batch: int, seconds: float, repeats: int) -> tuple[dict[str, list[float]], float]:
    """The PyTorch reference (tools/torch_reference.py) cut into the same groups as :func:`model_parts`,
    each timed in isolation on the input it sees in a training forward: ``{group: [fwd s, fwd+bwd s]}``
    and the whole train step's seconds. Forward only runs under ``no_grad``; forward + backward is
    ``backward(ones)`` with the input requiring a gradient, as the JAX parts' ``vjp``. A block's
    attention branch is the block minus its MLP branch (transformers runs both in one module)."""
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_reference

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    model = torch_reference.TorchHTSAT()
    model.train()
    enc = model.backbone.audio_encoder
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, int(seconds * 32000))).astype(np.float32)
                            * 0.1)
    lam = torch.from_numpy(np.random.default_rng(0).beta(0.5, 0.5, batch).astype(np.float32))

    def time_it(fn: Callable, x: torch.Tensor, backward: bool) -> float:
        def once():
            if backward:
                model.zero_grad(set_to_none=True)
                xi = x.detach().requires_grad_(x.is_floating_point())
                y = fn(xi)
                y.backward(torch.ones_like(y))
            else:
                with torch.no_grad():
                    fn(x)
        once()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def frontend(x):
        x = model.spec_augment(model.log_mel(x))
        x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x.flip(0)
        x = enc.batch_norm(x[:, None].transpose(1, 3)).transpose(1, 3)
        return enc.reshape_mel2img(x)

    # The inputs every block, merging and the final norm see in a training forward.
    seen: list[tuple[str, Any, tuple]] = []
    hooks = []
    for i, stage in enumerate(enc.layers):
        for blk in stage.blocks:
            hooks.append(blk.register_forward_pre_hook(lambda m, a, i=i: seen.append((f"stage {i}", m, a))))
        if stage.downsample is not None:
            hooks.append(stage.downsample.register_forward_pre_hook(
                lambda m, a: seen.append(("patch merging", m, a))))
    hooks.append(enc.norm.register_forward_pre_hook(lambda m, a: seen.append(("head", m, a))))
    with torch.no_grad():
        image = frontend(wave)
        model(wave, train=True, mixup_lambda=lam)
    for h in hooks:
        h.remove()

    def head(tokens):  # ClapAudioEncoder's reshape of the last stage into (batch, C, 2, 32), the head conv
        b, n, c = tokens.shape
        side = int(round(n ** 0.5))
        x = tokens.permute(0, 2, 1).reshape(b, c, side, side)
        per = side // enc.freq_ratio
        x = x.reshape(b, c, enc.freq_ratio, per, side).permute(0, 1, 3, 2, 4).reshape(b, c, per, -1)
        return torch.sigmoid(torch.flatten(model.head(x), 2).mean(-1))

    groups: dict[str, list[float]] = {}

    def add(group: str, fn: Callable, x: torch.Tensor, sign: float = 1.0, backward: bool = True) -> None:
        g = groups.setdefault(group, [0.0, 0.0])
        fwd = time_it(fn, x, False)
        g[0] += sign * fwd
        g[1] += sign * (time_it(fn, x, True) if backward else fwd)

    add("frontend", frontend, wave, backward=False)   # no parameters before bn0 (timed forward only)
    add("patch embed", lambda x: enc.patch_embed(x, None), image)
    for group, module, args in seen:
        x, rest = args[0], args[1:]
        if group == "head":
            add("head", lambda v: head(enc.norm(v)), x)
        elif group == "patch merging":
            add(group, lambda v: module(v, *rest), x)
        else:
            mlp = lambda v, m=module: v + m.output(m.intermediate(m.layernorm_after(v)))
            add(f"{group} mlp", mlp, x)
            add(f"{group} attention", lambda v, m=module: m(v, *rest)[0], x)
            add(f"{group} attention", mlp, x, sign=-1.0)
    step = torch_reference.make_train_step(model)
    target = torch.from_numpy((np.random.default_rng(1).uniform(size=(batch, 527)) > 0.99).astype(np.float32))
    step(wave, target)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(wave, target)
        times.append(time.perf_counter() - t0)
    return groups, float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="base", choices=["base", "tiny"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--attention", default="auto", help="window attention implementation (swin.ATTENTION_IMPLS)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trace", default=None, help="write a jax.profiler trace of two train steps here")
    parser.add_argument("--torch", action="store_true",
                        help="also time the PyTorch reference (tools/torch_reference.py) group by group, float32")
    args = parser.parse_args()

    import optax

    from configs import common
    from htsat_jax import models
    from htsat_jax.models import htsat
    from htsat_jax.training import optim, train

    if args.torch and (args.variant != "base" or args.dtype != "float32"):
        raise SystemExit("--torch compares the paper model (--variant base) in float32 only")
    dtype = None if args.dtype == "float32" else jnp.bfloat16
    cfg = htsat.Config(**{**htsat.VARIANTS[args.variant], "num_classes": 527, "attention": args.attention})
    model = models.build(cfg, seed=0, dtype=dtype)
    key = jax.random.key(0)
    print(f"backend {jax.default_backend()}: {jax.devices()[0].device_kind}; HTS-AT {args.variant}, batch "
          f"{args.batch} x {args.seconds:g} s, {args.dtype}, attention {args.attention}")
    ceiling = matmul_ceiling(args.repeats)
    print(f"matmul ceiling (float32 2048^3 matmul): {ceiling:.0f} GFLOP/s")
    for name, xla, ref in batched_matmul_rates(args.repeats):
        print(f"  {name}: XLA {xla:.0f} GFLOP/s" + (f", torch bmm {ref:.0f} GFLOP/s" if ref else ""))
    print("  (XLA's cost analysis counts a loop body once: the FLOPs of chunked attention parts are undercounted)\n")

    parts, inputs = model_parts(model, args.batch, args.seconds, key)
    recipe = common.load("htsat/audioset.py", f"variant={args.variant}")
    tx, schedule = optim.make_optimizer(recipe.optim, steps_per_epoch=1000, num_epochs=100)
    params = nnx.state(model, nnx.Param)
    opt_state = tx.init(params)

    def optimizer(p, s):
        updates, s = tx.update(jax.tree.map(jnp.ones_like, p), s, p)
        return optax.apply_updates(p, updates), s

    head = f"{'part':44} {'fwd ms':>8} {'fwd+bwd ms':>10} {'GFLOP':>7} {'GFLOP/s':>7} {'of ceiling':>10} {'temp MB':>8}"
    print(head)
    rows = []
    for part in parts:
        fwd, fwd_flops, _ = compiled_facts(part.forward, part.params, part.x, key)
        fwd_s = timed(fwd, part.params, part.x, key, repeats=args.repeats)
        if part.backward:
            both, flops, temp = compiled_facts(part.forward_backward, part.params, part.x, key)
            both_s = timed(both, part.params, part.x, key, repeats=args.repeats)
        else:
            both_s, flops, temp = fwd_s, fwd_flops, compiled_facts(part.forward, part.params, part.x, key)[2]
        rows.append((part, fwd_s, both_s, fwd_flops, flops))
        print(f"{part.name:44} {1e3 * fwd_s:8.1f} {1e3 * both_s:10.1f} {flops / 1e9:7.2f} {flops / both_s / 1e9:7.0f} "
              f"{flops / both_s / 1e9 / ceiling:10.0%} {temp / 2**20:8.0f}", flush=True)

    target = jnp.asarray((np.random.default_rng(1).uniform(size=(args.batch, 527)) > 0.99), jnp.float32)
    clip = jnp.asarray(np.random.default_rng(2).uniform(size=(args.batch, 527)), jnp.float32)
    loss_fn = functools.partial(lambda p, t: train.clip_loss({"clipwise_output": p}, {"target": t}, "clip_bce"))
    loss_c, loss_flops, _ = compiled_facts(jax.grad(loss_fn), clip, target)
    loss_s = timed(loss_c, clip, target, repeats=args.repeats)
    opt_c, opt_flops, opt_temp = compiled_facts(optimizer, params, opt_state)
    opt_s = timed(opt_c, params, opt_state, repeats=args.repeats)
    print(f"{'loss (BCE, fwd+bwd)':44} {'':>8} {1e3 * loss_s:10.1f}")
    print(f"{'AdamW update + clipping':44} {'':>8} {1e3 * opt_s:10.1f} {opt_flops / 1e9:7.2f} {'':>7} {'':>10} "
          f"{opt_temp / 2**20:8.0f}")

    groups: dict[str, list[float]] = {}
    for part, fwd_s, both_s, fwd_flops, flops in rows:
        g = groups.setdefault(part.group, [0.0, 0.0, 0.0])
        g[0] += fwd_s
        g[1] += both_s
        g[2] += flops
    sum_fwd = sum(r[1] for r in rows)
    sum_both = sum(r[2] for r in rows) + loss_s + opt_s
    print(f"\n{'by group':44} {'fwd ms':>8} {'fwd+bwd ms':>10} {'share':>7} {'GFLOP/s':>7}")
    for name, (f, b, fl) in groups.items():
        print(f"{name:44} {1e3 * f:8.1f} {1e3 * b:10.1f} {b / sum_both:7.1%} {fl / b / 1e9:7.0f}")
    print(f"{'loss + optimizer':44} {'':>8} {1e3 * (loss_s + opt_s):10.1f} {(loss_s + opt_s) / sum_both:7.1%}")
    print(f"{'sum of parts':44} {1e3 * sum_fwd:8.1f} {1e3 * sum_both:10.1f}")

    # The whole programs as the trainer and the tagger run them.
    from htsat_jax.training import sharding

    mesh = sharding.make_mesh(-1, 1)
    graphdef, state, state_sh = train.create_train_state(cfg, tx, mesh, seed=0, dtype=dtype)
    step = jax.jit(train.make_train_step(graphdef, tx, schedule, loss_type="clip_bce", mixup_alpha=0.5,
                                         data_rate=cfg.sample_rate, model_rate=cfg.sample_rate),
                   donate_argnums=(0,))
    batch = {"waveform": jnp.asarray(np.asarray(inputs["waveform"]) * 32767, jnp.int16), "target": target}
    compiled = step.lower(state, batch, key).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
    mem = compiled.memory_analysis()
    state, metrics = compiled(state, batch, key)  # warm-up; the state is donated and carried, as in the trainer
    jax.block_until_ready(metrics)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch, key)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    flops = float(cost.get("flops", 0.0))
    print(f"\nwhole train step (jitted, donated): {1e3 * step_s:.0f} ms, {flops / 1e9:.1f} GFLOP, "
          f"{flops / step_s / 1e9:.0f} GFLOP/s = {flops / step_s / 1e9 / ceiling:.0%} of the matmul ceiling; "
          f"sum of parts {1e3 * sum_both:.0f} ms")
    print(f"  XLA memory: arguments {mem.argument_size_in_bytes / 2**30:.2f} GiB, outputs "
          f"{mem.output_size_in_bytes / 2**30:.2f} GiB (aliased {mem.alias_size_in_bytes / 2**30:.2f}), "
          f"temporaries {mem.temp_size_in_bytes / 2**30:.2f} GiB")

    eval_model = models.build(cfg, seed=0, dtype=dtype)
    gd, st = nnx.split(eval_model)
    forward = jax.jit(lambda s, w: htsat.infer(nnx.merge(gd, s), w)["clipwise_output"])
    fc = forward.lower(st, inputs["waveform"]).compile()
    fcost = fc.cost_analysis()
    fcost = fcost[0] if isinstance(fcost, (list, tuple)) else (fcost or {})
    fwd_s = timed(fc, st, inputs["waveform"], repeats=args.repeats)
    fflops = float(fcost.get("flops", 0.0))
    print(f"whole eval forward (AudioTagger's program): {1e3 * fwd_s:.0f} ms, {fflops / 1e9:.1f} GFLOP, "
          f"{fflops / fwd_s / 1e9:.0f} GFLOP/s = {fflops / fwd_s / 1e9 / ceiling:.0%} of the matmul ceiling; "
          f"temporaries {fc.memory_analysis().temp_size_in_bytes / 2**30:.2f} GiB")

    if args.torch:
        ours = dict(groups)
        ours_rest = step_s - sum(b for _, b, _ in ours.values())
        theirs, torch_step = torch_group_times(args.batch, args.seconds, args.repeats)
        theirs_rest = torch_step - sum(b for _, b in theirs.values())
        print(f"\nside by side with the PyTorch reference ({os.cpu_count()} threads), ms"
              f"\n{'group':30} {'fwd ours':>9} {'fwd torch':>9} {'fwd+bwd ours':>12} {'fwd+bwd torch':>13} "
              f"{'torch/ours':>10} {'ours - torch':>12}")
        for name, (f, b, _) in ours.items():
            tf, tb = theirs.get(name, (float("nan"), float("nan")))
            print(f"{name:30} {1e3 * f:9.1f} {1e3 * tf:9.1f} {1e3 * b:12.1f} {1e3 * tb:13.1f} {tb / b:10.2f} "
                  f"{1e3 * (b - tb):12.1f}")
        print(f"{'rest of the step (loss, optimizer, glue)':30} {'':>9} {'':>9} {1e3 * ours_rest:12.1f} "
              f"{1e3 * theirs_rest:13.1f} {theirs_rest / ours_rest:10.2f} {1e3 * (ours_rest - theirs_rest):12.1f}")
        print(f"{'whole train step':30} {'':>9} {'':>9} {1e3 * step_s:12.1f} {1e3 * torch_step:13.1f} "
              f"{torch_step / step_s:10.2f} {1e3 * (step_s - torch_step):12.1f}")

    if args.trace:
        jax.profiler.start_trace(args.trace)
        for _ in range(2):
            state, metrics = compiled(state, batch, key)
        jax.block_until_ready((state, metrics))
        jax.profiler.stop_trace()
        print(f"trace of two train steps written to {args.trace}")


if __name__ == "__main__":
    main()
