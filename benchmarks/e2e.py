"""The whole pipeline on taxi data at several sizes: beam_ml's one graph, the TFX way, and the laptop way.

    python -m benchmarks.e2e [--sizes 100000,300000,1000000] [--ways beam_ml,tfx,laptop]
                             [--multi_process_size 300000] [--data ../shared/data/chicago_taxi/data.csv]

For each size, the shared taxi data is resampled (seeded) to a CSV, and each way runs in a fresh process, so its
peak RSS (the process and its children, sampled every 50 ms) is its own:

  beam_ml   `TrainPipeline` (ingest, statistics, validation, transform, training, evaluation, push) as one graph
            on the in-process DirectRunner; the stage times are the runner's own per-transform execution times
            (`beam:metric:ptransform_execution_time:total_msecs`) summed by stage. "other" is the rest of the wall
            time (graph construction, runner start, stage scheduling).
  tfx       `benchmarks.tfx_way`: the same libraries component by component, one Beam pipeline each, materialized
            in between, as TFX 1.16 runs them (CsvExampleGen, StatisticsGen, SchemaGen, ExampleValidator,
            Transform, Trainer, Evaluator, Pusher).
  laptop    pandas + scikit-learn on the same rows: read, impute/scale/bucketize/one-hot, logistic regression,
            metrics. Its eval rows are beam_ml's eval split (computed with beam_ml's hash; not timed).

The model and preprocessing_fn are `transforms.taxi` (through `benchmarks.timed_taxi`, which records when
training runs, so that its memory can be reported apart), with fixed epochs over each size's training rows.
`--multi_process_size` also runs beam_ml there on the multi-process DirectRunner with 2 workers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_DATA, ROOT, PeakTreeRss, build_csv, environment

TAXI_CONFIG = os.path.join(ROOT, "examples", "taxi", "config.yaml")
BATCH_SIZE = 512
EPOCHS = 2
STAGES = ("ingest", "statistics", "validate", "transform", "train", "evaluate", "push", "other")
BEAM_ML_STAGES = {"Ingest": "ingest", "Statistics": "statistics", "Validate": "validate", "Transform": "transform",
                  "Train": "train", "Evaluate": "evaluate", "Push": "push"}
TFX_STAGES = {"ExampleGen": "ingest", "StatisticsGen": "statistics", "SchemaGen": "validate",
              "ExampleValidator": "validate", "Transform": "transform", "Trainer": "train",
              "Evaluator": "evaluate", "Pusher": "push"}


def taxi_config(csv_path: str, work_dir: str, rows: int):
    """The taxi example's config on `csv_path`, with fixed epochs over the training rows (2/3 of the input)."""
    from beam_ml.config.train import PipelineConfig
    steps = math.ceil(rows * 2 / 3 / BATCH_SIZE)
    return PipelineConfig.load(TAXI_CONFIG, {
        "input": csv_path, "output_dir": os.path.join(work_dir, "runs"),
        "serving_dir": os.path.join(work_dir, "serving"), "module": "benchmarks.timed_taxi",
        "eval_thresholds": {"AUC": {"lower": 0.5}},
        "hyperparameters": {"epochs": EPOCHS, "steps_per_epoch": steps, "batch_size": BATCH_SIZE,
                            "hidden_units": [64, 32], "learning_rate": 0.001}})


# ---- one way, in a child process --------------------------------------------------------------------------------
def run_beam_ml(csv_path: str, work_dir: str, rows: int, runner: str) -> dict[str, Any]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    import beam_ml  # noqa: F401  (before TensorFlow)
    from beam_ml.train.pipeline import TrainPipeline
    from beam_ml.train.plan import plan_run

    started = time.perf_counter()
    plan = plan_run(taxi_config(csv_path, work_dir, rows))
    options = (PipelineOptions(direct_running_mode="multi_processing", direct_num_workers=2)
               if runner == "multi_process" else PipelineOptions(direct_running_mode="in_memory"))
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | "TrainPipeline" >> TrainPipeline(plan)
    result = pipeline.run()
    result.wait_until_finish()
    total = time.perf_counter() - started
    with open(os.path.join(plan.run.run_dir, "run_manifest.json")) as f:
        manifest = json.load(f)
    stages = stage_seconds(result.monitoring_infos(), "TrainPipeline", BEAM_ML_STAGES)
    stages["other"] = max(total - sum(stages.values()), 0.0)
    return {"total": total, "stages": stages, "metrics": manifest["metrics"], "splits": manifest["counts"]["splits"],
            "status": manifest["status"]}


def stage_seconds(monitoring_infos, root: str, names: dict[str, str]) -> dict[str, float]:
    """The runner's execution time of each transform (`total_msecs`), summed by the stage it is under
    (`root/<Stage>/...`)."""
    from apache_beam.metrics import monitoring_infos as infos
    seconds = dict.fromkeys(names.values(), 0.0)
    for info in monitoring_infos:
        if info.urn != infos.TOTAL_MSECS_URN:
            continue
        parts = info.labels.get("PTRANSFORM", "").split("/")
        if len(parts) > 1 and parts[0] == root and parts[1] in names:
            seconds[names[parts[1]]] += infos.extract_metric_result_map_value(info) / 1000
    return seconds


def run_tfx(csv_path: str, work_dir: str, rows: int) -> dict[str, Any]:
    import beam_ml  # noqa: F401  (before TensorFlow)
    from benchmarks import tfx_way

    started = time.perf_counter()
    result = tfx_way.run(csv_path, work_dir, taxi_config(csv_path, work_dir, rows))
    total = time.perf_counter() - started
    stages = dict.fromkeys(TFX_STAGES.values(), 0.0)
    for component, seconds in result["stages"].items():
        stages[TFX_STAGES[component]] += seconds
    stages["other"] = max(total - sum(stages.values()), 0.0)
    return {"total": total, "stages": stages, "metrics": result["metrics"], "splits": result["splits"],
            "status": "succeeded"}


def run_laptop(csv_path: str, work_dir: str, rows: int) -> dict[str, Any]:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler

    from transforms import taxi

    config = taxi_config(csv_path, work_dir, rows)
    is_eval = beam_ml_eval_rows(csv_path, config)  # not timed: only so that both evaluate on the same rows
    stages = dict.fromkeys(STAGES, 0.0)
    started = time.perf_counter()
    dtypes = {name: {"int": "float64", "float": "float64", "string": "object"}[kind]
              for name, kind in config.column_types.items()}  # float64 for ints: pandas ints cannot be missing
    frame = pd.read_csv(csv_path, dtype=dtypes, keep_default_na=False, na_values=[""])
    label = (frame[taxi.LABEL].fillna(0) > 0.2 * frame[taxi.FARE].fillna(0)).astype(int).to_numpy()
    categorical = list(taxi.CATEGORICAL)  # one-hot as text, like the vocabularies of the preprocessing_fn
    frame[categorical] = frame[categorical].astype(str).where(frame[categorical].notna(), None)
    train, evaluation = frame[~is_eval], frame[is_eval]
    stages["ingest"] = time.perf_counter() - started

    prepare = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), list(taxi.NUMERIC)),
        ("buckets", make_pipeline(SimpleImputer(strategy="constant", fill_value=0.0),
                                  KBinsDiscretizer(taxi.NUM_BUCKETS, encode="onehot", strategy="quantile",
                                                   subsample=None)), list(taxi.BUCKETIZED)),
        ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                      OneHotEncoder(handle_unknown="infrequent_if_exist",
                                                    max_categories=taxi.VOCAB_TOP_K)), categorical)])
    tick = time.perf_counter()
    x_train = prepare.fit_transform(train)
    x_eval = prepare.transform(evaluation)
    stages["transform"] = time.perf_counter() - tick

    tick = time.perf_counter()
    model = LogisticRegression(max_iter=500, random_state=config.seed).fit(x_train, label[~is_eval])
    stages["train"] = time.perf_counter() - tick
    tick = time.perf_counter()
    scores = model.predict_proba(x_eval)[:, 1]
    metrics = {"auc": float(roc_auc_score(label[is_eval], scores)),
               "binary_accuracy": float(accuracy_score(label[is_eval], scores > 0.5))}
    stages["evaluate"] = time.perf_counter() - tick
    total = time.perf_counter() - started
    stages["other"] = max(total - sum(stages.values()), 0.0)
    return {"total": total, "stages": stages, "metrics": metrics,
            "splits": {"train": int((~is_eval).sum()), "eval": int(is_eval.sum())}, "status": "succeeded",
            "features": int(x_train.shape[1]), "iterations": int(np.max(model.n_iter_))}


def beam_ml_eval_rows(csv_path: str, config) -> np.ndarray:
    """Which rows of the file beam_ml's split puts in eval (its parser and whole-record hash, in file order)."""
    from beam_ml.ingest.files.source import FileSource
    from beam_ml.ingest.split import HashSplit
    source = FileSource.resolve(csv_path, config.column_types)
    split = HashSplit(tuple(config.split_buckets.items()), config.split_key)
    flags = []
    for chunk in source.chunks():
        for parsed in chunk.parse(source.fmt):
            if parsed.dead_letters:
                raise ValueError(f"{csv_path}: the laptop way needs clean rows ({parsed.dead_letters[0].reason})")
            flags.append(split.assign(parsed.batch) == split.names.index("eval"))
    return np.concatenate(flags)


# ---- the parent: build data, run each way in its own process, print the table -----------------------------------
def run_child(way: str, csv_path: str, work_dir: str, rows: int) -> dict[str, Any]:
    """Runs one way in a fresh process; its peak RSS (with its children) is sampled from here, with and without
    the training window the timed module records."""
    os.makedirs(work_dir, exist_ok=True)
    times_path = os.path.join(work_dir, "train_times.jsonl")
    if os.path.exists(times_path):
        os.remove(times_path)
    result_path = os.path.join(work_dir, "result.json")
    env = {**os.environ, "BEAM_ML_BENCH_TRAIN_TIMES": times_path}
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.e2e", "--child", way, "--csv", csv_path,
                              "--work_dir", work_dir, "--rows", str(rows), "--result", result_path],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(
                                 work_dir, "log.txt"), "w"))
    sampler = PeakTreeRss(child.pid)
    code = child.wait()
    sampler.stop()
    if code != 0:
        raise RuntimeError(f"{way} on {rows:,} rows failed (exit {code}); see {work_dir}/log.txt")
    with open(result_path) as f:
        result = json.load(f)
    result["peak_rss_mb"] = sampler.peak / 2 ** 20
    if os.path.exists(times_path):
        with open(times_path) as f:
            [window] = [json.loads(line) for line in f]
        result["train_peak_rss_mb"] = sampler.peak_between(window["start"], window["end"]) / 2 ** 20
        result["peak_rss_without_train_mb"] = sampler.peak_outside(window["start"], window["end"]) / 2 ** 20
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    header = ["rows", "way", *STAGES, "total s", "rows/s", "peak RSS MB", "w/o train", "AUC"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for r in results:
        auc = r["metrics"].get("auc", r["metrics"].get("AUC"))
        cells = [f"{r['rows']:,}", r["way"], *(f"{r['stages'].get(s, 0.0):.1f}" for s in STAGES),
                 f"{r['total']:.1f}", f"{r['rows'] / r['total']:,.0f}", f"{r['peak_rss_mb']:,.0f}",
                 f"{r.get('peak_rss_without_train_mb', r['peak_rss_mb']):,.0f}",
                 f"{auc:.4f}" if auc is not None else "-"]
        print("| " + " | ".join(cells) + " |")


def print_findings(results: list[dict[str, Any]]) -> None:
    by = {(r["way"], r["rows"]): r for r in results}
    sizes = sorted({r["rows"] for r in results})
    for size in sizes:
        ours, tfx = by.get(("beam_ml", size)), by.get(("tfx", size))
        if ours and tfx:
            auc = ours["metrics"].get("auc"), tfx["metrics"].get("auc")
            print(f"{size:,} rows: beam_ml {tfx['total'] / ours['total']:.2f}x faster than the TFX way; "
                  f"AUC {auc[0]:.4f} vs {auc[1]:.4f} (difference {abs(auc[0] - auc[1]):.4f})")
    ours = {size: by[("beam_ml", size)] for size in sizes if ("beam_ml", size) in by}
    if len(ours) >= 2:
        small, large = min(ours), max(ours)
        middle = max((s for s in ours if s < large), default=small)
        per_row = {s: ours[s]["total"] / s for s in ours}
        print(f"beam_ml time per row at {large:,} / at {middle:,}: {per_row[large] / per_row[middle]:.2f}")
        rss = {s: ours[s].get("peak_rss_without_train_mb", ours[s]["peak_rss_mb"]) for s in ours}
        print(f"beam_ml peak RSS outside training at {large:,} / at {small:,}: {rss[large] / rss[small]:.2f} "
              f"({rss[large]:,.0f} / {rss[small]:,.0f} MB); peak RSS during training: "
              + ", ".join(f"{s:,}: {ours[s].get('train_peak_rss_mb', 0):,.0f} MB" for s in sorted(ours)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--ways", default="beam_ml,tfx,laptop")
    parser.add_argument("--multi_process_size", type=int, default=300_000,
                        help="also run beam_ml on the multi-process DirectRunner (2 workers) at this size; 0: no")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(), "beam_ml_e2e"))
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one way in this process
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run = {"beam_ml": lambda: run_beam_ml(args.csv, args.work_dir, args.rows, "in_process"),
               "beam_ml_multi_process": lambda: run_beam_ml(args.csv, args.work_dir, args.rows, "multi_process"),
               "tfx": lambda: run_tfx(args.csv, args.work_dir, args.rows),
               "laptop": lambda: run_laptop(args.csv, args.work_dir, args.rows)}[args.child]
        with open(args.result, "w") as f:
            json.dump(run(), f)
        return 0

    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        csv_path = os.path.join(args.work_dir, f"taxi_{size}.csv")
        build_csv(args.data, size, csv_path)
        ways = args.ways.split(",")
        if size == args.multi_process_size and "beam_ml" in ways:
            ways.append("beam_ml_multi_process")
        for way in ways:
            result = run_child(way, csv_path, os.path.join(args.work_dir, f"{way}_{size}"), size)
            results.append({"rows": size, "way": way, **result})
            with open(os.path.join(args.work_dir, "results.jsonl"), "a") as f:  # kept should a later way fail
                f.write(json.dumps(results[-1]) + "\n")
            print(f"{way} on {size:,} rows: {result['total']:.1f} s, {result['metrics']}", file=sys.stderr)
    print(f"\n## The whole pipeline on taxi data (batch {BATCH_SIZE}, {EPOCHS} epochs over the training rows)")
    print(environment("DirectRunner, in-process (FnApiRunner) unless the way says multi_process (2 workers)"))
    print()
    print_table(results)
    print()
    print_findings(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
