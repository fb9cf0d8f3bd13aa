"""``python -m ufm``: the ``ufm`` command (:func:`ufm.app.cli.run`)."""

from ufm.app.cli import run

run()
