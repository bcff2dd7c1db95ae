r"""YAMNet fine-tuned on ESC-50 from Google's released weights (5-fold cross-validation).

    python -m htsat_jax.main --config configs/yamnet/esc50.py --workdir W --config.data_dir=DATA \
        --config.init_from=../shared/weights/yamnet/yamnet.tflite     # or yamnet.h5 / a YAMNet model dir

``init_from`` gives the backbone; the 521-class AudioSet classifier is replaced by a fresh 50-class
one. Prepare: ``python tools/prepare_data.py esc50 --data_dir DATA`` (downloads) or
``--manual_dir ESC-50-master``; the 32 kHz build is resampled to 16 kHz on device.

Recipe [D]: YAMNet takes audio of any length, so it trains and is scored on the whole 5 s clips
(the official padding gives 10 patches of 0.96 s every 0.48 s; the clip output pools the patch
logits, ``clip_ce``, softmax cross-entropy); BatchNorm stays on its moving statistics
(``freeze_bn``: a ``.tflite`` has BatchNorm folded into the convolutions); Adam at a constant 1e-4
(no weight decay, the LEAN recipe's optimiser); batch 32; 30 epochs; no augmentation; select on the
held-out fold's accuracy.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="base")
    c = common.experiment(args.variant)
    # ---- data: the 5 s clips as they are
    c.dataset = "esc50"
    c.train_split = c.eval_split = c.test_split = "train"
    c.cross_validation_folds = (1, 2, 3, 4, 5)
    c.clip_seconds = 5.0
    c.length_policy = "pad_or_truncate"
    c.balanced_sampling = False
    # ---- model: YAMNet, 50 classes, clip = mean of the patch logits
    c.model_name = "yamnet"
    c.model = common.model("yamnet", args.variant, num_classes=50, loss_type="clip_ce", clip_pool="mean",
                           freeze_bn=True)
    # ---- optimisation: Adam, constant 1e-4 (adam_l2 without decay, warm-up or LR steps)
    c.optim = ml_collections.ConfigDict(dict(
        name="adam_l2", base_lr=1e-4, b1=0.9, b2=0.999, eps=1e-7, weight_decay=0.0, grad_clip_norm=0.0,
        warmup_steps=0, warmup_every=1, decay_start=0, decay_every=1, decay=1.0))
    c.batch_size = 32
    c.eval_batch_size = 32
    c.num_epochs = 30
    c.mixup = False
    # ---- evaluation
    c.evals_per_epoch = 1
    c.best_metric = "accuracy"
    c.keep_best = 1
    if args.variant == "tiny":
        common.shrink_for_cpu(c)
        c.num_epochs = 2
    return c
