"""Writes the report of existing runs, rewrites the runs index of their output directories, and records the runs
in the lineage store (a run already there stays as it is).

    python -m beam_ml.report RUN_DIR [RUN_DIR ...]

Prints the path of each report and index; exit code 1 if a directory holds no run record.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beam_ml.report", description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run directory (holds run_manifest.json)")
    args = parser.parse_args(argv)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA's deprecation notices
    from beam_ml.core.fileutil import storage_path
    from beam_ml.core.layout import RunLayout
    from beam_ml.lineage.store import record_run_dir
    from beam_ml.report.index import write_index
    from beam_ml.report.page import write_report
    import tensorflow as tf
    code = 0
    output_dirs = set()
    for given in args.run_dirs:
        run_dir = storage_path(given.rstrip("/") or given)
        if not tf.io.gfile.exists(RunLayout(run_dir).manifest):
            print(f"error: {given} holds no run record ({os.path.basename(RunLayout(run_dir).manifest)})",
                  file=sys.stderr)
            code = 1
            continue
        try:
            print(write_report(run_dir))
        except Exception as e:  # the next run's report may still be written
            print(f"error: cannot write the report of {given}: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1
        try:
            record_run_dir(run_dir)
        except Exception as e:
            print(f"warning: cannot record {given} in the lineage store: {type(e).__name__}: {e}", file=sys.stderr)
        output_dirs.add(os.path.dirname(run_dir))
    for output_dir in sorted(output_dirs):  # once each, after its runs' reports
        print(write_index(output_dir))
    return code


if __name__ == "__main__":
    from beam_ml.core.runtime import exit_now
    exit_now(main())
