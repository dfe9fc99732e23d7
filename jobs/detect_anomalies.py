r"""Detect anomalies in streaming sensor telemetry with the newest pushed window model and/or online detectors.

    python -m jobs.detect_anomalies --subscription projects/my-project/subscriptions/telemetry \
        --serving_dir serving/telemetry --output_dir runs/detect --alerts_dir alerts --dead_letter_dir dead \
        [--detector model,robust_zscore --vote any] [--flag value ...]

    # no trained model: Beam's online detectors per channel
    python -m jobs.detect_anomalies --subscription ... --detector zscore --channels temperature,pressure ...

Every option can also come from a YAML --config file (a flag wins). Runs in streaming mode until stopped with Ctrl-C
or SIGTERM (its record then says `cancelled`; on Dataflow it returns once the job is submitted). Exit codes:
0 success, 1 the run failed, 2 a bad option, 130 stopped.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from beam_ml.launch.options import DetectAnomaliesOptions
from beam_ml.launch.console import quiet_logs
from beam_ml.core.runtime import exit_now
from beam_ml.launch.run import run_job
from beam_ml.stream.pipeline import DetectAnomalies
from beam_ml.stream.plan import DetectPlan, plan_detect


def describe(plan: DetectPlan) -> dict:
    return {"run_dir": plan.run.run_dir, "model_dir": plan.model_dir, "detector": plan.config.detector,
            "channels": list(plan.channels), "window_length": plan.spec.length}


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job(sys.argv[1:] if argv is None else argv, prog="python -m jobs.detect_anomalies",
                   doc=__doc__, options_class=DetectAnomaliesOptions, plan=plan_detect,
                   graph=lambda plan: "DetectAnomalies" >> DetectAnomalies(plan), describe=describe,
                   summary_keys=("run_id", "status", "model_dir_at_launch"), streaming=True)


if __name__ == "__main__":
    quiet_logs()
    exit_now(main())
