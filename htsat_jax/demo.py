"""Built-in demo: tag a synthetic sound scene and print its tags and timed events.

    python -m htsat_jax.demo [--checkpoint CKPT] [--workdir DIR]

Model choice, in order: ``--checkpoint`` (an official .ckpt or a model directory); else the
official tiny fixture checkpoint in ``../shared`` (converted through the same converter users
run on released checkpoints); else a randomly initialised tiny model. The last two have random
weights, so their tags are meaningless: the demo shows the pipeline, not accuracy, until the
training demo (``configs/demo.py``) replaces it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import numpy as np

from htsat_jax import AudioTagger, checkpoint, convert, events, synthetic
from htsat_jax.models.htsat import HTSATConfig, TINY

_FIXTURE = pathlib.Path(__file__).resolve().parents[1].parent / "shared/fixtures/official_htsat/tiny/htsat_tiny.ckpt"


def _tagger(args) -> tuple[AudioTagger, str]:
    if args.checkpoint:
        return AudioTagger.from_checkpoint(args.checkpoint), f"checkpoint {args.checkpoint}"
    if _FIXTURE.is_file():
        model_dir = os.path.join(args.workdir, "official_tiny_converted")
        if not checkpoint.is_model_dir(model_dir):
            print(f"converting the official tiny checkpoint {_FIXTURE} -> {model_dir}")
            convert.main(["torch-htsat", str(_FIXTURE), model_dir])
        return AudioTagger.from_checkpoint(model_dir), "official tiny fixture (random weights)"
    model = checkpoint.build_model(HTSATConfig(num_classes=len(synthetic.CLASS_NAMES), **TINY), seed=0)
    return AudioTagger(model, class_names=synthetic.CLASS_NAMES), "randomly initialised tiny model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m htsat_jax.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="official .ckpt or model directory")
    parser.add_argument("--workdir", default="demo_out", help="where converted models are cached")
    parser.add_argument("--seed", type=int, default=0, help="which synthetic scene to tag")
    parser.add_argument("--threshold", type=float, default=0.5, help="frame activation threshold")
    args = parser.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)

    tagger, source = _tagger(args)
    rate = tagger.sample_rate
    waveform, truth = synthetic.make_scene(args.seed, sample_rate=rate)
    print(f"model: {source}; {tagger.config.num_classes} classes at {rate} Hz")
    print(f"scene {args.seed}: {len(waveform) / rate:.1f} s with events:")
    for onset, offset, c in truth:
        print(f"  {synthetic.CLASS_NAMES[c]:>16s} {onset:6.2f} - {offset:6.2f} s")
    out = tagger(waveform, rate)
    names = tagger.class_names or [f"class_{i}" for i in range(tagger.config.num_classes)]
    print("top tags:")
    for name, score in tagger.top_tags(out["clipwise_output"], k=5)[0]:
        print(f"  {name:>16s} {score:.3f}")
    found = events.framewise_to_events(out["framewise_output"][0], events.step_seconds(tagger.config, len(waveform)),
                                       names, threshold=args.threshold, max_seconds=len(waveform) / rate)
    print(f"frame-wise events (threshold {args.threshold}): {len(found)}")
    for ev in found[:20]:
        print(f"  {ev.label:>16s} {ev.onset_s:6.2f} - {ev.offset_s:6.2f} s  score {ev.score:.2f}")
    print(f"latent embedding: shape {out['latent_output'].shape}, norm {np.linalg.norm(out['latent_output']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
