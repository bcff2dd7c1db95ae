r"""Weak labels vs weak + strong labels at the same budget, on synthetic scenes with exact onsets.

    python tools/strong_vs_weak.py --model htsat --steps 100 --model_field 'depths=(1,1,1,1)'   # README figures
    python tools/strong_vs_weak.py --model tiny_cnn --steps 150   # the test's model (tests/tiny_cnn.py)

Generates synthetic_events with 128 / 32 / 32 scenes, trains the same model twice from the same seed
for the same steps (batch 8, AdamW 1e-3): once with the clip loss only, once adding the frame-level
loss on the strong labels (``strong_label_weight``), tunes the frame threshold on validation, and
prints test tagging mAP, event F1 and PSDS scenarios 1 and 2 of both runs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

_REPO = pathlib.Path(__file__).resolve().parents[1]
for p in (_REPO, _REPO / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def compare(model: str, steps: int, weight: float, data_dir: str, workdir: str,
            model_fields: dict | None = None) -> dict[str, dict[str, float]]:
    from configs import common
    from htsat_jax import models
    from htsat_jax.data.synthetic_dataset import SyntheticEvents, SyntheticEventsConfig
    from htsat_jax.training import train

    if model == "tiny_cnn":
        import tiny_cnn  # the test directory's third model
        models.register("tiny_cnn", tiny_cnn)
    config = SyntheticEventsConfig(name="small", num_train=128, num_validation=32, num_test=32)
    SyntheticEvents(config=config, data_dir=data_dir, file_format="array_record").download_and_prepare()
    out = {}
    for name, w in (("weak", 0.0), ("strong", weight)):
        c = common.load("demo.py")
        c.update(dict(data_dir=data_dir, builder_config="small", prepare_synthetic_data=False, batch_size=8,
                      eval_batch_size=8, total_steps=steps, eval_every_steps=10_000, checkpoint_every_steps=10_000,
                      log_every_steps=10, plot_events=0, progress_bar=False, tensorboard=False,
                      async_checkpointing=False, keep_checkpoints=1, event_clip_gate=None,
                      event_threshold_grid=(0.1, 0.2, 0.3, 0.5, 0.7, 0.9), event_psds_scenarios=(1, 2),
                      strong_label_weight=w))
        c.optim.warmup_factors = (1.0, 1.0, 1.0)
        c.model_name = model
        c.model = common.model(model, "tiny", num_classes=10, **(model_fields or {}))
        results = train.train_and_evaluate(c, os.path.join(workdir, name))
        out[name] = {k: float(results["test"][k]) for k in ("mAP", "event_f1", "psds1", "psds2")}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="htsat", help="registered model name, or tiny_cnn")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--strong_label_weight", type=float, default=1.0)
    p.add_argument("--workdir", default=None, help="where data and runs go (default: a temporary folder)")
    p.add_argument("--model_field", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the model's tiny variant (a Python literal), e.g. 'depths=(1,1,1,1)'")
    args = p.parse_args(argv)
    import ast
    fields = {}
    for item in args.model_field:
        key, _, value = item.partition("=")
        fields[key.strip()] = ast.literal_eval(value.strip())
    workdir = args.workdir or tempfile.mkdtemp(prefix="strong_vs_weak_")
    scores = compare(args.model, args.steps, args.strong_label_weight, os.path.join(workdir, "data"), workdir, fields)
    print(f"{args.model}, {args.steps} steps x 8 clips, synthetic scenes 128 / 32 / 32 (test):")
    for name, s in scores.items():
        print(f"  {name:6}  mAP {s['mAP']:.3f}  event F1 {s['event_f1']:.3f}  PSDS1 {s['psds1']:.3f}  "
              f"PSDS2 {s['psds2']:.3f}")
    return scores


if __name__ == "__main__":
    main()
