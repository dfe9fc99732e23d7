"""The streaming job's sinks: alerts to Pub/Sub, BigQuery (streaming inserts) and windowed JSON Lines files, each
optional; dead letters to a Pub/Sub topic and/or windowed JSON Lines files.

Data contract:
  * `WriteAlerts(topic, table, files_dir, ...)`: PCollection[Alert] (bounded or unbounded) → `WrittenAlerts(
    dead_letters, files)`: with the BigQuery sink on, its PCollection[DeadLetter] (alerts that are no BigQuery row,
    e.g. a window bound past year 9999, and rows BigQuery rejected, with its errors); with the files sink on, its
    PCollection[str] (the path of each file written).
  * `WriteStreamingDeadLetters(topic, files_dir, ...)`: PCollection[DeadLetter] → nothing (a Pub/Sub message with
    the reason as an attribute, and/or JSON Lines files).
  * Pub/Sub: data `alert_to_json(alert)` (UTF-8), attributes `sensor_id` and `detector` (for subscription filters).
  * BigQuery: `alert_row(alert)` under `BIGQUERY_SCHEMA`; the table is created if needed, rows are appended.
  * Files: one JSON line per alert, in fixed event-time windows of `file_window` seconds:
    `<files_dir>/alerts-<window start>-<window end>-pane-<i>-<shard>-of-<n>.jsonl` (a late alert, up to
    `allowed_lateness` after its window closed, fires another pane: a new file, never an overwrite).

The pure functions `alert_to_json`, `alert_from_json` and `alert_row` are the formats; `WriteAlerts.expand` only
wires. Step names are static (Dataflow's in-place update matches steps by name).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import uuid
import zlib
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.transforms import trigger, window

from beam_ml.config.detect import PUBSUB_TOPIC_REGEX
from beam_ml.core.deadletter import DEAD_LETTER, DeadLetter
from beam_ml.stream.elements import Alert

TOPIC_REGEX = re.compile(PUBSUB_TOPIC_REGEX)
BIGQUERY_SCHEMA = {"fields": [
    {"name": "sensor_id", "type": "STRING", "mode": "REQUIRED"},
    {"name": "window_start", "type": "TIMESTAMP", "mode": "REQUIRED"},
    {"name": "window_end", "type": "TIMESTAMP", "mode": "REQUIRED"},
    {"name": "score", "type": "FLOAT64", "mode": "REQUIRED"},
    {"name": "threshold", "type": "FLOAT64", "mode": "REQUIRED"},
    {"name": "detector", "type": "STRING", "mode": "REQUIRED"},
    {"name": "model_version", "type": "STRING", "mode": "NULLABLE"},
    {"name": "top_channels", "type": "STRING", "mode": "REPEATED"},
]}


FLOAT_FIELDS = ("window_start", "window_end", "score", "threshold")


def _finite_or_text(value: float):
    """A float for JSON: itself when finite, else "NaN", "Infinity" or "-Infinity" (what BigQuery reads for FLOAT64;
    bare NaN/Infinity are not JSON, and one in a streaming-insert request fails the whole batch)."""
    value = float(value)
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def alert_to_json(alert: Alert) -> str:
    """One alert as a JSON object (window bounds in unix seconds, `top_channels` a list), keys sorted; a
    non-finite score or threshold is written as "NaN", "Infinity" or "-Infinity"."""
    record = dataclasses.asdict(alert)
    record["top_channels"] = list(alert.top_channels)
    for name in FLOAT_FIELDS:
        record[name] = _finite_or_text(record[name])
    return json.dumps(record, sort_keys=True, allow_nan=False)


def alert_from_json(text) -> Alert:
    """The inverse of `alert_to_json` (bytes or str)."""
    record = json.loads(text)
    record["top_channels"] = tuple(record.get("top_channels") or ())
    for name in FLOAT_FIELDS:
        record[name] = float(record[name])
    return Alert(**record)


def _bigquery_timestamp(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def alert_row(alert: Alert) -> dict:
    """One alert as a BigQuery row under `BIGQUERY_SCHEMA` (window bounds as TIMESTAMP strings, microseconds;
    a non-finite score or threshold as BigQuery's "NaN"/"Infinity"/"-Infinity"). Raises ValueError or
    OverflowError for a window bound outside BigQuery's TIMESTAMP range (years 1 to 9999)."""
    return {"sensor_id": alert.sensor_id, "window_start": _bigquery_timestamp(alert.window_start),
            "window_end": _bigquery_timestamp(alert.window_end), "score": _finite_or_text(alert.score),
            "threshold": _finite_or_text(alert.threshold), "detector": alert.detector,
            "model_version": alert.model_version, "top_channels": list(alert.top_channels)}


def to_pubsub_message(alert: Alert):
    from apache_beam.io.gcp.pubsub import PubsubMessage
    return PubsubMessage(alert_to_json(alert).encode("utf-8"),
                         {"sensor_id": alert.sensor_id, "detector": alert.detector})


class ToBigQueryRow(beam.DoFn):
    """Alert → `alert_row`, or a dead letter when it cannot be one (a window bound outside BigQuery's TIMESTAMP
    range, years 1..9999): a streaming job must not fail on one bad alert."""

    def __init__(self, table: str):
        self._table = table

    def process(self, alert: Alert):
        try:
            row = alert_row(alert)
        except (ValueError, OverflowError, OSError) as e:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(self._table, 0, alert_to_json(alert),
                                                                   f"not a BigQuery row: {e}"))
            return
        yield row


def rejected_row_dead_letter(failure: tuple) -> DeadLetter:
    """A row BigQuery rejected (streaming inserts: (destination, row, errors)) → a dead letter with the errors."""
    destination, row, errors = failure
    return DeadLetter(str(destination), 0, json.dumps(row, sort_keys=True, default=str),
                      f"BigQuery rejected the alert: {errors}"[:2000])


def _iso(seconds) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(seconds), datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    except (ValueError, OverflowError, OSError):  # beyond year 9999: unix seconds
        return f"{float(seconds):.0f}"


def file_name(window_, pane_index: int, shard: int, shards: int, prefix: str = "alerts") -> str:
    """`alerts-<window start>-<window end>-pane-<i>-<shard>-of-<n>.jsonl` (UTC, to the second): a file per window,
    pane and shard, so a late pane adds a file instead of overwriting one."""
    if isinstance(window_, window.IntervalWindow):
        span = f"{_iso(window_.start)}-{_iso(window_.end)}"
    else:
        span = "global"
    return f"{prefix}-{span}-pane-{pane_index}-{shard:05d}-of-{shards:05d}.jsonl"


def keyed_json_line(alert: Alert, shards: int) -> tuple[int, str]:
    """(shard, JSON line): the shard is a stable hash of the sensor id (the same on every worker)."""
    return zlib.crc32(alert.sensor_id.encode("utf-8")) % shards, alert_to_json(alert)


class WriteJsonLinesFiles(beam.PTransform[beam.PCollection[tuple[int, str]], beam.PCollection[str]]):
    """PCollection[(shard, JSON line)] → JSON Lines files per fixed event-time window, pane and shard (see
    `file_name`; a late pane adds a file); outputs the paths written. Works on unbounded input, unlike WriteToText.

    Example::

        paths = lines | WriteJsonLinesFiles("gs://b/dead_letter", "dead_letter", file_window=60)
    """

    def __init__(self, files_dir: str, prefix: str, file_window: float = 60.0, allowed_lateness: float = 0.0,
                 shards: int = 1):
        super().__init__()
        self._dir, self._prefix, self._shards = files_dir, prefix, shards
        self._file_window, self._lateness = file_window, allowed_lateness

    def expand(self, lines: beam.PCollection[tuple[int, str]]) -> beam.PCollection[str]:
        return (lines
                | "WindowForFiles" >> beam.WindowInto(
                    window.FixedWindows(self._file_window),
                    trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                    allowed_lateness=self._lateness,
                    accumulation_mode=trigger.AccumulationMode.DISCARDING)
                | "GroupByWindowAndShard" >> beam.GroupByKey()
                | "WriteFiles" >> beam.ParDo(WritePaneFile(self._dir, self._shards, self._prefix)))


class WritePaneFile(beam.DoFn):
    """(shard, JSON lines) of one window pane → one file named by `file_name`, written under a temporary name and
    renamed, so a retried bundle rewrites the same file. Yields the file's path.

    (`fileio.WriteToFiles` names files by the pane its records had *before* its own GroupByKey, so every late
    pane of a window gets pane 0 and overwrites the on-time file; hence this writer.)"""

    def __init__(self, files_dir: str, shards: int, prefix: str = "alerts"):
        self._dir, self._shards, self._prefix = files_dir, shards, prefix

    def setup(self):
        from apache_beam.io.filesystems import FileSystems
        try:
            FileSystems.mkdirs(self._dir)
        except IOError:
            pass  # it exists

    def process(self, element, w=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        from apache_beam.io.filesystems import FileSystems
        shard, lines = element
        path = FileSystems.join(self._dir, file_name(w, pane.index if pane else 0, shard, self._shards, self._prefix))
        temporary = FileSystems.join(self._dir, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
        with FileSystems.create(temporary, mime_type="application/jsonl") as f:
            f.write("".join(line + "\n" for line in sorted(lines)).encode("utf-8"))
        FileSystems.rename([temporary], [path])
        yield path


def _check_table(table: str) -> None:
    from apache_beam.io.gcp.bigquery_tools import parse_table_reference
    try:
        reference = parse_table_reference(table)
    except ValueError as e:
        raise ValueError(f"table {table!r}: {e}") from None
    if not reference.datasetId or not reference.tableId:
        raise ValueError(f"table {table!r}: use project:dataset.table or dataset.table")


class WrittenAlerts(NamedTuple):
    """What `WriteAlerts` gives: one PCollection per sink that is on and has such an output, none for a sink that
    is off (adding a step for an empty output would change a running job's steps)."""

    dead_letters: tuple[beam.PCollection[DeadLetter], ...]  # BigQuery's: alerts that are no row, rows it rejected
    files: tuple[beam.PCollection[str], ...]  # the files' paths, as each is written


class WriteAlerts(beam.PTransform[beam.PCollection[Alert], WrittenAlerts]):
    """Writes alerts to any of Pub/Sub, BigQuery and files (each None = off; at least one).

    Example::

        written = alerts | "WriteAlerts" >> WriteAlerts(
            topic="projects/my-project/topics/alerts", table="my-project:monitoring.alerts",
            files_dir="gs://b/alerts", allowed_lateness=10)
        dead_letters = written.dead_letters | beam.Flatten()

    Args:
      topic: Pub/Sub topic `projects/<project>/topics/<topic>`; JSON per alert.
      table: BigQuery table `project:dataset.table` (or `dataset.table`), written by streaming inserts; rows it
        rejects come out as "dead_letter".
      files_dir: directory for JSON Lines files, one set per `file_window` of event time.
      file_window: seconds of event time per file window.
      allowed_lateness: seconds an alert may come after its file window closed and still be written (in a later
        pane); give at least the `allowed_lateness` of `WindowPerSensor`, whose windows are released that long after
        their event time.
      file_shards: files per window and pane.
    """

    def __init__(self, topic: Optional[str] = None, table: Optional[str] = None, files_dir: Optional[str] = None,
                 file_window: float = 60.0, allowed_lateness: float = 0.0, file_shards: int = 1):
        super().__init__()
        if topic is None and table is None and files_dir is None:
            raise ValueError("WriteAlerts needs at least one of topic, table, files_dir")
        if topic is not None and not TOPIC_REGEX.match(topic):
            raise ValueError(f"topic {topic!r} is not projects/<project>/topics/<topic>")
        if table is not None:
            _check_table(table)
        if files_dir is not None and not files_dir:
            raise ValueError("files_dir must not be empty")
        if not file_window > 0:
            raise ValueError(f"file_window must be > 0 seconds, got {file_window}")
        if not allowed_lateness >= 0:
            raise ValueError(f"allowed_lateness must be >= 0 seconds, got {allowed_lateness}")
        if file_shards < 1:
            raise ValueError(f"file_shards must be >= 1, got {file_shards}")
        self._topic, self._table, self._files_dir = topic, table, files_dir
        self._file_window, self._lateness, self._shards = file_window, allowed_lateness, file_shards

    def expand(self, alerts: beam.PCollection[Alert]) -> WrittenAlerts:
        dead_letters, files = [], []
        if self._topic is not None:
            _ = (alerts
                 | "ToPubsubMessages" >> beam.Map(to_pubsub_message)
                 | "WriteToPubSub" >> beam.io.WriteToPubSub(self._topic, with_attributes=True))
        if self._table is not None:
            rows = alerts | "ToBigQueryRows" >> beam.ParDo(ToBigQueryRow(self._table)).with_outputs(
                DEAD_LETTER, main="rows")
            written = (rows["rows"]
                       | "WriteToBigQuery" >> beam.io.WriteToBigQuery(
                           self._table, schema=BIGQUERY_SCHEMA,
                           method=beam.io.WriteToBigQuery.Method.STREAMING_INSERTS,
                           create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
                           write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
                           insert_retry_strategy="RETRY_ON_TRANSIENT_ERROR"))
            rejected = written.failed_rows_with_errors | "RejectedRows" >> beam.Map(rejected_row_dead_letter)
            dead_letters.append((rows[DEAD_LETTER], rejected) | "BigQueryDeadLetters" >> beam.Flatten())
        if self._files_dir is not None:
            files.append(alerts
                         | "ToJsonLines" >> beam.Map(keyed_json_line, self._shards)
                         | "AlertFiles" >> WriteJsonLinesFiles(self._files_dir, "alerts", self._file_window,
                                                               self._lateness, self._shards))
        return WrittenAlerts(tuple(dead_letters), tuple(files))


def dead_letter_line(letter: DeadLetter) -> tuple[int, str]:
    return 0, letter.to_json()


def dead_letter_message(letter: DeadLetter):
    from apache_beam.io.gcp.pubsub import PubsubMessage
    return PubsubMessage(letter.to_json().encode("utf-8"), {"reason": letter.reason.split(":")[0][:100]})


class WriteStreamingDeadLetters(beam.PTransform[beam.PCollection[DeadLetter], None]):
    """Dead letters of an unbounded input to a Pub/Sub topic and/or JSON Lines files per event-time window.

    Example::

        dead_letters | WriteStreamingDeadLetters(topic="projects/my-project/topics/dead", files_dir=None)
    """

    def __init__(self, topic: Optional[str], files_dir: Optional[str], file_window: float, allowed_lateness: float):
        super().__init__()
        self._topic, self._files_dir = topic, files_dir
        self._file_window, self._lateness = file_window, allowed_lateness

    def expand(self, letters: beam.PCollection[DeadLetter]) -> None:
        if self._topic:
            _ = (letters
                 | "ToPubsubMessages" >> beam.Map(dead_letter_message)
                 | "WriteToPubSub" >> beam.io.WriteToPubSub(self._topic, with_attributes=True))
        if self._files_dir:
            _ = (letters
                 | "ToJsonLines" >> beam.Map(dead_letter_line)
                 | "Files" >> WriteJsonLinesFiles(self._files_dir, "dead_letter", self._file_window, self._lateness))
