"""The trainer: schedule, losses, sharded steps (8 devices == 1 device, FSDP), the full loop with
checkpoints, evaluation files and fine-tuning initialisation."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from htsat_jax import checkpoint as ckpt_lib
from htsat_jax.models import base
from htsat_jax.training import optim
from htsat_jax.training import sharding
from htsat_jax.training import train
from htsat_jax.models import htsat
from htsat_jax.models.htsat import HTSATConfig, TINY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str = "") -> ml_collections.ConfigDict:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg or None)


def tiny_synthetic_config(data_dir: str, **overrides) -> ml_collections.ConfigDict:
    c = load_config("demo")
    c.data_dir = data_dir
    c.builder_config = "tiny"
    c.prepare_synthetic_data = False
    c.batch_size = 8
    c.eval_batch_size = 8
    c.total_steps = 4
    c.eval_every_steps = 1000
    c.checkpoint_every_steps = 2
    c.log_every_steps = 2
    c.plot_events = 0
    c.progress_bar = False
    c.tensorboard = False
    c.async_checkpointing = False
    c.model.depths = (1, 1, 1, 1)  # the loop is under test, not the model: compile less
    for k, v in overrides.items():
        c[k] = v
    return c


# ----------------------------------------------------------------------------- schedule / loss


def test_lr_schedule_is_the_official_epoch_lambda():
    # HTSAT_SPEC §7: 0.02, 0.05, 0.1 warm-up; 0.1 to epoch 10; 0.05 to 20; 0.02 to 30; then 0.03.
    expected = [0.02, 0.05, 0.1] + [0.1] * 8 + [0.05] * 10 + [0.02] * 10 + [0.03] * 5
    got = [optim.official_lr_scale(e, (0.02, 0.05, 0.1), (10, 20, 30)) for e in range(len(expected))]
    np.testing.assert_allclose(got, expected)
    schedule = optim.epoch_lr_schedule(1e-3, steps_per_epoch=7, num_epochs=40,
                                       warmup_factors=(0.02, 0.05, 0.1), step_epochs=(10, 20, 30))
    for step, lr in [(0, 2e-5), (6, 2e-5), (7, 5e-5), (14, 1e-4), (7 * 10, 1e-4), (7 * 11, 5e-5),
                     (7 * 21, 2e-5), (7 * 31, 3e-5), (7 * 1000, 3e-5)]:
        np.testing.assert_allclose(float(schedule(step)), lr, rtol=1e-6, err_msg=f"step {step}")


def test_optimizer_is_adamw_with_global_norm_clipping():
    o = load_config("audioset").optim
    tx, _ = optim.make_optimizer(o, steps_per_epoch=1, num_epochs=1)
    params = {"w": jnp.ones((3,)), "b": jnp.ones(())}
    grads = {"w": jnp.array([30.0, 40.0, 0.0]), "b": jnp.array(0.0)}  # norm 50 -> clipped to 1
    updates, _ = tx.update(grads, tx.init(params), params)
    lr = 1e-3 * 0.02
    # First Adam step with clipped grads g: m/(sqrt(v)+eps) = sign(g) for g != 0; decay 0.05 * lr * p.
    np.testing.assert_allclose(np.asarray(updates["w"]), [-lr - lr * 0.05, -lr - lr * 0.05, -lr * 0.05],
                               rtol=1e-4)
    np.testing.assert_allclose(float(updates["b"]), -lr * 0.05, rtol=1e-4)  # biases decay too


def test_losses_match_torch():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, (4, 6)).astype(np.float32)
    p[0, 0], p[1, 1] = 0.0, 1.0  # torch clamps log at -100
    y = (rng.uniform(size=(4, 6)) > 0.5).astype(np.float32)
    y[0, 0], y[1, 1] = 1.0, 0.0
    ours = train.clip_loss({"clipwise_output": jnp.asarray(p)}, {"target": jnp.asarray(y)}, "clip_bce")
    ref = torch.nn.functional.binary_cross_entropy(torch.tensor(p), torch.tensor(y))
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-5)
    logits = rng.normal(size=(4, 6)).astype(np.float32)
    labels = np.array([0, 5, 2, 2])
    ours = train.clip_loss({"clipwise_output": jnp.asarray(logits)},
                           {"target": jnp.eye(6)[labels], "label": jnp.asarray(labels)}, "clip_ce")
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels))
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-5)


# ----------------------------------------------------------------------------- sharded steps


def _run_steps(mesh, steps=2, batch=8):
    model_cfg = HTSATConfig(num_classes=5, **{**TINY, "depths": (1, 1, 1, 1)})
    tx, schedule = optim.make_optimizer(load_config("audioset").optim, steps_per_epoch=1, num_epochs=4)
    graphdef, state, state_sh = train.create_train_state(model_cfg, tx, mesh, seed=3)
    step_fn = jax.jit(train.make_train_step(graphdef, tx, schedule, loss_type="clip_bce", mixup_alpha=0.5,
                                            data_rate=32000, model_rate=32000),
                      in_shardings=(state_sh, sharding.batch_sharding(mesh), sharding.replicated(mesh)),
                      out_shardings=(state_sh, sharding.replicated(mesh)), donate_argnums=(0,))
    rng = np.random.default_rng(0)
    losses = []
    for i in range(steps):
        local = {"waveform": (rng.standard_normal((batch, 32000)) * 3000).astype(np.int16),
                 "target": (rng.uniform(size=(batch, 5)) > 0.6).astype(np.float32)}
        state, m = step_fn(state, sharding.global_batch(local, mesh), jax.random.key(7))
        losses.append(float(m["loss"]))
    host = jax.tree.map(np.asarray, {"params": state.params, "rest": state.rest})
    return losses, nnx.to_pure_dict(host["params"]), nnx.to_pure_dict(host["rest"]), state


@pytest.mark.integration
def test_data_parallel_and_fsdp_match_one_device():
    assert jax.device_count() == 8
    one = _run_steps(sharding.make_mesh(1, 1, devices=jax.devices()[:1]))
    # data 2 x fsdp 4 shards the batch and the parameters at once; plain 8-way data parallelism (the
    # trainer's default mesh) runs in every other trainer test here. Each mesh compiles its own step
    # (~45 s on the CI machine), so the pure data-parallel mesh is not repeated in this comparison.
    fsdp = _run_steps(sharding.make_mesh(2, 4))
    # FSDP really splits parameters (and their Adam moments) over the fsdp axis.
    specs = [leaf.sharding.spec for leaf in jax.tree.leaves(fsdp[3].params)]
    assert any("fsdp" in tuple(s) for s in specs)
    mu_specs = [leaf.sharding.spec for leaf in jax.tree.leaves(fsdp[3].opt_state)]
    assert any("fsdp" in tuple(s) for s in mu_specs)
    for name, other in (("data 2 x fsdp 4", fsdp),):
        np.testing.assert_allclose(other[0], one[0], rtol=1e-5, err_msg=name)
        for tree_one, tree_other in ((one[1], other[1]), (one[2], other[2])):
            for a, b in zip(jax.tree.leaves(tree_one), jax.tree.leaves(tree_other)):
                np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-6, err_msg=name)
    # bn0 running statistics moved (global-batch BatchNorm under jit = synced BN).
    assert np.abs(one[2]["bn0"]["mean"]).max() > 0.5


def test_mesh_errors_are_clear():
    with pytest.raises(ValueError, match="does not match 8 devices"):
        sharding.make_mesh(3, 1)
    assert sharding.param_spec((384, 128), 4) == jax.sharding.PartitionSpec("fsdp", None)
    assert sharding.param_spec((10,), 4) == jax.sharding.PartitionSpec()


# ----------------------------------------------------------------------------- the whole loop


@pytest.fixture(scope="module")
def four_step_run(synthetic_tiny_dir, tmp_path_factory):
    """An uninterrupted 4-step run: (workdir, results, final state)."""
    config = tiny_synthetic_config(synthetic_tiny_dir, plot_events=1)
    workdir = str(tmp_path_factory.mktemp("four_steps") / "run")
    results, state = train.train_and_evaluate(config, workdir, return_state=True)
    return workdir, results, state


@pytest.mark.integration
def test_training_loop_writes_checkpoints_metrics_and_results(four_step_run):
    workdir, results, state = four_step_run
    assert int(state.step) == 4 and results["step"] == 4 and not results["stopped_early"]
    saved = json.load(open(os.path.join(workdir, "eval_results.json")))
    test = saved["test"]
    assert test["num_examples"] == 8
    assert {"mAP", "mAUC", "d_prime", "event_f1"} <= set(test)
    assert all(np.isfinite(test[k]) for k in ("mAP", "mAUC", "event_f1"))  # d' is inf for a perfect AUC
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [2, 4]
    assert all(r["train/clips_per_second"] > 0 and r["train/learning_rate"] > 0 for r in train_rows)
    assert any("eval/mAP" in r for r in rows)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4"]  # keep_checkpoints=1
    assert os.path.isfile(os.path.join(workdir, "event_map_0.png"))
    # The exported model directory loads into the inference API and gives the trained outputs.
    from htsat_jax import AudioTagger
    tagger = AudioTagger.from_checkpoint(os.path.join(workdir, "model"))
    assert tagger.class_names[0] == "pure_tone"
    _, weights, _ = ckpt_lib.load_weights(os.path.join(workdir, "model"))
    np.testing.assert_array_equal(np.asarray(weights["bn0"]["mean"]), np.asarray(state.rest["bn0"]["mean"][...]))


@pytest.mark.integration
def test_rerun_resumes_and_matches_uninterrupted_run(four_step_run, synthetic_tiny_dir, tmp_path):
    straight = four_step_run[2]
    workdir = str(tmp_path / "resumed")
    first = train.train_and_evaluate(tiny_synthetic_config(synthetic_tiny_dir, total_steps=2, plot_events=1),
                                     workdir, return_state=True)[1]
    assert int(first.step) == 2
    second = train.train_and_evaluate(tiny_synthetic_config(synthetic_tiny_dir, plot_events=1), workdir,
                                      return_state=True)[1]
    assert int(second.step) == 4
    for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(second.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(straight.opt_state), jax.tree.leaves(second.opt_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_init_from_replaces_the_head_when_classes_differ(tmp_path):
    source_cfg = HTSATConfig(num_classes=7, **TINY)
    source = ckpt_lib.build_model(source_cfg, seed=1)
    src = str(tmp_path / "src")
    ckpt_lib.save_model(src, source)
    src_cfg, loaded, _ = train.read_model(src)
    target_cfg = HTSATConfig(num_classes=3, **TINY)
    fresh = nnx.to_pure_dict(nnx.state(ckpt_lib.build_model(target_cfg, seed=2)))
    merged, report = base.init_from_model_dir(src, target_cfg, fresh, arch_fields=htsat.ARCH_FIELDS, head=htsat.HEAD)
    assert report.reinitialised == ["tscam_conv/bias", "tscam_conv/kernel"]
    np.testing.assert_array_equal(merged["tscam_conv"]["kernel"], fresh["tscam_conv"]["kernel"])
    np.testing.assert_array_equal(merged["patch_embed"]["proj"]["kernel"],
                                  np.asarray(loaded["patch_embed"]["proj"]["kernel"]))
    # The model's init_from (what config.init_from calls) does the same.
    via_module, summary = htsat.init_from(src, target_cfg, fresh)
    assert "2 left at their initial values (tscam_conv/bias, tscam_conv/kernel)" in summary
    np.testing.assert_array_equal(via_module["patch_embed"]["proj"]["kernel"], merged["patch_embed"]["proj"]["kernel"])
    # Same class count: everything is taken.
    _, report = base.init_from_model_dir(src, source_cfg, nnx.to_pure_dict(nnx.state(ckpt_lib.build_model(
        source_cfg, seed=2))), arch_fields=htsat.ARCH_FIELDS, head=htsat.HEAD)
    assert not report.reinitialised
    other = HTSATConfig(num_classes=3, **{**TINY, "embed_dim": 32})
    with pytest.raises(ValueError, match="embed_dim: checkpoint 16 vs config 32"):
        htsat.init_from(src, other, fresh)


def test_configs_load_and_follow_the_official_recipe():
    audioset = load_config("audioset")
    assert audioset.batch_size == 128 and audioset.optim.base_lr == 1e-3
    assert audioset.optim.weight_decay == 0.05 and audioset.optim.grad_clip_norm == 1.0
    assert tuple(audioset.optim.warmup_factors) == (0.02, 0.05, 0.1)
    assert audioset.balanced_sampling and audioset.mixup and audioset.model.embed_dim == 96
    assert tuple(audioset.test_time_shifts) == (0, 100, 300, 600, 1000, 1500, 2100, 2800, 3600, 4500)
    esc = load_config("esc50")
    assert esc.model.loss_type == "clip_ce" and tuple(esc.cross_validation_folds) == (1, 2, 3, 4, 5)
    scv2 = load_config("speechcommands", "variant=tiny")
    assert scv2.model.frontend.sample_rate == 16000 and scv2.model.embed_dim == TINY["embed_dim"]
    assert scv2.train_split == "train+validation"
    desed = load_config("desed")
    assert desed.mode == "evaluate" and len(desed.event_class_groups) == 10
    for name in ("audioset", "esc50", "speechcommands", "desed", "demo"):
        for variant in ("base", "tiny"):
            cfg = load_config(name, f"variant={variant}")
            train.model_config(cfg, num_classes=527)  # a valid architecture
    with pytest.raises(ValueError, match="variant must be one of"):
        load_config("audioset", "variant=huge")


def test_one_process_saves_replicated_arrays_without_per_replica_slices(tmp_path):
    # orbax's default cuts every replicated array into one slice per replica (for several hosts to
    # write together), each an eager lax.slice with its own compiled program: 27 s of a 4-step tiny
    # run on 8 CPU devices. One process writes every replica anyway, so the trainer turns it off.
    import orbax.checkpoint as ocp

    mesh = sharding.make_mesh(-1, 1)
    tree = {f"w{i}": jax.device_put(np.arange(8 * (i + 2), dtype=np.float32).reshape(8, i + 2),
                                    sharding.replicated(mesh)) for i in range(4)}
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    ckpt_lib.use_single_writer_when_one_process()
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp_path / "ckpt", tree)
            ckptr.wait_until_finished()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(tmp_path / "ckpt")
    for key, value in tree.items():
        np.testing.assert_array_equal(np.asarray(restored[key]), np.asarray(value))
