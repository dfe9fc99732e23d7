"""Reading taxi rows from a real PostgreSQL server with beam_ml's SQL source: rows/s and peak memory by table size,
partitions and runner.

    python -m benchmarks.sql_read [--sizes 100000,1000000] [--data ../shared/data/chicago_taxi/data.csv]

Starts PostgreSQL (tests/databases.py: a throwaway server on a free loopback port), loads the shared taxi data
resampled (seeded) to each size into table `taxi` (an `id` key 1..N), then runs each case in a fresh process, so its
peak RSS is its own: `ReadSplits` (server-side cursor, rows → Arrow, whole-record hash split train:eval 2:1) and a
row count, on the in-process DirectRunner (1 and 4 partitions by ranges of `id`) and on the multi-process
DirectRunner with 2 workers (4 partitions). Memory must not grow with the table: compare the sizes' peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata

from benchmarks.common import DEFAULT_DATA, ROOT, PeakTreeRss, build_csv

CASES = (("in-process", 1), ("in-process", 4), ("multi-process x2", 4))


def run_case(url: str, password: str, partitions: int, runner: str) -> dict:
    """One read, in this process; returns rows, seconds and this process's peak RSS."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    import beam_ml  # noqa: F401  (before TensorFlow)
    from beam_ml.ingest.read import ReadSplits
    from beam_ml.ingest.split import HashSplit
    from beam_ml.ingest.sql import Credentials, SqlSource

    os.environ["BENCH_DB_PASSWORD"] = password
    sampler = PeakTreeRss()
    start = time.perf_counter()
    source = SqlSource.resolve(url, table="taxi", query=None, partition_column="id", partitions=partitions,
                               credentials=Credentials("BENCH_DB_PASSWORD"), column_types={})
    options = (PipelineOptions(direct_num_workers=2, direct_running_mode="multi_processing")
               if runner.startswith("multi") else PipelineOptions())
    out_dir = tempfile.mkdtemp(prefix="sql_read_")
    with beam.Pipeline(options=options) as p:
        out = p | ReadSplits(source, HashSplit((("train", 2), ("eval", 1))))
        _ = (out.records_read | beam.CombineGlobally(sum)
             | beam.io.WriteToText(os.path.join(out_dir, "rows"), shard_name_template=""))
    seconds = time.perf_counter() - start
    with open(os.path.join(out_dir, "rows")) as f:
        rows = int(f.read())
    return {"rows": rows, "seconds": seconds, "peak_rss_mb": sampler.stop() / 2 ** 20}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "beam_ml_bench"))
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: url,password,partitions,runner
    args = parser.parse_args(argv)
    if args.case:
        url, password, partitions, runner = args.case.split("|")
        print(json.dumps(run_case(url, password, int(partitions), runner)))
        return 0

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import databases

    from beam_ml.config.train import PipelineConfig

    types = PipelineConfig.load(os.path.join(ROOT, "examples", "taxi", "config.yaml"), {}).column_types
    server = databases.start_postgres(tempfile.mkdtemp(prefix="sql_read_pg_"))
    results = []
    try:
        with server.create_engine().connect() as connection:
            server_version = connection.exec_driver_sql("SHOW server_version").scalar()
        for size in (int(s) for s in args.sizes.split(",")):
            csv_path = os.path.join(args.work, f"taxi_{size}.csv")
            build_csv(args.data, size, csv_path)
            started = time.perf_counter()
            databases.load_csv(server, "taxi", csv_path, types)
            print(f"loaded {size:,} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            for runner, partitions in CASES:
                case = "|".join([server.url(driver=False), server.password, str(partitions), runner])
                done = subprocess.run([sys.executable, "-m", "benchmarks.sql_read", "--case", case], cwd=ROOT,
                                      capture_output=True, text=True, check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                assert result["rows"] == size, result
                results.append({"size": size, "runner": runner, "partitions": partitions, **result})
    finally:
        server.stop()

    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"PostgreSQL {server_version} on loopback (same cores); "
          + ", ".join(f"{name} {metadata.version(name)}" for name in ("apache-beam", "SQLAlchemy", "psycopg2-binary")))
    print(f"{'rows':>10} {'runner':<17} {'partitions':>10} {'seconds':>8} {'rows/s':>9} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['size']:>10,} {r['runner']:<17} {r['partitions']:>10} {r['seconds']:>8.2f} "
              f"{r['size'] / r['seconds']:>9,.0f} {r['peak_rss_mb']:>12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
