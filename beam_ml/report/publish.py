"""What a job does at its end: writes the run's report, rewrites the runs index beside it, and records the run in
the lineage store."""
from __future__ import annotations

import logging
import os
from typing import Optional

from beam_ml.lineage.store import record_run_dir
from beam_ml.report.index import write_index
from beam_ml.report.page import write_report


def write_run_reports(run_dir: str) -> tuple[str, str]:
    """Writes `<run_dir>/report/index.html` and rewrites `<output_dir>/index.html`; returns both paths.

    Example::

        report, index = write_run_reports("runs/penguins/20261204T212601Z-a3f5ff")
    """
    return write_report(run_dir), write_index(os.path.dirname(run_dir.rstrip("/")))


def write_run_reports_quietly(run_dir: str) -> Optional[str]:
    """The end of a job: `write_run_reports`, then the run into the lineage store (`record_run_dir`). Returns the
    report's path, or None when it could not be written. A failure is logged and never fails the run: its outcome
    is already recorded, and these are views of it."""
    log = logging.getLogger(__name__)
    report = None
    try:
        report = write_run_reports(run_dir)[0]
    except Exception as e:
        log.warning("could not write the report of %s: %s: %s", run_dir, type(e).__name__, e)
    try:
        record_run_dir(run_dir)
    except Exception as e:
        log.warning("could not record %s in the lineage store: %s: %s", run_dir, type(e).__name__, e)
    return report
