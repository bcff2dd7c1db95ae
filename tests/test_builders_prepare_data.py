"""tools/prepare_data.py end to end (in-process main() and as a script)."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import fake_raw

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "tools" / "prepare_data.py"


def _load_cli():
    spec = importlib.util.spec_from_file_location("prepare_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_desed_prints_summary(tmp_path, capsys):
    raw, out = tmp_path / "DESED", tmp_path / "out"
    fake_raw.make_desed(raw)
    code = _load_cli().main(["desed", "--manual_dir", str(raw), "--data_dir", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    dataset_dir = out / "desed" / "1.0.0"
    lines = {line.split()[0]: line for line in stdout.splitlines() if line.startswith("  ")}
    for split, n_examples, n_skipped in (("weak", 2, 2), ("validation", 2, 0), ("eval", 1, 2)):
        report = dataset_dir / f"skipped_{split}.json"
        assert f"{n_examples} examples" in " ".join(lines[split].split())
        assert f"{n_skipped} skipped" in " ".join(lines[split].split())
        assert str(report) in lines[split]
        assert json.loads(report.read_text())["num_skipped"] == n_skipped
    assert "synthetic_train" in lines and "not written" in lines["synthetic_train"]
    total = sum(f.stat().st_size for f in dataset_dir.iterdir() if f.is_file())
    assert f"({total} B;" in lines["bytes"]


def test_prepare_twice_reuses_the_dataset(tmp_path, capsys):
    raw, out = tmp_path / "DESED", tmp_path / "out"
    fake_raw.make_desed(raw)
    cli = _load_cli()
    assert cli.main(["desed", "--manual_dir", str(raw), "--data_dir", str(out)]) == 0
    first = capsys.readouterr().out
    assert "downloaded and prepared" in first  # TFDS's own line: it did build
    assert cli.main(["desed", "--manual_dir", str(raw), "--data_dir", str(out)]) == 0
    second = capsys.readouterr().out
    assert "downloaded and prepared" not in second  # reused, not rebuilt
    assert second.strip() == first[first.index("desed 1.0.0 ->"):].strip()  # same summary
    assert cli.main(["desed", "--manual_dir", str(raw), "--data_dir", str(out), "--overwrite"]) == 0
    assert "downloaded and prepared" in capsys.readouterr().out  # rebuilt


def test_layout_error_exits_2_and_names_the_file(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "stray.txt").write_text("x")
    code = _load_cli().main(["audioset", "--manual_dir", str(tmp_path / "raw"), "--data_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing AudioSet class list" in err and "class_labels_indices.csv" in err


def test_script_missing_folder_exits_2(tmp_path):
    missing = tmp_path / "no_such_raw"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "esc50", "--manual_dir", str(missing), "--data_dir", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    assert f"raw folder {missing} does not exist" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_manual_dir_required_for_audioset(tmp_path, capsys):
    assert _load_cli().main(["audioset", "--data_dir", str(tmp_path / "out")]) == 2
    assert "pass --manual_dir" in capsys.readouterr().err
