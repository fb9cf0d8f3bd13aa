"""``python -m ufm`` runs the ``ufm`` command."""

from ufm.cli import main

raise SystemExit(main())
