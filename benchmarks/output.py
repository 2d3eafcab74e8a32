"""Where a benchmark's results go, and the stamp every figure carries.

A run writes its JSON and chart to a results folder (``--out``, default
``$CHAMBERLAIN_DATA/benchmarks``, else ``.chamberlain/benchmarks``), never into the
repository: the committed figures under ``docs/benchmarks/`` change only with ``--write``.
Every result and chart carries the date and the commit it was measured on, so a figure
in the docs always says where it came from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs" / "benchmarks"


def default_folder() -> Path:
    return Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain")) / "benchmarks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out`` and ``--write``, the same for every benchmark."""
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: $CHAMBERLAIN_DATA/benchmarks)")
    parser.add_argument("--write", action="store_true", help="also replace the committed figures in docs/benchmarks/")


def commit() -> str:
    """The short commit measured, with ``+dirty`` when the work tree has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    except FileNotFoundError:
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def stamp() -> dict[str, str]:
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit()}


def stamp_figure(fig: Any, summary: dict[str, Any]) -> None:
    """The date and commit in the chart's corner."""
    fig.text(0.99, 0.01, f"{summary['date']} · {summary['commit']}", ha="right", va="bottom", fontsize=7, color="#666")


def save(name: str, summary: dict[str, Any], args: argparse.Namespace, chart: Any = None) -> Path:
    """Write ``<name>.json`` (and ``<name>.png`` from ``chart(summary, path)``) to the results
    folder; with ``--write``, copy both over the committed figures. Returns the folder."""
    summary = {**stamp(), **summary}
    folder: Path = args.out or default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / f"{name}.json"]
    written[0].write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if chart is not None:
        import matplotlib

        matplotlib.use("Agg")
        chart(summary, folder / f"{name}.png")
        written.append(folder / f"{name}.png")
    if args.write:
        DOCS.mkdir(parents=True, exist_ok=True)
        for path in written:
            shutil.copyfile(path, DOCS / path.name)
    return folder
