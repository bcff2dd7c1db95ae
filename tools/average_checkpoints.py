r"""Average the weights of several HTS-AT checkpoints into one model directory.

    python tools/average_checkpoints.py OUT_MODEL_DIR INPUT [INPUT ...] [--top K]

Each INPUT is a model directory of this project (config.json + weights/), an official PyTorch
``.ckpt`` file, or a training work directory, whose ``best/<step>/`` checkpoints (the best
evaluations by ``best_metric``) all join the average; ``--top K`` keeps the K best of each work
directory. Every tensor is averaged in float64, BatchNorm running statistics included (the
official ``main.py weight_average``, HTSAT_SPEC §7); all inputs must share one model config.
The result loads anywhere a model directory does (``AudioTagger.from_checkpoint``,
``--config.init_from``, ``tools/evaluate_ensemble.py``).

Exit codes: 0 success, 2 bad input (unknown path, configs that differ, occupied output).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from flax import traverse_util

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # run as a script: tools/ is on sys.path, the repo root is not
    sys.path.insert(0, str(_REPO_ROOT))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Average the weights of checkpoints of one model (any registered "
                                                 "model: HTS-AT, AST, ...).")
    parser.add_argument("out", help="output model directory, local or gs:// (must be new or empty)")
    parser.add_argument("inputs", nargs="+", help="model directories, released checkpoint files or training work "
                                                  "directories (their best/ checkpoints)")
    parser.add_argument("--top", type=int, default=None,
                        help="from each work directory, average only the K best checkpoints by its best_metric")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    import logging

    for noisy in ("absl", "orbax", "jax._src"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from tqdm import tqdm

    from htsat_jax.training import averaging
    from htsat_jax import checkpoint as ckpt_lib

    from htsat_jax.utils import paths

    out = paths.local_or_remote(args.out)
    if paths.exists(out) and (not paths.isdir(out) or any(True for _ in paths.path(out).iterdir())):
        print(f"error: {out} exists and is not an empty directory", file=sys.stderr)
        return 2
    try:
        members = [m for path in args.inputs for m in averaging.list_members(path, args.top)]
        averager, reference, class_names = averaging.WeightAverager(), None, None
        for member in tqdm(members, desc="averaging", unit="checkpoint"):
            name, config, weights, names = member.load()
            if reference is None:
                reference = (name, config)
            else:
                averaging.check_same_config(reference, (name, config))
            if class_names is None:
                class_names = names
            averager.add(weights, name)
            del weights
        weights = averager.result()
        ckpt_lib.save_weights(out, reference[1], weights, class_names=class_names,
                              extra={"averaged_from": [m.name for m in members]})
    except (averaging.SourceError, ckpt_lib.CheckpointDirError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for m in members:
        if m.metrics:
            print(f"  {m.name}  " + ", ".join(f"{k}={v:.4f}" for k, v in m.metrics.items()))
    num_tensors = len(traverse_util.flatten_dict(weights))
    num_values = sum(int(v.size) for v in traverse_util.flatten_dict(weights).values())
    print(f"averaged {len(members)} checkpoints from {len(args.inputs)} input(s) into {out} "
          f"({num_tensors} tensors, {num_values / 1e6:.2f} M values)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
