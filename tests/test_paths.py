"""Local and bucket paths go through one helper (etils.epath): what can be checked offline."""

import json

from htsat_jax import checkpoint
from htsat_jax.training.metric_writer import MetricWriter
from htsat_jax.utils import paths


def test_remote_paths_are_kept_and_local_ones_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.local_or_remote("gs://bucket/runs/x") == "gs://bucket/runs/x"
    assert paths.join("gs://bucket/runs", "model", "config.json") == "gs://bucket/runs/model/config.json"
    assert paths.is_remote("gs://bucket") and not paths.is_remote("/tmp/x")
    assert paths.local_or_remote("~/runs") == str(tmp_path / "runs")


def test_metric_writer_and_model_config_go_through_epath(tmp_path):
    writer = MetricWriter(str(tmp_path / "w"), tensorboard=False)
    writer.write(1, {"train/loss": 0.5})
    writer.write(2, {"train/loss": 0.25})
    writer.close()
    rows = [json.loads(line) for line in paths.path(tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "train/loss": 0.5}, {"step": 2, "train/loss": 0.25}]
    # A transformers-style folder with its own config.json is not one of our model directories.
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "audio-spectrogram-transformer"}))
    assert not checkpoint.is_model_dir(str(tmp_path / "hf"))
