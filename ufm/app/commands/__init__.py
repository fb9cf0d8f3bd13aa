"""The command's verbs, one module each (docs/cli.md). Each has ``add_parser(subparsers)`` (its options)
and its ``cmd_*`` handler.

Each command checks everything first (values, combinations, memory, output paths) and returns 0
right there when ``args.validate_only`` (``main(..., validate_only=True)``: what the fuzz tests and a
script's pre-flight use); only then does it compute.
"""
