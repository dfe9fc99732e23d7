"""Replay a telemetry CSV to a Pub/Sub topic as JSON messages, at a chosen pace (not a Beam job).

    python -m jobs.replay_telemetry --csv telemetry.csv --topic projects/p/topics/telemetry --speedup 60
    python -m jobs.replay_telemetry --csv nab.csv --sensor_id nab-1 --topic projects/p/topics/t --rate 500 --limit 10000

Set PUBSUB_EMULATOR_HOST=host:port to publish to the Pub/Sub emulator. Prints a JSON summary. Exit codes: 0 every
message published, 1 some failed, 2 a bad option.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from beam_ml.replay import LABEL_COLUMNS, TOPIC_PATTERN, ReplayConfig, ReplayError, replay


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.replay_telemetry", description=__doc__,
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
