"""Acceptance: the documented Speech Commands command trains on the FSDD recordings (real speech,
8 kHz, laid out as Speech Commands V2) prepared by our builder, and learns well above chance."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, SHARED, one_device_env, require


@pytest.mark.acceptance
def test_speechcommands_tiny_learns_fsdd_digits(tmp_path):
    import tfds_builders

    raw = require(SHARED / "data" / "fsdd_speechcommands_subset")
    data_dir = str(tmp_path / "data")
    tfds_builders.build("speech_commands", data_dir=data_dir, manual_dir=str(raw))
    workdir = tmp_path / "run"
    env = one_device_env()  # one CPU device, as a user runs it
    cmd = [sys.executable, "-m", "htsat_jax.main", "--config", "configs/speechcommands.py:variant=tiny",
           f"--config.data_dir={data_dir}", "--workdir", str(workdir),
           "--config.num_epochs=5", "--config.eval_every_steps=1000", "--config.progress_bar=False"]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads((workdir / "eval_results.json").read_text())
    test = results["test"]
    assert test["num_examples"] == 100  # testing_list.txt
    # Ten digit words are present (of the 35 classes): chance is 10 %. Measured: 0.77 here.
    assert test["accuracy"] >= 0.4, test
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses[-1] < 0.6 * losses[0], losses
