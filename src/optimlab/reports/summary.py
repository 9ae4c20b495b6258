"""``summary.json``: the aggregates of a comparison as strict JSON (+∞ written as ``null``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_summary(summary: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``summary`` (from :func:`optimlab.lab.results.summarize`) to ``out_dir/summary.json``
    atomically (a temporary file renamed into place, removed if anything fails); returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    tmp = out / ".summary.json.tmp"
    try:
        tmp.write_text(
            json.dumps(summary, indent=1, allow_nan=False, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        os.replace(tmp, path)
    finally:  # a full disk or Ctrl-C: no half-written temporary file is left behind
        tmp.unlink(missing_ok=True)
    return path
