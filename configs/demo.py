r"""The built-in demo: train the tiny HTS-AT on synthetic sound-event scenes, on any CPU.

    make demo        # = python -m htsat_jax.main --config configs/demo.py --workdir demo_out

Generates the synthetic_events dataset (10 procedurally made classes: tones, chirps, noise
bursts, click trains, ...; exact onsets/offsets) into ``demo_out/data``, trains from weak
(clip-level) labels only, then scores tagging mAP and event-based F1 (psds-style, DTC/GTC 0.5,
CTTC 0.3) of the frame-wise output on held-out scenes and writes ``demo_out/event_map_*.png``.
Expected on a 2-core CPU: about 10 minutes in all; see README "Results" for the numbers
(chance is mAP ~0.2 and event F1 ~0).
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="tiny")
    c = common.experiment(args.variant)
    # ---- data: generated into WORKDIR/data, 480 / 64 / 64 ten-second scenes at 32 kHz
    c.dataset = "synthetic_events"
    c.data_dir = ""
    c.builder_config = "demo"
    c.prepare_synthetic_data = True
    c.train_split = "train"
    c.eval_split = "validation"
    c.test_split = "test"
    c.clip_seconds = 10.0
    c.length_policy = "pad_or_truncate"
    c.balanced_sampling = False
    c.num_threads = 2
    # ---- model: the tiny HTS-AT, clip labels only
    c.model_name = "htsat"
    c.model = common.model("htsat", args.variant, num_classes=10, loss_type="clip_bce")
    # ---- optimisation: a short run from scratch: warm up fast, no decay
    c.optim = common.adamw_epoch_schedule(base_lr=1e-3, warmup_factors=(0.5, 1.0, 1.0), step_epochs=(100, 200, 300),
                                          lr_floor=0.03, weight_decay=0.05, grad_clip_norm=1.0)
    c.batch_size = 16
    c.eval_batch_size = 16
    c.num_epochs = 10
    c.mixup = False
    # ---- logging, checkpoints
    c.log_every_steps = 10
    c.evals_per_epoch = 1
    c.checkpoint_every_steps = 100
    c.keep_checkpoints = 1
    c.keep_best = 1
    c.best_metric = "mAP"
    # ---- event scoring. Frame maps of a briefly trained model are confident everywhere near an
    # event: gate by the clip-level tag and pick the frame threshold on the validation scenes.
    c.event_eval = True
    c.event_thresholds = (0.5,)
    c.event_clip_gate = 0.5
    c.event_threshold_grid = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
    c.event_psds_scenarios = (1, 2)  # threshold-free DCASE scores of the same frame maps
    c.plot_events = 4
    return c
