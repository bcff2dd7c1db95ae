r"""ONNX export of a model: file size and ONNX Runtime CPU latency per clip, next to JAX.

    python tools/bench_export.py --variant base --batch 1 8                       # HTS-AT, 10 s clips
    python tools/bench_export.py --checkpoint models/htsat_audioset --batch 1 8 --output htsat.onnx
    python tools/bench_export.py --checkpoint ../shared/weights/yamnet/yamnet.tflite \
        --weights float int8 --batch 1 --threads 1 2 --repeats 300              # on-device: 1 s chunks
    python tools/bench_export.py --model lean --weights float int8 --batch 1 --repeats 300

Exports the model (``htsat_jax.inference.export.export_onnx``, dynamic batch, frontend inside) once
per ``--weights`` format (``float``; ``int8``: weight-only int8), then times, per batch size, ONNX
Runtime on CPU for each ``--threads`` (intra-op threads, default all cores) x ``--spinning`` (ORT's
busy-waiting of idle threads, default on as in ORT) setting, and the jitted JAX ``AudioTagger``
forward on the same random clips, and prints the largest |ONNX - JAX| difference per output on them.
An int8 file is timed twice: as ORT runs it by default (int8 weights in memory, dequantized at each
run) and with ``dequantize_at_load`` (``fold`` in the table: float weights in memory, float speed).
The times are the median (and 10th-90th percentile) of ``--repeats`` runs after ``--warmup`` runs.

``--checkpoint`` uses a real model directory or released checkpoint (an official HTS-AT .ckpt, a
YAMNet .tflite / .h5...); otherwise a randomly initialised ``--model`` (``htsat``: 527 classes as
before; any registered model: its default config) of size ``--variant`` (timing does not depend on
the weights). ``--seconds``: clip length, default the model's export length (10 s; YAMNet, LEAN: 1 s).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import numpy as np


def _seconds(fn, repeats: int, warmup: int = 0) -> tuple[float, float, float]:
    """(median, 10th, 90th percentile) wall seconds of ``fn()`` over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.percentile(times, 10)), float(np.percentile(times, 90))


def make_tagger(args):
    """The model to export: ``--checkpoint``, or a random ``--model`` of size ``--variant``."""
    from htsat_jax import AudioTagger, checkpoint, models

    batch = max(args.batch)
    if args.checkpoint:
        return AudioTagger.from_checkpoint(args.checkpoint, batch_size=batch)
    module = models.get(args.model)
    # The model's own defaults (the papers' class counts: 527 for HTS-AT, 521 YAMNet, ...) at that size.
    model = checkpoint.build_model(module.Config(**module.VARIANTS[args.variant]), seed=0)
    return AudioTagger(model, batch_size=batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--model", default="htsat", help="registry name of the random model (no --checkpoint)")
    parser.add_argument("--variant", default="base", choices=["base", "tiny"])
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--weights", nargs="+", default=["float"], choices=["float", "int8"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count()])
    parser.add_argument("--spinning", type=int, nargs="+", default=[1], choices=[0, 1])
    parser.add_argument("--output", default=None,
                        help="keep the .onnx file(s) here (a second format gets _int8 before .onnx)")
    args = parser.parse_args()

    import jax
    from flax import nnx

    from htsat_jax import models
    from htsat_jax.inference import export

    tagger = make_tagger(args)
    rate = tagger.sample_rate
    seconds = export.default_seconds(tagger.config) if args.seconds is None else args.seconds
    samples = int(round(seconds * rate))
    params = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(tagger.model, nnx.Param)))
    name = args.checkpoint or f"{models.name_of(tagger.config)} {args.variant} (random)"
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for fmt in args.weights:
            path = os.path.join(tmp, f"model_{fmt}.onnx")
            if args.output:
                path = args.output if fmt == args.weights[0] else args.output.replace(".onnx", "") + f"_{fmt}.onnx"
            info = export.export_onnx(tagger, path, num_samples=samples, weights=fmt)
            files[fmt] = path
            q = info["quantization"]
            detail = "" if q is None else (f"; {q['tensors']} tensors / {q['params'] / 1e6:.2f} M values int8, "
                                           f"{q['float_elements'] / 1e3:.0f} k values float32")
            print(f"{name}, {params / 1e6:.2f} M parameters; ONNX {fmt}: {info['bytes'] / 1e6:.2f} MB "
                  f"({info['bytes'] / 2**20:.2f} MiB, {info['bytes']:,} bytes), opset {info['opset']}, "
                  f"exported in {info['export_s']:.0f} s{detail}")
        print(f"CPU: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
              f"jax {jax.__version__} on {jax.default_backend()}; {seconds:g} s clips, median of {args.repeats} "
              f"runs after {args.warmup}")
        folds = {"float": (False,), "int8": (False, True)}
        settings = [(fmt, fold, t, sp) for fmt in args.weights for fold in folds[fmt]
                    for t in args.threads for sp in args.spinning]
        sessions = {s: export.onnx_session(files[s[0]], threads=s[2], spinning=bool(s[3]), dequantize_at_load=s[1])
                    for s in settings}
        out_names = [o.name for o in next(iter(sessions.values())).get_outputs()]
        print(f"{'batch':>5} {'runtime':>30} {'ms/clip':>8} {'(p10-p90)':>13} {'vs JAX':>7}  "
              f"max |ORT-JAX| {' / '.join(out_names)}")
        rng = np.random.default_rng(0)
        ms = lambda t, batch: 1000 * t / batch  # noqa: E731
        for batch in args.batch:
            clips = (rng.standard_normal((batch, samples)) * 0.1).astype(np.float32)
            feed = {export.INPUT_NAME: clips}
            tagger.batch_size = batch
            ref = tagger(clips, rate)  # compiles
            jx = _seconds(lambda: tagger(clips, rate), args.repeats, args.warmup)
            print(f"{batch:5d} {'JAX (jit, XLA CPU)':>30} {ms(jx[0], batch):8.2f} "
                  f"{f'({ms(jx[1], batch):.2f}-{ms(jx[2], batch):.2f})':>13} {1.0:7.2f}", flush=True)
            for (fmt, fold, threads, spin), session in sessions.items():
                ort_s = _seconds(lambda: session.run(None, feed), args.repeats, max(args.warmup, 1))
                got = session.run(out_names, feed)
                err = [float(np.max(np.abs(g - ref[k]))) for g, k in zip(got, out_names)]
                label = f"ORT {fmt}{', fold' if fold else ''} {threads} thr{'' if spin else ', no spin'}"
                print(f"{batch:5d} {label:>30} {ms(ort_s[0], batch):8.2f} "
                      f"{f'({ms(ort_s[1], batch):.2f}-{ms(ort_s[2], batch):.2f})':>13} {ort_s[0] / jx[0]:7.2f}  "
                      + " / ".join(f"{e:.1e}" for e in err), flush=True)
        print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
