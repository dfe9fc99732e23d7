"""Replay a telemetry CSV to a Pub/Sub topic at a chosen pace, as the JSON messages the streaming job reads
(`beam_ml.stream.parse`). A tool for trying the job and benchmarking it, not a Beam job.

    python -m tools.replay_telemetry --csv telemetry.csv --topic projects/my-project/topics/telemetry --speedup 60
    python -m tools.replay_telemetry --csv nab.csv --sensor_id nab-1 --topic projects/my-project/topics/t --rate 500 \\
        --limit 10000

Set PUBSUB_EMULATOR_HOST=host:port to publish to the Pub/Sub emulator. Prints a JSON summary. Exit codes: 0 every
message published, 1 some failed, 2 a bad option.

Data contract:
  * input: a CSV with a header naming `timestamp` (unix seconds or ISO 8601), `sensor_id` (or one `sensor_id` for
    the whole file) and channel columns; label columns (e.g. `is_anomaly`) are not channels and are dropped.
  * output: one Pub/Sub message per row: data `{"sensor_id": ..., "timestamp": ..., <channel>: number, ...}` (UTF-8
    JSON) — or, with `frame_size` > 1, one message per frame: a JSON array of the consecutive rows that share a
    timestamp (up to `frame_size`), as a downlink sends every sensor's reading of one tick — with the attribute
    `published_at` = the wall-clock unix seconds when it was handed to the publisher, so a latency benchmark can
    measure publish-to-alert.

The logic is plain functions (`read_rows`, `row_to_message`, `pace`) that run without Pub/Sub; `replay` publishes.
The pace is either `rate` events per second (wall clock) or `speedup` (event time runs `speedup` times faster than
the wall clock: 60 = one hour of data per minute); neither means as fast as the publisher goes.

Heartbeats: on the DirectRunner an empty subscription blocks each pull for up to 30 s and the watermark only moves
when a pull returns (see ../shared/docs/EMULATORS.md). `Heartbeat` publishes a message with the attribute
`heartbeat=1` every `interval` seconds; `ParseTelemetry` skips them.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import itertools
import json
import math
import re
import sys
import threading
import time
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

from beam_ml.config.detect import PUBSUB_TOPIC_REGEX
from beam_ml.core.times import parse_time
from beam_ml.stream.parse import HEARTBEAT, SENSOR_ID, TIMESTAMP

LABEL_COLUMNS = ("is_anomaly", "label", "anomaly")  # dropped unless named in `channels`
PUBLISHED_AT = "published_at"  # message attribute: wall-clock unix seconds at publish
TOPIC_PATTERN = "projects/<project>/topics/<topic>"


class ReplayError(ValueError):
    """A replay setting or the CSV is wrong; the message starts with the option's name (`--name: ...`)."""

    def __init__(self, option: str, message: str):
        super().__init__(f"--{option}: {message}")
        self.option = option


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    """One replay: which file, which topic, which columns, how fast. Validated at construction.

    Args:
      csv_path: the telemetry CSV.
      topic: `projects/<project>/topics/<topic>`.
      channels: the channel columns to send, in order; None = every column but `timestamp`, `sensor_id` and
        `label_columns`.
      label_columns: columns that are never channels unless named in `channels`.
      sensor_id: the sensor id of every row, for a CSV without a `sensor_id` column (e.g. a NAB file).
      rate: events per second (wall clock).
      speedup: event-time seconds per wall-clock second.
      limit: publish at most this many rows.
      frame_size: most readings per message (a frame of consecutive rows sharing a timestamp); 1: one per message.
      max_batch_messages / max_batch_latency: the publisher's batching (latency is in seconds).
    """

    csv_path: str
    topic: str
    channels: Optional[tuple[str, ...]] = None
    label_columns: tuple[str, ...] = LABEL_COLUMNS
    sensor_id: Optional[str] = None
    rate: Optional[float] = None
    speedup: Optional[float] = None
    limit: Optional[int] = None
    frame_size: int = 1
    max_batch_messages: int = 500
    max_batch_latency: float = 0.01

    def __post_init__(self):
        if not re.match(PUBSUB_TOPIC_REGEX, self.topic):
            raise ReplayError("topic", f"{self.topic!r} is not {TOPIC_PATTERN}")
        if self.rate is not None and self.speedup is not None:
            raise ReplayError("rate", "give --rate (events per second) or --speedup (event-time ratio), not both")
        for name in ("rate", "speedup", "max_batch_latency"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ReplayError(name, f"must be a positive number, got {value}")
        for name in ("limit", "frame_size", "max_batch_messages"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ReplayError(name, f"must be >= 1, got {value}")
        if self.channels is not None:
            if not self.channels:
                raise ReplayError("channels", "must name at least one column")
            if len(set(self.channels)) != len(self.channels):
                raise ReplayError("channels", f"names a column twice: {list(self.channels)}")
            if {TIMESTAMP, SENSOR_ID} & set(self.channels):
                raise ReplayError("channels", f"{TIMESTAMP} and {SENSOR_ID} are not channels")
        if self.sensor_id is not None and not self.sensor_id:
            raise ReplayError("sensor_id", "must not be empty")


def resolve_channels(header: Sequence[str], channels: Optional[Sequence[str]],
                     label_columns: Sequence[str] = LABEL_COLUMNS, sensor_id: Optional[str] = None) -> tuple[str, ...]:
    """The channel columns of a CSV with this header. Raises ReplayError naming the option that does not fit."""
    header = [name.strip() for name in header]
    if TIMESTAMP not in header:
        raise ReplayError("csv", f"the header {header} has no {TIMESTAMP!r} column")
    if sensor_id is None and SENSOR_ID not in header:
        raise ReplayError("sensor_id", f"the header {header} has no {SENSOR_ID!r} column: give --sensor_id")
    if channels is None:
        resolved = tuple(c for c in header if c not in (TIMESTAMP, SENSOR_ID) and c not in label_columns)
        if not resolved:
            raise ReplayError("channels", f"the header {header} has no channel columns")
        return resolved
    missing = [c for c in channels if c not in header]
    if missing:
        raise ReplayError("channels", f"{missing} not in the CSV header {header}")
    return tuple(channels)


def _number(text: str):
    """A CSV cell as a JSON value: an int or finite float when it is one; an empty cell → None; otherwise the text
    unchanged (the pipeline dead-letters it with the reason, as it would a bad value from a real sensor)."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def row_to_message(row: Mapping[str, str], channels: Sequence[str], sensor_id: Optional[str] = None) -> dict:
    """A CSV row (a `csv.DictReader` dict) → the message object: sensor_id, timestamp (a number when the cell is
    unix seconds, else the ISO 8601 text), the channels as numbers. Other columns are dropped."""
    timestamp = _number(row.get(TIMESTAMP) or "")
    message = {SENSOR_ID: sensor_id if sensor_id is not None else (row.get(SENSOR_ID) or "").strip(),
               TIMESTAMP: timestamp}
    for channel in channels:
        message[channel] = _number(row.get(channel) or "")
    return message


def encode(message: Union[dict, list]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


def event_time(message: dict) -> Optional[float]:
    """The message's event time in unix seconds, or None when its timestamp cannot be parsed."""
    value = message.get(TIMESTAMP)
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = parse_time(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None


def pace(event_times: Iterable[Optional[float]], rate: Optional[float] = None,
         speedup: Optional[float] = None) -> Iterator[float]:
    """The wall-clock offset (seconds after the start) at which to publish each event, in input order.

    `rate`: event i at i / rate. `speedup`: an event at (its event time - the first event time) / speedup; an event
    older than one already sent, or with no event time, goes right after the previous one (offsets never go back).
    Neither: every offset is 0 (as fast as possible)."""
    if rate is not None and speedup is not None:
        raise ValueError("pace takes rate or speedup, not both")
    first, previous = None, 0.0
    for i, seconds in enumerate(event_times):
        if rate is not None:
            offset = i / rate
        elif speedup is not None and seconds is not None:
            first = seconds if first is None else first
            offset = max(previous, (seconds - first) / speedup)
        else:
            offset = previous
        previous = offset
        yield offset


def read_rows(csv_path: str, channels: Optional[Sequence[str]] = None,
              label_columns: Sequence[str] = LABEL_COLUMNS, sensor_id: Optional[str] = None,
              limit: Optional[int] = None) -> Iterator[dict]:
    """The CSV's rows as message objects (`row_to_message`), at most `limit`. The header is checked now (a
    ReplayError names the option that does not fit); the rows are then streamed, the file is not loaded."""
    from apache_beam.io.filesystems import FileSystems  # local paths and gs://
    try:
        f = io.TextIOWrapper(FileSystems.open(csv_path), encoding="utf-8", newline="")
    except (IOError, OSError) as e:
        raise ReplayError("csv", f"cannot open {csv_path}: {e}") from None
    try:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ReplayError("csv", f"{csv_path} is empty")
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
        resolved = resolve_channels(reader.fieldnames, channels, label_columns, sensor_id)
    except BaseException:
        f.close()
        raise

    def rows() -> Iterator[dict]:
        with f:
            for i, row in enumerate(reader):
                if limit is not None and i >= limit:
                    return
                yield row_to_message(row, resolved, sensor_id)

    return rows()


@dataclasses.dataclass
class ReplayResult:
    """What a replay did: messages published (acknowledged by Pub/Sub), failed, and the wall-clock seconds."""

    published: int = 0
    failed: int = 0
    seconds: float = 0.0
    first_error: Optional[str] = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def publisher_client(max_batch_messages: int = 500, max_batch_latency: float = 0.01,
                     max_outstanding: int = 10_000):
    """A PublisherClient (honours PUBSUB_EMULATOR_HOST) batching up to `max_batch_messages` or
    `max_batch_latency` seconds, blocking the caller when `max_outstanding` messages await acknowledgement."""
    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1 import types
    return pubsub_v1.PublisherClient(
        batch_settings=types.BatchSettings(max_bytes=9_000_000, max_latency=max_batch_latency,
                                           max_messages=max_batch_messages),
        publisher_options=types.PublisherOptions(flow_control=types.PublishFlowControl(
            message_limit=max_outstanding, byte_limit=100_000_000,
            limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK)))


class _Outstanding:
    """Counts the publish futures as they complete, without keeping them."""

    def __init__(self, result: ReplayResult):
        self._result, self._pending = result, 0
        self._done = threading.Condition()

    def add(self, future) -> None:
        with self._done:
            self._pending += 1
        future.add_done_callback(self._complete)

    def _complete(self, future) -> None:
        error = future.exception()
        with self._done:
            if error is None:
                self._result.published += 1
            else:
                self._result.failed += 1
                self._result.first_error = self._result.first_error or repr(error)
            self._pending -= 1
            self._done.notify_all()

    def wait(self, timeout: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)


def frames(timed: Iterable[tuple[dict, float]], size: int) -> Iterator[tuple[Union[dict, list], float]]:
    """(reading, publish offset) pairs → (message, offset): consecutive readings with the same timestamp, at most
    `size`, as one frame (a list) sent at its last reading's offset; a reading alone stays an object."""
    def message(group: list) -> tuple[Union[dict, list], float]:
        return ([r for r, _ in group] if len(group) > 1 else group[0][0]), group[-1][1]

    group: list = []
    for reading, offset in timed:
        if group and (len(group) == size or reading.get(TIMESTAMP) != group[-1][0].get(TIMESTAMP)):
            yield message(group)
            group = []
        group.append((reading, offset))
    if group:
        yield message(group)


def publish_messages(publisher, topic: str, messages: Iterable[dict], rate: Optional[float] = None,
                     speedup: Optional[float] = None, clock: Callable[[], float] = time.time,
                     sleep: Callable[[float], None] = time.sleep, timeout: float = 120.0,
                     frame_size: int = 1) -> ReplayResult:
    """Publishes message objects (readings) to `topic` at the pace `pace` gives, up to `frame_size` readings that
    share a timestamp per message (`frames`); waits until Pub/Sub acknowledged all of them (at most `timeout`
    seconds after the last one). Each message carries the `published_at` attribute."""
    result = ReplayResult()
    outstanding = _Outstanding(result)
    start = clock()
    messages, timed = itertools.tee(messages)  # tee keeps one message: the file is still streamed
    for message, offset in frames(zip(messages, pace(map(event_time, timed), rate, speedup)), frame_size):
        delay = start + offset - clock()
        if delay > 0.001:
            sleep(delay)
        outstanding.add(publisher.publish(topic, encode(message), **{PUBLISHED_AT: repr(clock())}))
    if not outstanding.wait(timeout):
        raise TimeoutError(f"Pub/Sub did not acknowledge every message to {topic} within {timeout} s")
    result.seconds = clock() - start
    return result


def replay(config: ReplayConfig, publisher=None) -> ReplayResult:
    """Publishes `config.csv_path` to `config.topic` at the configured pace; returns the counts."""
    messages = read_rows(config.csv_path, config.channels, config.label_columns, config.sensor_id, config.limit)
    publisher = publisher or publisher_client(config.max_batch_messages, config.max_batch_latency)
    return publish_messages(publisher, config.topic, messages, rate=config.rate, speedup=config.speedup,
                            frame_size=config.frame_size)


class Heartbeat:
    """Publishes an empty message with the attribute `heartbeat=1` to `topic` every `interval` seconds until
    stopped, so the DirectRunner's Pub/Sub reader never blocks on an empty subscription.

    Example::

        with Heartbeat(publisher, topic):
            result = pipeline.run()
            ...
            result.cancel()   # keep beating until cancel() returned
    """

    def __init__(self, publisher, topic: str, interval: float = 0.5):
        self._publisher, self._topic, self._interval = publisher, topic, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="pubsub-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.is_set():
            self._publisher.publish(self._topic, b"", **{HEARTBEAT: "1", PUBLISHED_AT: repr(time.time())})
            self._stop.wait(self._interval)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> "Heartbeat":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.replay_telemetry", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", required=True, help="Telemetry CSV: timestamp,sensor_id,<channel>... (local or gs://).")
    p.add_argument("--topic", required=True, help=f"Pub/Sub topic, {TOPIC_PATTERN}.")
    p.add_argument("--channels", type=_csv_list, default=None,
                   help="Comma-separated channel columns to send (default: all but timestamp, sensor_id and the "
                        "label columns).")
    p.add_argument("--label_columns", type=_csv_list, default=LABEL_COLUMNS,
                   help=f"Comma-separated columns that are not channels (default: {','.join(LABEL_COLUMNS)}).")
    p.add_argument("--sensor_id", default=None, help="Sensor id of every row, for a CSV without a sensor_id column.")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, default=None, help="Events per second (wall clock).")
    pace.add_argument("--speedup", type=float, default=None,
                      help="Event-time seconds per wall-clock second (60 = one hour of data per minute).")
    p.add_argument("--limit", type=int, default=None, help="Publish at most this many rows.")
    p.add_argument("--frame_size", type=int, default=1,
                   help="Most readings per message: consecutive rows sharing a timestamp go out as one JSON array "
                        "(a frame, as a downlink sends every sensor's reading of one tick). Default 1: a message "
                        "per row.")
    p.add_argument("--max_batch_messages", type=int, default=500, help="Publisher batch size (messages).")
    p.add_argument("--max_batch_latency", type=float, default=0.01,
                   help="Longest a message waits for its batch to fill, in seconds.")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser()
    args = p.parse_args(sys.argv[1:] if argv is None else argv)  # exits 2 naming a bad option
    try:
        config = ReplayConfig(csv_path=args.csv, topic=args.topic, channels=args.channels,
                              label_columns=args.label_columns, sensor_id=args.sensor_id, rate=args.rate,
                              speedup=args.speedup, limit=args.limit, frame_size=args.frame_size,
                              max_batch_messages=args.max_batch_messages,
                              max_batch_latency=args.max_batch_latency)
        result = replay(config)
    except ReplayError as e:
        p.print_usage(sys.stderr)
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    print(result.to_json())
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
