"""``python -m ufm``: the ``ufm`` command (:func:`ufm.app.console.run`)."""

from ufm.app.console import run

run()
