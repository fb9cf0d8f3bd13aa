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


def test_readme_error_examples_are_what_the_command_prints(capsys):
    """Each ``$ ufm ...`` line of a README console block followed by an error line prints that line
    (up to the machine-dependent memory figures) and exits 2, before any work."""
    import re
    import shlex

    from ufm.app.cli import main

    text = (ROOT / "README.md").read_text()
    pairs = re.findall(r"^\$ ufm (.*)\n(ufm .*: error: .*)$", text, re.M)
    assert pairs
    for command, shown in pairs:
        assert main(shlex.split(command), validate_only=True) == 2
        printed = capsys.readouterr().err.strip()
        assert printed.split(" more than ")[0] == shown.split(" more than ")[0]
