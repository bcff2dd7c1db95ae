r"""The built-in demo: train the tiny HTS-AT on synthetic sound-event scenes, on any CPU.

    make demo        # = python -m htsat_jax.main --config configs/demo.py --workdir demo_out

Generates the synthetic_events dataset (10 procedurally made classes: tones, chirps, noise
bursts, click trains, ...; exact onsets/offsets) into ``demo_out/data``, trains from weak
(clip-level) labels only, then scores tagging mAP and event-based F1 (psds-style, DTC/GTC 0.5,
CTTC 0.3) of the frame-wise output on held-out scenes and writes ``demo_out/event_map_*.png``.
Expected on a 2-core CPU: about 10 minutes in all; see README "Results" for the numbers
(chance is mAP ~0.2 and event F1 ~0).
"""

from htsat_jax import configlib


def get_config(arg: str | None = None):
    args = configlib.parse_arg(arg, variant="tiny")
    c = configlib.base_config(args.variant)
    c.dataset = "synthetic_events"
    c.data_dir = ""  # "": WORKDIR/data
    c.builder_config = "demo"  # 480 / 64 / 64 scenes
    c.prepare_synthetic_data = True
    c.train_split = "train"
    c.eval_split = "validation"
    c.test_split = "test"
    c.model.num_classes = 10
    c.model.loss_type = "clip_bce"
    c.mixup = False
    c.batch_size = 16
    c.eval_batch_size = 16
    c.num_threads = 2
    c.num_epochs = 10
    c.log_every_steps = 10
    c.evals_per_epoch = 1
    c.checkpoint_every_steps = 100
    c.keep_checkpoints = 1
    c.keep_best = 1
    c.best_metric = "mAP"
    c.optim.warmup_factors = (0.5, 1.0, 1.0)  # a short run from scratch: warm up fast, no decay
    c.optim.step_epochs = (100, 200, 300)
    c.event_eval = True
    c.event_thresholds = (0.5,)
    # Frame maps of a briefly trained model are confident everywhere near an event: gate by the
    # clip-level tag and pick the frame threshold on the validation scenes.
    c.event_clip_gate = 0.5
    c.event_threshold_grid = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
    c.plot_events = 4
    return c
