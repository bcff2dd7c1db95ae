"""The AST recipe in the shared trainer: optimiser and schedule against torch, configs, a short run."""

import numpy as np
import optax
import pytest
import torch

from htsat_jax.training import optim


def _official_ast_lrs(base_lr, steps_per_epoch, num_epochs, *, warmup, start, step, decay):
    """The LR of every optimiser step as the official AST ``traintest.train`` loop sets it."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], base_lr, weight_decay=5e-7, betas=(0.95, 0.999))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(range(start, 1000, step)), gamma=decay)
    lrs, global_step = [], 0
    for _ in range(num_epochs):
        for _ in range(steps_per_epoch):
            if warmup and global_step <= 1000 and global_step % 50 == 0:
                for g in opt.param_groups:
                    g["lr"] = (global_step / 1000) * base_lr
            lrs.append(opt.param_groups[0]["lr"])
            global_step += 1
        sched.step()
    return np.array(lrs)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step()`")
@pytest.mark.parametrize("recipe", [
    dict(base_lr=1e-5, steps_per_epoch=700, num_epochs=5, warmup=True, start=2, step=1, decay=0.5),  # AudioSet
    dict(base_lr=1e-4, steps_per_epoch=40, num_epochs=25, warmup=False, start=5, step=1, decay=0.85),  # ESC-50
])
def test_ast_schedule_matches_the_official_loop(recipe):
    want = _official_ast_lrs(**recipe)
    sched = optim.ast_lr_schedule(recipe["base_lr"], recipe["steps_per_epoch"],
                                  warmup_steps=1000 if recipe["warmup"] else 0, warmup_every=50,
                                  decay_start=recipe["start"], decay_every=recipe["step"], decay=recipe["decay"])
    got = np.array([float(sched(s)) for s in range(len(want))])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
    assert got[0] == pytest.approx(0.0 if recipe["warmup"] else recipe["base_lr"], rel=1e-6)


def test_adam_l2_update_equals_torch_adam_with_weight_decay():
    import ml_collections
    cfg = ml_collections.ConfigDict(dict(name="adam_l2", base_lr=1e-3, b1=0.95, b2=0.999, eps=1e-8,
                                         weight_decay=0.1, grad_clip_norm=0.0, warmup_steps=0, warmup_every=50,
                                         decay_start=5, decay_every=1, decay=0.85))
    tx, _ = optim.make_optimizer(cfg, steps_per_epoch=10, num_epochs=3)
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(6).astype(np.float32)
    grads = [rng.standard_normal(6).astype(np.float32) for _ in range(4)]
    p = torch.nn.Parameter(torch.tensor(w0))
    topt = torch.optim.Adam([p], 1e-3, weight_decay=0.1, betas=(0.95, 0.999), eps=1e-8)
    params, state = {"w": w0}, tx.init({"w": w0})
    for g in grads:
        p.grad = torch.tensor(g)
        topt.step()
        updates, state = tx.update({"w": g}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(params["w"]), p.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_on_device_resampling_keeps_the_band_below_the_new_nyquist():
    import jax.numpy as jnp
    import scipy.signal

    from htsat_jax.data.resample import resample_fft
    t32 = np.arange(32000) / 32000
    tones = (0.5 * np.sin(2 * np.pi * 440 * t32) + 0.2 * np.sin(2 * np.pi * 3000 * t32)).astype(np.float32)
    alias = (0.3 * np.sin(2 * np.pi * 11000 * t32)).astype(np.float32)  # above 8 kHz: must vanish
    y = np.asarray(resample_fft(jnp.asarray((tones + alias)[None]), 32000, 16000))[0]
    t16 = np.arange(16000) / 16000
    want = 0.5 * np.sin(2 * np.pi * 440 * t16) + 0.2 * np.sin(2 * np.pi * 3000 * t16)
    assert y.shape == (16000,)
    np.testing.assert_allclose(y, want, atol=2e-5)
    noise = np.random.default_rng(0).standard_normal((2, 32001)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(resample_fft(jnp.asarray(noise), 32000, 16000)),
                               scipy.signal.resample(noise, 16000, axis=-1), atol=2e-4)


def test_configs_switch_to_the_official_ast_recipes():
    from test_train import load_config
    from htsat_jax.training import train
    from htsat_jax.models.ast import ASTConfig

    a = load_config("audioset", "model=ast")
    assert a.optim.name == "adam_l2" and a.optim.base_lr == 1e-5 and a.batch_size == 12 and a.num_epochs == 5
    assert a.optim.warmup_steps == 1000 and a.optim.decay == 0.5 and a.mixup_alpha == 10.0 and a.mixup_prob == 0.5
    assert tuple(a.test_time_shifts) == (0,)
    cfg = train.model_config(a, num_classes=527)
    assert isinstance(cfg, ASTConfig) and cfg.input_tdim == 1024 and (cfg.fstride, cfg.tstride) == (10, 10)
    assert cfg.sample_rate == 16000 and a.clip_seconds == 10.0  # the data side resamples the 32 kHz build
    e = train.model_config(load_config("esc50", "model=ast"), num_classes=50)
    assert e.loss_type == "clip_ce" and e.input_tdim == 512 and (e.freqm, e.timem) == (24, 96)
    assert (e.norm_mean, e.norm_std) == (-6.6268077, 5.358466)
    s = load_config("speechcommands", "model=ast")
    assert s.mixup_prob == 0.6 and s.optim.base_lr == 2.5e-4
    assert train.model_config(s, num_classes=35).sample_rate == 16000
    with pytest.raises(ValueError, match="no config vit/audioset.py"):
        load_config("audioset", "model=vit")


@pytest.mark.integration
def test_trainer_trains_a_tiny_ast_and_exports_a_model_the_tagger_loads(synthetic_tiny_dir, tmp_path):
    import json
    import os

    from test_train import tiny_synthetic_config

    from configs import common
    from htsat_jax import AudioTagger
    from htsat_jax.models import ast
    from htsat_jax.training import averaging, train
    c = tiny_synthetic_config(synthetic_tiny_dir, total_steps=8, log_every_steps=1, event_eval=False,
                              event_threshold_grid=(), event_clip_gate=None)
    num_classes = c.model.num_classes
    recipe = common.load("ast/audioset.py", "variant=tiny")  # the synthetic scenes are stored at 32 kHz
    c.model_name, c.model, c.optim = "ast", recipe.model, recipe.optim
    c.model.num_classes = num_classes
    c.model.input_tdim = 256  # 2.6 s of each scene: the loop is under test, compile less
    c.mixup, c.mixup_alpha, c.mixup_prob = True, recipe.mixup_alpha, recipe.mixup_prob
    c.update(dict(batch_size=8, total_steps=8, num_epochs=8, log_every_steps=1, eval_every_steps=1000))
    c.optim.update(dict(base_lr=1e-3, warmup_steps=0))
    workdir = str(tmp_path / "ast_run")
    results = train.train_and_evaluate(c, workdir)
    assert results["step"] == 8 and np.isfinite(results["test"]["mAP"])
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.05, losses
    tagger = AudioTagger.from_checkpoint(os.path.join(workdir, "model"))
    # Trained on 32 kHz data, the model is still a 16 kHz model: user audio is resampled once, to 16 kHz.
    assert tagger.module.NAME == "ast" and tagger.sample_rate == 16000 and tagger.class_names[0] == "pure_tone"
    meta = json.load(open(os.path.join(workdir, "model", "config.json")))
    assert meta["model"]["model_name"] == "ast" and "input_sample_rate" not in meta["model"]
    clip = np.random.default_rng(0).standard_normal(22050 * 2).astype(np.float32) * 0.1
    out = tagger(clip, 22050)
    assert out["clipwise_output"].shape == (1, num_classes)
    with pytest.raises(NotImplementedError, match="frame-wise"):
        tagger.events(clip, 22050)
    cfg, trained, _ = train.read_model(os.path.join(workdir, "model"))  # mode=evaluate reads it back
    assert cfg.input_tdim == 256 and cfg.embed_dim == ast.TINY["embed_dim"]

    # Averaging an AST work directory (its best/ checkpoints) gives a loadable AST model directory.
    members = averaging.list_members(workdir)
    assert members and all(m.kind == "best_step" for m in members)
    avg = averaging.average_weights([m.load()[2] for m in members])
    out_dir = str(tmp_path / "ast_avg")
    from htsat_jax import checkpoint
    checkpoint.save_weights(out_dir, members[0].load()[1], avg)
    assert AudioTagger.from_checkpoint(out_dir).module.NAME == "ast"

    # Fine-tuning from the model dir: same geometry -> every tensor; shorter input and other classes
    # (the AudioSet -> ESC-50 case) -> the official adaptation: blocks copied, position embedding cut
    # to the new grid, a fresh head.
    c.init_from = os.path.join(workdir, "model")
    same, summary = train.initial_weights(c, cfg)
    assert "0 left at their initial values" in summary
    np.testing.assert_array_equal(same["pos_embed"], np.asarray(trained["pos_embed"]))
    c.model.update(dict(input_tdim=128, num_classes=5))
    short_cfg = train.model_config(c)
    adapted, summary = train.initial_weights(c, short_cfg)
    assert "adapted" in summary and adapted["pos_embed"].shape == (1, short_cfg.num_tokens, cfg.embed_dim)
    np.testing.assert_array_equal(adapted["blocks"][0]["attn"]["qkv"]["kernel"],
                                  np.asarray(trained["blocks"][0]["attn"]["qkv"]["kernel"]))
    grid = np.asarray(trained["pos_embed"])[0, 2:].reshape(cfg.f_dim, cfg.t_dim, -1)
    start = cfg.t_dim // 2 - short_cfg.t_dim // 2  # official: int(src / 2) - int(new / 2)
    np.testing.assert_array_equal(adapted["pos_embed"][0, 2:].reshape(short_cfg.f_dim, short_cfg.t_dim, -1),
                                  grid[:, start:start + short_cfg.t_dim])
    assert adapted["head"]["kernel"].shape[-1] == 5
