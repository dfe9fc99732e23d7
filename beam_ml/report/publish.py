"""What a job does at its end, and `python -m beam_ml.report` for an existing run: the run's report, the run in the
lineage store, and the runs index beside it."""
from __future__ import annotations

import logging
import os
from typing import Callable, Optional

from beam_ml.lineage.store import record_run_dir, run_store
from beam_ml.report.index import write_index
from beam_ml.report.page import write_report


def publish_run(run_dir: str) -> Optional[str]:
    """Writes `<run_dir>/report/index.html`, records the run in the lineage store
    (`beam_ml.lineage.store.record_run_dir`) and rewrites `<output_dir>/index.html` from it. Returns the report's
    path, or None if it could not be written. Each part that fails is logged and the others still happen; none
    fails the caller (a run's outcome is already in its record: these are views of it).

    Example::

        publish_run("runs/penguins/20261204T212601Z-a3f5ff")
    """
    run_dir = run_dir.rstrip("/")
    if "://" not in run_dir:
        run_dir = os.path.abspath(run_dir)  # `.` has an output directory too
    report = _quietly("write the report of", write_report, run_dir)
    _quietly("record in the lineage store", record_run_dir, run_dir)
    store = _quietly("find the lineage store of", run_store, run_dir)
    _quietly("rewrite the runs index beside", lambda path: write_index(os.path.dirname(path), store), run_dir)
    return report


def _quietly(what: str, step: Callable, path: str):
    try:
        return step(path)
    except Exception as e:
        logging.getLogger(__name__).warning("could not %s %s: %s: %s", what, path, type(e).__name__, e)
        return None
