r"""HTS-AT on ESC-50: the 5-fold protocol in one command (test on fold k, train on the others).

    python -m htsat_jax.main --config configs/esc50.py --workdir W --config.data_dir=DATA \
        --config.init_from=AUDIOSET_MODEL_DIR_OR_CKPT

Expected: 97.0 +- 0.2 % accuracy when fine-tuned from the AudioSet model (paper); about 55 %
from scratch (official issue #5). ``W/eval_results.json`` holds every fold's accuracy and the
mean/std; ``W/fold_k/`` is each fold's run. One fold only: ``--config.cross_validation_folds=()
--config.eval_folds=(5,) --config.train_folds=(1,2,3,4)``.

The official code checkpoints on the held-out fold itself (there is no separate validation
fold); we do the same by default (``test_weights="best"``) and ``test_weights="last"`` avoids
that selection. Prepare: ``python tools/prepare_data.py esc50 --data_dir DATA`` (downloads) or
``--manual_dir ESC-50-master``.

``:model=ast``: the AST with the official ESC-50 recipe (Adam 1e-5 from the AudioSet-trained AST,
batch 48, 25 epochs, LR x0.85 per epoch from epoch 6, 512 frames, no mixup, cross-entropy; official
95.6 +- 0.4 %). Pass ``--config.init_from=`` an AST AudioSet checkpoint (``.pth`` or model dir).
"""

from htsat_jax import configlib


def get_config(arg: str | None = None):
    args = configlib.parse_arg(arg, variant="base", model="htsat")
    c = configlib.base_config(args.variant)
    c.dataset = "esc50"
    c.train_split = c.eval_split = c.test_split = "train"  # one split, folds select
    c.cross_validation_folds = (1, 2, 3, 4, 5)
    c.model.num_classes = 50
    c.model.loss_type = "clip_ce"
    # Mixup is AudioSet-only in the current official code (the Feb-2022 code mixed every dataset).
    c.mixup = False
    c.batch_size = 128
    c.eval_batch_size = 128
    c.num_epochs = 100
    c.evals_per_epoch = 1
    c.best_metric = "accuracy"
    c.keep_best = 3
    if args.model == "ast":
        configlib.use_ast(c, "esc50")
        c.model.input_sample_rate = 32000  # the stored data; resampled to 16 kHz on device
    if args.variant == "tiny":
        configlib.shrink_for_cpu(c)
        c.num_epochs = 2
    return c
