r"""DESED sound-event localisation with an AudioSet HTS-AT (the paper's §4.3 evaluation).

    python -m htsat_jax.main --config configs/htsat/desed.py --workdir W --config.data_dir=DATA \
        --config.init_from=AUDIOSET_MODEL_DIR_OR_OFFICIAL_CKPT

Evaluates without training (``mode="evaluate"``) on the DESED public eval set (692 clips):
the 527-class frame-wise output is pooled into the 10 DESED classes with the official
"any member above its group threshold" rule and thresholds, runs of active frames become
events (no median filter), scored with the intersection-based macro F1 (psds_eval settings
DTC 0.5, GTC 0.5, CTTC 0.3). Expected: 48.42 macro-F for the official single model (50.67
for the 6-model ensemble). One deliberate difference: frame k sits at k * 10.0098 s / 1024 (the
model's real time axis, ``htsat_jax.models.htsat.frame_seconds``) where the official script uses
10 s / 1024. ``W/eval_results.json`` has the macro and per-class F1 and tagging mAP of the 10
pooled classes.
"""

from configs import common
from htsat_jax.evaluation import metrics


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="base")
    c = common.experiment(args.variant)
    c.mode = "evaluate"
    # ---- data: 10 s clips at 32 kHz
    c.dataset = "desed"
    c.test_split = "eval"
    c.eval_split = "eval"
    c.train_split = "synthetic_train"
    c.clip_seconds = 10.0
    c.length_policy = "pad_or_truncate"
    # ---- model: an AudioSet HTS-AT
    c.model_name = "htsat"
    c.model = common.model("htsat", args.variant, num_classes=527, loss_type="clip_bce")
    c.batch_size = 128
    c.eval_batch_size = 128
    c.num_epochs = 0
    # ---- evaluation: no TTA for DESED (official), AudioSet classes pooled into the DESED groups
    c.test_time_shifts = (0,)
    c.event_eval = True
    c.event_class_names = metrics.DESED_CLASSES
    c.event_class_groups = metrics.DESED_AUDIOSET_INDICES
    c.event_thresholds = metrics.DESED_THRESHOLDS
    c.eval_max_events = 64
    c.event_psds_scenarios = (1, 2)
    c.best_metric = "event_f1"
    c.plot_events = 4
    if args.variant == "tiny":
        common.shrink_for_cpu(c)
    return c
