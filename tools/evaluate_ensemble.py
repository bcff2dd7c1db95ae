r"""Score several HTS-AT models and the ensemble of their predictions on a test split.

    python tools/evaluate_ensemble.py --config configs/audioset.py --workdir OUT \
        --models M1 M2 ... [--top K] [--config.field=value ...]

Each model is a model directory (config.json + weights/), an official PyTorch ``.ckpt`` file, or
a training work directory (each of its ``best/`` checkpoints is one member; ``--top K`` keeps the
K best). Every model predicts ``config.test_split`` like the trainer's final test (the config's
``test_time_shifts`` and ``event_class_groups``); the ensemble is the mean of the clipwise
probabilities (and frame maps) over models (the official ``esm_test``, HTSAT_SPEC §7). Per-model
and ensemble metrics go to ``OUT/eval_results.json``.
"""

from __future__ import annotations

import logging
import pathlib
import sys

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # run as a script: tools/ is on sys.path, the repo root is not
    sys.path.insert(0, str(_REPO_ROOT))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

# Private flag registry: importing this module next to htsat_jax.main (same flag names) is safe.
FLAGS = flags.FlagValues()
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:args]).",
                                          flag_values=FLAGS, lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where eval_results.json goes.", flag_values=FLAGS)
_MODELS = flags.DEFINE_list("models", None, "Model directories, official .ckpt files or training work "
                            "directories (space- or comma-separated).", flag_values=FLAGS)
_TOP = flags.DEFINE_integer("top", None, "From each training work directory, only the K best checkpoints.",
                            flag_values=FLAGS)


def _join_models(argv: list[str]) -> list[str]:
    """``--models A B C`` -> ``--models=A,B,C`` (absl lists are comma-separated)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--models", "-models"):
            values = []
            i += 1
            while i < len(argv) and not argv[i].startswith("-"):
                values.append(argv[i])
                i += 1
            out.append("--models=" + ",".join(values))
            continue
        out.append(arg)
        i += 1
    return out


def parse_flags(argv: list[str]) -> list[str]:
    """Parse this tool's flags (and absl's own); returns the positional arguments."""
    if any(a in ("-h", "--help", "-help", "--helpshort") for a in argv[1:]):
        print(__doc__)
        print(FLAGS)
        sys.exit(0)
    argv = _join_models(list(argv))
    saved, sys.argv = sys.argv, argv  # config_flags finds the --config.* overrides in sys.argv
    try:
        rest = FLAGS(argv, known_only=True)
    finally:
        sys.argv = saved
    return flags.FLAGS(rest)


def main(argv: list[str]) -> dict:
    """Run with flags already parsed (:func:`parse_flags`); returns the results dict."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _WORKDIR.value is None or _CONFIG.value is None or not _MODELS.value:
        raise app.UsageError("--config, --workdir and --models are required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr, force=True)
    for noisy in ("absl", "jax._src", "orbax", "tensorflow_datasets", "grain"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from htsat_jax.training import averaging

    return averaging.evaluate_ensemble(_CONFIG.value, _WORKDIR.value, _MODELS.value, top=_TOP.value)


if __name__ == "__main__":
    app.run(lambda argv: (main(argv), 0)[1], flags_parser=parse_flags)
