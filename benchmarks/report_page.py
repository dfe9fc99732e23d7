"""How big and how fast to open a run report is for a wide dataset: 200 features (100 numbers, 100 strings).

    python -m benchmarks.report_page [--features 200] [--rows 20000]

Builds the dataset (seeded), computes real TFDV statistics of a train and an eval split and of a previous run's
train, writes them where a run does, then times, in one run: reading and rendering the report
(`beam_ml.report.page.write_report`), the page's size, and loading it in headless Chromium (navigation to the load
event, no network) with the number of feature rows it shows.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd

import beam_ml  # noqa: F401  (before TensorFlow)
from beam_ml.core.layout import RunLayout
from beam_ml.report.page import write_report
from benchmarks.common import environment


def wide_run(output_dir: str, features: int = 200, rows: int = 20_000, seed: int = 0) -> str:
    """A finished training run directory (and a previous one beside it) whose statistics have `features`
    features, half numeric and half string, with some missing values; returns the run directory."""
    import tensorflow_data_validation as tfdv
    rng = np.random.default_rng(seed)

    def frame(shift: float) -> pd.DataFrame:
        columns = {}
        for i in range(features // 2):
            values = rng.normal(i + shift, 1 + i % 5, rows)
            values[rng.random(rows) < 0.02 * (i % 4)] = np.nan
            columns[f"number_{i:03d}"] = values
        for i in range(features - features // 2):
            columns[f"text_{i:03d}"] = rng.choice([f"v{j}" for j in range(2 + i % 30)], rows)
        return pd.DataFrame(columns)

    started = {"previous": "2026-01-01T00:00:00+00:00", "wide": "2026-01-02T00:00:00+00:00"}
    for name, shift in (("previous", 0.0), ("wide", 0.3)):
        layout = RunLayout(os.path.join(output_dir, name))
        for split in ("train", "eval"):
            path = layout.statistics_file(split)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(tfdv.generate_statistics_from_dataframe(frame(shift)).SerializeToString())
        with open(layout.manifest, "w") as f:
            json.dump({"job": "train_pipeline", "run_id": name, "status": "succeeded", "started": started[name],
                       "counts": {"read": 2 * rows, "dead_letter": 0, "splits": {"train": rows, "eval": rows}}}, f)
    return os.path.join(output_dir, "wide")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=200)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    from tests.support.browser import Browser
    scratch = tempfile.mkdtemp(prefix="bench_report_")
    try:
        run_dir = wide_run(scratch, args.features, args.rows)
        start = time.perf_counter()
        page = write_report(run_dir)
        render_seconds = time.perf_counter() - start
        size = os.path.getsize(page)
        with Browser() as browser:
            start = time.perf_counter()
            load = browser.open("file://" + page)
            load_seconds = time.perf_counter() - start
            shown = browser.evaluate("document.querySelectorAll('#data table.features tbody tr').length")
        assert load.console_errors == [] and len(load.requests) == 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n## the report of a run with {args.features} features ({args.rows:,} rows per split)")
    print(environment("none (report only); headless Chromium for the page load"))
    print(f"\n| {'step':<44} | {'value':>12} |")
    print(f"|{'-' * 46}|{'-' * 14}|")
    print(f"| {'read statistics and render (s)':<44} | {render_seconds:12.2f} |")
    print(f"| {'page size (KB)':<44} | {size / 1024:12.0f} |")
    print(f"| {'Chromium: navigate to load event (s)':<44} | {load_seconds:12.2f} |")
    print(f"| {'feature rows shown':<44} | {shown:12d} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
