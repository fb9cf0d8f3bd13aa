"""The example scripts run and their numbers match docs/theory.md (the long ones are marked slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for suffix in (".png", ".pdf", ".json"):
        assert (tmp_path / f"{name}{suffix}").stat().st_size > 1000
    return json.loads((tmp_path / f"{name}.json").read_text())


def test_every_example_says_what_it_shows():
    for path in EXAMPLES.glob("[!_]*.py"):
        text = path.read_text()
        assert text.startswith('"""') and "What it shows" in text, path.name


def test_prototypes_example_reproduces_theory_values(tmp_path):
    data = run_example("prototypes", tmp_path)
    # docs/theory.md section 5 check values for n_w = 1, 2, 4 (given to 3 decimals)
    assert data["distance_to_etf"] == pytest.approx([0.167, 0.140, 0.111], abs=1.5e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["geometry_vs_imbalance", "batch_binding", "landscape"])
def test_slow_examples_run(name, tmp_path):
    run_example(name, tmp_path)
