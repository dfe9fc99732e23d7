"""Run reports, opened in a real headless Chromium without network: the sections render the run's real numbers,
the page makes no request and logs no error. Screenshots of each section go to $REPORT_SCREENSHOTS (the README's
pictures: `REPORT_SCREENSHOTS=docs/report make test`) or to the test's temporary directory. The report of a run that
failed validation is checked in tests/e2e/test_penguins.py, with that run."""
import json
import os
import subprocess
import sys

import pytest
import tensorflow_data_validation as tfdv

from beam_ml.core.layout import RunLayout
from tests.support.browser import Browser
from tests.support.jobs import job_args, run_job
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e

SECTIONS = ("overview", "data", "validation", "evaluation", "model")


@pytest.fixture(scope="module")
def two_penguin_runs(tmp_path_factory) -> tuple[dict, dict]:
    """The penguin example run twice into one output directory (the second with --no_cache: computed, and
    compared with the first)."""
    base = tmp_path_factory.mktemp("report")
    manifests = []
    for run_id, flags in (("first", {}), ("second", {"no_cache": "true"})):
        code, manifest = run_job(*job_args(base, run_id, **flags))
        assert code == 0, manifest.get("error")
        manifests.append(manifest)
    return manifests[0], manifests[1]


def _screenshot_dir(tmp_path) -> str:
    return os.path.abspath(os.environ.get("REPORT_SCREENSHOTS") or str(tmp_path / "screenshots"))


def _open(browser: Browser, path: str):
    url = "file://" + os.path.abspath(path)
    load = browser.open(url)
    assert load.requests == [url], f"the page asked for more than itself: {load.requests}"
    assert load.console_errors == []
    return load


def test_the_report_of_a_run_shows_its_real_numbers_offline(two_penguin_runs, tmp_path):
    first, second = two_penguin_runs
    report = RunLayout(second["run_dir"]).report_file
    assert os.path.exists(report), "the job writes its report at the end of the run"
    train_stats = tfdv.load_stats_binary(RunLayout(second["run_dir"]).statistics_file("train")).datasets[0]
    sex = next(f for f in train_stats.features if f.path.step == ["sex"]).string_stats.common_stats
    sex_missing = f"missing {sex.num_missing / train_stats.num_examples:.1%}"
    shots = _screenshot_dir(tmp_path)
    with Browser() as browser:
        _open(browser, report)
        overview = browser.text("#overview")
        assert "succeeded" in overview
        assert f"read\t{second['counts']['read']}" in overview
        for split, n in second["counts"]["splits"].items():
            assert f"split {split}\t{n}" in overview
        assert second["inputs"][0]["sha256"][:16] in overview
        assert "trained" in overview and "evaluated" in overview  # the stage timings
        data = browser.text("#data")
        assert "previous run's train" in data and "first" in data  # compared with the run before
        assert sex_missing in data
        assert browser.evaluate("document.querySelectorAll('#data svg polyline').length") >= 3 * 5
        validation = browser.text("#validation")
        assert "No anomalies" in validation and "Schema changes since the previous run" in validation
        evaluation = browser.text("#evaluation")
        accuracy = second["metrics"]["sparse_categorical_accuracy"]
        assert "Blessed" in evaluation and f"{accuracy:.4g}" in evaluation
        confusion = [row.split("\t") for row in browser.text("#evaluation table.confusion").splitlines()]
        assert confusion[0][1:] == [row[0] for row in confusion[1:]]  # the classes, by name, both ways
        assert sum(int(n) for row in confusion[1:] for n in row[1:]) == second["counts"]["splits"]["eval"]
        biscoe = next(row for row in evaluation.splitlines() if row.startswith("island = Biscoe"))
        assert biscoe.split("\t")[1].isdigit() and "baseline" in evaluation  # count, and against the first model
        model = browser.text("#model")
        assert second["pushed_model_dir"] in model and "serving_default" in model
        for section in SECTIONS:
            browser.screenshot(os.path.join(shots, f"{section}.png"), selector=f"#{section}")
        _open(browser, os.path.join(os.path.dirname(second["run_dir"]), "index.html"))
        runs = browser.text("#runs").splitlines()
        assert runs[0] == "2 runs" and [row.split("\t")[0] for row in runs[2:]] == ["second", "first"]
        assert f"{accuracy:.4g}" in runs[2] and os.path.basename(second["pushed_model_dir"]) in runs[2]
        links = browser.evaluate("[...document.querySelectorAll('#runs a')].map(a => a.href)")
        assert links == ["file://" + os.path.abspath(RunLayout(m["run_dir"]).report_file) for m in (second, first)]
        assert browser.evaluate("document.querySelectorAll('#metrics circle').length") == 2
        browser.screenshot(os.path.join(shots, "index.png"), selector="#runs")
    assert all(os.path.getsize(os.path.join(shots, f"{s}.png")) > 5000 for s in (*SECTIONS, "index"))


def test_the_report_command_rewrites_reports_and_the_index_and_refuses_a_directory_without_a_run(two_penguin_runs,
                                                                                                tmp_path):
    _, second = two_penguin_runs
    report = RunLayout(second["run_dir"]).report_file
    os.remove(report)
    done = subprocess.run([sys.executable, "-m", "beam_ml.report", second["run_dir"]], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    index = os.path.join(os.path.dirname(second["run_dir"]), "index.html")
    assert done.stdout.split() == [report, index] and os.path.exists(report)
    refused = subprocess.run([sys.executable, "-m", "beam_ml.report", str(tmp_path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "holds no run record" in refused.stderr
    with open(os.path.join(second["run_dir"], "run_manifest.json")) as f:
        assert json.load(f)["status"] == "succeeded"  # the report reads the run; it never changes it
