"""The README's quick-start test command is exactly what CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci_lines[ci_lines.index("# README test command:") + 1].strip()
    assert f"\n{command}\n" in (ROOT / "README.md").read_text()


def test_readme_python_examples_run():
    """The README's Python blocks run as written (a researcher copies them first)."""
    import re

    from theory_checks.catalogue import CATALOGUE

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    saved = list(CATALOGUE)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        CATALOGUE[:] = saved   # the example appends a check; later tests see the shipped catalogue
