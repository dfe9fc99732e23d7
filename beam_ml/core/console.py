"""The one format of the progress lines a job prints while it runs (`  <stage>  <what it did>  [<seconds> s]`)."""
from __future__ import annotations

from typing import Optional

LABEL_WIDTH = 13


def progress_line(label: str, detail: str = "", seconds: Optional[float] = None) -> str:
    parts = [detail] if detail else []
    if seconds is not None:
        parts.append(f"[{seconds:.0f} s]")
    return (f"  {label:<{LABEL_WIDTH}} " + "  ".join(parts)).rstrip()
