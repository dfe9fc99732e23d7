"""Synthetic multi-channel sensor telemetry with labelled anomalies (the bundled telemetry example's data).

Each sensor has four channels driven by one latent load: a daily cycle (phase per sensor), a weekly pattern (lower
load at weekends), slow AR(1) wander and a slow drift, plus channel noise. Channels are coupled as in a thermal
loop: `current` and `flow` follow the load, `temperature` follows the load with a lag, `pressure` falls as
temperature rises. Injected anomalies, each labelled `is_anomaly=1` on the readings it changes:
  * spike — one to three readings of one channel jump by 6–10 noise widths;
  * level_shift — one channel offset by 4–6 noise widths for 30–120 minutes;
  * stuck — one channel frozen at its last value for 1–3 hours;
  * decoupled — one channel follows a phase-shifted daily cycle for 1–2 hours (correlation break);
  * noise_burst — one channel's noise five times wider for 30–60 minutes.

Usage::

    python -m tools.telemetry_generator --out examples/telemetry/data/telemetry.csv \\
        --sensors 4 --days 21 --interval 300 --seed 7
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Optional, Sequence

import numpy as np
import pandas as pd

CHANNELS = ("temperature", "pressure", "current", "flow")


ANOMALY_KINDS = ("spike", "level_shift", "stuck", "decoupled", "noise_burst")


START = 1_704_067_200  # 2024-01-01T00:00:00Z, a Monday


NOISE = np.array([0.15, 0.08, 0.05, 0.04])  # per channel, in channel units


DAY, WEEK = 86_400, 7 * 86_400


@dataclasses.dataclass(frozen=True)
class InjectedAnomaly:
    sensor_id: str
    kind: str
    channel: str
    start: int  # unix seconds of the first changed reading
    end: int  # unix seconds of the last changed reading


def sensor_series(rng: np.random.Generator, times: np.ndarray, phase: float) -> np.ndarray:
    """Normal behaviour of one sensor: an array [len(times), 4] in CHANNELS order."""
    daily = np.sin(2 * np.pi * (times % DAY) / DAY + phase)
    weekend = ((times - START) % WEEK) >= 5 * DAY
    wander = np.zeros(len(times))
    steps = rng.normal(0.0, 0.02, len(times))
    for i in range(1, len(times)):
        wander[i] = 0.995 * wander[i - 1] + steps[i]
    drift = 0.05 * (times - times[0]) / WEEK
    load = daily - 0.4 * weekend + wander + drift
    lagged = np.sin(2 * np.pi * (times % DAY) / DAY + phase - 0.3) - 0.4 * weekend + wander
    temperature = 21.0 + 2.5 * lagged
    pressure = 101.3 - 0.35 * (temperature - 21.0)
    current = 4.0 + 0.9 * load
    flow = 1.8 + 0.5 * load
    clean = np.stack([temperature, pressure, current, flow], axis=1)
    return clean + rng.normal(0.0, 1.0, clean.shape) * NOISE


def inject(rng: np.random.Generator, values: np.ndarray, times: np.ndarray, phase: float, sensor_id: str,
           per_day: float, skip_rows: int) -> tuple[np.ndarray, list[InjectedAnomaly]]:
    """Adds about `per_day` anomalies per day (none in the first `skip_rows` rows); returns the labels."""
    n = len(times)
    interval = int(times[1] - times[0])
    labels = np.zeros(n, dtype=np.int64)
    anomalies = []
    count = rng.poisson(per_day * (n - skip_rows) * interval / DAY)
    for _ in range(count):
        kind = ANOMALY_KINDS[rng.integers(len(ANOMALY_KINDS))]
        channel = int(rng.integers(len(CHANNELS)))
        length = {"spike": rng.integers(1, 4), "level_shift": rng.integers(1800, 7200) // interval,
                  "stuck": rng.integers(3600, 10800) // interval, "decoupled": rng.integers(3600, 7200) // interval,
                  "noise_burst": rng.integers(1800, 3600) // interval}[kind]
        start = int(rng.integers(skip_rows, n - length))
        rows = slice(start, start + length)
        if labels[max(0, start - 60):start + length + 60].any():  # keep anomalies apart, one label per event
            continue
        sign = rng.choice([-1.0, 1.0])
        if kind == "spike":
            values[rows, channel] += sign * rng.uniform(6, 10) * NOISE[channel]
        elif kind == "level_shift":
            values[rows, channel] += sign * rng.uniform(4, 6) * NOISE[channel]
        elif kind == "stuck":
            values[rows, channel] = values[start - 1, channel]
        elif kind == "decoupled":
            shifted = np.sin(2 * np.pi * (times[rows] % DAY) / DAY + phase + np.pi)
            scale = {0: 2.5, 1: -0.9, 2: 0.9, 3: 0.5}[channel]
            values[rows, channel] += scale * (shifted - np.sin(2 * np.pi * (times[rows] % DAY) / DAY + phase))
        else:
            values[rows, channel] += rng.normal(0.0, 4.0, length) * NOISE[channel]
        labels[rows] = 1
        anomalies.append(InjectedAnomaly(sensor_id, kind, CHANNELS[channel], int(times[start]),
                                         int(times[start + length - 1])))
    return labels, anomalies


def generate(sensors: int = 4, days: float = 21, interval: int = 300, anomalies_per_day: float = 1.0,
             seed: int = 7, start: int = START, clean_days: float = 0.5) -> tuple[pd.DataFrame, list[InjectedAnomaly]]:
    """Rows `timestamp, sensor_id, <CHANNELS>, is_anomaly`, sorted by time then sensor, and the injected
    anomalies. The first `clean_days` of every sensor are anomaly-free."""
    rng = np.random.default_rng(seed)
    times = np.arange(start, start + int(days * DAY), interval, dtype=np.int64)
    frames, injected = [], []
    for s in range(sensors):
        sensor_id = f"sensor-{s + 1:02d}"
        phase = rng.uniform(0, 2 * np.pi)
        values = sensor_series(rng, times, phase)
        labels, events = inject(rng, values, times, phase, sensor_id, anomalies_per_day,
                                skip_rows=int(clean_days * DAY / interval))
        frame = pd.DataFrame(np.round(values, 4), columns=list(CHANNELS))
        frame.insert(0, "sensor_id", sensor_id)
        frame.insert(0, "timestamp", times)
        frame["is_anomaly"] = labels
        frames.append(frame)
        injected.extend(events)
    rows = pd.concat(frames).sort_values(["timestamp", "sensor_id"], kind="stable").reset_index(drop=True)
    return rows, injected


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="CSV file to write.")
    parser.add_argument("--sensors", type=int, default=4)
    parser.add_argument("--days", type=float, default=21)
    parser.add_argument("--interval", type=int, default=300, help="Seconds between readings.")
    parser.add_argument("--anomalies_per_day", type=float, default=1.0, help="Per sensor.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=int, default=START, help="Unix seconds of the first reading.")
    args = parser.parse_args(argv)
    for name in ("sensors", "interval"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.days * DAY < 2 * args.interval:
        parser.error("--days must cover at least two readings")
    rows, injected = generate(args.sensors, args.days, args.interval, args.anomalies_per_day, args.seed, args.start)
    rows.to_csv(args.out, index=False)
    print(f"wrote {len(rows)} rows ({int(rows.is_anomaly.sum())} anomalous, {len(injected)} anomalies) to {args.out}")


if __name__ == "__main__":
    main()
