"""Shared command-line handling of the example scripts: ``--out-dir`` and ``--quick``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out-dir", default="figures", help="where the PNG, PDF and JSON go (default figures/)")
    parser.add_argument("--quick", action="store_true", help="fewer points (a smoke run)")
    return parser.parse_args()


def write(fig, data: dict, out_dir: str, name: str) -> None:
    """Save the figure as PNG and PDF and the numbers behind it as JSON."""
    from ufm.app import plots
    from ufm.app.cli import to_jsonable

    out = Path(out_dir)
    for suffix in (".png", ".pdf"):
        plots.save(fig, out / f"{name}{suffix}")
    (out / f"{name}.json").write_text(json.dumps(to_jsonable(data), indent=2))
    print(f"wrote {out / name}.png, .pdf and .json")
