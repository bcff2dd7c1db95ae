r"""CPU/GPU inference throughput of HTS-AT on 10 s clips (the AudioTagger forward, frontend included).

    python tools/bench_infer.py --variant base --batch 1 8 16
    python tools/bench_infer.py --checkpoint demo_out/model --batch 16

Prints, per batch size: compile seconds, seconds per batch, clips/s and milliseconds per clip,
for random 10 s clips at the model's rate, through ``AudioTagger`` (jitted, eval mode, the
official inference path). ``--checkpoint`` times a real model directory or official .ckpt;
otherwise a randomly initialised model of ``--variant`` with 527 classes.

``--torch_clap`` adds a PyTorch row on the same machine: the official HTS-AT code is not a package,
so the reference is the HTS-AT audio tower of transformers' CLAP (``ClapAudioModel``: the same Swin
backbone as the paper model -- embed 96, depths 2-2-6-2, window 8, 256x256 image -- random weights,
eval mode, ``torch.inference_mode``). It takes a precomputed log-mel ``(batch, 1, 1001, 64)`` and has
no token-semantic head, so its figure covers slightly *less* work than ours (frontend + head).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np


def make_tagger(args):
    from htsat_jax import AudioTagger, checkpoint
    from htsat_jax.models import htsat

    if args.checkpoint:
        return AudioTagger.from_checkpoint(args.checkpoint, batch_size=max(args.batch))
    model = checkpoint.build_model(htsat.Config(**{**htsat.VARIANTS[args.variant], "num_classes": 527}), seed=0)
    return AudioTagger(model, batch_size=max(args.batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--variant", default="base", choices=["base", "tiny"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--torch_clap", action="store_true",
                        help="also time the PyTorch HTS-AT backbone (transformers ClapAudioModel)")
    args = parser.parse_args()

    tagger = make_tagger(args)
    rate = tagger.sample_rate
    print(f"backend {jax.default_backend()}: {jax.device_count()} x {jax.devices()[0].device_kind}; "
          f"{args.checkpoint or args.variant} model, {args.seconds:g} s clips at {rate} Hz")
    print(f"{'batch':>5} {'compile s':>9} {'s/batch':>8} {'clips/s':>8} {'ms/clip':>8}")
    rng = np.random.default_rng(0)
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
        per_batch = float(np.median(times))
        print(f"{batch:5d} {compile_s:9.1f} {per_batch:8.3f} {batch / per_batch:8.1f} {1000 * per_batch / batch:8.1f}",
              flush=True)
    if args.torch_clap:
        bench_torch_clap(args.batch, args.repeats)


def bench_torch_clap(batches: list[int], repeats: int) -> None:
    """PyTorch HTS-AT backbone (transformers' CLAP audio tower) per batch size, all CPU threads."""
    import os

    import torch
    from transformers import ClapAudioConfig, ClapAudioModel

    torch.set_num_threads(os.cpu_count() or 1)
    model = ClapAudioModel(ClapAudioConfig(enable_fusion=False)).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"\nPyTorch {torch.__version__} ClapAudioModel (HTS-AT backbone, {params:.2f} M parameters), "
          f"{torch.get_num_threads()} threads, log-mel input (1001 frames x 64)")
    print(f"{'batch':>5} {'first s':>9} {'s/batch':>8} {'clips/s':>8} {'ms/clip':>8}")
    for batch in batches:
        feats = torch.randn(batch, 1, 1001, 64)
        with torch.inference_mode():
            t0 = time.perf_counter()
            model(input_features=feats)
            first = time.perf_counter() - t0
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(input_features=feats)
                times.append(time.perf_counter() - t0)
        per_batch = float(np.median(times))
        print(f"{batch:5d} {first:9.1f} {per_batch:8.3f} {batch / per_batch:8.1f} {1000 * per_batch / batch:8.1f}",
              flush=True)


if __name__ == "__main__":
    main()
