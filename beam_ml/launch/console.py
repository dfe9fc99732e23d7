"""What a job prints while it runs on a local runner: a line per stage as the run passes it (read from the stages the
run record lists, so a stage on any worker process is seen), and at the end a short human summary (the blessing and
why, metrics per slice, where the report is). `--json` prints the summary as JSON instead; `--verbose` brings
Beam's and TensorFlow's log messages back.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import threading
from typing import Callable, Optional, Sequence, TextIO

from beam_ml.core.console import progress_line
from beam_ml.report.charts import number_text
from beam_ml.report.page import fairness_of, infra_text, lite_text
from beam_ml.report.read import read_slices, reused_stages

_COUNT_NAMES = {"dead_letter": "dead letters"}


def _seconds(later: Optional[str], earlier: Optional[str]) -> Optional[float]:
    try:
        return (datetime.datetime.fromisoformat(later) - datetime.datetime.fromisoformat(earlier)).total_seconds()
    except (TypeError, ValueError):
        return None


def _counts_text(counts: dict) -> str:
    parts = [f"{counts.get('read', 0)} records"]
    for group in ("splits", "windows"):
        if counts.get(group):
            parts.append(f"{group[:-1] if group == 'splits' else group}: "
                         + ", ".join(f"{name} {n}" for name, n in counts[group].items()))
    parts += [f"{_COUNT_NAMES.get(key, key.replace('_', ' '))} {value}" for key, value in counts.items()
              if key not in ("read", "splits", "windows") and not isinstance(value, dict)]
    return "; ".join(parts)


def stage_line(stage: str, took: Optional[float], record: dict) -> str:
    """One progress line: the stage, what it computed, how long it took since the stage before."""
    detail = ""
    if stage == "started":
        detail = f"run {record.get('run_id')} → {record.get('run_dir')}"
    elif stage == "read" and record.get("counts"):
        counts = record["counts"]
        detail = _counts_text(counts)
        if took:
            detail += f" ({counts.get('read', 0) / took:,.0f} records/s)"
    elif stage == "data checked":
        anomalies = record.get("anomalies") or []
        detail = "statistics, schema and validation: " + (f"{len(anomalies)} anomalies" if anomalies
                                                            else "no anomalies")
    elif stage == "servable":
        detail = infra_text(record.get("infra_validation"))
    elif stage == "tflite" and record.get("tflite"):
        detail = lite_text(record["tflite"])
    return progress_line(stage, detail, None if stage == "started" else took)


class StageWatcher:
    """Prints a line per stage the run record lists, polling it while the run goes on.

    Example::

        with StageWatcher(lambda: read_record(path)):
            pipeline.run().wait_until_finish()
    """

    def __init__(self, read_record: Callable[[], Optional[dict]], out: TextIO = sys.stdout, interval: float = 0.5):
        self._read_record = read_record
        self._out = out
        self._interval = interval
        self._printed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "StageWatcher":
        self._thread.start()
        return self

    def __exit__(self, *unused) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # the stages written just before the run ended

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def poll(self) -> None:
        try:
            record = self._read_record()
        except Exception:  # a record being replaced; the next poll reads it
            return
        stages = (record or {}).get("stages") or []
        for i in range(self._printed, len(stages)):
            stage = stages[i]
            if stage.get("stage") in ("succeeded", "failed"):
                continue  # the summary says how the run ended
            took = _seconds(stage.get("at"), stages[i - 1].get("at")) if i else None
            print(stage_line(stage.get("stage", ""), took, record), file=self._out, flush=True)
        self._printed = max(self._printed, len(stages))


def summary_lines(record: dict, max_slices: int = 12) -> list[str]:
    """The end of a run, for people: how it ended and in how long, the counts, the blessing and why, where the
    model went, and the evaluation's metrics per slice."""
    took = _seconds(record.get("finished"), record.get("started"))
    lines = [f"{record.get('status')}{f' in {took:.0f} s' if took is not None else ''}: run {record.get('run_id')}"]
    if record.get("counts"):
        lines.append(f"  counts: {_counts_text(record['counts'])}")
    if record.get("blessed") is True:
        lines.append(f"  blessed: every threshold passed; {record.get('evaluation_mode', '')}".rstrip("; "))
    elif record.get("blessed") is False:
        lines.append("  not blessed: " + "; ".join(record.get("threshold_failures") or []))
    if record.get("cached_from"):
        lines.append(f"  reused run {record['cached_from']}: same data, code, config and versions")
    if record.get("reused_stages"):
        lines.append("  reused: " + ", ".join(f"{stage} from run {os.path.basename(run.rstrip('/'))}"
                                              for stage, run in reused_stages(record)))
    if record.get("job") == "train_pipeline" and record.get("status") == "succeeded":
        lines.append(f"  pushed: {record['pushed_model_dir']}" if record.get("pushed_model_dir") else
                     f"  not pushed{': ' + record['push'] if record.get('push') else ''}")
    results = record.get("cached_from") or record.get("run_dir")  # a reused run's results are the earlier run's
    slices = read_slices(results) if results and record.get("metrics") else []
    if slices:
        names = sorted({n for s in slices for n in s.metrics}, key=lambda n: (n != "example_count", n))
        rows = [["slice", *names]] + [[s.name, *(number_text(s.metrics.get(n, {}).get("candidate")) for n in names)]
                                      for s in slices[:max_slices]]
        widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        if len(slices) > max_slices:
            lines.append(f"  … {len(slices) - max_slices} more slices in the report")
    for feature in fairness_of(record, slices):
        lines += [f"  warning: {rate} differs by {feature.gaps[rate]:.3g} between groups of {feature.feature}, "
                  f"over fairness_max_gap" for rate in feature.over_bound]
    return lines


def print_summary(record: dict, summary_keys: Sequence[str], as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: record.get(k) for k in summary_keys}, indent=2))
    else:
        print("\n".join(summary_lines(record)))


def quiet_logs() -> None:
    """Silences log messages that users cannot act on (the entry points' default)."""
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA's deprecation notices


def show_logs() -> None:
    """`--verbose`: Beam's and TensorFlow's log messages, INFO and up."""
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("tensorflow").setLevel(logging.INFO)
