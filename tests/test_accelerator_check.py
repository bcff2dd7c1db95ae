"""tools/accelerator_check.sh: it refuses a CPU backend, and its tiny CPU rehearsal (ALLOW_CPU=1 QUICK=1)
runs every stage and ends in one table with a row per measurement. The rehearsal's stage caps are
generous (600 s each): on a busy 2-core CI machine it checks the tools, not their speed."""

import os
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "tools" / "accelerator_check.sh"


def _env(**extra: str) -> dict[str, str]:
    # No simulated 8-device host (conftest's XLA_FLAGS): the tools split each batch over every device.
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "ALLOW_CPU", "QUICK", "OUT_DIR", "BUDGET_S", "MAX_BATCH")}
    return {**env, "JAX_PLATFORMS": "cpu", "PY": sys.executable, **extra}


def _table(stdout: str) -> list[list[str]]:
    """The final table's rows as cells: measurement, model, batch, dtype, clips/s, ms, peak GiB, notes."""
    lines = stdout[stdout.index("== results"):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("measurement "))
    assert set(lines[start + 1]) <= {"-", "+"}, lines[start + 1]
    rows = []
    for line in lines[start + 2:]:
        if " | " not in line:
            break
        rows.append([cell.strip() for cell in line.split(" | ")])
    return rows


def test_refuses_a_cpu_backend():
    proc = subprocess.run(["bash", str(SCRIPT)], env=_env(), capture_output=True, text=True, timeout=120,
                          cwd="/")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "no GPU or TPU" in lines[0] and "ALLOW_CPU=1" in lines[0]


@pytest.mark.integration
def test_quick_cpu_rehearsal_reports_every_stage(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT)], env=_env(ALLOW_CPU="1", QUICK="1", OUT_DIR=str(out)),
                          capture_output=True, text=True, timeout=1600, cwd="/")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "devices: [CpuDevice" in proc.stdout
    assert f"raw outputs: {out}" in proc.stdout

    rows = _table(proc.stdout)
    assert all(len(row) == 8 for row in rows), rows
    kinds = {(row[0], row[1].split("-")[0], row[3]) for row in rows}
    # QUICK runs one dtype per stage (train bfloat16; forward and compare float32): each code path once.
    for expected in [("train step", "htsat", "bfloat16"), ("forward", "htsat", "float32"),
                     ("compare forward", "htsat", "float32"), ("compare train step", "htsat", "float32"),
                     ("compare forward", "ast", "float32"), ("compare train step", "ast", "float32")]:
        assert expected in kinds, (expected, rows)
    assert any(row[0] == "input pipeline" for row in rows), rows
    for row in rows:
        assert int(row[2]) > 0, row
        assert float(row[4]) > 0 and float(row[5]) > 0, row  # clips/s, ms per step / batch
        if row[6] != "-":
            assert float(row[6].removeprefix("<=")) > 0, row
    input_row = next(row for row in rows if row[0] == "input pipeline")
    assert "accelerators at bfloat16 batch 2" in input_row[7], input_row  # the ratio to the measured train step

    printed_table = proc.stdout[proc.stdout.index("== results"):].split("\n", 1)[1]
    assert (out / "table.txt").read_text() in printed_table
    assert (out / "results.jsonl").stat().st_size > 0
    for stage in ("train", "forward", "compare", "input"):
        assert (pathlib.Path(out) / f"{stage}.log").exists()
