"""What a job does at its end: writes the run's report and rewrites the runs index beside it."""
from __future__ import annotations

import logging
import os
from typing import Optional

from beam_ml.report.index import write_index
from beam_ml.report.page import write_report


def write_run_reports(run_dir: str) -> tuple[str, str]:
    """Writes `<run_dir>/report/index.html` and rewrites `<output_dir>/index.html`; returns both paths.

    Example::

        report, index = write_run_reports("runs/penguins/20261204T212601Z-a3f5ff")
    """
    report = write_report(run_dir)
    return report, write_index(os.path.dirname(run_dir.rstrip("/")))


def write_run_reports_quietly(run_dir: str) -> Optional[str]:
    """`write_run_reports` for the end of a job: returns the report's path, or None when it cannot be written,
    which is logged and never fails the run (its outcome is already recorded; the report is a view of it)."""
    try:
        return write_run_reports(run_dir)[0]
    except Exception as e:
        logging.getLogger(__name__).warning("could not write the report of %s: %s: %s", run_dir,
                                            type(e).__name__, e)
        return None
