"""The front ends: the ``ufm`` command (``cli``, ``cli_values``), figures (``plots``), the interactive
explorer (``explore``) and the progress bar (``progress``).

They only arrange calls to the layers below (``ufm`` model, ``solvers``, ``theory_checks``) and show
what comes back; nothing below imports them (tests/test_layering.py).
"""
