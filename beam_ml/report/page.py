"""A run's report: `<run_dir>/report/index.html`, one self-contained page (inline CSS and SVG, no script, a
Content-Security-Policy that forbids every fetch), built from what the run left on disk.

Sections: Overview (status, where and why a failed run stopped, counts, dead letters, inputs, stage times,
versions), Data (per feature, train and eval and the previous run's train overlaid), Validation (anomalies, the
schema, its changes since the previous run), Evaluation (the blessing and why, thresholds, every slice against the
baseline) and Model (signatures, where it was pushed). A section whose artifacts the run did not write says so.
"""
from __future__ import annotations

import dataclasses
import datetime
import html
import logging
import os
import re
from typing import Any, Callable, Iterable, Optional

from beam_ml.config.train import FAIRNESS_METRICS, FAIRNESS_THRESHOLD
from beam_ml.core import fileutil
from beam_ml.core.layout import RUNS_INDEX_FILE, RunLayout
from beam_ml.report import charts
from beam_ml.report.charts import number_text
from beam_ml.report.read import (
    OVERALL,
    AlertSummary,
    FairnessFeature,
    FeatureStats,
    OverallPlots,
    PredictionSummary,
    SliceMetrics,
    drift_measurements,
    fairness,
    feature_stats,
    previous_run,
    read_alerts,
    read_anomalies,
    read_class_names,
    read_dead_letters,
    read_manifest,
    read_plots,
    read_predictions,
    read_schema,
    read_signatures,
    read_slices,
    read_statistics,
    reused_stages,
    schema_changes,
)

PREVIOUS_TRAIN = "previous run's train"
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@dataclasses.dataclass
class RunFacts:
    """Everything the report shows, read from a run directory (`gather`)."""

    run_dir: str
    manifest: dict[str, Any]
    splits: list[str]
    features: dict[str, dict[str, FeatureStats]]  # {feature: {dataset label: stats}}
    anomalies: list[dict]
    drift: dict[str, list[dict]]
    schema: list[dict]
    schema_diff: list[str]  # what changed since the previous run
    slices: list[SliceMetrics]
    signatures: dict[str, dict[str, dict[str, str]]]
    dead_letters: list[dict]
    previous_run: Optional[str]
    predictions: Optional[PredictionSummary] = None
    plots: Optional[OverallPlots] = None
    class_names: list[str] = dataclasses.field(default_factory=list)
    alerts: Optional[AlertSummary] = None


def _read(what: str, reader: Callable[..., Any], *args: Any, default: Any = None) -> Any:
    """`reader(*args)`, or `default` when the artifact cannot be read (a run that failed while writing it): the
    report shows what it can, and the log says what it left out."""
    try:
        return reader(*args)
    except Exception as e:
        logging.getLogger(__name__).warning("report: cannot read the %s (%s: %s)", what, type(e).__name__, e)
        return default


def gather(run_dir: str) -> RunFacts:
    """Reads what the report needs from `run_dir` (and from the previous run of the same job beside it)."""
    manifest = read_manifest(run_dir)
    artifacts = manifest.get("cached_from") or run_dir  # a run that reused an earlier one shows that one's results
    layout = RunLayout(artifacts)
    config = manifest.get("config") or {}
    splits = sorted((manifest.get("counts") or {}).get("splits") or {}, key=lambda s: (s != "train", s))
    previous = _read("previous run", previous_run, run_dir, manifest) if manifest else None
    datasets = {split: feature_stats(stats)
                for split, stats in _read("statistics", read_statistics, artifacts, splits, default={}).items()}
    if previous:
        datasets.update({PREVIOUS_TRAIN: feature_stats(stats) for stats in _read(
            "previous run's statistics", read_statistics, previous, ["train"], default={}).values()})
    features: dict[str, dict[str, FeatureStats]] = {}
    for label, by_feature in datasets.items():
        for name, stats in by_feature.items():
            features.setdefault(name, {})[label] = stats
    schema = _read("schema", read_schema, artifacts)
    previous_schema = _read("previous run's schema", read_schema, previous) if previous else None
    return RunFacts(
        run_dir=run_dir, manifest=manifest, splits=splits, features=dict(sorted(features.items())),
        anomalies=list(manifest.get("anomalies") or []),
        drift=drift_measurements(_read("anomalies", read_anomalies, artifacts, splits, default={})),
        schema=_schema_rows(schema), schema_diff=schema_changes(previous_schema, schema),
        slices=_read("evaluation", read_slices, artifacts, default=[]),
        plots=_read("evaluation plots", read_plots, artifacts),
        class_names=_read("class names", read_class_names, layout.serving_model, default=[]),
        signatures=_read("model signatures", read_signatures, layout.serving_model, default={}),
        dead_letters=_read("dead letters", read_dead_letters, layout.dead_letter_file, default=[]),
        previous_run=previous,
        predictions=_read("predictions", read_predictions, manifest.get("predictions")),
        alerts=_read("alerts", read_alerts, config.get("alerts_dir"), config.get("dead_letter_dir"),
                     config.get("incidents_dir"))
        if manifest.get("job") == "detect_anomalies" else None)


def _schema_rows(schema) -> list[dict]:
    if schema is None:
        return []
    from tensorflow_metadata.proto.v0 import schema_pb2
    domains = {d.name: list(d.value) for d in schema.string_domain}
    rows = []
    for feature in schema.feature:
        values = domains.get(feature.domain or feature.name)
        rows.append({"name": feature.name, "type": schema_pb2.FeatureType.Name(feature.type),
                     "presence": f"{feature.presence.min_fraction:.0%}" if feature.HasField("presence") else "",
                     "domain": ", ".join(values[:12]) + (" …" if values and len(values) > 12 else "")
                     if values else ""})
    return rows


# ---- rendering -------------------------------------------------------------------------------------------------

def escaped(value: Any) -> str:
    return html.escape(str(value))


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """Cells are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{escaped(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escaped(title)}</h2>{body}</section>'


def _overview(facts: RunFacts) -> str:
    m = facts.manifest
    status = m.get("status", "unknown")
    parts = [f'<p class="status {escaped(status)}">Status: <b>{escaped(status)}</b>'
             + (f" — last stage reached: <b>{escaped(m.get('stage'))}</b>" if status != "succeeded" and m.get("stage")
                else "")
             + (f" in step <code>{escaped(m['failed_step'])}</code>" if m.get("failed_step") else "") + "</p>"]
    if m.get("error"):
        parts.append(f'<pre class="error">{escaped(m["error"])}</pre>')
    if m.get("cached_from"):
        parts.append(f'<p class="good">Reused run <code>{escaped(os.path.basename(m["cached_from"]))}</code>: the '
                     f'same data, code, config and library versions, so nothing was recomputed; the sections below '
                     f'show that run\'s results. {escaped(m.get("push", "")[:1].upper() + m.get("push", "")[1:])}.</p>')
    reused = reused_stages(m)
    if reused:
        parts.append('<p class="good">Stages taken over from earlier runs with the same inputs to them (their outputs '
                     'copied, not recomputed): ' + ", ".join(
                         f"{escaped(stage)} from <code>{escaped(os.path.basename(run.rstrip('/')))}</code>"
                         for stage, run in reused) + ".</p>")
    counts = m.get("counts") or {}
    if counts:
        rows = [("read", number_text(counts.get("read")))]
        rows += [(f"split {name}", number_text(n)) for name, n in (counts.get("splits") or {}).items()]
        rows += [(f"windows {name}", number_text(n)) for name, n in (counts.get("windows") or {}).items()]
        rows += [(key, number_text(value)) for key, value in counts.items()
                 if key not in ("read", "splits", "windows") and not isinstance(value, dict)]
        parts.append("<h3>Counts</h3>" + _table(("", "records"), ((escaped(k), v) for k, v in rows), "counts"))
    if facts.dead_letters:
        link = os.path.relpath(RunLayout(facts.run_dir).dead_letter_file, RunLayout(facts.run_dir).report)
        parts.append(f'<h3>Dead letters</h3><p>The first {len(facts.dead_letters)} (all in '
                     f'<a href="{escaped(link)}">{escaped(os.path.basename(link))}</a>):</p>' + _table(
                         ("source", "line", "reason", "record"),
                         ((escaped(d.get("source", "")), escaped(d.get("line", "")), escaped(d.get("reason", "")),
                           f"<code>{escaped(str(d.get('raw', ''))[:160])}</code>") for d in facts.dead_letters)))
    inputs = m.get("inputs") or []
    if inputs:
        parts.append("<h3>Inputs</h3>" + _table(
            ("input", "kind", "size", "fingerprint"),
            ((escaped(i.get("path") or i.get("table") or i.get("query") or ""), escaped(i.get("kind", "")),
              escaped(i.get("size", "")),
              f"<code>{escaped(str(i.get('sha256') or i.get('fingerprint') or '')[:16])}</code>")
             for i in inputs[:50])) + (f"<p>… and {len(inputs) - 50} more</p>" if len(inputs) > 50 else ""))
    stages = m.get("stages") or []
    if stages:
        parts.append("<h3>Stages</h3>" + _table(("stage", "reached at", "seconds since the previous"),
                                                 _stage_rows(stages)))
    versions = m.get("versions") or {}
    if versions:
        parts.append("<h3>Versions</h3><p class=\"versions\">" + ", ".join(
            f"{escaped(k)} {escaped(v)}" for k, v in sorted(versions.items())) + "</p>")
    return _section("overview", "Overview", "".join(parts))


def _stage_rows(stages: list[dict]) -> Iterable[tuple[str, str, str]]:
    previous = None
    for stage in stages:
        at = stage.get("at", "")
        try:
            moment = datetime.datetime.fromisoformat(at)
        except ValueError:
            moment = None
        took = f"{(moment - previous).total_seconds():.0f}" if moment and previous else ""
        previous = moment or previous
        yield escaped(stage.get("stage", "")), escaped(at), took


def _feature_chart(by_dataset: dict[str, FeatureStats], labels: list[str]) -> str:
    kinds = {s.kind for s in by_dataset.values()}
    if kinds == {"numeric"}:
        return charts.histogram_overlay([(label, by_dataset[label].histogram) for label in labels
                                         if label in by_dataset])
    if kinds == {"string"}:
        reference = by_dataset.get("train") or next(iter(by_dataset.values()))
        values = [v for v, _ in reference.top[:6]]
        rows = []
        for value in values:
            fractions = []
            for label in labels:
                stats = by_dataset.get(label)
                found = dict(stats.top) if stats else {}
                fractions.append(found.get(value, 0.0) / stats.count if stats and stats.count else None)
            rows.append((value, fractions))
        return charts.grouped_bars(rows, labels, unit=" of rows", scale_max=1.0)
    return ""


def _data(facts: RunFacts) -> str:
    if not facts.features:
        return _section("data", "Data", "<p>No statistics: the run stopped before computing them.</p>")
    labels = [label for label in [*facts.splits, PREVIOUS_TRAIN]
              if any(label in by_dataset for by_dataset in facts.features.values())]
    intro = (f"<p>{len(facts.features)} features. Charts overlay {charts.legend(labels)}"
             + (f" (run <code>{escaped(os.path.basename(facts.previous_run))}</code>)" if facts.previous_run else "")
             + ": densities for numbers, the share of rows for the most frequent values.</p>")
    rows = []
    for name, by_dataset in facts.features.items():
        kind = next(iter(by_dataset.values())).kind
        cells = []
        for label in labels:
            stats = by_dataset.get(label)
            if stats is None:
                cells.append("")
                continue
            if stats.kind == "numeric":
                summary = (f"mean {number_text(stats.mean)} · std {number_text(stats.std)}<br>"
                           f"min {number_text(stats.min)} · "
                           f"median {number_text(stats.median)} · max {number_text(stats.max)}"
                           + (f"<br>zeros {stats.zeros:.1%}" if stats.zeros else ""))
            elif stats.kind == "string":
                summary = f"{number_text(stats.unique)} unique<br>top: " + ", ".join(
                    f"{escaped(v)} ({number_text(n)})" for v, n in stats.top[:3])
            else:
                summary = ""
            cells.append(f'<span class="missing">missing {stats.missing:.1%}</span><br>{summary}')
        drift = "<br>".join(f"{escaped(d['kind'])} {escaped(d['type'].lower())} {number_text(d['value'])} "
                            f"(≤ {number_text(d['threshold'])})"
                            for d in facts.drift.get(name, []))
        rows.append([f"<b>{escaped(name)}</b><br><small>{escaped(kind)}</small>", *cells,
                     _feature_chart(by_dataset, labels), drift])
    return _section("data", "Data", intro + _table(["feature", *labels, "distribution", "drift / skew"], rows,
                                                   "features"))


def _validation(facts: RunFacts) -> str:
    parts = []
    if facts.anomalies:
        parts.append(f'<p class="bad">{len(facts.anomalies)} anomalies:</p>' + _table(
            ("split", "feature", "type", "description"),
            ((escaped(a.get("split", "")), escaped(a.get("feature") or "(dataset)"),
              escaped(a.get("type", "").replace(",", ", ")),
              escaped(a.get("description", ""))) for a in facts.anomalies), "anomalies"))
    elif facts.manifest.get("stage") in ("started", "read") and facts.manifest.get("status") != "succeeded":
        parts.append("<p>The run stopped before validating its data.</p>")
    else:
        parts.append('<p class="good">No anomalies against the schema.</p>')
    if facts.previous_run:
        parts.append("<h3>Schema changes since the previous run</h3>" + (
            "<ul>" + "".join(f"<li>{escaped(c)}</li>" for c in facts.schema_diff) + "</ul>"
            if facts.schema_diff else "<p>None.</p>"))
    if facts.schema:
        parts.append("<h3>Schema</h3>" + _table(("feature", "type", "present in", "values"), (
            (escaped(r["name"]), escaped(r["type"]), escaped(r["presence"]), escaped(r["domain"]))
            for r in facts.schema), "schema"))
    return _section("validation", "Validation", "".join(parts))


def _metric_value(slice_metrics: Optional[SliceMetrics], class_name: str, role: str) -> Optional[float]:
    """The value of the metric a TFMA/Keras class computes, found by name however TFMA spells it (`AUC` is `auc`,
    `SparseCategoricalAccuracy` is `sparse_categorical_accuracy`)."""
    if slice_metrics is None:
        return None
    wanted = class_name.replace("_", "").lower()
    return next((values.get(role) for name, values in slice_metrics.metrics.items()
                 if name.replace("_", "").lower() == wanted), None)


def _plots(plots: Optional[OverallPlots], class_names: list[str]) -> str:
    """The confusion matrix and calibration of the overall slice, when the run computed them."""
    if plots is None:
        return ""
    parts = []
    if plots.classes:
        ids = sorted({a for a, _ in plots.classes} | {p for _, p in plots.classes if p >= 0})

        def name(i: int) -> str:
            return class_names[i] if 0 <= i < len(class_names) else str(i)

        no_prediction = any(p < 0 for _, p in plots.classes)
        header = ["actual \\ predicted", *(name(i) for i in ids)] + (["none"] if no_prediction else [])
        rows = [[f"<b>{escaped(name(a))}</b>",
                 *(number_text(plots.classes.get((a, p), 0.0)) for p in ids)]
                + ([number_text(plots.classes.get((a, -1), 0.0))] if no_prediction else []) for a in ids]
        parts.append("<h3>Confusion matrix (overall)</h3>" + _table(header, rows, "confusion classes"))
    if plots.confusion:
        c = plots.confusion
        parts.append(f"<h3>Confusion matrix (overall, threshold {number_text(c['threshold'])})</h3>" + _table(
            ("", "predicted positive", "predicted negative"),
            [("<b>actual positive</b>", number_text(c["true_positives"]), number_text(c["false_negatives"])),
             ("<b>actual negative</b>", number_text(c["false_positives"]), number_text(c["true_negatives"]))],
            "confusion") + f"<p>precision {number_text(c['precision'])} · recall {number_text(c['recall'])} · "
                           f"accuracy {number_text(c['accuracy'])}</p>")
    if plots.calibration:
        parts.append("<h3>Calibration (overall)</h3><div class=\"figures\">" + _table(
            ("prediction", "examples", "mean prediction", "mean label"),
            ((f"{low:.1f}–{high:.1f}", number_text(n), number_text(p), number_text(y))
             for low, high, n, p, y in plots.calibration), "calibration")
            + charts.calibration_chart([(p, y, n) for _, _, n, p, y in plots.calibration]) + "</div>")
    return "".join(parts)


def _evaluation(facts: RunFacts) -> str:
    m = facts.manifest
    if not facts.slices:
        return _section("evaluation", "Evaluation", "<p>No evaluation: the run stopped before it.</p>")
    blessed = m.get("blessed")
    failures = m.get("threshold_failures") or []
    config = m.get("config") or {}
    if blessed:
        verdict = (f'<p class="good">Blessed: every threshold passed; {escaped(m.get("evaluation_mode", ""))}.</p>')
    elif blessed is False:
        verdict = ('<p class="bad">Not blessed, because:</p><ul>'
                   + "".join(f"<li>{escaped(f)}</li>" for f in failures) + "</ul>")
    else:
        verdict = "<p>No blessing decision was recorded.</p>"
    overall = next((s for s in facts.slices if s.name == OVERALL), None)
    thresholds = []
    for metric, bound in (config.get("eval_thresholds") or {}).items():
        value = _metric_value(overall, metric, "candidate")
        thresholds.append((escaped(metric), escaped(", ".join(f"{k} {v}" for k, v in bound.items())),
                           number_text(value)))
    for metric, bound in (config.get("eval_change_thresholds") or {}).items():
        value = _metric_value(overall, metric, "diff")
        thresholds.append((escaped(metric) + " (change vs baseline)",
                           escaped(", ".join(f"{k} {v}" for k, v in bound.items())), number_text(value)))
    parts = [verdict]
    if thresholds:
        parts.append("<h3>Thresholds</h3>" + _table(("metric", "threshold", "value"), thresholds, "thresholds"))
    names = sorted({name for s in facts.slices for name in s.metrics}, key=lambda n: (n != "example_count", n))
    with_baseline = any("baseline" in v for s in facts.slices for v in s.metrics.values())
    headers = ["slice"]
    for name in names:
        headers += [name] + ([f"{name} baseline", "Δ"] if with_baseline and name != "example_count" else [])
    rows = []
    for s in facts.slices:
        row = [escaped(s.name)]
        for name in names:
            values = s.metrics.get(name, {})
            row.append(number_text(values.get("candidate")))
            if with_baseline and name != "example_count":
                diff = values.get("diff")
                row += [number_text(values.get("baseline")),
                        f'<span class="{"bad" if diff and diff < 0 else "good" if diff else ""}">'
                        f'{"+" if diff and diff > 0 else ""}{number_text(diff)}</span>']
        rows.append(row)
    parts.append(_plots(facts.plots, facts.class_names))
    parts.append(f"<h3>Slices ({len(facts.slices)})</h3>" + _table(headers, rows, "slices"))
    for name in names:
        if name == "example_count":
            continue
        series = ["candidate"] + (["baseline"] if with_baseline else [])
        chart = charts.grouped_bars([(s.name, [s.metrics.get(name, {}).get(k) for k in series])
                                     for s in facts.slices], series, width=360)
        if chart:
            parts.append(f'<figure><figcaption>{escaped(name)} per slice {charts.legend(series)}</figcaption>'
                         f'{chart}</figure>')
    return _section("evaluation", "Evaluation", "".join(parts))


def fairness_of(record: dict, slices: list[SliceMetrics]) -> list[FairnessFeature]:
    """The fairness view a run record's config asks for (`fairness_features`), from its evaluated slices."""
    config = record.get("config") or {}
    return fairness(slices, list(config.get("fairness_features") or []), list(FAIRNESS_METRICS),
                    float(config.get("fairness_max_gap", 0.1)), int(config.get("fairness_min_examples") or 0))


def _fairness(facts: RunFacts) -> str:
    features = fairness_of(facts.manifest, facts.slices)
    if not features:
        return ""
    config = facts.manifest.get("config") or {}
    bound, smallest = config.get("fairness_max_gap", 0.1), int(config.get("fairness_min_examples") or 0)
    parts = [f"<p>False positive and false negative rates of each group at the {FAIRNESS_THRESHOLD} threshold "
             f"(TFMA's FPR and FNR, as Fairness Indicators shows them); a gap is the largest rate minus the "
             f"smallest, over the groups where the rate is defined"
             + (f" that have at least {smallest} examples (smaller groups, in grey, are not compared)" if smallest
                else "") + f"; the bound is {escaped(bound)}.</p>"]
    for feature in features:
        warnings = "".join(f'<p class="bad warning">Warning: the {escaped(rate)} gap between groups of '
                           f'{escaped(feature.feature)} is {number_text(feature.gaps[rate])}, over the bound '
                           f'{escaped(bound)}.</p>'
                           for rate in feature.over_bound)
        rows = [(escaped(value) if (count or 0) >= smallest else f'<span class="muted">{escaped(value)}</span>',
                 number_text(count), *(number_text(rates[r]) for r in FAIRNESS_METRICS))
                for value, count, rates in feature.groups]
        rows.append(("<b>gap</b>", "", *(f'<b class="{"bad" if r in feature.over_bound else ""}">'
                                         f'{number_text(feature.gaps[r])}</b>' for r in FAIRNESS_METRICS)))
        chart = charts.grouped_bars([(value, [rates[r] for r in FAIRNESS_METRICS])
                                     for value, _, rates in feature.groups], list(FAIRNESS_METRICS), width=360)
        parts.append(f"<h3>{escaped(feature.feature)}</h3>{warnings}"
                     + _table(("group", "examples", *FAIRNESS_METRICS), rows, "fairness")
                     + (f"<figure><figcaption>{charts.legend(list(FAIRNESS_METRICS))}</figcaption>{chart}</figure>"
                        if chart else ""))
    return _section("fairness", "Fairness", "".join(parts))


def _predictions(facts: RunFacts) -> str:
    summary = facts.predictions
    if summary is None:
        return ""
    if not summary.rows:
        return _section("predictions", "Predictions", "<p>No predictions were written.</p>")
    parts = [f"<p>{summary.rows} predictions{' (the first ones read)' if summary.truncated else ''}"
             + (f" in <code>{escaped(facts.manifest.get('predictions'))}</code>" if facts.manifest.get("predictions")
                else "") + ".</p>"]
    if summary.classes:
        ordered = sorted(summary.classes.items(), key=lambda item: (-item[1], item[0]))
        parts.append("<h3>Predicted classes</h3>" + _table(
            ("class", "rows", "share"), ((escaped(c), number_text(n), f"{n / summary.rows:.1%}") for c, n in ordered),
            "classes") + charts.grouped_bars([(c, [n / summary.rows]) for c, n in ordered[:20]], ["share"],
                                             scale_max=1.0))
    if summary.top_scores:
        counts, edges = _histogram(summary.top_scores)
        parts.append("<h3>Top score of each prediction</h3>" + charts.histogram_overlay(
            [("top score", [(edges[i], edges[i + 1], counts[i]) for i in range(len(counts))])], width=360,
            height=90))
    return _section("predictions", "Predictions", "".join(parts))


def _alerts(facts: RunFacts) -> str:
    summary = facts.alerts
    if summary is None:
        return ""
    config = facts.manifest.get("config") or {}
    parts = [f"<p>{summary.alerts} alerts in <code>{escaped(config.get('alerts_dir') or '(no alert files)')}</code>"
             + (" (the first ones read)" if summary.truncated else "") + f". Late readings: "
             f"{number_text(summary.dead_letters.get('late', 0))}, duplicate readings: "
             f"{number_text(summary.dead_letters.get('duplicate', 0))} (dead letters, also counted in the job's "
             f"metrics <code>late_readings</code> and <code>duplicate_readings</code>).</p>"]
    if summary.per_sensor:
        ordered = sorted(summary.per_sensor.items(), key=lambda item: (-item[1], item[0]))
        parts.append("<h3>Alerts per sensor</h3>" + _table(("sensor", "alerts"),
                                                          ((escaped(k), number_text(n)) for k, n in ordered), "sensors")
                     + charts.grouped_bars([(k, [n]) for k, n in ordered[:30]], ["alerts"]))
        parts.append("<h3>Alerts per detector</h3>" + _table(
            ("detector", "alerts"), ((escaped(k), number_text(n)) for k, n in sorted(summary.per_detector.items()))))
    if summary.window_ends:
        counts, edges = _histogram(summary.window_ends)
        start, end = _utc(edges[0]), _utc(edges[-1])
        parts.append(f"<h3>Alerts over time</h3><p>{escaped(start)} to {escaped(end)} (UTC), by window end</p>"
                     + charts.histogram_overlay([("alerts", [(edges[i], edges[i + 1], counts[i])
                                                             for i in range(len(counts))])], width=480, height=90))
    if summary.incidents:
        still_open = sum(1 for i in summary.incidents if i.get("event") != "close")
        parts.append(f"<h3>Incidents</h3><p>{len(summary.incidents)} incidents ({still_open} not closed at the "
                     f"last event read); the 30 with the highest peak:</p>" + _table(
                         ("sensor", "start (UTC)", "end (UTC)", "seconds", "alerts", "peak", "state"),
                         ((escaped(i.get("sensor_id")), escaped(_utc(i["start"])), escaped(_utc(i["end"])),
                           number_text(i["end"] - i["start"]), number_text(i.get("alerts")),
                           number_text(i.get("peak_score")), escaped(i.get("event")))
                          for i in summary.incidents[:30]), "incidents"))
    parts.append("<h3>Dead letters</h3>" + (_table(("reason", "messages"), (
        (escaped(k), number_text(n)) for k, n in sorted(summary.dead_letters.items(), key=lambda item: -item[1])))
        if summary.dead_letters else "<p>None.</p>"))
    return _section("alerts", "Alerts", "".join(parts))


def _utc(seconds: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")
    except (ValueError, OverflowError, OSError):  # not unix seconds (e.g. milliseconds): the number as it is
        return number_text(seconds)


def _histogram(values: list[float], buckets: int = 20) -> tuple[list[int], list[float]]:
    low, high = min(values), max(values)
    width = (high - low) / buckets or 1.0
    counts = [0] * buckets
    for value in values:
        counts[min(int((value - low) / width), buckets - 1)] += 1
    return counts, [low + i * width for i in range(buckets + 1)]


def infra_text(result: Optional[dict]) -> str:
    """Infra validation (`beam_ml.model.infra`) in a line: where the model was loaded, how long its warm-up
    requests took, the memory; or why it failed."""
    if result is None:
        return "skipped: the model is not blessed"
    if not result.get("ok"):
        return f"failed, not pushed: {result.get('error')}"
    latency = result.get("latency_ms") or {}
    if result.get("server"):
        return (f"served by {os.path.basename(result['server'])}: loaded in {number_text(result.get('load_seconds'))}"
                f" s, warm-up answered over gRPC in {number_text((latency.get('grpc') or {}).get('max'))} ms and REST"
                f" in {number_text((latency.get('rest') or {}).get('max'))} ms, server peak memory "
                f"{number_text(result.get('peak_rss_mb'))} MB")
    return (f"loaded in a fresh process in {result.get('load_seconds', 0):.2f} s, warm-up answered in "
            f"{latency.get('max', 0):.0f} ms, peak memory {result.get('peak_rss_mb', 0):.0f} MB")


def lite_text(result: dict) -> str:
    """The TFLite export in a line: each variant's size and difference from the SavedModel, and its metrics."""
    if result.get("error"):
        return f"{'FAILED, not pushed' if result.get('refusal') else 'failed'}: {result['error']}"
    parts = []
    for variant in result.get("variants", []):
        metrics = ", ".join(f"{name} {m['tflite']:.4f} ({m['change']:+.4f})"
                            for name, m in variant.get("metrics", {}).items())
        parts.append(f"{variant['file']} {variant['bytes'] / 1024:,.0f} KiB, max difference "
                     f"{variant['max_abs_difference']:.2g}" + (f", {metrics}" if metrics else ""))
    verdict = "" if result.get("within_bound") else (
        f" — OVER the bound {result.get('bound'):g}" + (", not pushed" if result.get("refusal") else ""))
    return "; ".join(parts) + f" on {result.get('rows')} eval rows" + verdict


def _tuning(facts: RunFacts) -> str:
    """The hyperparameter study's trials (`beam_ml.train.tuning`), best first, this run's marked; '' without
    tuning."""
    tuning = facts.manifest.get("tuning")
    if not tuning:
        return ""
    best, run_id = tuning["best"], facts.manifest.get("run_id")
    sign = -1 if tuning["direction"] == "maximize" else 1
    trials = sorted(tuning["trials"], key=lambda t: (t["state"] != "complete", sign * (t["value"] or 0), t["number"]))
    names = sorted({name for t in trials for name in t["params"]})
    rows = [(f"<b>{t['number']}</b>" if t["number"] == best["number"] else str(t["number"]),
             *(escaped(_short_value(t["params"].get(name))) for name in names),
             escaped(f"{t['value']:.6g}") if t["state"] == "complete" else
             f'<span class="muted">pruned at epoch {escaped(t.get("pruned_at_epoch"))}</span>'
             if t["state"] == "pruned" else f'<span class="bad">{escaped(t["state"])}: {escaped(t.get("error", ""))}</span>',
             escaped(f"{t['seconds']:.1f} s"), escaped(t["run_id"] + (" (this run)" if t["run_id"] == run_id else "")))
            for t in trials]
    text = (f"<p>Study <code>{escaped(tuning['study'])}</code>: {len(trials)} trials ({tuning['new_trials']} in this "
            f"run), {escaped(tuning['direction'])} <code>{escaped(tuning['objective'])}</code>. The model was trained "
            f"with trial {best['number']}'s values.</p>")
    return _section("tuning", "Tuning", text + _table(("trial", *names, tuning["objective"], "time", "run"), rows))


def _short_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _model(facts: RunFacts) -> str:
    m = facts.manifest
    parts = []
    pushed = m.get("pushed_model_dir")
    if pushed:
        parts.append(f'<p class="good">Pushed to <code>{escaped(pushed)}</code>.</p>')
    elif m.get("push"):
        parts.append(f"<p>Not pushed: {escaped(m['push'])}.</p>")
    elif m.get("blessed") is False:
        parts.append("<p>Not pushed: the model was not blessed (see Evaluation).</p>")
    elif m.get("status") == "succeeded" and m.get("job") == "train_pipeline":
        parts.append("<p>Not pushed.</p>")
    elif m.get("model_dir"):
        parts.append(f"<p>Model: <code>{escaped(m['model_dir'])}</code></p>")
    infra = m.get("infra_validation")
    if infra:
        parts.append(f'<p class="{"good" if infra.get("ok") else "bad"}">Infra validation: '
                     f"{escaped(infra_text(infra))}.</p>")
    lite = m.get("tflite")
    if lite:
        parts.append(f'<p class="{"good" if lite.get("within_bound") else "bad"}">TFLite: '
                     f"{escaped(lite_text(lite))}.</p>")
    if not facts.signatures:
        parts.append("<p>No model in this run's directory.</p>")
    for name, signature in facts.signatures.items():
        rows = [("input", escaped(k), escaped(v)) for k, v in signature["inputs"].items()]
        rows += [("output", escaped(k), escaped(v)) for k, v in signature["outputs"].items()]
        parts.append(f"<h3>Signature <code>{escaped(name)}</code></h3>" + _table(("", "name", "type"), rows))
    return _section("model", "Model", "".join(parts))


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:10px 20px}header h1{margin:0;font-size:20px}
nav a{color:#cfe3ff;margin-right:14px}main{padding:0 20px 40px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;margin:16px 0;padding:4px 16px 12px;
overflow-x:auto}.runs td{white-space:nowrap}.figures{display:flex;flex-wrap:wrap;gap:24px}
table{border-collapse:collapse;margin:6px 0}td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f2f4f5;font-weight:600}
.good{color:#1b7a33}.bad{color:#b3261e}.muted{color:#888}.status.failed,.status.running{color:#b3261e}.status.succeeded{color:#1b7a33}.status.cancelled{color:#8a5a00}
pre.error{background:#fff3f2;border:1px solid #f2c3bf;padding:8px;white-space:pre-wrap}
.key{margin-right:10px;white-space:nowrap}.key i{display:inline-block;width:10px;height:10px;margin-right:3px}
.missing{color:#555}.versions{color:#555;font-size:12px}figure{margin:10px 0}figcaption{font-weight:600}
"""


def render(facts: RunFacts) -> str:
    """The report page for `facts`, as one HTML document."""
    m = facts.manifest
    title = f"{m.get('job', 'run')} {m.get('run_id', os.path.basename(facts.run_dir))}"
    sections = [_overview(facts)]
    if m.get("job") == "train_pipeline":
        sections += [_data(facts), _validation(facts), _tuning(facts), _evaluation(facts), _fairness(facts),
                     _model(facts)]
    elif m.get("job") == "batch_predict":
        sections += [_predictions(facts)]
    elif m.get("job") == "detect_anomalies":
        sections += [_alerts(facts)]
    nav = "".join(f'<a href="#{a}">{a.title()}</a>' for a in re.findall(r'<section id="(\w+)"', "".join(sections)))
    return (f"{page_head(title)}<body><header><h1>{escaped(title)}</h1>"
            f"<nav>{nav}<a href='../../{RUNS_INDEX_FILE}'>All runs</a>"
            f"</nav></header><main>{''.join(sections)}</main></body></html>\n")


def page_head(title: str) -> str:
    """The start of a report page, to `<body>`: the policy that forbids every fetch, and the style."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{escaped(title)}</title><style>{_STYLE}</style></head>")


def write_report(run_dir: str) -> str:
    """Writes `<run_dir>/report/index.html` (whole, replacing an earlier one) and returns its path.

    Example::

        path = write_report("runs/penguins/20261204T212601Z-a3f5ff")
    """
    path = RunLayout(run_dir).report_file
    fileutil.write_text(path, render(gather(run_dir)))
    return path
