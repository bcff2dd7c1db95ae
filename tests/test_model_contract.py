"""The model contract: a third model from the test directory alone goes through the trainer, the
tagger, predict and averaging; and nothing outside a model's own module branches on the model."""

import importlib.util
import json
import os
import pathlib
import re

import numpy as np
import pytest
import soundfile as sf

import tiny_cnn
from htsat_jax import models

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def registered():
    models.register(tiny_cnn.NAME, tiny_cnn)
    return tiny_cnn.NAME


def test_registry_resolves_builtin_registered_and_legacy_names(registered):
    assert {"htsat", "ast", "tiny_cnn"} <= set(models.names())
    assert models.get("htsat").NAME == "htsat" and models.get("tiny_cnn") is tiny_cnn
    # Model directories written before model_name was stored: no name -> HTS-AT, an AST's model_type.
    assert models.stored_name({"embed_dim": 96}) == "htsat"
    assert models.stored_name({"model_type": "ast"}) == "ast"
    assert models.stored_name({"model_name": "tiny_cnn", "width": 4}) == "tiny_cnn"
    with pytest.raises(models.UnknownModelError, match="unknown model 'nope'"):
        models.get("nope")


@pytest.mark.integration
def test_a_third_model_trains_exports_tags_files_and_averages(registered, synthetic_tiny_dir, tmp_path):
    from configs import common
    from test_train import tiny_synthetic_config

    from htsat_jax import AudioTagger, checkpoint
    from htsat_jax.inference import predict
    from htsat_jax.training import train

    c = tiny_synthetic_config(synthetic_tiny_dir, total_steps=6, log_every_steps=1, eval_every_steps=3,
                              event_psds_scenarios=())
    c.model_name = registered
    c.model = common.model(registered, "tiny", num_classes=10)
    c.keep_best = 2
    workdir = str(tmp_path / "cnn_run")
    results = train.train_and_evaluate(c, workdir)
    assert results["step"] == 6 and np.isfinite(results["test"]["mAP"]) and "event_f1" in results["test"]
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0], losses

    # The exported model directory says which model it holds; AudioTagger and predict use it.
    model_dir = os.path.join(workdir, "model")
    meta = json.load(open(os.path.join(model_dir, "config.json")))
    assert meta["model"]["model_name"] == "tiny_cnn" and meta["model"]["width"] == 16
    tagger = AudioTagger.from_checkpoint(model_dir)
    assert tagger.module is tiny_cnn and tagger.class_names[0] == "pure_tone"
    rate = 16000
    t = np.arange(int(12.5 * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 600 * t) * (t > 4.0)).astype(np.float32)
    sf.write(tmp_path / "tone.wav", wave, rate)
    report = predict.run(model_dir, [str(tmp_path / "tone.wav")], progress=False, verbose=False)
    rec = report["files"][0]
    assert rec["windows"]["count"] == 2 and len(rec["tags"]) == 5
    assert "resampled 16000 Hz -> 32000 Hz" in rec["notes"]
    analysis = tagger.analyse(wave, rate)
    assert analysis.seconds_per_frame == 0.25 and analysis.framewise.shape == (50, 10)  # 12.5 s on a 0.25 s grid
    emb = tagger.embed(wave, rate)
    assert emb["clip"].shape == (16,) and emb["frames"].shape[1] == 16
    # Equal windows are equal objects: analyse and embed reuse one compiled window program.
    assert tagger.windows() == tagger.windows() and len(tagger._window_programs) == 1

    # Averaging its work directory (tools/average_checkpoints.py) gives a model directory of the same model.
    spec = importlib.util.spec_from_file_location("average_checkpoints", REPO / "tools" / "average_checkpoints.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = str(tmp_path / "averaged")
    assert tool.main([out, workdir]) == 0
    averaged = AudioTagger.from_checkpoint(out)
    assert averaged.module is tiny_cnn and averaged(wave, rate)["clipwise_output"].shape == (1, 10)

    # Fine-tuning start from its own directory with another class count: a fresh head, the rest taken.
    c.init_from = model_dir
    c.model.num_classes = 3
    weights, summary = train.initial_weights(c, train.model_config(c))
    assert "2 left at their initial values (head/bias, head/kernel)" in summary
    _, trained, _ = checkpoint.load_weights(model_dir)
    np.testing.assert_array_equal(weights["conv1"]["kernel"], np.asarray(trained["conv1"]["kernel"]))


# Outside a model's own module and its converters, nothing may ask which model it holds.
_BRANCHES = re.compile(r"isinstance\([^)]*\b(HTSAT|AST|HTSATConfig|ASTConfig)\b|\bis_ast\b|"
                       r"\bmodel_(type|name)\s*[!=]=\s*['\"]|['\"](ast|htsat)['\"]\s*[!=]=|[!=]=\s*['\"](ast|htsat)['\"]|"
                       r"\bin\s*\(\s*['\"](ast|htsat)['\"]")
_MODEL_OWNED = ("htsat_jax/models/htsat.py", "htsat_jax/models/htsat_windows.py", "htsat_jax/models/ast.py",
                "htsat_jax/models/yamnet.py", "htsat_jax/models/yamnet_frontend.py", "htsat_jax/models/lean.py",
                "htsat_jax/models/swin.py", "htsat_jax/models/frontend.py", "htsat_jax/models/kaldi_fbank.py")


def test_nothing_outside_the_models_branches_on_the_model():
    offenders = []
    for folder in ("htsat_jax", "configs", "tools"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel in _MODEL_OWNED or rel.startswith("htsat_jax/convert/"):
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if _BRANCHES.search(line):
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "model branches outside the model modules:\n" + "\n".join(offenders)
