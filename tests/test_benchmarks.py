"""The benchmark harness's bookkeeping (no timings are asserted anywhere)."""

import json
from pathlib import Path

from benchmarks.run import END, START, markdown, update_readme

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_is_the_harness_output_for_the_stored_results():
    md = markdown(json.loads((ROOT / "benchmarks" / "results.json").read_text()))
    readme = (ROOT / "README.md").read_text()
    block = readme.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == md.strip()


def test_update_readme_replaces_only_the_marked_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold table\n{END}\noutro\n")
    assert update_readme("| new | table |", readme)
    assert readme.read_text() == f"intro\n{START}\n| new | table |\n{END}\noutro\n"
    plain = tmp_path / "plain.md"
    plain.write_text("no markers")
    assert not update_readme("x", plain) and plain.read_text() == "no markers"
