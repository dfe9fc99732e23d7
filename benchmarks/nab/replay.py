"""Replays NAB data files through the streaming detection path and writes and scores NAB-format results.

Layout read: `<data>/<category>/<file>.csv` (`timestamp,value`, timestamps `YYYY-MM-DD HH:MM:SS`, taken as UTC) and a
windows file `{"<category>/<file>.csv": [["start", "end"], ...]}`. Layout written, as NAB's: `<out>/<detector>/
<category>/<detector>_<file>.csv` with `timestamp,value,anomaly_score,label`, the data file's rows in its order.

The replay is one Beam pipeline per worker process (in-process DirectRunner, streaming): a TestStream of every file's
readings as a sensor sends them, one key per file, the watermark advancing after every `chunk` readings →
`WindowPerSensor(length, stride=1)` → `ScoreWindows` (our detector), and the same windows' last readings →
`apache_beam.ml.anomaly.AnomalyDetection(ZScore)` (Beam's own baseline). Rows before a file's first full window
score 0.

Real sensor clocks repeat and go back (daylight saving, NTP corrections). A file's rows arrive in file order, at the
latest time its clock has shown so far (real time goes on when the clock jumps back), and the watermark follows
arrival, as a streaming source's would. So a reading whose timestamp goes back is treated as the streaming job treats
it: put in order if its sensor has not released that time yet, else set apart as late (or as a duplicate of a
reading at the same time) and counted. Every row still gets a result row: a reading set apart scores 0, as a dead
letter would in the streaming job.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime
import json
import math
import multiprocessing
import os
import uuid
from typing import Callable, Iterable, Mapping, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.anomaly.detectors.zscore import ZScore
from apache_beam.ml.anomaly.transforms import AnomalyDetection
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream

from beam_ml.core.windowing import Reading
from beam_ml.stream.detectors.context import DetectorConfig, SensorPrior
from beam_ml.stream.model_scoring import ScoreWithModel
from beam_ml.stream.online_scoring import ScoreWindows
from beam_ml.stream.order import WindowPerSensor
from benchmarks.common import memoized_dofn_inspection
from benchmarks.incidents import incident_metrics, incidents
from benchmarks.nab.scoring import PROFILES, label_file, normalised, probation_rows, raw_score, sweep

ZSCORE = "beamZScore"  # NAB detector names are camelCase without "_"
LATE, DUPLICATE = "late", "duplicate"  # readings WindowPerSensor sets apart


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One NAB data file: `relative` ("<category>/<file>.csv") is its key in the windows file."""

    category: str
    name: str
    path: str

    @property
    def relative(self) -> str:
        return f"{self.category}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Series:
    """A data file's rows: timestamps as written, unix seconds, values ([rows], or [rows, channels] for a
    multivariate sensor)."""

    timestamps: tuple[str, ...]
    seconds: np.ndarray
    values: np.ndarray


def discover(data_dir: str) -> list[DataFile]:
    """Every `<category>/<file>.csv` under `data_dir`, sorted. Raises ValueError if there is none."""
    files = []
    for category in sorted(os.listdir(data_dir)):
        folder = os.path.join(data_dir, category)
        if os.path.isdir(folder):
            files += [DataFile(category, name, os.path.join(folder, name))
                      for name in sorted(os.listdir(folder)) if name.endswith(".csv")]
    if not files:
        raise ValueError(f"no <category>/<file>.csv under {data_dir}")
    return files


def unix_seconds(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc).timestamp()


def read_series(path: str) -> Series:
    """A NAB data file, its rows in file order. Raises ValueError naming the file and line for a malformed row.

    Timestamps that repeat (a few NAB files repeat an hour at a daylight-saving change) or go back are kept: the
    replay handles them as the streaming job would (see the module docstring)."""
    timestamps, values = [], []
    with open(path) as f:
        header = f.readline().strip().split(",")
        if header[:2] != ["timestamp", "value"]:
            raise ValueError(f"{path}: header is {header}, expected timestamp,value")
        for number, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                timestamp, value = line.strip().split(",")[:2]
                values.append(float(value))
                timestamps.append(timestamp)
            except ValueError:
                raise ValueError(f"{path}:{number}: not timestamp,value: {line.strip()!r}") from None
    return Series(tuple(timestamps), np.array([unix_seconds(t) for t in timestamps]), np.array(values))


def read_windows(path: str) -> dict[str, list[tuple[str, str]]]:
    with open(path) as f:
        return {k: [tuple(w) for w in v] for k, v in json.load(f).items()}


def with_nab_priors(config: DetectorConfig, series: Mapping[str, Series]) -> DetectorConfig:
    """`config` told, for each series, what NAB's detector API (`AnomalyDetector.__init__`) tells every detector:
    the file's minimum and maximum value (`inputMin`/`inputMax`) and its probationary period (15% of its rows, at
    most 750), here as the likelihood's learning readings."""
    priors = {}
    for key, s in series.items():
        by_channel = s.values.reshape(len(s.values), -1)
        priors[key] = SensorPrior(ranges=tuple(zip(by_channel.min(axis=0).tolist(), by_channel.max(axis=0).tolist())),
                                  learning_readings=max(probation_rows(len(s.values)), 2))
    return dataclasses.replace(config, sensors=priors)


# --- the Beam replay ------------------------------------------------------------------------------------------------

_COLLECTED: dict[str, list] = collections.defaultdict(list)  # run token → (detector, key, end, score): in-process only


def zscore_input(window):
    """A window's last reading as the univariate row Beam's detectors take (the end time rides along)."""
    return window.sensor_id, beam.Row(value=float(window.values[-1][0]), end=float(window.end))


def zscore_score(z: Optional[float]) -> float:
    """Beam's |z| mapped monotonically to [0, 1) (NAB scores are in [0, 1]); not yet scored (NaN/None) is 0."""
    if z is None or math.isnan(z):
        return 0.0
    return z / (1.0 + z)


def arrivals(series: Mapping[str, Series]) -> list[tuple[float, str, int]]:
    """Every row as (arrival time, key, row), in arrival order: a file's rows in file order, each arriving at the
    latest time its clock has shown so far (see the module docstring)."""
    return sorted((float(arrived), key, i) for key, s in series.items()
                  for i, arrived in enumerate(np.maximum.accumulate(s.seconds)))


@dataclasses.dataclass(frozen=True)
class WindowModel:
    """A pushed window model to replay with (the newest version under `serving_dir`), scored as the streaming job
    scores with it (`ScoreWithModel`, RunInference)."""

    name: str
    serving_dir: str


def build(pipeline, series: Mapping[str, Series], config, window_length: int, chunk: int, token: str,
          zscore: bool = True, relative: bool = False) -> None:
    """The replay graph: every series as one sensor through WindowPerSensor, then our detector (`config`: a
    `DetectorSpec` with a `name`, or a `WindowModel`; with `relative`, its scores divided by its threshold, so 1 is
    the alert level) and, with `zscore`, Beam's ZScore; results, and the readings set apart as late or duplicate, go
    to the in-process `_COLLECTED[token]`."""
    readings = arrivals(series)
    stream = TestStream()
    watermark = -math.inf
    for start in range(0, len(readings), chunk):
        part = readings[start:start + chunk]
        stream = stream.add_elements([beam.window.TimestampedValue(
            (key, Reading(key, float(series[key].seconds[i]), tuple(np.atleast_1d(series[key].values[i]).tolist()))),
            float(series[key].seconds[i])) for _, key, i in part])
        if part[-1][0] + 1e-3 > watermark:  # sensors sharing a clock can end two chunks at the same time
            watermark = part[-1][0] + 1e-3
            stream = stream.advance_watermark_to(watermark)
    stream = stream.advance_watermark_to_infinity()

    windowed = (pipeline
                | "Replay" >> stream.with_output_types(beam.typehints.KV[str, Reading])
                | "Window" >> WindowPerSensor(length=window_length, stride=1))
    for kind, readings_set_apart in ((LATE, windowed.late), (DUPLICATE, windowed.duplicates)):
        _ = readings_set_apart | f"Collect{kind.title()}" >> beam.ParDo(_CollectSetApart(token, kind))
    windows = windowed.windows
    scorer = (ScoreWithModel(config.serving_dir, config.name) if isinstance(config, WindowModel)
              else ScoreWindows(config))
    _ = (windows
         | "Detect" >> scorer
         | "CollectDetector" >> beam.ParDo(_Collect(token, config.name, relative)))
    if not zscore:
        return
    _ = (windows
         | "LastReading" >> beam.Map(zscore_input)
         | "BeamZScore" >> AnomalyDetection(ZScore(features=["value"]))
         | "CollectZScore" >> beam.ParDo(_CollectZScore(token)))


class _Collect(beam.DoFn):
    """Keeps our detector's scores in `_COLLECTED[token]` (with `relative`, divided by their thresholds)."""

    def __init__(self, token: str, detector: str, relative: bool = False):
        self._token, self._detector, self._relative = token, detector, relative

    def process(self, scored):
        score = scored.score / scored.threshold if self._relative else scored.score
        _COLLECTED[self._token].append((self._detector, scored.sensor_id, scored.end, score))


class _CollectSetApart(beam.DoFn):
    """Keeps the readings WindowPerSensor set apart (`kind`: late or duplicate) in `_COLLECTED[token]`."""

    def __init__(self, token: str, kind: str):
        self._token, self._kind = token, kind

    def process(self, reading):
        _COLLECTED[self._token].append((self._kind, reading.sensor_id, reading.timestamp, None))


class _CollectZScore(beam.DoFn):
    """Keeps Beam ZScore's scores (mapped to [0, 1)) in `_COLLECTED[token]`."""

    def __init__(self, token: str):
        self._token = token

    def process(self, element):
        key, result = element
        z = next(iter(result.predictions)).score
        _COLLECTED[self._token].append((ZSCORE, key, result.example.end, zscore_score(z)))


@dataclasses.dataclass
class Replayed:
    """What a replay gives: {detector: {key: per-row scores}}, and {key: {"late": n, "duplicate": n}}, the readings
    of each file set apart (they score 0)."""

    scores: dict[str, dict[str, np.ndarray]]
    set_apart: dict[str, dict[str, int]]

    def update(self, other: "Replayed") -> None:
        for detector, by_key in other.scores.items():
            self.scores.setdefault(detector, {}).update(by_key)
        self.set_apart.update(other.set_apart)


def detect(series: Mapping[str, Series], config, window_length: int = 8, chunk: int = 500,
           zscore: bool = True, relative: bool = False) -> Replayed:
    """The scores of every series, from one streaming replay in this process (Beam's ZScore too, with `zscore`;
    ours divided by its threshold, with `relative`)."""
    token = uuid.uuid4().hex
    options = PipelineOptions(["--runner=DirectRunner"])
    options.view_as(StandardOptions).streaming = True
    with memoized_dofn_inspection(), beam.Pipeline(options=options) as pipeline:
        build(pipeline, series, config, window_length, chunk, token, zscore, relative)
    collected = _COLLECTED.pop(token, [])
    scores = {name: {key: np.zeros(len(s.values)) for key, s in series.items()}
              for name in (config.name, *([ZSCORE] if zscore else []))}
    set_apart = {key: {LATE: 0, DUPLICATE: 0} for key in series}
    row_of: dict[str, dict[float, int]] = {}
    for key, s in series.items():  # a time that repeats is one reading to the streaming path: its first row
        row_of[key] = {}
        for i, t in enumerate(s.seconds):
            row_of[key].setdefault(t, i)
    order: dict[tuple[str, str], list] = collections.defaultdict(list)
    for detector, key, end, score in collected:
        if detector in set_apart[key]:
            set_apart[key][detector] += 1
            continue
        scores[detector][key][row_of[key][end]] = score
        order[detector, key].append(end)
    out_of_order = [k for k, ends in order.items() if ends != sorted(ends)]
    if out_of_order:  # the detectors see windows in this order: say so if it is not event time
        print(f"warning: results not in event-time order for {out_of_order[:5]}")
    return Replayed(scores, set_apart)


def detect_files(files: Sequence[DataFile], config, window_length: int, chunk: int,
                 reader: Callable[[str], Series] = read_series, zscore: bool = True, relative: bool = False
                 ) -> Replayed:
    return detect({f.relative: reader(f.path) for f in files}, config, window_length, chunk, zscore, relative)


def balanced_groups(files: Sequence[DataFile], sizes: Mapping[str, int], groups: int) -> list[list[DataFile]]:
    """Files split into `groups` lists of about equal total rows (largest first, onto the lightest group)."""
    out, loads = [[] for _ in range(groups)], [0] * groups
    for f in sorted(files, key=lambda f: -sizes[f.relative]):
        lightest = loads.index(min(loads))
        out[lightest].append(f)
        loads[lightest] += sizes[f.relative]
    return [g for g in out if g]


def detect_all(files: Sequence[DataFile], config, workers: int, window_length: int = 8, chunk: int = 500,
               reader: Callable[[str], Series] = read_series, zscore: bool = True, relative: bool = False
               ) -> Replayed:
    """`detect` over all files (read by `reader`, a module-level function), split across `workers` processes (each
    its own pipeline)."""
    if workers <= 1:
        return detect_files(files, config, window_length, chunk, reader, zscore, relative)
    sizes = {f.relative: os.path.getsize(f.path) for f in files}
    merged = Replayed({}, {})
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        jobs = [pool.submit(detect_files, group, config, window_length, chunk, reader, zscore, relative)
                for group in balanced_groups(files, sizes, workers)]
        for job in jobs:
            merged.update(job.result())
    return merged


# --- NAB results and scores -----------------------------------------------------------------------------------------

def _datetime64(text: str) -> np.datetime64:
    return np.datetime64(text.strip().replace(" ", "T")).astype("datetime64[s]")


def labels(series: Series, windows: Sequence[tuple[str, str]]) -> np.ndarray:
    """1 for rows inside a window, else 0 (NAB's `label` column)."""
    times = np.array([_datetime64(t) for t in series.timestamps])
    out = np.zeros(len(times), dtype=int)
    for start, end in windows:
        out[(times >= _datetime64(start)) & (times <= _datetime64(end))] = 1
    return out


def result_path(out_dir: str, detector: str, data_file: DataFile) -> str:
    return os.path.join(out_dir, detector, data_file.category, f"{detector}_{data_file.name}")


def write_result(path: str, series: Series, scores: np.ndarray, label: np.ndarray) -> None:
    """One NAB results file: the data file's rows with `anomaly_score` and `label`."""
    if len(scores) != len(series.values) or len(label) != len(series.values):
        raise ValueError(f"{path}: {len(series.values)} rows but {len(scores)} scores and {len(label)} labels")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("timestamp,value,anomaly_score,label\n")
        for t, v, score, is_anomaly in zip(series.timestamps, series.values, scores, label):
            f.write(f"{t},{v:.10g},{float(score):.10g},{int(is_anomaly)}\n")


def read_result(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps as datetime64[s], anomaly scores) of a NAB results file."""
    times, scores = [], []
    with open(path) as f:
        header = f.readline().strip().split(",")
        column = header.index("anomaly_score")
        for line in f:
            fields = line.strip().split(",")
            times.append(_datetime64(fields[0]))
            scores.append(float(fields[column]))
    return np.array(times), np.array(scores)


@dataclasses.dataclass(frozen=True)
class ProfileScore:
    score: float  # normalised: null detector 0, perfect 100
    threshold: float
    raw: float
    categories: dict[str, float]  # each category's score at the corpus's threshold: normalised, or raw (the
    # false positives' cost) for a category without windows, where NAB's normalisation is undefined


def score_corpus(files: Sequence[DataFile], times: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray],
                 windows: Mapping[str, Sequence[tuple[str, str]]],
                 profiles: Iterable[str] = tuple(PROFILES)) -> dict[str, ProfileScore]:
    """NAB's scores of per-row anomaly scores ({file: rows' datetime64[s] times}, {file: scores}), per profile: one
    threshold swept over the whole corpus, and each category scored at that threshold, as NAB reports them."""
    parsed = {f.relative: [(_datetime64(a), _datetime64(b)) for a, b in windows.get(f.relative, [])] for f in files}
    out = {}
    for name in profiles:
        profile = PROFILES[name]
        pairs = {}
        for f in files:
            labelled, scorable = label_file(f.relative, times[f.relative], parsed[f.relative], profile)
            pairs[f.relative] = (labelled, scores[f.relative][scorable])
        threshold, raw = sweep(list(pairs.values()), profile)
        categories = {}
        for category in sorted({f.category for f in files}):
            kept = [pairs[f.relative] for f in files if f.category == category]
            raw_of_category = raw_score(kept, threshold, profile)
            categories[category] = (normalised(raw_of_category, [p[0] for p in kept], profile)
                                    if any(p[0].n_windows for p in kept) else raw_of_category)
        out[name] = ProfileScore(normalised(raw, [p[0] for p in pairs.values()], profile), threshold, raw, categories)
    return out


def nab_incidents(files: Sequence[DataFile], series: Mapping[str, Series], scores: Mapping[str, np.ndarray],
                  windows: Mapping[str, Sequence[tuple[str, str]]], threshold: float, gap: float
                  ) -> tuple[float, float, int]:
    """(precision, recall, incidents): the rows scoring at least `threshold` after each file's probation, grouped
    into incidents as the streaming job groups alerts (`gap` seconds), judged against NAB's windows."""
    per_file = []
    for f in files:
        s = series[f.relative]
        scored = np.arange(len(s.values)) >= probation_rows(len(s.values))
        found = incidents(s.seconds[scored], scores[f.relative][scored] >= threshold, gap)
        per_file.append((found, [(unix_seconds(a), unix_seconds(b)) for a, b in windows.get(f.relative, [])]))
    return incident_metrics(per_file)


def score_results(out_dir: str, detector: str, files: Sequence[DataFile],
                  windows: Mapping[str, Sequence[tuple[str, str]]],
                  profiles: Iterable[str] = tuple(PROFILES)) -> dict[str, ProfileScore]:
    """Scores a detector's NAB results files under `out_dir` with our implementation of NAB's rules, per profile."""
    results = {f.relative: read_result(result_path(out_dir, detector, f)) for f in files}
    return score_corpus(files, {k: times for k, (times, _) in results.items()},
                        {k: scores for k, (_, scores) in results.items()}, windows, profiles)


def print_categories(tables: Mapping[str, Mapping[str, ProfileScore]]) -> None:
    """Prints each detector's per-category scores ({detector: {profile: ProfileScore}}) as a markdown table (a
    category without windows shows its raw score: 0 is no false positive)."""
    profiles = list(next(iter(tables.values())))
    print("| category | detector | " + " | ".join(profiles) + " |")
    print("|---|---|" + "---:|" * len(profiles))
    for category in next(iter(tables.values()))[profiles[0]].categories:
        for detector, by_profile in tables.items():
            print(f"| {category} | {detector} | "
                  + " | ".join(f"{by_profile[p].categories[category]:.1f}" for p in profiles) + " |")
