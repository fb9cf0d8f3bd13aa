"""Shared command-line handling of the example scripts: ``--out-dir`` and ``--quick``."""

from __future__ import annotations

import argparse
from pathlib import Path


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out-dir", default="figures", help="where the PNG, PDF and JSON go (default figures/)")
    parser.add_argument("--quick", action="store_true", help="fewer points (a smoke run)")
    return parser.parse_args()


def write(fig, data: dict, out_dir: str, name: str) -> None:
    """Save the figure as PNG and PDF and the numbers behind it as JSON."""
    from ufm.app import plots
    from ufm.app.render import json_text
    from ufm.atomic import write_text_atomically

    out = Path(out_dir)
    for suffix in (".png", ".pdf"):
        plots.save(fig, out / f"{name}{suffix}")
    write_text_atomically(out / f"{name}.json", json_text(data))
    print(f"wrote {out / name}.png, .pdf and .json")
