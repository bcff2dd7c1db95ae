r"""HTS-AT on AudioSet, the official recipe (HTSAT_SPEC §7-8).

    python -m htsat_jax.main --config configs/audioset.py --workdir gs://BUCKET/htsat_audioset \
        --config.data_dir=DATA

Expected (paper/official README): mAP 0.471 for the ImageNet-initialised model after weight
averaging of the top checkpoints (0.453 without ImageNet init, 0.487 for a 6-model ensemble),
on the AudioSet eval set with the 10-shift test-time average. The official run used 4 GPUs x 32
clips for ~100 "epochs" of the full ~1.9 M-clip index. Prepare data first:
``python tools/prepare_data.py audioset --manual_dir RAW --data_dir DATA``.

``:variant=tiny`` is the same recipe on the narrow model with small batches for CPU checks
(prepare the builder's small config and pass ``--config.builder_config=...`` as needed).
"""

from htsat_jax import configlib


def get_config(arg: str | None = None):
    args = configlib.parse_arg(arg, variant="base")
    c = configlib.base_config(args.variant)
    c.dataset = "audioset"
    c.train_split = "balanced_train+unbalanced_train"
    c.eval_split = "eval"
    c.test_split = "eval"
    c.balanced_sampling = True  # official generate_queue: one clip per class per round
    c.mixup = True  # AudioSet only in the current official code
    c.model.loss_type = "clip_bce"
    c.evals_per_epoch = 10  # official val_check_interval=0.1 of the ~1.9 M-clip epoch
    c.checkpoint_every_steps = 1000
    c.keep_best = 20
    c.best_metric = "mAP"
    c.test_time_shifts = configlib.AUDIOSET_TEST_SHIFTS
    if args.variant == "tiny":
        configlib.shrink_for_cpu(c)
        c.num_epochs = 2
        c.test_time_shifts = (0, 100)
    return c
