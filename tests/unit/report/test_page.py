"""The report page and its charts, from run records and facts: escaped, offline, honest about what is missing."""
import dataclasses
import json
import os
import re

from beam_ml.core.layout import RunLayout
from beam_ml.core.run import MANIFEST_FILE
from beam_ml.report import charts
from beam_ml.report.page import gather, render, write_report
from beam_ml.report.publish import publish_run
from beam_ml.report.read import FeatureStats, SliceMetrics

HOSTILE = '<script>alert("x")</script><img src="http://example.com/a.png">'


def _run(tmp_path, **record) -> str:
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / MANIFEST_FILE).write_text(json.dumps(record))
    return str(run_dir)


def _fetches(page: str) -> list[str]:
    return re.findall(r'''(?:src|href)=["'](?!#|data:)([^"']*)["']''', page)


def test_a_failed_run_says_where_and_why_and_escapes_what_the_data_put_in_it(tmp_path):
    run_dir = _run(tmp_path, job="train_pipeline", run_id="r1", status="failed", stage="read",
                   error=f"data validation found 1 anomalies: {HOSTILE}",
                   counts={"read": 10, "dead_letter": 1, "splits": {"train": 6, "eval": 3}},
                   anomalies=[{"split": "eval", "feature": HOSTILE, "type": "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
                               "description": "Examples contain values missing from the schema: Atlantis"}])
    (tmp_path / "runs" / "r1" / "dead_letter").mkdir()
    (tmp_path / "runs" / "r1" / "dead_letter" / "dead_letter.jsonl").write_text(
        json.dumps({"source": "a.csv", "line": 7, "raw": HOSTILE, "reason": "3 fields, expected 8"}) + "\n")
    page = render(gather(run_dir))
    assert "<script" not in page and _fetches(page) == ["../../index.html", "../dead_letter/dead_letter.jsonl"]
    assert "default-src &#x27;none&#x27;" in page or "default-src 'none'" in page
    assert "last stage reached: <b>read</b>" in page and "data validation found 1 anomalies" in page
    assert "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in page and "Atlantis" in page
    assert "3 fields, expected 8" in page and "line" in page
    assert "No statistics: the run stopped before computing them." in page
    assert "No evaluation: the run stopped before it." in page
    assert re.findall(r'<section id="(\w+)"', page) == ["overview", "data", "validation", "evaluation", "model"]


def test_a_batch_prediction_run_gets_the_overview_and_what_it_predicted(tmp_path):
    from beam_ml.report.page import RunFacts
    from beam_ml.report.read import read_predictions
    (tmp_path / "predictions-00000-of-00001.jsonl").write_text("".join(
        json.dumps(row) + "\n" for row in [{"key": "a", "class": "x", "outputs": [0.9, 0.1]},
                                           {"key": "b", "class": "y", "outputs": [0.3, 0.7]},
                                           {"key": "c", "class": "x", "outputs": [0.6, 0.4]}]) + "{not json\n")
    summary = read_predictions(str(tmp_path / "predictions-*.jsonl"))
    assert (summary.rows, summary.classes, summary.top_scores) == (3, {"x": 2, "y": 1}, [0.9, 0.7, 0.6])
    facts = RunFacts("runs/p1", {"job": "batch_predict", "status": "succeeded",
                                 "counts": {"read": 5, "predicted": 4, "dead_letter": 1}},
                     [], {}, [], {}, [], [], [], {}, [], None, summary)
    page = render(facts)
    assert re.findall(r'<section id="(\w+)"', page) == ["overview", "predictions"]
    assert "<td>predicted</td><td>4</td>" in page and "<td>x</td><td>2</td><td>66.7%</td>" in page
    assert "Top score of each prediction" in page and page.count("<polyline") == 1


def test_the_evaluation_section_explains_the_blessing_and_compares_each_slice_with_the_baseline():
    from beam_ml.report.page import RunFacts
    slices = [SliceMetrics("Overall", {"example_count": {"candidate": 100.0, "baseline": 100.0, "diff": 0.0},
                                       "accuracy": {"candidate": 0.9, "baseline": 0.95, "diff": -0.05}}),
              SliceMetrics("island = Dream", {"accuracy": {"candidate": 0.8, "baseline": 0.9, "diff": -0.1}})]
    manifest = {"job": "train_pipeline", "status": "succeeded", "blessed": False,
                "threshold_failures": ["accuracy change vs baseline = -0.05 fails {direction: HIGHER_IS_BETTER}"],
                "config": {"eval_thresholds": {"Accuracy": {"lower": 0.5}},
                           "eval_change_thresholds": {"Accuracy": {"direction": "higher", "absolute": -0.01}}}}
    page = render(RunFacts("runs/t", manifest, ["train", "eval"], {}, [], {}, [], [], slices, {}, [], None))
    evaluation = page[page.index('<section id="evaluation"'):page.index('<section id="model"')]
    assert "Not blessed, because:" in evaluation and "accuracy change vs baseline = -0.05" in evaluation
    assert "<td>Accuracy</td><td>lower 0.5</td><td>0.9</td>" in evaluation
    assert "<td>Accuracy (change vs baseline)</td><td>direction higher, absolute -0.01</td><td>-0.05</td>" \
        in evaluation
    assert "<td>island = Dream</td><td></td><td>0.8</td><td>0.9</td>" in evaluation and "-0.1" in evaluation
    assert "Not pushed: the model was not blessed" in page


def test_charts_overlay_datasets_and_leave_out_what_cannot_be_drawn():
    overlay = charts.histogram_overlay([("train", [(0.0, 1.0, 5.0), (1.0, 2.0, 15.0)]),
                                        ("eval", [(0.5, 2.5, 4.0)]), ("empty", []),
                                        ("nan", [(float("nan"), 1.0, 3.0)])])
    assert overlay.count("<polyline") == 2 and "<title>train</title>" in overlay and ">2.5<" in overlay
    assert charts.histogram_overlay([("empty", [])]) == ""
    bars = charts.grouped_bars([("Biscoe", [0.5, None]), ("<b>", [0.25, 1.0])], ["train", "eval"], scale_max=1.0)
    assert bars.count("<rect") == 3 and "&lt;b&gt;" in bars
    assert charts.grouped_bars([], ["train"]) == ""
    line = charts.line_chart([("r1", 0.9), ("r2", None), ("r3", 0.95)])
    assert line.count("<circle") == 2


def test_the_report_is_written_whole_and_a_failure_to_write_it_never_fails_the_run(tmp_path):
    run_dir = _run(tmp_path, job="train_pipeline", status="succeeded")
    path = write_report(run_dir)
    assert path == RunLayout(run_dir).report_file and "<!DOCTYPE html>" in open(path).read()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert publish_run(str(blocker / "run")) is None  # a run dir under a file: logged, not raised


def test_the_runs_index_reads_ended_runs_from_the_lineage_store_and_running_ones_from_their_records(tmp_path):
    import shutil

    from beam_ml.lineage.store import open_store, record_run
    from beam_ml.report.index import write_index
    output_dir, store_path = tmp_path / "runs", str(tmp_path / "runs" / "metadata.sqlite")
    store = open_store(store_path)
    for run_id, day, status in (("a", 1, "succeeded"), ("b", 2, "succeeded"), ("c", 3, "running")):
        (output_dir / run_id).mkdir()
        record = {"job": "train_pipeline", "run_id": run_id, "run_dir": str(output_dir / run_id), "status": status,
                  "started": f"2026-01-0{day}T00:00:00+00:00", "finished": f"2026-01-0{day}T00:01:00+00:00",
                  "counts": {"read": 10 * day, "dead_letter": 0}, "metrics": {"accuracy": 0.8 + day / 100},
                  "blessed": True, "span_selection": {"spans": [day]}, "config": {}}
        (output_dir / run_id / MANIFEST_FILE).write_text(json.dumps(record))
        record_run(store, record)  # a running one is not recorded yet
    shutil.rmtree(output_dir / "a")  # cleaned up: the store still has it
    (output_dir / "b" / MANIFEST_FILE).write_text(json.dumps({"job": "train_pipeline", "run_id": "b"}))
    page = open(write_index(str(output_dir), (store_path, None))).read()
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", page)
    assert [re.match(r"(?:<a [^>]*>)?(\w)", row).group(1) for row in rows] == ["c", "b", "a"]
    assert '<span class="status running">running</span>' in rows[0]  # from its record: not in the store yet
    assert '<a href="b/report/index.html">b</a>' in rows[1] and "<td>0.82</td>" in rows[1]  # as recorded
    assert rows[2].startswith('a <span class="muted">(directory removed)</span>') and "<td>0.81</td>" in rows[2]
    assert "<td>1</td>" in rows[2] and "accuracy over runs" in page and page.count("<circle") == 2


def test_a_feature_table_row_shows_each_dataset_and_its_drift():
    from beam_ml.report.page import PREVIOUS_TRAIN, RunFacts
    features = {"island": {"train": FeatureStats("string", 90, 0.1, unique=2, top=[("a", 60.0), ("b", 30.0)]),
                           "eval": FeatureStats("string", 10, 0.0, unique=1, top=[("a", 10.0)]),
                           PREVIOUS_TRAIN: FeatureStats("string", 100, 0.0, unique=2, top=[("a", 50.0)])}}
    drift = {"island": [{"split": "train", "kind": "drift", "type": "L_INFTY", "value": 0.4, "threshold": 0.1}]}
    page = render(RunFacts("runs/t", {"job": "train_pipeline"}, ["train", "eval"], features, [], drift, [], [],
                           [], {}, [], "runs/t0"))
    assert "missing 10.0%" in page and "a (60)" in page and "drift l_infty 0.4 (≤ 0.1)" in page
    assert "<code>t0</code>" in page and page.count("<rect") == 2 * 3  # a bar per value (a, b) and dataset


def test_the_runs_index_lists_every_run_newest_first_with_its_metrics_and_links(tmp_path):
    from beam_ml.report.index import write_index
    for run_id, started, status, accuracy in (("a", "2026-01-01T00:00:00+00:00", "succeeded", 0.9),
                                              ("b", "2026-01-02T00:00:00+00:00", "failed", None),
                                              ("c", "2026-01-03T00:00:00+00:00", "succeeded", 0.95)):
        (tmp_path / run_id).mkdir()
        record = {"job": "train_pipeline", "run_id": run_id, "started": started, "status": status,
                  "finished": started.replace("00:00:00", "00:01:40"), "counts": {"read": 7, "dead_letter": 1},
                  "metrics": {"accuracy": accuracy} if accuracy else {}, "blessed": bool(accuracy),
                  "pushed_model_dir": f"/serving/{run_id}1" if accuracy else None}
        (tmp_path / run_id / MANIFEST_FILE).write_text(json.dumps(record))
    (tmp_path / "not-a-run").mkdir()
    page = open(write_index(str(tmp_path))).read()
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", page)
    assert [re.search(r">(\w)</a>", row).group(1) for row in rows] == ["c", "b", "a"]
    assert '<a href="c/report/index.html">c</a>' in rows[0] and "<td>100 s</td>" in rows[0]
    assert rows[0].endswith("<td>0.95</td><td>yes</td><td>c1") and rows[1].endswith("<td></td><td>no</td><td>")
    assert "accuracy over runs" in page and page.count("<circle") == 2  # the failed run has no point


def test_fairness_shows_each_group_s_rates_and_warns_when_a_gap_exceeds_the_bound():
    from beam_ml.report.page import RunFacts
    slices = [SliceMetrics("Overall", {"fpr@0.5": {"candidate": 0.1}, "fnr@0.5": {"candidate": 0.2}}),
              SliceMetrics("payment_type = Cash", {"example_count": {"candidate": 50.0}, "fpr@0.5": {"candidate": 0.05},
                                                   "fnr@0.5": {"candidate": float("nan")}},
                           (("payment_type", "Cash"),)),
              SliceMetrics("payment_type = Card", {"example_count": {"candidate": 70.0},
                                                   "fpr@0.5": {"candidate": 0.25}, "fnr@0.5": {"candidate": 0.1}},
                           (("payment_type", "Card"),)),
              SliceMetrics("payment_type = Dispute", {"example_count": {"candidate": 3.0},
                                                      "fpr@0.5": {"candidate": 1.0}, "fnr@0.5": {"candidate": 0.0}},
                           (("payment_type", "Dispute"),)),
              SliceMetrics("hour = 1", {"fpr@0.5": {"candidate": 0.9}}, (("hour", "1"),))]
    manifest = {"job": "train_pipeline", "config": {"fairness_features": ["payment_type"], "fairness_max_gap": 0.1,
                                                    "fairness_min_examples": 30}}
    page = render(RunFacts("runs/t", manifest, [], {}, [], {}, [], [], slices, {}, [], None))
    fairness = page[page.index('<section id="fairness"'):page.index('<section id="model"')]
    assert "<td>Cash</td><td>50</td><td>0.05</td><td></td>" in fairness  # FNR undefined: no positives
    assert "<td>Card</td><td>70</td><td>0.25</td><td>0.1</td>" in fairness and "hour" not in fairness
    assert "Warning: the fpr@0.5 gap between groups of payment_type is 0.2, over the bound 0.1" in fairness
    assert "fnr@0.5 gap" not in fairness  # one group with a defined FNR (and enough examples): no gap
    assert '<td><span class="muted">Dispute</span></td><td>3</td><td>1</td><td>0</td>' in fairness  # not compared
    every_group = render(RunFacts("runs/t", {**manifest, "config": {**manifest["config"], "fairness_min_examples": 0}},
                                  [], {}, [], {}, [], [], slices, {}, [], None))
    assert "fpr@0.5 gap between groups of payment_type is 0.95" in every_group
    assert '<b class="">0.1</b>' in every_group  # the FNR gap, now defined (Card 0.1, Dispute 0), within the bound
    quiet = render(RunFacts("runs/t", {"job": "train_pipeline"}, [], {}, [], {}, [], [], slices, {}, [], None))
    assert 'id="fairness"' not in quiet


def test_a_detection_run_shows_its_alerts_per_sensor_and_over_time_and_its_dead_letters(tmp_path):
    from beam_ml.core.deadletter import DeadLetter
    from beam_ml.stream.elements import Alert
    from beam_ml.stream.sinks import alert_to_json
    alerts, dead = tmp_path / "alerts", tmp_path / "dead"
    alerts.mkdir()
    dead.mkdir()
    written = [Alert("sensor-01", 100.0, 160.0, 5.0, 3.0, "model", "100", ("flow",)),
               Alert("sensor-01", 160.0, 220.0, float("inf"), 3.0, "model", "100", ("flow",)),
               Alert("<b>sensor-02</b>", 100.0, 1000.0, 4.0, 3.0, "zscore", None, ())]
    (alerts / "alerts-a-pane-0-00000-of-00001.jsonl").write_text("".join(alert_to_json(a) + "\n" for a in written))
    (dead / "dead_letter-a-pane-0-00000-of-00001.jsonl").write_text("".join(
        DeadLetter("pubsub", 0, raw, reason).to_json() + "\n"
        for raw, reason in (("{x", "not JSON: Expecting"), ("{}", "late: behind the watermark"),
                            ("{}", "late: behind the watermark"), ("{}", "duplicate: a reading at 5 already"))))
    from beam_ml.stream.elements import Incident
    from beam_ml.stream.incidents import incident_to_json
    incidents = tmp_path / "incidents"
    incidents.mkdir()
    opened = Incident("sensor-01@100.000", "open", "sensor-01", 100.0, 160.0, 5.0, 3.0, "model", ("flow",), 1)
    events = (dataclasses.replace(opened, event="close", end=220.0, peak_score=9.0, alerts=2), opened,  # any order
              dataclasses.replace(opened, incident_id="<b>x</b>@1", sensor_id="<b>x</b>", start=1000.0, end=1003.0))
    (incidents / "incidents-a-pane-0-00000-of-00001.jsonl").write_text(
        "".join(incident_to_json(i) + "\n" for i in events) + '{"start": "garbage"}\n')
    run_dir = _run(tmp_path, job="detect_anomalies", run_id="r1", status="running", stage="started",
                   config={"alerts_dir": str(alerts), "dead_letter_dir": str(dead), "incidents_dir": str(incidents)})
    page = render(gather(run_dir))
    section = page[page.index('<section id="alerts"'):]
    assert "3 alerts in" in section and "<td>sensor-01</td><td>2</td>" in section
    assert "<td>&lt;b&gt;sensor-02&lt;/b&gt;</td><td>1</td>" in section and "<b>sensor-02</b>" not in section
    assert "<td>model</td><td>2</td>" in section and "<td>zscore</td><td>1</td>" in section
    assert "<td>late</td><td>2</td>" in section and "<td>not JSON</td><td>1</td>" in section
    assert "Late readings: 2, duplicate readings: 1" in section
    assert "2 incidents (1 not closed at the last event read)" in section
    assert ("<td>sensor-01</td><td>1970-01-01T00:01:40+00:00</td><td>1970-01-01T00:03:40+00:00</td><td>120</td>"
            "<td>2</td><td>9</td><td>close</td>") in section
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td>" in section and "<b>x</b>" not in section
    assert "1970-01-01T00:02:40+00:00 to 1970-01-01T00:16:40+00:00" in section


def test_thresholds_find_metrics_however_tfma_spells_them_and_a_broken_artifact_only_loses_its_section(tmp_path):
    from beam_ml.report.page import RunFacts
    slices = [SliceMetrics("Overall", {"auc": {"candidate": 0.97, "diff": 0.01}})]
    manifest = {"job": "train_pipeline", "blessed": True,
                "config": {"eval_thresholds": {"AUC": {"lower": 0.9}},
                           "eval_change_thresholds": {"AUC": {"direction": "higher", "absolute": -0.01}}}}
    page = render(RunFacts("runs/t", manifest, [], {}, [], {}, [], [], slices, {}, [], None))
    assert "<td>AUC</td><td>lower 0.9</td><td>0.97</td>" in page and "<td>0.01</td></tr>" in page
    run_dir = _run(tmp_path, job="train_pipeline", status="failed", counts={"read": 3, "splits": {"train": 2}})
    stats = RunLayout(run_dir).statistics_file("train")
    os.makedirs(os.path.dirname(stats))
    with open(stats, "wb") as f:
        f.write(b"\x08\x96\x01 truncated")  # not a statistics proto
    page = render(gather(run_dir))
    assert "No statistics" in page and 'id="overview"' in page


def test_the_previous_run_is_one_that_computed_its_results(tmp_path):
    from beam_ml.report.read import previous_run
    for name, started, extra in (("a", "2026-01-01", {}), ("b", "2026-01-02", {"cached_from": "x/a"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / MANIFEST_FILE).write_text(json.dumps(
            {"job": "train_pipeline", "status": "succeeded", "started": started, **extra}))
    assert previous_run(str(tmp_path / "c"), {"job": "train_pipeline", "started": "2026-01-03"}) == str(tmp_path / "a")


def test_the_confusion_matrix_and_calibration_of_the_overall_slice_are_shown_when_computed():
    from beam_ml.report.page import RunFacts
    from beam_ml.report.read import OverallPlots
    plots = OverallPlots({"threshold": 0.5, "true_positives": 40.0, "false_positives": 5.0, "true_negatives": 50.0,
                          "false_negatives": 5.0, "precision": 0.889, "recall": 0.889, "accuracy": 0.9},
                         [(0.0, 0.1, 50.0, 0.05, 0.04), (0.9, 1.0, 50.0, 0.95, 0.9)])
    facts = RunFacts("runs/t", {"job": "train_pipeline"}, [], {}, [], {}, [], [],
                     [SliceMetrics("Overall", {"auc": {"candidate": 0.9}})], {}, [], None, plots=plots)
    page = render(facts)
    assert "<td><b>actual positive</b></td><td>40</td><td>5</td>" in page
    assert "<td><b>actual negative</b></td><td>5</td><td>50</td>" in page
    assert "<td>0.9–1.0</td><td>50</td><td>0.95</td><td>0.9</td>" in page and page.count("<circle") == 2


def test_a_multi_class_confusion_matrix_is_shown_by_class_name():
    from beam_ml.report.page import RunFacts
    from beam_ml.report.read import OverallPlots
    plots = OverallPlots(None, [], {(0, 0): 46.0, (1, 0): 1.0, (1, 1): 37.0, (2, 2): 17.0})
    facts = RunFacts("runs/t", {"job": "train_pipeline"}, [], {}, [], {}, [], [],
                     [SliceMetrics("Overall", {"accuracy": {"candidate": 0.99}})], {}, [], None, plots=plots,
                     class_names=["Adelie", "Gentoo", "Chinstrap"])
    page = render(facts)
    assert "<th>actual \\ predicted</th><th>Adelie</th><th>Gentoo</th><th>Chinstrap</th>" in page
    assert "<td><b>Gentoo</b></td><td>1</td><td>37</td><td>0</td>" in page


def test_the_model_section_says_whether_the_model_was_servable_and_why_not():
    from beam_ml.report.page import RunFacts
    servable = {"job": "train_pipeline", "status": "succeeded", "blessed": True, "pushed_model_dir": "/serving/7",
                "infra_validation": {"ok": True, "load_seconds": 0.46, "latency_ms": {"max": 117.0, "mean": 117.0},
                                     "peak_rss_mb": 1059.6, "requests": 1}}
    page = render(RunFacts("runs/t", servable, [], {}, [], {}, [], [], [], {}, [], None))
    assert ('Infra validation: loaded in a fresh process in 0.46 s, warm-up answered in 117 ms, peak memory '
            '1060 MB.') in page
    refused = {**servable, "pushed_model_dir": None, "push": f"infra validation failed: {HOSTILE}",
               "infra_validation": {"ok": False, "requests": 0, "error": f"InvalidArgumentError: {HOSTILE}"}}
    page = render(RunFacts("runs/t", refused, [], {}, [], {}, [], [], [], {}, [], None))
    assert '<p class="bad">Infra validation: failed, not pushed: InvalidArgumentError: &lt;script&gt;' in page
    assert "Not pushed: infra validation failed" in page and "<script" not in page
    flagged = {**servable, "tflite": {"variants": [], "error": f"ConverterError: {HOSTILE}", "within_bound": False,
                                      "refusal": None}}
    page = render(RunFacts("runs/t", flagged, [], {}, [], {}, [], [], [], {}, [], None))
    assert '<p class="bad">TFLite: failed: ConverterError: &lt;script&gt;' in page and "<script" not in page
