r"""Fine-tune any released model on your own sounds (a folder + labels file; README "Train on your own sounds").

    python tools/prepare_data.py audio_folder --manual_dir MY_SOUNDS --data_dir OUT --name mysounds
    python -m htsat_jax.main --config configs/finetune.py --config.data_dir=OUT \
        --config.builder_config=mysounds --config.init_from=MODEL --workdir W

MODEL is anything the project loads: a model directory (``WORKDIR/model`` of a run, or
``python -m htsat_jax.convert`` output), an official HTS-AT ``.ckpt``, an official or transformers AST,
a YAMNet ``.tflite`` / ``.h5``. The model is the one MODEL holds (no ``model_name`` here) with a new
classifier for your classes; single-label data trains with softmax cross-entropy and selects on
accuracy, multi-label data with sigmoid BCE and mAP (``loss_type`` / ``best_metric`` "auto"). Data
at another rate than the model's is resampled on the device. ``W/model`` carries your class names:
``python -m htsat_jax.predict --checkpoint W/model FILES`` prints them.

Options: ``--config.trainable=head`` trains only the classifier (a linear probe: fast, little data,
the backbone frozen); ``--config.strong_label_weight=1.0`` adds the frame-level loss on clips with
onset/offset labels (models with frame-level output); ``--config.early_stopping_patience`` (default 5
evaluations); ``--config.optim.base_lr``, ``--config.num_epochs``, ``--config.batch_size``.
Defaults: AdamW 1e-4 (weight decay 0.01, clip 1.0) after a two-epoch warm-up, 30 epochs, batch 16,
10 s clips (``--config.clip_seconds``), evaluation every epoch on the validation split.
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="base")
    c = common.experiment(args.variant)
    # ---- data: a prepared audio_folder dataset (or any prepared dataset: --config.dataset=...)
    c.dataset = "audio_folder"
    c.builder_config = "32k"  # --name NAME at prepare time -> --config.builder_config=NAME
    c.train_split = "train"
    c.eval_split = "validation"
    c.test_split = "test"
    c.clip_seconds = 10.0
    c.length_policy = "pad_or_truncate"
    c.balanced_sampling = False
    # ---- model: whatever init_from holds, a fresh head for the data's classes
    c.model_name = None
    # ---- optimisation: gentle AdamW with a short warm-up; constant after it
    # Official-style epoch factors: 0.1, 0.5 during the warm-up, then 1.0 (the last factor) throughout.
    c.optim = common.adamw_epoch_schedule(base_lr=1e-4, warmup_factors=(0.1, 0.5, 1.0), step_epochs=(10_000,),
                                          lr_floor=1.0, weight_decay=0.01, grad_clip_norm=1.0)
    c.batch_size = 16
    c.eval_batch_size = 16
    c.num_epochs = 30
    c.mixup = False
    # ---- evaluation: every epoch, keep the best by accuracy / mAP, stop when it stops improving
    c.evals_per_epoch = 1
    c.best_metric = "auto"
    c.early_stopping_patience = 5
    c.keep_best = 1
    c.keep_checkpoints = 1
    if args.variant == "tiny":
        common.shrink_for_cpu(c)
    return c
