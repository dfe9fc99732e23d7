"""Streaming detection on the DirectRunner with the Pub/Sub emulator: sustained events/s and publish-to-alert latency.

    python -m benchmarks.streaming [--serving_dir DIR] [--sensors 50] [--rates 1000,2000] [--seconds 30] [--events 20000]
                                   [--allowed_lateness 1] [--release_every 0.5]

The job under test is `beam_ml.detect.DetectAnomalies` with the telemetry example's model (trained first into a
temporary directory unless --serving_dir names a pushed window model), on the shipped BundleBasedDirectRunner and its
own Pub/Sub source. Readings are the bundled telemetry sample re-timed to the wall clock: `--sensors` sensors, each
replaying one of the sample's sensors, all reading at the same ticks (event time = publish time), with an anomaly
(flow lifted) injected into every sensor every 60 readings. Messages carry one reading each, or one frame per tick
(a JSON array of every sensor's reading, as a telemetry downlink sends them; `beam_ml.replay.frames`).

* Backlog: `--events` readings published as fast as the publisher goes while the job runs; events/s is readings
  over the time from the first publish until the last reading (or window) came out, for the job's first steps built
  from the same transforms: read + parse, + per-sensor windows.
* Paced (sustained rate and latency): the whole job (+ scoring, alerts, sinks) with readings published at each of
  `--rates` events/s for `--seconds`; for each alert, the time from the publish of the window's newest reading to
  the alert's publish to the alerts topic (Pub/Sub's own publish time), p50 and p99, and whether the job kept up
  (no reading turned late, latency not growing over the run).

Speed is measured here, not in tests. Prints a table and the environment.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Optional, Sequence

import apache_beam as beam
import numpy as np
import pandas as pd
from apache_beam.options.pipeline_options import PipelineOptions

from benchmarks.common import ROOT, environment, memoized_dofn_inspection

sys.path.insert(0, os.path.join(ROOT, "tests"))

PROJECT = "test-project"
DATA = os.path.join(ROOT, "examples", "telemetry", "data", "telemetry.csv")
CONFIG = os.path.join(ROOT, "examples", "telemetry", "config.yaml")
ANOMALY_EVERY, ANOMALY_LENGTH = 300, 8  # about 10% of windows alert


class Tap(beam.DoFn):
    """Counts elements and notes when the last one passed (the DirectRunner runs in this process)."""

    def __init__(self, name: str):
        self._name = name

    def process(self, element):
        with Tap.lock:
            Tap.counts[self._name] = Tap.counts.get(self._name, 0) + 1
            Tap.last[self._name] = time.time()
        return ()


Tap.lock, Tap.counts, Tap.last = threading.Lock(), {}, {}


def train_model(workdir: str) -> str:
    from jobs.train_pipeline import main
    serving_dir = os.path.join(workdir, "serving")
    code = main(["--config", CONFIG, "--output_dir", os.path.join(workdir, "runs"), "--serving_dir", serving_dir])
    if code != 0:
        raise SystemExit("training the telemetry model failed")
    return serving_dir


def readings(sensors: int, count: int, start: float, rate: float) -> list[dict]:
    """`count` readings, every sensor's at each tick, `rate` readings per second: tick k at start + k * sensors /
    rate (its publish time)."""
    data = pd.read_csv(DATA)
    channels = ("temperature", "pressure", "current", "flow")
    series = {s: rows[list(channels)].to_numpy() for s, rows in data.groupby("sensor_id")}
    sources = sorted(series)
    out = []
    for i in range(count):
        sensor, step = i % sensors, i // sensors
        values = series[sources[sensor % len(sources)]][(step + 37 * sensor) % 4000].copy()
        if step % ANOMALY_EVERY >= ANOMALY_EVERY - ANOMALY_LENGTH:
            values[3] += 1.0
        out.append({"sensor_id": f"bench-{sensor:04d}", "timestamp": round(start + step * sensors / rate, 6),
                    **dict(zip(channels, map(float, values)))})
    return out


def run_job(serving_dir: str, workdir: str, cut: str, publish, allowed_lateness: float, release_every: float,
            settle: float = 120.0) -> dict:
    """Runs the job (cut: parse | windows | full) while `publish(topic)` publishes; returns taps and timings."""
    from google.cloud import pubsub_v1
    from pubsub import running, topic_with_subscription

    from beam_ml.config import DetectConfig
    from beam_ml.detect import DetectAnomalies, payload, plan_detect
    from beam_ml.replay import is_heartbeat, publisher_client
    from beam_ml.streaming import READINGS, WINDOWS, ParseTelemetry, WindowPerSensor

    publisher = publisher_client(max_batch_messages=500, max_batch_latency=0.01)
    subscriber = pubsub_v1.SubscriberClient()
    topic, subscription = topic_with_subscription(publisher, subscriber, "telemetry")
    alerts_topic, alerts_sub = topic_with_subscription(publisher, subscriber, "alerts")
    plan = plan_detect(DetectConfig.load(None, {
        "subscription": subscription, "serving_dir": serving_dir, "output_dir": os.path.join(workdir, "detect"),
        "alerts_topic": alerts_topic, "dead_letter_dir": os.path.join(workdir, "dead"),
        "allowed_lateness": str(allowed_lateness), "release_every": str(release_every), "model_poll_seconds": "30"}))
    p = beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming",
                                               f"--project={PROJECT}"]))
    if cut == "full":
        out = p | "DetectAnomalies" >> DetectAnomalies(plan)
        for name in ("windows", "alerts", "dead_letter"):
            _ = out[name] | f"Tap_{name}" >> beam.ParDo(Tap(name))
        readings_out = out["readings"]
    else:  # the job's first steps only, from the same library transforms
        spec = plan.spec
        readings_out = (p
                        | "Read" >> beam.io.ReadFromPubSub(subscription=subscription, with_attributes=True)
                        | "DropHeartbeats" >> beam.Filter(lambda m: not is_heartbeat(m))
                        | "Payloads" >> beam.Map(payload)
                        | "Parse" >> ParseTelemetry(plan.channels))[READINGS]
        if cut == "windows":
            windows = readings_out | "Windows" >> WindowPerSensor(spec.length, spec.stride, allowed_lateness,
                                                                  spec.max_gap, release_every)
            _ = windows[WINDOWS] | "TapWindows" >> beam.ParDo(Tap("windows"))
    _ = readings_out | "TapReadings" >> beam.ParDo(Tap("readings"))
    Tap.counts.clear()
    Tap.last.clear()
    with running(p, publisher, topic):
        time.sleep(5)  # start-up: the reader's first pull
        result = publish(publisher, topic)
        deadline = time.time() + settle
        expected = result["expected"]
        while time.time() < deadline and any(Tap.counts.get(k, 0) < n for k, n in expected.items()
                                             if k == "readings" or cut != "parse"):
            time.sleep(0.2)
        result["taps"] = dict(Tap.counts)
        result["last"] = dict(Tap.last)
        if cut == "full":
            time.sleep(3)
            result["alert_messages"] = drain(subscriber, alerts_sub)
    return result


def drain(subscriber, subscription: str) -> list:
    from pubsub import pull
    messages = []
    while True:
        got = pull(subscriber, subscription, max_messages=1000)
        if not got:
            return messages
        messages.extend(got)


def publish_backlog(events: int, sensors: int, frame_size: int):
    def publish(publisher, topic):
        from beam_ml.replay import encode, frames
        start = time.time()
        messages = readings(sensors, events, start, rate=5000.0)
        futures = [publisher.publish(topic, encode(m)) for m, _ in frames(((m, 0.0) for m in messages), frame_size)]
        for f in futures:
            f.result(60)
        windows = sensors * max(0, events // sensors - 23)
        return {"start": start, "published_in": time.time() - start, "messages": len(futures),
                "expected": {"readings": events, "windows": windows}}
    return publish


def publish_paced(rate: float, seconds: float, sensors: int, frame_size: int):
    def publish(publisher, topic):
        from beam_ml.replay import encode, frames
        start = time.time() + 0.5
        messages = readings(sensors, int(rate * seconds), start, rate)
        sent = {}
        futures = []
        for message, due in frames(((m, m["timestamp"]) for m in messages), frame_size):
            delay = due - time.time()
            if delay > 0.001:
                time.sleep(delay)
            now = time.time()
            for m in message if isinstance(message, list) else [message]:
                sent[(m["sensor_id"], m["timestamp"])] = now
            futures.append(publisher.publish(topic, encode(message)))
        for f in futures:
            f.result(60)
        return {"start": start, "sent": sent, "expected": {"readings": len(messages)}}
    return publish


def latencies(result: dict) -> list[tuple[float, float]]:
    """(publish time of the window's newest reading, seconds until its alert was published), in publish order."""
    from beam_ml.alerts import alert_from_json
    out = []
    for message in result["alert_messages"]:
        alert = alert_from_json(message.data)
        sent = result["sent"].get((alert.sensor_id, round(alert.window_end, 6)))
        if sent is not None:
            out.append((sent, message.publish_time.timestamp() - sent))
    return sorted(out)


def throughput_row(label: str, r: dict) -> tuple[str, str, str]:
    done = max(r["last"].values()) if r["last"] else float("nan")
    taps = r["taps"]
    return (label, f"{taps.get('readings', 0) / (done - r['start']):,.0f} events/s",
            f"readings {taps.get('readings', 0)} in {r['messages']} messages, windows {taps.get('windows', '-')}, "
            f"alerts {taps.get('alerts', '-')}; published in {r['published_in']:.1f} s; last output after "
            f"{done - r['start']:.1f} s")


def paced_row(label: str, r: dict, seconds: float) -> tuple[str, str, str]:
    """Latency percentiles of a paced run, and whether the job kept up: nothing late (the local runner's watermark
    is the wall clock, so a job that falls behind turns its own backlog late) and latency not growing."""
    timed = latencies(r)
    if not timed:
        return label, "no alerts", str(r["taps"])
    lat = np.array([t for _, t in timed])
    third = max(1, len(lat) // 3)
    first, last = float(np.median(lat[:third])), float(np.median(lat[-third:]))
    late = r["taps"].get("dead_letter", 0)
    kept_up = late == 0 and last < first + 1.0
    return (label, f"p50 {np.percentile(lat, 50):.2f} s, p99 {np.percentile(lat, 99):.2f} s; "
                   f"{'kept up' if kept_up else 'fell behind'}",
            f"{len(lat)} alerts over {seconds:.0f} s; median latency {first:.2f} s in the first third, {last:.2f} s "
            f"in the last; readings out {r['taps'].get('readings', 0)} of {r['expected']['readings']}, late "
            f"(dead-lettered) {late}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serving_dir", help="A pushed window model (default: train the telemetry example).")
    parser.add_argument("--sensors", type=int, default=50)
    parser.add_argument("--rates", default="1000,2000", help="Events/s of the paced runs (comma-separated).")
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of each paced run.")
    parser.add_argument("--events", type=int, default=20000, help="Readings in each backlog run with frames.")
    parser.add_argument("--allowed_lateness", type=float, default=1.0)
    parser.add_argument("--release_every", type=float, default=0.5)
    args = parser.parse_args(argv)
    import emulators

    from beam_ml.scoring import WindowModelHandler

    workdir = tempfile.mkdtemp(prefix="bench-streaming-")
    os.makedirs(os.path.join(workdir, "logs"))
    process, host, _ = emulators.start_pubsub(os.path.join(workdir, "logs"))
    if process is None:
        raise SystemExit(f"the Pub/Sub emulator is not installed ({emulators.PUBSUB_BIN})")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    timing = dict(allowed_lateness=args.allowed_lateness, release_every=args.release_every)
    frames = f"frames of {args.sensors}, release_every {args.release_every} s"
    rates = [float(r) for r in args.rates.split(",")]
    rows = []

    def record(row):
        rows.append(row)
        print(row, flush=True)

    def paced(rate: float, note: str = "") -> None:
        r = run_job(serving_dir, workdir, "full", publish_paced(rate, args.seconds, args.sensors, args.sensors),
                    **timing)
        record(paced_row(f"{rate:,.0f} events/s paced, whole job, {frames}{note}", r, args.seconds))

    try:
        serving_dir = args.serving_dir or train_model(workdir)
        WindowModelHandler(serving_dir, 30.0).load_model()  # loaded once per process, as the job's workers do
        # The shipped source pulls 10 messages per bundle with a new client each time: with a message per reading
        # that caps the job whatever it does (so only 2,000 readings), and a reading per timer.
        record(throughput_row("backlog, whole job, a message per reading, release_every 0", run_job(
            serving_dir, workdir, "full", publish_backlog(min(args.events, 2000), args.sensors, 1),
            allowed_lateness=args.allowed_lateness, release_every=0.0)))
        # The first steps alone drain a backlog of frames (the whole job is measured paced: with the local
        # runner's wall-clock watermark, a backlog it drains slower than real time turns late).
        for cut, label in (("parse", "read + parse"), ("windows", "+ per-sensor windows")):
            record(throughput_row(f"backlog, {label}, {frames}", run_job(
                serving_dir, workdir, cut, publish_backlog(args.events, args.sensors, args.sensors), **timing)))
        for rate in rates:
            paced(rate)
        # Where the rest goes: the local runner inspects every DoFn's signature for every bundle (one per key and
        # timer firing). Benchmark-only, as in the NAB harness; Dataflow's runner does not do this.
        with memoized_dofn_inspection():
            for rate in rates:
                paced(rate, "; the runner's per-bundle DoFn inspection memoized")
        print("\n| run | result | detail |\n|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print(f"\n{args.sensors} sensors, windows of 24 readings, allowed lateness {args.allowed_lateness} s\n"
              + environment("BundleBasedDirectRunner (--streaming) + Cloud Pub/Sub emulator"))
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
