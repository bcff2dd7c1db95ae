r"""AST (Gong et al., Interspeech 2021) on AudioSet with the official AST recipe.

    python -m htsat_jax.main --config configs/ast/audioset.py --workdir W --config.data_dir=DATA \
        --config.init_from=deit_base_distilled_patch16_384.pth

Official recipe (YuanGongND/ast egs/audioset/run.sh + src/traintest.py): Adam 1e-5 with L2 weight
decay 5e-7 and betas (0.95, 0.999), no clipping, batch 12, 5 epochs, 1000-step warm-up, LR halved
every epoch from epoch 3, mixup on half the clips with lambda ~ Beta(10, 10), 1024 fbank frames,
SpecAugment 48 / 192, AudioSet fbank statistics. Official result 0.459 mAP for the single model after
averaging epochs 1-5 (here: ``tools/average_checkpoints.py W``). The data is the 32 kHz AudioSet build
HTS-AT uses; the trainer resamples it to the AST's 16 kHz on device, and the exported model states
16 kHz. Combine with ``:variant=tiny`` for a CPU check.
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="base")
    c = common.experiment(args.variant)
    # ---- data: 10 s clips, class-balanced sampling as for HTS-AT
    c.dataset = "audioset"
    c.train_split = "balanced_train+unbalanced_train"
    c.eval_split = "eval"
    c.test_split = "eval"
    c.clip_seconds = 10.0
    c.length_policy = "pad_or_truncate"
    c.balanced_sampling = True
    # ---- model: 1024 frames, SpecAugment (freqm 48, timem 192), AudioSet fbank statistics
    c.model_name = "ast"
    c.model = common.model("ast", args.variant, input_tdim=1024, freqm=48, timem=192, norm_mean=-4.2677393,
                           norm_std=4.5689974, loss_type="clip_bce")
    # ---- optimisation
    c.optim = common.adam_l2_multistep(base_lr=1e-5, weight_decay=5e-7, b1=0.95, b2=0.999, warmup_steps=1000,
                                       decay_start=2, decay_every=1, decay=0.5)
    c.batch_size = 12
    c.eval_batch_size = 12
    c.num_epochs = 5
    # ---- augmentation: mixup on half the clips, lambda ~ Beta(10, 10) (official dataloader)
    c.mixup = True
    c.mixup_alpha = 10.0
    c.mixup_prob = 0.5
    # ---- evaluation: a single pass (no test-time shifts), checkpoints kept for averaging
    c.evals_per_epoch = 1
    c.keep_best = 5
    c.best_metric = "mAP"
    c.test_time_shifts = (0,)
    if args.variant == "tiny":
        common.shrink_for_cpu(c)
        c.num_epochs = 2
    return c
