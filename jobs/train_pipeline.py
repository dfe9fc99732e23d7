"""Train, evaluate and push a model as one Beam job.

    python -m jobs.train_pipeline --config examples/penguins/config.yaml [--flag value ...]

Every config field is also a flag (a flag wins). Exit codes: 0 success, 1 the run failed, 2 a bad option,
130 stopped (Ctrl-C or SIGTERM).
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from beam_ml.launch.options import TrainPipelineOptions
from beam_ml.launch.console import quiet_logs
from beam_ml.core.runtime import exit_now
from beam_ml.launch.run import run_job
from beam_ml.train.cache import ReuseRun
from beam_ml.train.pipeline import TrainPipeline
from beam_ml.train.plan import RunPlan, plan_run
from beam_ml.train.preflight import preflight


def describe(plan: RunPlan) -> dict:
    config = plan.config
    return {"run_dir": plan.run.run_dir, "inputs": plan.source.describe(),
            "columns": dict(zip(plan.fmt.columns, plan.fmt.types)), "baseline_model": plan.baseline_model,
            "reuses": plan.reused_run["run_dir"] if plan.reused_run else None,
            **preflight(plan.source, config.label_key, plan.module.load().preprocessing_fn, config.column_types,
                        windowed=plan.window_spec is not None, allow_non_finite=config.allow_non_finite)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(sys.argv[1:] if argv is None else argv, prog="python -m jobs.train_pipeline",
                   doc=__doc__, options_class=TrainPipelineOptions, plan=plan_run,
                   graph=lambda plan: ("ReuseRun" >> ReuseRun(plan) if plan.reused_run
                                       else "TrainPipeline" >> TrainPipeline(plan)), describe=describe,
                   summary_keys=("run_id", "status", "counts", "metrics", "blessed", "baseline_model",
                                 "pushed_model_dir", "cached_from"))


if __name__ == "__main__":
    quiet_logs()
    exit_now(main())
