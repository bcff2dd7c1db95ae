"""Weight averaging (tools/average_checkpoints.py) and prediction ensembles (tools/evaluate_ensemble.py)."""

import importlib.util
import json
import os

import jax
import numpy as np
from flax import traverse_util
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from htsat_jax.training import averaging
from htsat_jax import checkpoint as ckpt_lib
from htsat_jax.models.htsat import TINY, HTSAT, HTSATConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = HTSATConfig(num_classes=5, **TINY)


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_model(config: HTSATConfig, seed: int) -> HTSAT:
    """A model with random weights and random (non-default) BatchNorm statistics."""
    model = ckpt_lib.build_model(config, seed=seed)
    rng = np.random.default_rng(seed)
    model.bn0.mean[...] = rng.normal(size=model.bn0.mean.shape).astype(np.float32)
    model.bn0.var[...] = rng.uniform(0.5, 2.0, size=model.bn0.var.shape).astype(np.float32)
    return model


def pure(model) -> dict:
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))


@pytest.fixture(scope="module")
def two_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("avg_inputs")
    dirs = []
    for seed in (1, 2):
        path = str(root / f"m{seed}")
        ckpt_lib.save_model(path, random_model(CFG, seed), class_names=[f"c{i}" for i in range(5)])
        dirs.append(path)
    return dirs


def test_average_of_two_model_dirs_is_the_elementwise_mean(two_dirs, tmp_path):
    out = str(tmp_path / "avg")
    assert load_tool("average_checkpoints").main([out, *two_dirs]) == 0
    config, got, meta = ckpt_lib.load_weights(out)
    assert config == CFG
    assert meta["class_names"] == [f"c{i}" for i in range(5)]
    assert meta["averaged_from"] == [os.path.abspath(d) for d in two_dirs]
    a, b = (ckpt_lib.load_weights(d)[1] for d in two_dirs)
    flat_a, flat_b = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
    flat_got = traverse_util.flatten_dict(ckpt_lib.normalise_keys(got))
    assert set(flat_got) == set(flat_a)
    for k, v in flat_got.items():
        mean = ((np.asarray(flat_a[k], np.float64) + np.asarray(flat_b[k], np.float64)) / 2).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(v), mean, err_msg="/".join(map(str, k)))
    assert not np.allclose(flat_a[("bn0", "mean")], flat_b[("bn0", "mean")])  # the BN stats really differ
    np.testing.assert_array_equal(np.asarray(got["bn0"]["var"]),
                                  ((np.asarray(a["bn0"]["var"], np.float64) + b["bn0"]["var"]) / 2).astype(np.float32))
    # An occupied output directory is refused before anything is read.
    assert load_tool("average_checkpoints").main([out, *two_dirs]) == 2


def test_averaging_a_model_with_itself_is_identity(two_dirs):
    w = pure(random_model(CFG, 3))
    avg = averaging.average_weights([w, w, w])
    for (k, x), (_, y) in zip(sorted(traverse_util.flatten_dict(w).items(), key=str),
                              sorted(traverse_util.flatten_dict(avg).items(), key=str)):
        assert y.dtype == x.dtype
        np.testing.assert_array_equal(x, y, err_msg=str(k))
    loaded = averaging.weights_from_source(two_dirs[0])
    assert [(n, c) for n, c, _, _ in loaded] == [(os.path.abspath(two_dirs[0]), CFG)]


def test_mismatched_configs_name_the_field_and_input(two_dirs, tmp_path, capsys):
    other_cfg = HTSATConfig(num_classes=5, **{**TINY, "drop_path_rate": 0.3})
    other = str(tmp_path / "other")
    ckpt_lib.save_model(other, random_model(other_cfg, 4))
    assert load_tool("average_checkpoints").main([str(tmp_path / "out"), two_dirs[0], other]) == 2
    err = capsys.readouterr().err
    assert "drop_path_rate: 0.1 vs 0.3" in err and other in err
    assert not os.path.exists(tmp_path / "out" / "config.json")
    with pytest.raises(averaging.SourceError, match=r"frontend\.sample_rate"):
        import dataclasses
        cfg2 = dataclasses.replace(CFG, frontend=dataclasses.replace(CFG.frontend, sample_rate=16000))
        averaging.check_same_config(("a", CFG), ("b", cfg2))
    with pytest.raises(averaging.SourceError, match="tscam_conv"):
        averaging.average_weights([pure(random_model(CFG, 1)),
                                   pure(random_model(HTSATConfig(num_classes=7, **TINY), 1))])


def test_ensemble_predictions_average_and_reject_misaligned_rows():
    rng = np.random.default_rng(0)
    target = (rng.uniform(size=(6, 4)) > 0.5).astype(np.float32)
    preds = [{"clipwise": rng.uniform(size=(6, 4)).astype(np.float32),
              "frames": rng.uniform(size=(6, 3, 4)).astype(np.float32), "target": target} for _ in range(3)]
    out = averaging.ensemble_predictions(preds)
    np.testing.assert_allclose(out["clipwise"], np.mean([p["clipwise"] for p in preds], 0), rtol=1e-6)
    np.testing.assert_allclose(out["frames"], np.mean([p["frames"] for p in preds], 0), rtol=1e-6)
    np.testing.assert_array_equal(out["target"], target)
    assert out["clipwise"].dtype == np.float32
    shuffled = dict(preds[1], target=target[::-1])
    with pytest.raises(averaging.SourceError, match="'target'"):
        averaging.ensemble_predictions([preds[0], shuffled])
    with pytest.raises(averaging.SourceError, match="shape"):
        averaging.ensemble_predictions([preds[0], dict(preds[1], clipwise=preds[1]["clipwise"][:5])])
    with pytest.raises(averaging.SourceError):
        averaging.ensemble_predictions([preds[0], {k: v for k, v in preds[1].items() if k != "frames"}])


def test_workdir_best_steps_and_top_k(tmp_path):
    """A trainer-style best/ manager (train.py best_mngr): --top 2 averages the 2 best by mAP."""
    workdir = tmp_path / "run"
    models = {step: random_model(CFG, step) for step in (10, 20, 30)}
    metric = {10: 0.30, 20: 0.90, 30: 0.50}
    os.makedirs(workdir)
    with open(workdir / "config.json", "w") as f:
        json.dump({"best_metric": "mAP"}, f)
    ckpt_lib.save_model(str(workdir / "model"), models[20], class_names=list("abcde"))
    mngr = ocp.CheckpointManager(
        str(workdir / "best"), options=ocp.CheckpointManagerOptions(
            max_to_keep=5, create=True, best_fn=lambda m: m["mAP"], best_mode="max",
            keep_checkpoints_without_metrics=False, enable_async_checkpointing=False))
    for step, model in models.items():
        _, params, rest = nnx.split(model, nnx.Param, ...)
        mngr.save(step, args=ocp.args.StandardSave({"params": params, "rest": rest}), metrics={"mAP": metric[step]})
    mngr.close()

    members = averaging.list_members(str(workdir), top=2)
    assert [os.path.basename(m.name) for m in members] == ["20", "30"]
    assert members[0].metrics == {"mAP": 0.9}
    all_steps = averaging.weights_from_source(str(workdir))
    assert [os.path.basename(n) for n, *_ in all_steps] == ["10", "20", "30"]
    for (_, config, weights, names), step in zip(all_steps, (10, 20, 30)):
        assert config == CFG and names == list("abcde")
        for k, v in traverse_util.flatten_dict(pure(models[step])).items():
            np.testing.assert_array_equal(traverse_util.flatten_dict(weights)[k], v)

    out = str(tmp_path / "avg")
    assert load_tool("average_checkpoints").main([out, str(workdir), "--top", "2"]) == 0
    # Without the exported model/ (a run still going), the architecture comes from the experiment
    # config (its model_name and model fields, the class count it states).
    import shutil
    from configs import common
    shutil.rmtree(workdir / "model")
    experiment = common.load("demo.py")
    experiment.model.num_classes = 5
    with open(workdir / "config.json", "w") as f:
        f.write(experiment.to_json_best_effort(indent=2))
    (_, config, _, names), = averaging.weights_from_source(str(workdir / "best"), top=1)
    assert config == CFG and names is None
    _, got, meta = ckpt_lib.load_weights(out)
    assert [os.path.basename(p) for p in meta["averaged_from"]] == ["20", "30"]
    expected = averaging.average_weights([pure(models[20]), pure(models[30])])
    np.testing.assert_array_equal(np.asarray(got["bn0"]["mean"]), expected["bn0"]["mean"])
    np.testing.assert_array_equal(np.asarray(got["tscam_conv"]["kernel"]), expected["tscam_conv"]["kernel"])


@pytest.mark.integration
def test_evaluate_ensemble_end_to_end(synthetic_tiny_dir, tmp_path):
    from htsat_jax.data import experiment
    from htsat_jax.evaluation import evaluator
    from htsat_jax.training import sharding
    from htsat_jax.training import train

    cfg = HTSATConfig(num_classes=10, **{**TINY, "depths": (1, 1, 1, 1)})
    model_dirs = []
    for seed in (1, 2):
        path = str(tmp_path / f"model{seed}")
        ckpt_lib.save_model(path, random_model(cfg, seed))
        model_dirs.append(path)
    out = str(tmp_path / "ensemble")
    tool = load_tool("evaluate_ensemble")
    rest = tool.parse_flags([
        "evaluate_ensemble", "--config", os.path.join(REPO, "configs", "demo.py"), "--workdir", out,
        "--models", *model_dirs, f"--config.data_dir={synthetic_tiny_dir}", "--config.builder_config=tiny",
        "--config.prepare_synthetic_data=False", "--config.eval_batch_size=8", "--config.model.depths=(1,1,1,1)"])
    results = tool.main(rest)
    saved = json.load(open(os.path.join(out, "eval_results.json")))
    assert saved == json.loads(json.dumps(results))
    assert [m["source"] for m in saved["models"]] == model_dirs
    assert saved["ensemble"]["num_models"] == 2 and saved["ensemble"]["test"]["num_examples"] == 8
    assert "event_f1" in saved["ensemble"]["test"] and "event_threshold" in saved["ensemble"]

    # Independently: each model's test predictions, their mean, score() -> the reported numbers.
    config = tool._CONFIG.value
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    _, spec = experiment.open_split(config, "test")
    settings = evaluator.make_settings(config, cfg, spec, None)
    preds = []
    for path in model_dirs:
        _, weights, _ = train.read_model(path)
        graphdef, state, sh = train.create_train_state(cfg, optax.identity(), mesh, seed=0, init_weights=weights)
        batch = sharding.batch_sharding(mesh)
        predict = jax.jit(evaluator.make_predict_fn(graphdef, data_rate=32000, model_rate=32000, frame_outputs=True),
                          in_shardings=(sh.params, sh.rest, batch, batch), out_shardings=sharding.replicated(mesh))
        preds.append(evaluator.collect_predictions(lambda w, n: predict(state.params, state.rest, w, n),
                                                   experiment.make_eval_data(config, "test", max_events=config.eval_max_events), mesh))
    for entry, p in zip(saved["models"], preds):
        assert entry["test"]["mAP"] == pytest.approx(evaluator.score(p, settings)["mAP"], abs=1e-12)
    mean = {**preds[0], "clipwise": ((preds[0]["clipwise"].astype(np.float64) + preds[1]["clipwise"]) / 2
                                     ).astype(np.float32)}
    assert saved["ensemble"]["test"]["mAP"] == pytest.approx(evaluator.score(mean, settings)["mAP"], abs=1e-12)
