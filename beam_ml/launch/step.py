"""One batch job as a scheduler's step (a Kubeflow Pipelines component, an Airflow task): run it to its end, on
Dataflow too (`--wait`), copy its run record and, for training, its model where the scheduler keeps artifacts,
and write what happened as JSON for the scheduler to branch on.

    python -m beam_ml.launch.step train_pipeline --summary_out S.json --record_out R.json --model_out MODEL_DIR \\
        -- --config examples/penguins/config.yaml

The summary: `exit_code` (the job's: 0 succeeded, 1 failed, 2 bad option), `status`, `run_id`, `run_dir`, `error`,
and for training `blessed`, `pushed_model_dir`, `reused_run` (a run that reused an earlier one: same data, code and
config) and the overall `metrics`; for batch prediction `predicted`. Paths may be on GCS (the run's directories)
or local (a KFP artifact path, which Vertex AI mounts from GCS).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any, Optional, Sequence

from beam_ml.core import fileutil
from beam_ml.core.layout import RunLayout
from beam_ml.core.run import new_run_id
from beam_ml.launch.options import BatchPredictOptions, TrainPipelineOptions, reject_unknown_flags
from beam_ml.core.runtime import exit_now
from beam_ml.report.read import read_manifest

JOB_OPTIONS = {"train_pipeline": TrainPipelineOptions, "batch_predict": BatchPredictOptions}


def job_argv_for_step(job: str, job_argv: Sequence[str]) -> tuple[list[str], str]:
    """The job's flags as the step passes them (with `--wait`, and a run id when none is given) and the run's
    directory. Raises ConfigError naming a bad or unknown option: the job is not started."""
    reject_unknown_flags(job_argv, JOB_OPTIONS[job])
    config = JOB_OPTIONS[job](list(job_argv)).to_config()
    run_id = config.run_id or new_run_id()
    argv = [*job_argv, "--wait"] + ([] if config.run_id else ["--run_id", run_id])
    return argv, os.path.join(config.output_dir, run_id)


def run_step(job: str, argv: Sequence[str], run_dir: str, record_out: Optional[str] = None,
             model_out: Optional[str] = None) -> dict[str, Any]:
    """Runs `jobs.<job>` with `argv` (from `job_argv_for_step`) in a subprocess of this interpreter and returns the
    summary (see the module docstring)."""
    code = subprocess.run([sys.executable, "-m", f"jobs.{job}", *argv]).returncode
    record = read_manifest(run_dir)
    run_dir = record.get("run_dir") or run_dir  # the record's is absolute
    summary: dict[str, Any] = {
        "exit_code": code, "status": record.get("status"), "run_id": os.path.basename(run_dir), "run_dir": run_dir,
        "error": record.get("error") or (None if record else f"the job exited with {code} before writing its "
                                                              f"record (its output says why)")}
    if record and record_out:
        fileutil.write_json(record_out, record)
    if job == "train_pipeline":
        summary.update(blessed=bool(record.get("blessed")), pushed_model_dir=record.get("pushed_model_dir"),
                       reused_run=record.get("cached_from"),
                       metrics={k: v for k, v in (record.get("metrics") or {}).items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
        # The model this run trained, or that of the earlier run it reused.
        model_dir = RunLayout(record.get("cached_from") or run_dir).serving_model
        if code == 0 and model_out and fileutil.exists(model_dir):
            fileutil.copy_tree(model_dir, model_out)
    else:
        summary["predicted"] = int((record.get("counts") or {}).get("predicted", 0))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    job_argv = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m beam_ml.launch.step", description=__doc__.split("\n\n")[0])
    parser.add_argument("job", choices=sorted(JOB_OPTIONS))
    parser.add_argument("--summary_out", required=True, help="where the summary JSON goes")
    parser.add_argument("--record_out", help="where a copy of the run record goes")
    parser.add_argument("--model_out", help="(train_pipeline) where a copy of the trained model goes")
    args = parser.parse_args(own)
    try:
        step_argv, run_dir = job_argv_for_step(args.job, job_argv)
    except Exception as e:  # a bad option or an unreadable config: the job is not started
        summary = {"exit_code": 2, "status": None, "error": f"{type(e).__name__}: {e}"}
        print(f"error: {summary['error']}", file=sys.stderr)
    else:
        summary = run_step(args.job, step_argv, run_dir, args.record_out, args.model_out)
    fileutil.write_json(args.summary_out, summary)
    return summary["exit_code"]


if __name__ == "__main__":
    exit_now(main())
