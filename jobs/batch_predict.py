"""Predict with a pushed model as one Beam job; writes one JSON line per input row, with the row's key.

    python -m jobs.batch_predict --input new/*.csv --key_column id --serving_dir serving/penguins \
        --output_dir runs/predict [--flag value ...]

Every option can also come from a YAML --config file (a flag wins). Exit codes: 0 success, 1 the run failed,
2 a bad option, 130 stopped (Ctrl-C or SIGTERM).
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from beam_ml.launch.options import BatchPredictOptions
from beam_ml.launch.console import quiet_logs
from beam_ml.core.runtime import exit_now
from beam_ml.launch.run import run_job
from beam_ml.predict.pipeline import BatchPredict
from beam_ml.predict.plan import PredictPlan, plan_predict


def describe(plan: PredictPlan) -> dict:
    return {"run_dir": plan.run.run_dir, "model_dir": plan.model_dir, "inputs": plan.source.describe(),
            "columns": dict(zip(plan.fmt.columns, plan.fmt.types))}


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(sys.argv[1:] if argv is None else argv, prog="python -m jobs.batch_predict",
                   doc=__doc__, options_class=BatchPredictOptions, plan=plan_predict,
                   graph=lambda plan: "BatchPredict" >> BatchPredict(plan), describe=describe,
                   summary_keys=("run_id", "status", "model_dir", "counts", "predictions"))


if __name__ == "__main__":
    quiet_logs()
    exit_now(main())
