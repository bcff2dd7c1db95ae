r"""ONNX export of HTS-AT: file size and ONNX Runtime CPU latency per 10 s clip, next to JAX.

    python tools/bench_export.py --variant base --batch 1 8
    python tools/bench_export.py --checkpoint models/htsat_audioset --batch 1 8 --output htsat.onnx

Exports the model (``htsat_jax.inference.export.export_onnx``, dynamic batch, log-mel frontend inside),
then times, per batch size, ONNX Runtime on CPU for each ``--threads`` (intra-op threads, default
all cores) x ``--spinning`` (ORT's busy-waiting of idle threads, default on as in ORT) setting,
and the jitted JAX ``AudioTagger`` forward on the same random 10 s clips, and prints the largest
|ONNX - JAX| difference per output on them. ``--checkpoint`` uses a real model directory
or official .ckpt; otherwise a randomly initialised ``--variant`` model with 527 classes (timing
does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))


def _median_seconds(fn, repeats: int) -> tuple[float, float, float]:
    """(median, min, max) wall seconds of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(min(times)), float(max(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--variant", default="base", choices=["base", "tiny"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count()])
    parser.add_argument("--spinning", type=int, nargs="+", default=[1], choices=[0, 1])
    parser.add_argument("--output", default=None, help="keep the .onnx file here (default: a temporary file)")
    args = parser.parse_args()

    import jax

    from bench_infer import make_tagger  # same model choice as the JAX inference benchmark
    from htsat_jax.inference import export
    from htsat_jax.inference.tagger import OUTPUT_NAMES
    from htsat_jax.models.htsat import count_parameters

    args.seconds = 10.0
    tagger = make_tagger(args)
    rate = tagger.sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        path = args.output or os.path.join(tmp, "htsat.onnx")
        info = export.export_onnx(tagger, path)
        settings = [(t, sp) for t in args.threads for sp in args.spinning]
        sessions = {(t, sp): export.onnx_session(path, threads=t, spinning=bool(sp)) for t, sp in settings}
        print(f"{args.checkpoint or args.variant} model, {count_parameters(tagger.model) / 1e6:.2f} M parameters; "
              f"ONNX {info['bytes'] / 1e6:.1f} MB ({info['bytes'] / 2**20:.1f} MiB), opset {info['opset']}, "
              f"exported in {info['export_s']:.0f} s")
        print(f"CPU: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
              f"jax {jax.__version__} on {jax.default_backend()}")
        print(f"{'batch':>5} {'runtime':>22} {'ms/clip':>8} {'(min-max)':>11} {'vs JAX':>7}  "
              "max |ORT-JAX| clip / frame / latent")
        rng = np.random.default_rng(0)
        ms = lambda t, batch: 1000 * t / batch  # noqa: E731
        for batch in args.batch:
            clips = (rng.standard_normal((batch, int(args.seconds * rate))) * 0.1).astype(np.float32)
            feed = {export.INPUT_NAME: clips}
            tagger.batch_size = batch
            ref = tagger(clips, rate)  # compiles
            jx = _median_seconds(lambda: tagger(clips, rate), args.repeats)
            print(f"{batch:5d} {'JAX (jit, XLA CPU)':>22} {ms(jx[0], batch):8.1f} "
                  f"{f'({ms(jx[1], batch):.0f}-{ms(jx[2], batch):.0f})':>11} {1.0:7.2f}", flush=True)
            for (threads, spin), session in sessions.items():
                session.run(None, feed)  # warm-up (first-run allocations)
                ort_s = _median_seconds(lambda: session.run(None, feed), args.repeats)
                got = session.run(list(OUTPUT_NAMES), feed)
                err = [float(np.max(np.abs(g - ref[k]))) for g, k in zip(got, OUTPUT_NAMES)]
                name = f"ORT {threads} thr{'' if spin else ', no spin'}"
                print(f"{batch:5d} {name:>22} {ms(ort_s[0], batch):8.1f} "
                      f"{f'({ms(ort_s[1], batch):.0f}-{ms(ort_s[2], batch):.0f})':>11} {ort_s[0] / jx[0]:7.2f}  "
                      + " / ".join(f"{e:.1e}" for e in err), flush=True)
        print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
