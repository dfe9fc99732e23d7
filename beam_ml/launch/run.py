"""What every job entry point does: parse and check options, plan, build the graph, run, report.

Exit codes: 0 success, 1 the run failed (its run record says why), 2 a bad option (nothing was started), 130 the
run was stopped (Ctrl-C or SIGTERM: its record says `cancelled`).
On Dataflow the entry returns right after submitting, as a Flex Template launcher must (unless `--wait`: a
scheduler's step); on local runners it waits for the run and reports its outcome.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from beam_ml.core import fileutil, s3
from beam_ml.core.errors import ConfigError
from beam_ml.core.layout import RunLayout
from beam_ml.core.redact import clipped
from beam_ml.core.run import RunContext, RunManifest
from beam_ml.core.runtime import local_run
from beam_ml.launch.console import StageWatcher, print_summary, show_logs
from beam_ml.launch.options import reject_unknown_flags
from beam_ml.report.publish import publish_run
from beam_ml.report.read import read_manifest


class JobPlan(Protocol):
    """What a job's plan gives `run_job`: its run, and the run record's writer."""

    run: RunContext

    def manifest(self) -> RunManifest:
        ...


def run_job(argv: Sequence[str], *, prog: str, doc: str, options_class: type[PipelineOptions],
            plan: Callable[[Any], JobPlan], graph: Callable[[Any], beam.PTransform],
            describe: Callable[[Any], dict], summary_keys: Sequence[str], streaming: bool = False) -> int:
    """Runs one job. `plan(config)` resolves and checks everything (raising ConfigError), `graph(plan)` is the
    job's composite PTransform, `describe(plan)` what `--validate_only` prints, and `summary_keys` the run record
    fields that `--json` prints at the end (else a human summary, `beam_ml.launch.console`). A `streaming` job runs
    in streaming mode whatever the flags say, and on a local runner runs until it is cancelled or fails."""
    argv = list(argv)
    if "--help" in argv or "-h" in argv:
        parser = argparse.ArgumentParser(prog=prog, description=doc,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        options_class._add_argparse_args(parser)  # pylint: disable=protected-access
        parser.print_help()
        print("\nAny Beam pipeline option (--runner, --direct_num_workers, --project, ...) is accepted too.")
        return 0
    try:
        reject_unknown_flags(argv, options_class)
        options = PipelineOptions(argv)
        # Filesystems that take options (S3's endpoint and credentials: --s3_* flags, else AWS's environment and
        # profile) get them before the plan lists inputs; workers get them with the pipeline.
        FileSystems.set_options(options)
        if streaming:
            options.view_as(StandardOptions).streaming = True
        job_options = options.view_as(options_class)
        if job_options.verbose:
            show_logs()
        run_plan = plan(job_options.to_config())
        if s3.enabled():  # the plan put a run or model path on s3://: workers' TensorFlow needs that filesystem too
            setup = options.view_as(SetupOptions)
            setup.beam_plugins = [*(setup.beam_plugins or []), s3.WORKER_PLUGIN]
    except ConfigError as e:
        print(f"error: {clipped(str(e))}", file=sys.stderr)
        return 2
    except Exception as e:  # e.g. a storage permission error while resolving inputs or the model: nothing started
        print(f"error: cannot plan the run: {type(e).__name__}: {clipped(str(e))}", file=sys.stderr)
        return 2
    if job_options.validate_only:
        try:
            description = describe(run_plan)  # may check a sample of the data too
        except ConfigError as e:
            print(f"error: {clipped(str(e))}", file=sys.stderr)
            return 2
        print(json.dumps({"valid": True, **description}, indent=2))
        return 0

    manifest: RunManifest = run_plan.manifest()
    try:
        run_plan.run.claim(manifest.running())
    except ConfigError as e:
        print(f"error: {clipped(str(e))}", file=sys.stderr)
        return 2
    try:
        pipeline = beam.Pipeline(options=options)
        _ = pipeline | graph(run_plan)
        if is_dataflow(options) and not job_options.wait:  # a Flex Template launcher must return once submitted
            pipeline.run()
            print(f"submitted; run record will be at {manifest.path}")
            return 0
        # local_run: the local runner's per-bundle cost, collector stalls (see beam_ml.core.runtime)
        progress_out = sys.stderr if job_options.json else sys.stdout  # --json: stdout is for scripts
        with (contextlib.nullcontext() if is_dataflow(options) else local_run()), StageWatcher(lambda: read_manifest(run_plan.run.run_dir), out=progress_out), \
                stop_signals_interrupt():
            pipeline.run().wait_until_finish()
    except KeyboardInterrupt:  # stopped (Ctrl-C, or SIGTERM from a supervisor): a streaming job ends this way
        record = record_cancelled(manifest)
        print(f"cancelled: run {run_plan.run.run_id}", file=sys.stderr)
        report = publish_run(run_plan.run.run_dir) if record else None
        print(f"report: {report}" if report else f"run record: {manifest.path}", file=sys.stderr)
        return 130
    except Exception as e:  # the pipeline failed: leave a failed record unless the run already wrote one
        record, written = record_failure(manifest, e)
        print(f"error: run {run_plan.run.run_id} failed: {record['error']}", file=sys.stderr)
        print(f"run record: {manifest.path}" if written else
              f"run record: not written ({record['record_error']}); it is the JSON above", file=sys.stderr)
        report = publish_run(run_plan.run.run_dir) if written else None
        if report:
            print(f"report: {report}", file=sys.stderr)
        return 1
    try:
        print_summary(read_manifest(run_plan.run.run_dir), summary_keys, job_options.json)
    except Exception as e:  # the run succeeded: a summary that cannot be read (a storage hiccup) does not change that
        print(f"succeeded; the summary cannot be shown: {type(e).__name__}: {clipped(str(e))}")
    report = RunLayout(run_plan.run.run_dir).report_file
    if fileutil.exists(report):  # written by the job's last step
        print(f"report: {report}")
    print(f"run record: {manifest.path}")
    return 0


def record_failure(manifest: RunManifest, error: Exception) -> tuple[dict, bool]:
    """The failed run's record, and whether it is on disk: the record the run wrote itself when it stopped on
    purpose, else one written now. If even that cannot be written (the output directory gone, a full disk), the
    record goes to stderr as JSON: no failure is left without a record, and this handler does not fail itself."""
    failure = {"error": clipped(f"{type(error).__name__}: {error}"), "failed_step": failed_step(error)}
    progress: dict = {}
    try:
        record = read_manifest(os.path.dirname(manifest.path)) or None
        if record is not None and record.get("status") == "failed":
            return record, True
        progress = RunManifest.progress_of(record)  # the counts and stage the run had reached
        return manifest.write("failed", **progress, **failure), True
    except Exception as write_error:
        record = manifest.record("failed", **progress, **failure,
                                 record_error=clipped(f"{type(write_error).__name__}: {write_error}"))
        print(json.dumps(record, default=str, sort_keys=True), file=sys.stderr)
        return record, False


def record_cancelled(manifest: RunManifest) -> Optional[dict]:
    """The record of a run stopped from outside, `cancelled` with what it had reached; a run that had already ended
    (stopped just after) keeps its record. None if it cannot be written (the run's end is then only on the
    console)."""
    try:
        record = read_manifest(os.path.dirname(manifest.path)) or None
        if record is not None and record.get("status") in ("succeeded", "failed", "cancelled"):
            return record
        return manifest.write("cancelled", **RunManifest.progress_of(record))
    except Exception as e:
        print(f"the run record cannot be written: {type(e).__name__}: {clipped(str(e))}", file=sys.stderr)
        return None


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM (how a container or supervisor stops a process) interrupts the run as Ctrl-C does, so that the run
    ends `cancelled` rather than without a word."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (a test calling the job): only Ctrl-C
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def failed_step(error: Exception) -> Optional[str]:
    """The graph step that raised, as Beam names it in the error ("[while running 'Train/RunTrainer']"), or
    None."""
    found = re.findall(r"while running '([^']+)'", str(error))
    return found[-1] if found else None


def is_dataflow(options: PipelineOptions) -> bool:
    return "dataflow" in str(options.view_as(StandardOptions).runner or "").lower()
