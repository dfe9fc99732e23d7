"""Streaming detection on the DirectRunner with the Pub/Sub emulator: sustained events/s and publish-to-alert latency.

    python -m benchmarks.streaming [--serving_dir DIR] [--sensors 50] [--rates 1000,2000] [--seconds 30] [--events 20000]
                                   [--allowed_lateness 1] [--release_every 0.5] [--low_lateness 0.5]

The job under test is `beam_ml.stream.pipeline.DetectAnomalies` with the telemetry example's model (trained first into a
temporary directory unless --serving_dir names a pushed window model), on Beam's BundleBasedDirectRunner and its own
Pub/Sub source, run as `beam_ml.launch` runs jobs locally (`beam_ml.core.runtime`'s fixes) and, side by side, without
them. Readings are the bundled telemetry sample re-timed to the wall clock: `--sensors` sensors, each replaying one
of the sample's sensors, all reading at the same ticks (event time = publish time), with an anomaly (flow lifted)
injected into every sensor every 300 readings. Messages carry one reading each, or one frame per tick (a JSON array
of every sensor's reading, as a telemetry downlink sends them; `tools.replay_telemetry.frames`). A separate process
publishes, as a telemetry source would.

* Backlog: `--events` readings published as fast as the publisher goes while the job runs; events/s is readings
  over the time from the first publish until the last reading (or window) came out, for the job's first steps built
  from the same transforms, with a counting step at the end: read + parse, + per-sensor windows.
* Paced (sustained rate and latency): the whole job (+ scoring, alerts, sinks), observed only through its alerts
  and dead-letter topics, with readings published at each of `--rates` events/s for `--seconds`; for each alert,
  the time from the publish of the window's newest reading to the alert's publish to the alerts topic (Pub/Sub's
  own publish time), p50 and p99, and whether the job kept up (no reading turned late, latency not growing over
  the run).

Speed is measured here, not in tests. Prints a table and the environment.
"""
from __future__ import annotations

import argparse
import contextlib
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

from benchmarks.common import ROOT, environment

sys.path.insert(0, os.path.join(ROOT, "tests"))

PROJECT = "test-project"
DATA = os.path.join(ROOT, "examples", "telemetry", "data", "telemetry.csv")
CONFIG = os.path.join(ROOT, "examples", "telemetry", "config.yaml")
ANOMALY_EVERY, ANOMALY_LENGTH = 300, 8  # about 10% of windows alert
PUBLISHER_BATCHING = {"max_batch_messages": 500, "max_batch_latency": 0.01}  # send at once, as a downlink does


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


def run_job(serving_dir: str, workdir: str, cut: str, publish: tuple[str, dict], allowed_lateness: float,
            release_every: float, runtime_fixes: bool = True, settle: float = 120.0) -> dict:
    """Runs the job (cut: parse | windows | full) while another process publishes (`publish`: the name of a
    publishing function below and its arguments); returns what it observed and timings. `runtime_fixes`: run it as
    `beam_ml.launch` runs jobs locally (`beam_ml.core.runtime`), or on Beam's local runner as it is.

    The cuts tap their last output (a counting step); the whole job is observed only through its own outputs, the
    alerts and dead-letter topics, so no extra step runs in it. The publisher runs in its own process, as a
    telemetry source does, so that it does not share the job's interpreter."""
    from google.cloud import pubsub_v1
    from pubsub import running, topic_with_subscription

    from beam_ml.config.detect import DetectConfig
    from beam_ml.core.runtime import local_run
    from beam_ml.stream.order import WindowPerSensor
    from beam_ml.stream.parse import ParseTelemetry
    from beam_ml.stream.pipeline import DetectAnomalies
    from beam_ml.stream.plan import plan_detect
    from tools.replay_telemetry import publisher_client

    publisher = publisher_client(**PUBLISHER_BATCHING)
    subscriber = pubsub_v1.SubscriberClient()
    topic, subscription = topic_with_subscription(publisher, subscriber, "telemetry")
    alerts_topic, alerts_sub = topic_with_subscription(publisher, subscriber, "alerts")
    dead_topic, dead_sub = topic_with_subscription(publisher, subscriber, "dead")
    plan = plan_detect(DetectConfig.load(None, {
        "subscription": subscription, "serving_dir": serving_dir, "output_dir": os.path.join(workdir, "detect"),
        "alerts_topic": alerts_topic, "dead_letter_topic": dead_topic, "allowed_lateness": str(allowed_lateness),
        "release_every": str(release_every), "model_poll_seconds": "30"}))
    p = beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming",
                                               f"--project={PROJECT}"]))
    if cut == "full":
        _ = p | "DetectAnomalies" >> DetectAnomalies(plan)
    else:  # the job's first steps only, from the same library transforms
        spec = plan.spec
        readings_out = (p
                        | "Read" >> beam.io.ReadFromPubSub(subscription=subscription, with_attributes=True)
                        | "Parse" >> ParseTelemetry(plan.channels)).readings
        _ = readings_out | "TapReadings" >> beam.ParDo(Tap("readings"))
        if cut == "windows":
            windows = readings_out | "Windows" >> WindowPerSensor(spec.length, spec.stride, allowed_lateness,
                                                                  spec.max_gap, release_every)
            _ = windows.windows | "TapWindows" >> beam.ParDo(Tap("windows"))
    Tap.counts.clear()
    Tap.last.clear()
    with local_run() if runtime_fixes else contextlib.nullcontext(), running(p, publisher, topic):
        time.sleep(5)  # start-up: the reader's first pull
        result = publish_elsewhere(publish, topic)
        deadline = time.time() + settle
        if cut == "full":
            result.update(collect_outputs(subscriber, alerts_sub, dead_sub, deadline))
        else:
            expected = result["expected"]
            while time.time() < deadline and any(Tap.counts.get(k, 0) < n for k, n in expected.items()
                                                 if k == "readings" or cut != "parse"):
                time.sleep(0.2)
            result["taps"] = dict(Tap.counts)
            result["last"] = dict(Tap.last)
    return result


def collect_outputs(subscriber, alerts_sub: str, dead_sub: str, deadline: float, quiet: float = 5.0) -> dict:
    """The alerts and dead letters the job publishes, until nothing more came for `quiet` seconds."""
    out = {"alert_messages": [], "dead_letters": []}
    last_seen = time.time()
    while time.time() < deadline and time.time() - last_seen < quiet:
        time.sleep(1.0)
        for key, sub in (("alert_messages", alerts_sub), ("dead_letters", dead_sub)):
            got = drain(subscriber, sub)
            if got:
                out[key].extend(got)
                last_seen = time.time()
    return out


def drain(subscriber, subscription: str) -> list:
    from pubsub import pull
    messages = []
    while True:
        got = pull(subscriber, subscription, max_messages=1000)
        if not got:
            return messages
        messages.extend(got)


def publish_elsewhere(publish: tuple[str, dict], topic: str) -> dict:
    """Runs `publish` in a fresh process (spawned: this one holds TensorFlow and gRPC threads) and returns its
    result."""
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_publish_child, args=(publish, topic, results), daemon=True)
    child.start()
    result = results.get(timeout=600)
    child.join(60)
    if isinstance(result, BaseException):
        raise result
    return result


def _publish_child(publish: tuple[str, dict], topic: str, results) -> None:
    from tools.replay_telemetry import publisher_client
    name, kwargs = publish
    try:
        publisher = publisher_client(**PUBLISHER_BATCHING)
        results.put(PUBLISHERS[name](publisher, topic, **kwargs))
    except Exception as e:  # handed to the parent, which raises it
        results.put(RuntimeError(f"publishing failed: {e!r}"))


def publish_backlog(publisher, topic: str, events: int, sensors: int, frame_size: int) -> dict:
    from tools.replay_telemetry import encode, frames
    start = time.time()
    messages = readings(sensors, events, start, rate=5000.0)
    futures = [publisher.publish(topic, encode(m)) for m, _ in frames(((m, 0.0) for m in messages), frame_size)]
    for f in futures:
        f.result(60)
    windows = sensors * max(0, events // sensors - 23)
    return {"start": start, "published_in": time.time() - start, "messages": len(futures),
            "expected": {"readings": events, "windows": windows}}


def publish_paced(publisher, topic: str, rate: float, seconds: float, sensors: int, frame_size: int) -> dict:
    from tools.replay_telemetry import encode, frames
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


PUBLISHERS = {"backlog": publish_backlog, "paced": publish_paced}


def latencies(result: dict) -> list[tuple[float, float]]:
    """(publish time of the window's newest reading, seconds until its alert was published), in publish order."""
    from beam_ml.stream.sinks import alert_from_json
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
            f"readings {taps.get('readings', 0)} in {r['messages']} messages, windows {taps.get('windows', '-')}; "
            f"published in {r['published_in']:.1f} s; last output after {done - r['start']:.1f} s")


def paced_row(label: str, r: dict, seconds: float) -> tuple[str, str, str]:
    """Latency percentiles of a paced run, and whether the job kept up: nothing late (the local runner's watermark
    is the wall clock, so a job that falls behind turns its own backlog late) and latency not growing."""
    reasons = [m.attributes.get("reason", "") for m in r["dead_letters"]]
    late = sum(reason == "late" for reason in reasons)
    timed = latencies(r)
    if not timed:
        return label, "no alerts", f"dead letters {len(reasons)}, of them late {late}"
    lat = np.array([t for _, t in timed])
    third = max(1, len(lat) // 3)
    first, last = float(np.median(lat[:third])), float(np.median(lat[-third:]))
    kept_up = not reasons and last < first + 1.0
    return (label, f"p50 {np.percentile(lat, 50):.2f} s, p99 {np.percentile(lat, 99):.2f} s; "
                   f"{'kept up' if kept_up else 'fell behind'}",
            f"{len(lat)} alerts over {seconds:.0f} s of {r['expected']['readings']:,} readings; median latency "
            f"{first:.2f} s in the first third, {last:.2f} s in the last; dead letters {len(reasons)} (late {late})")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serving_dir", help="A pushed window model (default: train the telemetry example).")
    parser.add_argument("--sensors", type=int, default=50)
    parser.add_argument("--rates", default="1000,2000", help="Events/s of the paced runs (comma-separated).")
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of each paced run.")
    parser.add_argument("--events", type=int, default=20000, help="Readings in each backlog run with frames.")
    parser.add_argument("--allowed_lateness", type=float, default=1.0)
    parser.add_argument("--release_every", type=float, default=0.5)
    parser.add_argument("--low_lateness", type=float, default=0.5,
                        help="Also run the first rate with this allowed lateness (0: skip).")
    args = parser.parse_args(argv)
    import emulators

    from beam_ml.stream.model_scoring import WindowModelHandler

    workdir = tempfile.mkdtemp(prefix="bench-streaming-")
    os.makedirs(os.path.join(workdir, "logs"))
    process, host, _ = emulators.start_pubsub(os.path.join(workdir, "logs"))
    if process is None:
        raise SystemExit(f"the Pub/Sub emulator is not installed ({emulators.PUBSUB_BIN})")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    frames = f"frames of {args.sensors}, release_every {args.release_every} s"
    rates = [float(r) for r in args.rates.split(",")]
    rows = []

    def record(row):
        rows.append(row)
        print(row, flush=True)

    def backlog(cut: str, label: str, frame_size: int, events: int) -> None:
        record(throughput_row(label, run_job(
            serving_dir, workdir, cut, ("backlog", dict(events=events, sensors=args.sensors, frame_size=frame_size)),
            allowed_lateness=args.allowed_lateness, release_every=args.release_every)))

    def paced(rate: float, lateness: float, note: str = "", runtime_fixes: bool = True) -> None:
        r = run_job(serving_dir, workdir, "full", ("paced", dict(rate=rate, seconds=args.seconds,
                                                                 sensors=args.sensors, frame_size=args.sensors)),
                    allowed_lateness=lateness, release_every=args.release_every, runtime_fixes=runtime_fixes)
        record(paced_row(f"{rate:,.0f} events/s paced, whole job, allowed lateness {lateness:g} s{note}", r,
                         args.seconds))

    try:
        serving_dir = args.serving_dir or train_model(workdir)
        WindowModelHandler(serving_dir, 30.0).load_model()  # loaded once per process, as the job's workers do
        # The shipped source pulls 10 messages per bundle with a new client each time: with a message per reading
        # that caps the job whatever it does (so only 2,000 readings).
        backlog("parse", "backlog, read + parse, a message per reading", 1, min(args.events, 2000))
        # The first steps alone drain a backlog of frames (the whole job is measured paced: with the local runner's
        # wall-clock watermark, a backlog it drains slower than real time turns late).
        for cut, label in (("parse", "read + parse"), ("windows", "+ per-sensor windows")):
            backlog(cut, f"backlog, {label}, {frames}", args.sensors, args.events)
        for rate in rates:
            paced(rate, args.allowed_lateness)
        if args.low_lateness:
            paced(rates[0], args.low_lateness)
        # Side by side: Beam's local runner as it is (every DoFn method's signature re-derived for every bundle of
        # every step; full garbage collections over start-up's objects).
        for rate in rates:
            paced(rate, args.allowed_lateness, "; without beam_ml.core.runtime's fixes", runtime_fixes=False)
        print("\n| run | result | detail |\n|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print(f"\n{args.sensors} sensors, windows of 24 readings, {frames}\n"
              + environment("BundleBasedDirectRunner (--streaming) + Cloud Pub/Sub emulator"))
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
