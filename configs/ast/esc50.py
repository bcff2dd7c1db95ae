r"""AST on ESC-50 with the official AST recipe (5-fold cross-validation).

    python -m htsat_jax.main --config configs/ast/esc50.py --workdir W --config.data_dir=DATA \
        --config.init_from=audioset_10_10_0.4593.pth

Official recipe (egs/esc50/run_esc.sh): Adam 1e-5 from the AudioSet-trained AST (the official
script uses 1e-4 from ImageNet), batch 48, 25 epochs, LR x0.85 per epoch from epoch 6, 512 fbank
frames (5 s), SpecAugment 24 / 96, ESC-50 fbank statistics, no mixup, cross-entropy. Official
95.6 +- 0.4 %. The 32 kHz ESC-50 build is resampled to 16 kHz on device.
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="base")
    c = common.experiment(args.variant)
    # ---- data: the 5 s clips as they are (zero-padded fbank to 512 frames, official)
    c.dataset = "esc50"
    c.train_split = c.eval_split = c.test_split = "train"
    c.cross_validation_folds = (1, 2, 3, 4, 5)
    c.clip_seconds = 5.0
    c.length_policy = "pad_or_truncate"
    c.balanced_sampling = False
    # ---- model
    c.model_name = "ast"
    c.model = common.model("ast", args.variant, num_classes=50, input_tdim=512, freqm=24, timem=96,
                           norm_mean=-6.6268077, norm_std=5.358466, loss_type="clip_ce")
    # ---- optimisation
    c.optim = common.adam_l2_multistep(base_lr=1e-5, weight_decay=5e-7, b1=0.95, b2=0.999, warmup_steps=0,
                                       decay_start=5, decay_every=1, decay=0.85)
    c.batch_size = 48
    c.eval_batch_size = 48
    c.num_epochs = 25
    c.mixup = False
    # ---- evaluation
    c.evals_per_epoch = 1
    c.best_metric = "accuracy"
    c.keep_best = 3
    c.test_time_shifts = (0,)
    if args.variant == "tiny":
        common.shrink_for_cpu(c)
        c.num_epochs = 2
    return c
