r"""AST on Speech Commands V2 with the official AST recipe.

    python -m htsat_jax.main --config configs/ast/speechcommands.py --workdir W --config.data_dir=DATA

Official recipe (egs/speechcommands/run_sc.sh): Adam 2.5e-4, batch 128, 30 epochs, LR x0.85 per
epoch from epoch 6, 128 fbank frames (1 s), SpecAugment 48 / 48, SCV2 fbank statistics, mixup on
60 % of the clips; official 98.1 %. The data is already 16 kHz, the AST's rate. The official recipe
also adds fbank noise and a +-10 frame roll ("noise=True"); not here.
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="base")
    c = common.experiment(args.variant)
    # ---- data: 1 s utterances, zero-padded
    c.dataset = "speech_commands"
    c.train_split = "train+validation"
    c.eval_split = "test"
    c.test_split = "test"
    c.clip_seconds = 1.0
    c.length_policy = "pad_or_truncate"
    c.balanced_sampling = False
    # ---- model
    c.model_name = "ast"
    c.model = common.model("ast", args.variant, num_classes=35, input_tdim=128, freqm=48, timem=48,
                           norm_mean=-6.845978, norm_std=5.5654526, loss_type="clip_bce")
    # ---- optimisation
    c.optim = common.adam_l2_multistep(base_lr=2.5e-4, weight_decay=5e-7, b1=0.95, b2=0.999, warmup_steps=0,
                                       decay_start=5, decay_every=1, decay=0.85)
    c.batch_size = 128
    c.eval_batch_size = 128
    c.num_epochs = 30
    # ---- augmentation: mixup on 60 % of the clips, lambda ~ Beta(10, 10)
    c.mixup = True
    c.mixup_alpha = 10.0
    c.mixup_prob = 0.6
    # ---- evaluation
    c.best_metric = "accuracy"
    c.keep_best = 3
    c.test_time_shifts = (0,)
    if args.variant == "tiny":
        common.shrink_for_cpu(c)
        c.batch_size = 16
        c.eval_batch_size = 16
        c.num_epochs = 12
        c.log_every_steps = 10
        c.optim.base_lr = 1e-3
        c.optim.decay_start = 100
    return c
