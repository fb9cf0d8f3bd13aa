"""The ``ufm`` console command's entry point (``[project.scripts]``, ``python -m ufm``).

It routes Ctrl-C and SIGTERM to :mod:`ufm.app.signals` before anything else is imported: the signal
mask is inherited by the threads made later, and NumPy's import already starts BLAS threads, which
would otherwise take the signal. Then it runs :func:`ufm.app.cli.run`.
"""

from __future__ import annotations


def run() -> None:
    """Install the signal routing, then run the command on ``sys.argv``."""
    from ufm.app import signals

    signals.install()
    from ufm.app.cli import run as run_command

    run_command()
