"""Ingest + split + TFDV statistics through the beam_ml graph, against the reference paths, on 1M taxi rows.

    python -m benchmarks.ingest_stats [--rows 1000000] [--data ../shared/data/chicago_taxi/data.csv]

Builds the CSV by resampling the shared taxi data (seeded), then times, in one run on this machine:
  beam_ml       ReadSplits (parse, dead-letter, hash split) + GenerateSplitStatistics of both splits, in-process
                DirectRunner, statistics written to disk
  pyarrow       pyarrow.csv.read_csv of the file (parse only: the floor)
  tfdv/pandas   tfdv.generate_statistics_from_dataframe on the file read by pandas (in memory, no Beam)
  tfdv/beam     tfdv.generate_statistics_from_csv (TFDV's own Beam path, in-process DirectRunner)
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow.csv as pa_csv
import tensorflow_data_validation as tfdv
from apache_beam.options.pipeline_options import PipelineOptions

import beam_ml  # noqa: F401  (before TensorFlow)
from beam_ml.core.run import package_versions
from beam_ml.ingest.files.source import FileSource, resolve_files
from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.split import HashSplit
from beam_ml.train.validate import GenerateSplitStatistics
from benchmarks.common import DEFAULT_DATA, ROOT, build_csv


def time_beam_ml(path: str, out_dir: str) -> tuple[float, int]:
    files, fmt = resolve_files(path, {})
    split = HashSplit((("train", 2), ("eval", 1)))
    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        out = p | ReadSplits(FileSource(files, fmt), split)
        _ = out.split_batches | GenerateSplitStatistics(out_dir, split.names)
    elapsed = time.perf_counter() - start
    rows = sum(tfdv.load_stats_binary(os.path.join(out_dir, f"Split-{n}", "FeatureStats.pb")).datasets[0].num_examples
               for n in split.names)
    return elapsed, rows


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--work_dir", default=os.path.join(ROOT, ".bench"))
    parser.add_argument("--skip_tfdv_beam", action="store_true", help="skip the slow TFDV CSV reference")
    parser.add_argument("--repeat", type=int, default=3,
                        help="beam_ml runs on the big file; the table gives their median (this VM's timings vary)")
    args = parser.parse_args(argv)

    path = os.path.join(args.work_dir, f"taxi_{args.rows}.csv")
    build_csv(args.data, args.rows, path)
    size_mb = os.path.getsize(path) / 1e6
    small = os.path.join(args.work_dir, "taxi_10000.csv")
    build_csv(args.data, 10_000, small)
    scratch = tempfile.mkdtemp(prefix="bench_")
    results = []
    try:
        time_beam_ml(small, os.path.join(scratch, "warm_up"))  # one-time imports and TF/TFDV initialisation
        fixed, _ = time_beam_ml(small, os.path.join(scratch, "stats_small"))
        runs = []
        for i in range(args.repeat):
            seconds, rows = time_beam_ml(path, os.path.join(scratch, f"stats_{i}"))
            assert rows == args.rows, f"beam_ml counted {rows} rows"
            runs.append(seconds)
        results.append(("beam_ml: ingest+split+stats (Beam graph)", float(np.median(runs))))
        results.append(("pyarrow.csv.read_csv (parse only)", timed(pa_csv.read_csv, path)[0]))
        frame = pd.read_csv(path)
        results.append(("tfdv.generate_statistics_from_dataframe", timed(tfdv.generate_statistics_from_dataframe,
                                                                          frame)[0]))
        del frame
        if not args.skip_tfdv_beam:
            results.append(("tfdv.generate_statistics_from_csv (Beam)", timed(
                tfdv.generate_statistics_from_csv, path, None, ",", os.path.join(scratch, "tfdv_stats"))[0]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    versions = package_versions()
    print(f"\n## ingest + split + statistics, {args.rows:,} taxi rows ({size_mb:.0f} MB CSV)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
          f"Python {platform.python_version()}; runner: DirectRunner (in-process FnApiRunner)")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB\n")
    print(f"| {'path':<44} | {'seconds':>8} | {'rows/s':>10} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 12}|")
    for name, seconds in results:
        print(f"| {name:<44} | {seconds:8.2f} | {args.rows / seconds:10,.0f} |")
    print(f"\nbeam_ml runs: {', '.join(f'{r:.2f}' for r in runs)} s (median in the table; best "
          f"{args.rows / min(runs):,.0f} rows/s)")
    marginal = (results[0][1] - fixed) / (args.rows - 10_000)
    print(f"\nbeam_ml fixed cost (the same graph on 10,000 rows: construction, runner start, TFDV's many stages): "
          f"{fixed:.2f} s; marginal throughput beyond it: {1 / marginal:,.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
