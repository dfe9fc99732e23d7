"""What a run left on disk, read into plain values for the report: the run record, TFDV's statistics, schema and
anomalies, TFMA's metrics per slice and its validation, the model's signatures, the first dead letters, and the
previous run of the same job to compare with. Every reader returns an empty value for an artifact the run did not
get to write (a run that failed early still has a report).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Optional

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from beam_ml.core import fileutil
from beam_ml.core.layout import RunLayout
from beam_ml.lineage.store import STAGE_NAMES

OVERALL = "Overall"


def _gfile():
    import tensorflow as tf
    return tf.io.gfile


def _read_bytes(path: str) -> Optional[bytes]:
    if not fileutil.exists(path):
        return None
    with _gfile().GFile(path, "rb") as f:
        return f.read()


def read_manifest(run_dir: str) -> dict[str, Any]:
    data = _read_bytes(RunLayout(run_dir).manifest)
    return json.loads(data) if data else {}


def read_statistics(run_dir: str, splits: list[str]) -> dict[str, statistics_pb2.DatasetFeatureStatistics]:
    """{split: the split's dataset statistics} for the splits whose statistics were written."""
    found = {}
    for split in splits:
        data = _read_bytes(RunLayout(run_dir).statistics_file(split))
        if data is not None:
            stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(data)
            if stats.datasets:
                found[split] = stats.datasets[0]
    return found


def read_schema(run_dir: str) -> Optional[schema_pb2.Schema]:
    from google.protobuf import text_format
    data = _read_bytes(RunLayout(run_dir).schema_file)
    return None if data is None else text_format.Parse(data.decode(), schema_pb2.Schema())


def read_anomalies(run_dir: str, splits: list[str]) -> dict[str, anomalies_pb2.Anomalies]:
    from google.protobuf import text_format
    found = {}
    for split in splits:
        data = _read_bytes(RunLayout(run_dir).anomalies_file(split))
        if data is not None:
            found[split] = text_format.Parse(data.decode(), anomalies_pb2.Anomalies())
    return found


def drift_measurements(anomalies: dict[str, anomalies_pb2.Anomalies]) -> dict[str, list[dict]]:
    """{feature: [{split, type, value, threshold}]}: TFDV's drift and skew distances, where the run computed them."""
    found: dict[str, list[dict]] = {}
    for split, proto in anomalies.items():
        for info in proto.drift_skew_info:
            feature = ".".join(info.path.step)
            for kind, measurements in (("drift", info.drift_measurements), ("skew", info.skew_measurements)):
                for m in measurements:
                    found.setdefault(feature, []).append({
                        "split": split, "kind": kind,
                        "type": anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type),
                        "value": m.value, "threshold": m.threshold})
    return found


@dataclasses.dataclass
class FeatureStats:
    """One feature in one dataset, as the Data section shows it."""

    kind: str  # "numeric" | "string" | "other"
    count: int
    missing: float  # fraction of examples without a value
    mean: Optional[float] = None
    std: Optional[float] = None
    min: Optional[float] = None
    max: Optional[float] = None
    median: Optional[float] = None
    zeros: Optional[float] = None  # fraction of values that are 0
    histogram: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)  # (low, high, count)
    unique: Optional[int] = None
    top: list[tuple[str, float]] = dataclasses.field(default_factory=list)  # (value, count)


def _finite(value: Optional[float]) -> Optional[float]:
    return value if value is not None and math.isfinite(value) else None


def feature_stats(dataset: statistics_pb2.DatasetFeatureStatistics) -> dict[str, FeatureStats]:
    """{feature name: FeatureStats} of one dataset (TFDV's statistics of a split)."""
    total = dataset.num_examples
    found = {}
    for feature in dataset.features:
        name = ".".join(feature.path.step) if feature.HasField("path") else feature.name
        kind = feature.WhichOneof("stats")
        if kind == "num_stats":
            num = feature.num_stats
            common = num.common_stats
            standard = [h for h in num.histograms if h.type == statistics_pb2.Histogram.STANDARD]
            values = common.num_non_missing * (common.avg_num_values or 1)
            found[name] = FeatureStats(
                "numeric", common.num_non_missing, _missing(common, total), _finite(num.mean), _finite(num.std_dev),
                _finite(num.min), _finite(num.max), _finite(num.median),
                num.num_zeros / values if values else None,
                [(b.low_value, b.high_value, b.sample_count) for b in (standard[0].buckets if standard else [])])
        elif kind == "string_stats":
            text = feature.string_stats
            found[name] = FeatureStats(
                "string", text.common_stats.num_non_missing, _missing(text.common_stats, total),
                unique=text.unique, top=[(v.value, v.frequency) for v in text.top_values])
        else:
            common = getattr(feature, kind).common_stats if kind else None
            found[name] = FeatureStats("other", common.num_non_missing if common else 0,
                                       _missing(common, total) if common else 0.0)
    return found


def _missing(common: statistics_pb2.CommonStatistics, total: int) -> float:
    return common.num_missing / total if total else 0.0


def schema_changes(previous: Optional[schema_pb2.Schema], current: Optional[schema_pb2.Schema]) -> list[str]:
    """What changed in the schema since the previous run, in words (features added, removed, retyped, required
    or optional now, a domain that gained or lost values)."""
    if previous is None or current is None:
        return []
    before = {f.name: f for f in previous.feature}
    after = {f.name: f for f in current.feature}
    changes = [f"added feature {name!r} ({schema_pb2.FeatureType.Name(after[name].type)})"
               for name in sorted(after.keys() - before.keys())]
    changes += [f"removed feature {name!r}" for name in sorted(before.keys() - after.keys())]
    domains_before = {d.name: set(d.value) for d in previous.string_domain}
    domains_after = {d.name: set(d.value) for d in current.string_domain}
    for name in sorted(before.keys() & after.keys()):
        old, new = before[name], after[name]
        if old.type != new.type:
            changes.append(f"{name!r}: type {schema_pb2.FeatureType.Name(old.type)} → "
                           f"{schema_pb2.FeatureType.Name(new.type)}")
        if old.presence.min_fraction != new.presence.min_fraction:
            changes.append(f"{name!r}: required in {old.presence.min_fraction:.0%} → "
                           f"{new.presence.min_fraction:.0%} of examples")
        old_values = domains_before.get(old.domain or name, set())
        new_values = domains_after.get(new.domain or name, set())
        if new_values - old_values:
            changes.append(f"{name!r}: new values {', '.join(sorted(new_values - old_values)[:10])}")
        if old_values - new_values:
            changes.append(f"{name!r}: values gone {', '.join(sorted(old_values - new_values)[:10])}")
    return changes


def slice_columns(slice_key: Any) -> tuple[tuple[str, str], ...]:
    """((column, value), ...) of a TFMA SliceKey proto; empty for the overall slice."""
    columns = []
    for key in slice_key.single_slice_keys:
        kind = key.WhichOneof("kind")
        value = getattr(key, kind) if kind else ""
        columns.append((key.column, value.decode() if isinstance(value, bytes) else str(value)))
    return tuple(columns)


def slice_name(slice_key: Any) -> str:
    """"Overall", or "column = value[, ...]" for a TFMA SliceKey proto."""
    return ", ".join(f"{column} = {value}" for column, value in slice_columns(slice_key)) or OVERALL


@dataclasses.dataclass
class SliceMetrics:
    """One slice's metrics: {metric: {"candidate": v, "baseline": v, "diff": v}} (the last two with a baseline);
    `key` is its ((column, value), ...), empty for the overall slice."""

    name: str
    metrics: dict[str, dict[str, float]]
    key: tuple[tuple[str, str], ...] = ()

    @property
    def example_count(self) -> Optional[float]:
        return self.metrics.get("example_count", {}).get("candidate")


def read_slices(run_dir: str) -> list[SliceMetrics]:
    """Every slice TFMA evaluated, overall first, with each scalar metric of the candidate and, when there was a
    baseline model, the baseline's value and the difference."""
    evaluation = RunLayout(run_dir).evaluation
    if not _gfile().glob(os.path.join(evaluation, "metrics*")):
        return []
    import tensorflow_model_analysis as tfma
    found = []
    for record in tfma.load_metrics(evaluation):
        metrics: dict[str, dict[str, float]] = {}
        for item in record.metric_keys_and_values:
            if not item.value.HasField("double_value"):
                continue  # arrays and matrices are plots' business
            role = "diff" if item.key.is_diff else ("baseline" if item.key.model_name == "baseline" else "candidate")
            metrics.setdefault(item.key.name, {})[role] = item.value.double_value.value
        found.append(SliceMetrics(slice_name(record.slice_key), metrics, slice_columns(record.slice_key)))
    return sorted(found, key=lambda s: (s.name != OVERALL, s.name))


def read_signatures(model_dir: str) -> dict[str, dict[str, dict[str, str]]]:
    """{signature: {"inputs": {name: "dtype shape"}, "outputs": {...}}} of a SavedModel, read from its proto
    without loading the model."""
    data = _read_bytes(os.path.join(model_dir, "saved_model.pb"))
    if data is None:
        return {}
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2
    model = saved_model_pb2.SavedModel.FromString(data)

    def described(tensor) -> str:
        dims = "" if tensor.tensor_shape.unknown_rank else "[" + ", ".join(
            "?" if d.size < 0 else str(d.size) for d in tensor.tensor_shape.dim) + "]"
        return f"{types_pb2.DataType.Name(tensor.dtype).removeprefix('DT_').lower()} {dims}".strip()

    signatures = {}
    for name, signature in sorted(model.meta_graphs[0].signature_def.items()):
        if name.startswith("__"):
            continue  # TensorFlow's internal saver signature
        signatures[name] = {"inputs": {k: described(v) for k, v in sorted(signature.inputs.items())},
                            "outputs": {k: described(v) for k, v in sorted(signature.outputs.items())}}
    return signatures


def read_dead_letters(path: str, limit: int = 5) -> list[dict]:
    """The first `limit` dead letters of a JSON Lines file (WriteDeadLetters' format)."""
    if not fileutil.exists(path):
        return []
    found = []
    with _gfile().GFile(path) as f:
        for line in f:
            if len(found) >= limit:
                break
            try:
                found.append(json.loads(line))
            except ValueError:
                found.append({"raw": line[:200], "reason": "unreadable dead-letter line"})
    return found


def run_records(output_dir: str) -> list[dict[str, Any]]:
    """The records of the runs under `output_dir`, each with `run_dir` (where it was found), oldest first; a record
    being written (unreadable for a moment) is left out."""
    pattern = os.path.join(output_dir, "*", os.path.basename(RunLayout("").manifest))
    records = []
    for path in _gfile().glob(pattern):
        run_dir = os.path.dirname(path)
        try:
            record = read_manifest(run_dir)
        except ValueError:
            continue
        if record:
            records.append({**record, "run_dir": run_dir})
    return sorted(records, key=lambda r: (r.get("started") or "", r["run_dir"]))


def reused_stages(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """[(stage, the run directory it was taken over from)] of a training run (`reused_stages`), in pipeline order."""
    return sorted((manifest.get("reused_stages") or {}).items(), key=lambda item: STAGE_NAMES.index(item[0]))


def previous_run(run_dir: str, manifest: dict[str, Any]) -> Optional[str]:
    """The latest run of the same job under the same output directory that succeeded, computed its results (did
    not reuse another run's) and started before this one; None if there is none."""
    started = manifest.get("started") or ""
    earlier = [r for r in run_records(os.path.dirname(run_dir.rstrip("/")))
               if r["run_dir"].rstrip("/") != run_dir.rstrip("/") and r.get("job") == manifest.get("job")
               and r.get("status") == "succeeded" and not r.get("cached_from") and (r.get("started") or "") < started]
    return earlier[-1]["run_dir"] if earlier else None


@dataclasses.dataclass
class FairnessFeature:
    """One sensitive feature's groups: [(value, examples, {rate: value or None})], the gap of each rate (largest
    minus smallest over the groups where it is defined that are large enough) and the rates whose gap exceeds the
    bound."""

    feature: str
    groups: list[tuple[str, Optional[float], dict[str, Optional[float]]]]
    gaps: dict[str, Optional[float]]
    over_bound: list[str]


def fairness(slices: list[SliceMetrics], features: list[str], rates: list[str],
             max_gap: float, min_examples: int = 0) -> list[FairnessFeature]:
    """The fairness view of the evaluated slices: for each feature, its groups' `rates` and their gaps, over the
    groups of at least `min_examples` examples."""
    found = []
    for feature in features:
        groups = [(s.key[0][1], s.example_count,
                   {rate: _finite(s.metrics.get(rate, {}).get("candidate")) for rate in rates})
                  for s in slices if len(s.key) == 1 and s.key[0][0] == feature]
        gaps: dict[str, Optional[float]] = {}
        for rate in rates:
            values = [values[rate] for _, count, values in groups
                      if values[rate] is not None and (count or 0) >= min_examples]
            gaps[rate] = max(values) - min(values) if len(values) >= 2 else None
        found.append(FairnessFeature(feature, groups, gaps,
                                     [rate for rate, gap in gaps.items() if gap is not None and gap > max_gap]))
    return found




@dataclasses.dataclass
class PredictionSummary:
    """What a batch prediction run predicted, from (up to `limit` rows of) its output files: rows read, the count
    of each predicted class, and each row's top score (its largest output)."""

    rows: int
    classes: dict[str, int]
    top_scores: list[float]
    truncated: bool


def read_predictions(pattern: Optional[str], limit: int = 100_000) -> Optional[PredictionSummary]:
    """The summary of the JSON Lines predictions matching `pattern` (the run record's `predictions`), or None."""
    if not pattern:
        return None
    rows, classes, scores = 0, {}, []
    for path in sorted(_gfile().glob(pattern)):
        with _gfile().GFile(path) as f:
            for line in f:
                if rows >= limit:
                    return PredictionSummary(rows, classes, scores, True)
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # not a prediction
                rows += 1
                if row.get("class") is not None:
                    label = str(row["class"][0] if isinstance(row["class"], list) else row["class"])
                    classes[label] = classes.get(label, 0) + 1
                outputs = row.get("outputs")
                values = outputs if isinstance(outputs, list) else [outputs]
                numbers = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
                if numbers:
                    scores.append(max(numbers))
    return PredictionSummary(rows, classes, scores, False)


@dataclasses.dataclass
class AlertSummary:
    """What a streaming detection run wrote to its files (up to `limit` lines each): alerts per sensor and per
    detector, each alert's window end (unix seconds), the dead letters by reason (late readings among them), and
    each incident as its latest event says (`beam_ml.stream.incidents`; `event` close, or open/update while it
    goes on)."""

    alerts: int
    per_sensor: dict[str, int]
    per_detector: dict[str, int]
    window_ends: list[float]
    dead_letters: dict[str, int]
    truncated: bool
    incidents: list[dict] = dataclasses.field(default_factory=list)


def _json_lines(pattern: str, limit: int) -> tuple[list[dict], bool]:
    found = []
    for path in sorted(_gfile().glob(pattern)):
        with _gfile().GFile(path) as f:
            for line in f:
                if len(found) >= limit:
                    return found, True
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    found.append(value)
    return found, False


def read_alerts(alerts_dir: Optional[str], dead_letter_dir: Optional[str], incidents_dir: Optional[str] = None,
                limit: int = 100_000) -> Optional[AlertSummary]:
    """The summary of a detection run's alert, dead-letter and incident files (`--alerts_dir`, `--dead_letter_dir`,
    `--incidents_dir`), or None when it wrote none of them."""
    if not alerts_dir and not dead_letter_dir and not incidents_dir:
        return None
    events, events_cut = (_json_lines(os.path.join(incidents_dir, "incidents-*.jsonl"), limit) if incidents_dir
                          else ([], False))
    latest: dict[str, dict] = {}
    order = ("open", "update", "close")
    for event in events:
        if not all(isinstance(event.get(k), (int, float)) and math.isfinite(event[k]) for k in ("start", "end")):
            continue  # not an incident event
        known = latest.get(str(event.get("incident_id")))
        rank = (order.index(event["event"]) if event.get("event") in order else -1, event.get("alerts") or 0)
        if known is None or rank > (order.index(known["event"]) if known.get("event") in order else -1,
                                    known.get("alerts") or 0):
            latest[str(event.get("incident_id"))] = event
    alerts, alerts_cut = _json_lines(os.path.join(alerts_dir, "alerts-*.jsonl"), limit) if alerts_dir else ([], False)
    letters, letters_cut = (_json_lines(os.path.join(dead_letter_dir, "dead_letter-*.jsonl"), limit)
                            if dead_letter_dir else ([], False))
    per_sensor: dict[str, int] = {}
    per_detector: dict[str, int] = {}
    ends = []
    for alert in alerts:
        sensor, detector = str(alert.get("sensor_id")), str(alert.get("detector"))
        per_sensor[sensor] = per_sensor.get(sensor, 0) + 1
        per_detector[detector] = per_detector.get(detector, 0) + 1
        if isinstance(alert.get("window_end"), (int, float)) and math.isfinite(alert["window_end"]):
            ends.append(float(alert["window_end"]))
    reasons: dict[str, int] = {}
    for letter in letters:
        reason = str(letter.get("reason", "")).split(":")[0] or "unknown"
        reasons[reason] = reasons.get(reason, 0) + 1
    return AlertSummary(len(alerts), per_sensor, per_detector, ends, reasons, alerts_cut or letters_cut or events_cut,
                        sorted(latest.values(), key=lambda i: -(i.get("peak_score") or 0)))


@dataclasses.dataclass
class OverallPlots:
    """TFMA's plots of the candidate model on the overall slice, where the run computed them (`ConfusionMatrixPlot`,
    `CalibrationPlot`, `MultiClassConfusionMatrixPlot` in eval_metrics): the binary confusion matrix at the
    threshold nearest 0.5 ({threshold, true_positives, false_positives, true_negatives, false_negatives, precision,
    recall, accuracy}), calibration in tenths of the prediction range: [(low, high, examples, mean prediction, mean
    label)], and the multi-class confusion matrix."""

    confusion: Optional[dict[str, float]]
    calibration: list[tuple[float, float, float, float, float]]
    classes: Optional[dict[tuple[int, int], float]] = None  # multi-class: {(actual, predicted): examples}


def read_plots(run_dir: str, bins: int = 10) -> Optional[OverallPlots]:
    evaluation = RunLayout(run_dir).evaluation
    if not _gfile().glob(os.path.join(evaluation, "plots*")):
        return None
    import tensorflow_model_analysis as tfma
    confusion, calibration, classes = None, [], None
    for record in tfma.load_plots(evaluation):
        if record.slice_key.single_slice_keys:
            continue
        for item in record.plot_keys_and_values:
            if item.key.model_name not in ("", "candidate"):
                continue
            value = item.value
            if value.HasField("confusion_matrix_at_thresholds") and value.confusion_matrix_at_thresholds.matrices:
                nearest = min(value.confusion_matrix_at_thresholds.matrices, key=lambda m: abs(m.threshold - 0.5))
                confusion = {name: getattr(nearest, name) for name in (
                    "threshold", "true_positives", "false_positives", "true_negatives", "false_negatives",
                    "precision", "recall", "accuracy")}
            multi = value.multi_class_confusion_matrix_at_thresholds.matrices
            if multi:  # the threshold nearest 0 (TFMA's default): the top prediction is the predicted class
                nearest = min(multi, key=lambda m: abs(m.threshold))
                classes = {(e.actual_class_id, e.predicted_class_id): e.num_weighted_examples for e in nearest.entries}
            if value.HasField("calibration_histogram_buckets"):
                sums = [[0.0, 0.0, 0.0] for _ in range(bins)]  # examples, predictions, labels
                for bucket in value.calibration_histogram_buckets.buckets:
                    examples = bucket.num_weighted_examples.value
                    if not examples:
                        continue
                    low = bucket.lower_threshold_inclusive
                    index = min(max(int(low * bins), 0), bins - 1) if math.isfinite(low) else (0 if low < 0
                                                                                              else bins - 1)
                    sums[index][0] += examples
                    sums[index][1] += bucket.total_weighted_refined_prediction.value
                    sums[index][2] += bucket.total_weighted_label.value
                calibration = [(i / bins, (i + 1) / bins, n, p / n, y / n) for i, (n, p, y) in enumerate(sums) if n]
    if confusion is None and not calibration and classes is None:
        return None
    return OverallPlots(confusion, calibration, classes)


def read_class_names(model_dir: str) -> list[str]:
    """The class names of a classifier's outputs, in order (the labels record beside the model), or []."""
    data = _read_bytes(os.path.join(model_dir, "assets.extra", "labels.json"))
    return list((json.loads(data) if data else {}).get("classes") or [])
