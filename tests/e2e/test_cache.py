"""Caching on real penguin runs: an unchanged run reuses the earlier one (nothing recomputed, nothing new pushed),
one changed line of the module computes everything again."""
import os

import pytest

from beam_ml.core.layout import RunLayout
from beam_ml.lineage.store import open_store
from tests.support.jobs import job_args, run_job
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e


def test_an_unchanged_run_is_reused_and_a_changed_module_line_is_not(tmp_path):
    code, first = run_job(*job_args(tmp_path, "first"))
    assert code == 0 and first["pushed_model_dir"] and not first.get("cached_from")
    code, second = run_job(*job_args(tmp_path, "second"))
    assert code == 0, second.get("error")
    assert second["cached_from"] == first["run_dir"] and second["cache_keys"] == {
        **first["cache_keys"], "evaluate": second["cache_keys"]["evaluate"]}  # judged against first's model now
    assert second["pushed_model_dir"] is None and "was trained by run first from the same data" in second["push"]
    assert second["metrics"] == first["metrics"] and second["counts"] == first["counts"]
    assert os.listdir(tmp_path / "serving") == [os.path.basename(first["pushed_model_dir"])]
    assert not os.path.exists(RunLayout(second["run_dir"]).serving_model)  # nothing recomputed
    with open(RunLayout(second["run_dir"]).report_file) as f:
        report = f.read()
    assert "Reused run <code>first</code>" in report and "sparse_categorical_accuracy" in report
    store = open_store(str(tmp_path / "runs" / "metadata.sqlite"))
    run_context = store.get_context_by_type_and_name("beam_ml.Run", second["run_dir"])
    states = {e.last_known_state for e in store.get_executions_by_context(run_context.id)}
    assert states == {store.get_executions()[0].CACHED}

    module = tmp_path / "penguins_edited.py"
    with open(os.path.join(ROOT, "transforms", "penguins.py")) as f:
        module.write_text(f.read() + "\nEDITED = True  # one more line\n")
    code, third = run_job(*job_args(tmp_path, "third", module=str(module)))
    assert code == 0, third.get("error")
    assert not third.get("cached_from") and os.path.exists(RunLayout(third["run_dir"]).serving_model)
    assert third["cache_keys"]["data"] == first["cache_keys"]["data"]
    assert third["cache_keys"]["transform"] != first["cache_keys"]["transform"]
    code, fourth = run_job(*job_args(tmp_path, "fourth", no_cache="true"))
    assert code == 0 and not fourth.get("cached_from")  # --no_cache computes everything
