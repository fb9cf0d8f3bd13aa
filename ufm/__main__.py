"""``python -m ufm`` runs the ``ufm`` command."""

from ufm.app.cli import main

raise SystemExit(main())
