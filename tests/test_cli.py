"""The ``ufm`` command: contract fields of CLI.md and one-line errors."""

import json
import subprocess
import sys

import pytest

from ufm.cli import main


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_batches_check_counterexample(capsys, tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps([list(range(0, 8)), list(range(8, 16))]))
    out = run_json(capsys, ["batches", "check", "--counts", "4,4,4,4", "--batches-file", str(path), "--json"])
    assert out["neural_collapse"] is True and out["orthogonal_frame"] is False
    assert [0, 3] in out["violations"]["unmet_pairs"]


def test_batches_check_binding(capsys):
    out = run_json(capsys, ["batches", "check", "--classes", "4", "--n-max", "6", "--batching", "binding",
                            "--batch-size", "8", "--json"])
    assert out["orthogonal_frame"] is True and out["violations"]["unmet_pairs"] == []


def test_batches_check_table(capsys):
    assert main(["batches", "check", "--counts", "4,4,4", "--batching", "random", "--batch-size", "2"]) == 0
    text = capsys.readouterr().out
    assert "orthogonal frame guaranteed (ReLU): no" in text


@pytest.mark.parametrize("argv,match", [
    (["--counts", "4,1"], "no positive pair"),
    (["--counts", "4,4", "--tau", "0"], "tau"),
    (["--counts", "4,4,x"], "comma-separated"),
    (["--counts", "4,4,4", "--relu", "--dim", "2"], "dim >= k"),
    (["--counts", "4,4", "--batching", "random"], "--batch-size"),
    (["--counts", "4,4", "--batches-file", "/nonexistent.json"], "does not exist"),
])
def test_bad_input_one_line(capsys, argv, match):
    assert main(["batches", "check", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ufm: error:") and match in err and "\n" not in err


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "ufm", "batches", "check", "--counts", "3,1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("ufm: error:")
