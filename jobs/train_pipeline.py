"""Train, evaluate and push a model as one Beam job.

    python -m jobs.train_pipeline --config examples/penguins/config.yaml [--flag value ...]

Every config field is also a flag (a flag wins). Exit codes: 0 success, 1 the run failed, 2 a bad option.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from typing import Optional, Sequence

# Google client libraries warn at import time about Python 3.11's end of support in 2027; not actionable here.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")

import beam_ml  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_ml.config import ConfigError
from beam_ml.options import TrainPipelineOptions, reject_unknown_flags
from beam_ml.pipeline import TrainPipeline, plan_run


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        parser = argparse.ArgumentParser(prog="python -m jobs.train_pipeline", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        TrainPipelineOptions._add_argparse_args(parser)  # pylint: disable=protected-access
        parser.print_help()
        print("\nAny Beam pipeline option (--runner, --direct_num_workers, --project, ...) is accepted too.")
        return 0
    try:
        reject_unknown_flags(argv)
        options = PipelineOptions(argv)
        plan = plan_run(options.view_as(TrainPipelineOptions).to_config())
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if options.view_as(TrainPipelineOptions).validate_only:
        print(json.dumps({"valid": True, "run_dir": plan.run_dir, "inputs": [f.path for f in plan.files],
                          "columns": dict(zip(plan.fmt.columns, plan.fmt.types)),
                          "baseline_model": plan.baseline_model}, indent=2))
        return 0

    pipeline = beam.Pipeline(options=options)
    _ = pipeline | "TrainPipeline" >> TrainPipeline(plan)
    manifest = plan.manifest()
    try:
        result = pipeline.run()
        if _is_dataflow(options):  # a Flex Template launcher must return once the job is submitted
            print(f"submitted; run record will be at {manifest.path}")
            return 0
        result.wait_until_finish()
    except Exception as e:  # the pipeline failed: leave a failed record unless the run already wrote one
        record = _read_manifest(manifest.path)
        if record is None or record.get("status") != "failed":
            record = manifest.write("failed", error=f"{type(e).__name__}: {e}"[:4000])
        print(f"error: run {plan.run_id} failed: {record['error']}", file=sys.stderr)
        print(f"run record: {manifest.path}", file=sys.stderr)
        return 1
    record = _read_manifest(manifest.path) or {}
    print(json.dumps({k: record.get(k) for k in ("run_id", "status", "counts", "metrics", "blessed",
                                                  "baseline_model", "pushed_model_dir")}, indent=2))
    print(f"run record: {manifest.path}")
    return 0


def _is_dataflow(options: PipelineOptions) -> bool:
    return "dataflow" in str(options.view_as(StandardOptions).runner or "").lower()


def _read_manifest(path: str) -> Optional[dict]:
    import tensorflow as tf
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA's deprecation notices
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: TensorFlow's function finalizers print spurious "Exception ignored" tracebacks
    # there. All output is written and flushed by now.
    os._exit(exit_code)
