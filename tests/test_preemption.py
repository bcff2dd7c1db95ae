"""Acceptance: stop a run with SIGTERM (a preemptible TPU VM) after step N, rerun the same
command, and end with the same parameters as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import jax

from conftest import REPO


def _command(data_dir: str, workdir: str) -> list[str]:
    return [sys.executable, "-m", "htsat_jax.main", "--config", "configs/demo.py", "--workdir", workdir,
            f"--config.data_dir={data_dir}", "--config.builder_config=tiny", "--config.prepare_synthetic_data=False",
            "--config.batch_size=8", "--config.eval_batch_size=8", "--config.total_steps=8",
            "--config.eval_every_steps=1000", "--config.checkpoint_every_steps=2", "--config.log_every_steps=2",
            "--config.plot_events=0", "--config.progress_bar=False", "--config.tensorboard=False",
            "--config.keep_checkpoints=2", "--config.model.depths=(1,1,1,1)"]


def _final_params(workdir: str) -> dict:
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckptr:
        state = ckptr.restore(os.path.join(workdir, "checkpoints", "8", "state"))
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(state["params"])}


def test_sigterm_then_rerun_matches_uninterrupted(synthetic_tiny_dir, tmp_path):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    run = subprocess.run(_command(synthetic_tiny_dir, straight), cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    proc = subprocess.Popen(_command(synthetic_tiny_dir, resumed), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first_ckpt = os.path.join(resumed, "checkpoints", "2")
    deadline = time.time() + 600
    while not os.path.isdir(first_ckpt) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]  # a clean exit, not a traceback
    # Six more steps and the final evaluation remain when the signal lands 20 ms after step 2.
    assert "stopped at step" in err, err[-3000:]
    assert not os.path.exists(os.path.join(resumed, "eval_results.json"))
    rerun = subprocess.run(_command(synthetic_tiny_dir, resumed), cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from" in rerun.stderr
    assert os.path.isfile(os.path.join(resumed, "eval_results.json"))
    a, b = _final_params(straight), _final_params(resumed)
    assert a.keys() == b.keys() and a
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
