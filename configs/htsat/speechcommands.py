r"""HTS-AT on Speech Commands V2 (35 words, 16 kHz).

    python -m htsat_jax.main --config configs/htsat/speechcommands.py --workdir W --config.data_dir=DATA

Expected: 98.0 +- 0.03 % test accuracy (paper). As in the official code, training uses every
utterance not in testing_list.txt (train + validation lists), the log-mel uses hop 160 at 16 kHz
(1001 frames per 10 s after repeat-padding each 1 s clip), targets are one-hot with clip_bce.

CPU check on the FSDD recordings shipped in ../shared (real speech, 10 digit words, 300 train /
100 test utterances)::

    python tools/prepare_data.py speech_commands --manual_dir ../shared/data/fsdd_speechcommands_subset \
        --data_dir /tmp/scv2
    python -m htsat_jax.main --config configs/htsat/speechcommands.py:variant=tiny \
        --config.data_dir=/tmp/scv2 --workdir /tmp/scv2_run

reaches well above the 10 % chance level of the ten words present in a few minutes on 2 cores
(see README "Results").
"""

import dataclasses

from configs import common
from htsat_jax.models import frontend


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, variant="base")
    c = common.experiment(args.variant)
    # ---- data: 1 s utterances doubled until 10 s (official), 16 kHz
    c.dataset = "speech_commands"
    c.train_split = "train+validation"  # official: everything not in testing_list.txt
    c.eval_split = "test"
    c.test_split = "test"
    c.clip_seconds = 10.0
    c.length_policy = "repeat_to_length"
    c.balanced_sampling = False
    # ---- model: the 16 kHz frontend (hop 160), one-hot targets with clip_bce
    c.model_name = "htsat"
    c.model = common.model("htsat", args.variant, num_classes=35, loss_type="clip_bce",
                           frontend=dataclasses.asdict(frontend.SPEECH_COMMANDS_FRONTEND))
    # ---- optimisation: the AudioSet recipe's AdamW and epoch factors (official scv2_config.py)
    c.optim = common.adamw_epoch_schedule(base_lr=1e-3, warmup_factors=(0.02, 0.05, 0.1), step_epochs=(10, 20, 30),
                                          lr_floor=0.03, weight_decay=0.05, grad_clip_norm=1.0)
    c.batch_size = 128
    c.eval_batch_size = 128
    c.num_epochs = 100
    c.mixup = False  # AudioSet-only in the current official code
    # ---- evaluation
    c.best_metric = "accuracy"
    c.keep_best = 3
    if args.variant == "tiny":
        common.shrink_for_cpu(c)
        c.batch_size = 16
        c.eval_batch_size = 16
        c.num_epochs = 12
        c.log_every_steps = 10
        # A few hundred steps from scratch: warm up quickly, no decay within the run.
        c.optim.warmup_factors = (0.5, 1.0, 1.0)
        c.optim.step_epochs = (100, 200, 300)
    return c
