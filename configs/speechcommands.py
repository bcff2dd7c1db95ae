r"""HTS-AT on Speech Commands V2 (35 words, 16 kHz).

    python -m htsat_jax.main --config configs/speechcommands.py --workdir W --config.data_dir=DATA

Expected: 98.0 +- 0.03 % test accuracy (paper). As in the official code, training uses every
utterance not in testing_list.txt (train + validation lists), the log-mel uses hop 160 at 16 kHz
(1001 frames per 10 s after repeat-padding each 1 s clip), targets are one-hot with clip_bce.

CPU check on the FSDD recordings shipped in ../shared (real speech, 10 digit words, 300 train /
100 test utterances)::

    python tools/prepare_data.py speech_commands --manual_dir ../shared/data/fsdd_speechcommands_subset \
        --data_dir /tmp/scv2
    python -m htsat_jax.main --config configs/speechcommands.py:variant=tiny \
        --config.data_dir=/tmp/scv2 --workdir /tmp/scv2_run

reaches well above the 10 % chance level of the ten words present in a few minutes on 2 cores
(see README "Results").

``:model=ast``: the AST with the official SCV2 recipe (Adam 2.5e-4, batch 128, 30 epochs, LR x0.85
per epoch from epoch 6, 128 frames, mixup on 60 % of clips; official 98.1 %). The data is already
16 kHz, the AST's rate.
"""

import dataclasses

from htsat_jax import configlib, frontend


def get_config(arg: str | None = None):
    args = configlib.parse_arg(arg, variant="base", model="htsat")
    c = configlib.base_config(args.variant)
    c.dataset = "speech_commands"
    c.train_split = "train+validation"  # official: everything not in testing_list.txt
    c.eval_split = "test"
    c.test_split = "test"
    c.model.num_classes = 35
    c.model.loss_type = "clip_bce"
    c.model.frontend = dataclasses.asdict(frontend.SPEECH_COMMANDS_FRONTEND)
    c.mixup = False  # AudioSet-only in the current official code
    c.best_metric = "accuracy"
    c.keep_best = 3
    if args.model == "ast":
        configlib.use_ast(c, "speechcommands")
    if args.variant == "tiny":
        configlib.shrink_for_cpu(c)
        c.batch_size = 16
        c.eval_batch_size = 16
        c.num_epochs = 12
        c.log_every_steps = 10
        # A few hundred steps from scratch: warm up quickly, no decay within the run.
        if args.model == "htsat":
            c.optim.warmup_factors = (0.5, 1.0, 1.0)
            c.optim.step_epochs = (100, 200, 300)
        else:
            c.optim.base_lr = 1e-3
            c.optim.decay_start = 100
    return c
