"""Caching on real penguin runs: an unchanged run reuses the earlier one (nothing recomputed, nothing new pushed);
a changed run takes over the stages before its change (a changed module line: the statistics; changed
hyperparameters: the transform too; a changed threshold: the model too, which is not pushed again)."""
import os

import pytest

from beam_ml.core.layout import RunLayout
from beam_ml.lineage.store import open_store
from beam_ml.model.push import versions
from tests.support.jobs import job_args, run_job
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e


def _states(store, record: dict) -> dict[str, str]:
    """{execution type: state name} of a run in the lineage store."""
    from ml_metadata.proto import metadata_store_pb2 as pb
    types = {t.id: t.name for t in store.get_execution_types()}
    context = store.get_context_by_type_and_name("beam_ml.Run", record["run_dir"])
    return {types[e.type_id].split(".")[-1]: pb.Execution.State.Name(e.last_known_state)
            for e in store.get_executions_by_context(context.id)}


def test_an_unchanged_run_is_reused_and_a_changed_run_reuses_the_stages_before_its_change(tmp_path):
    code, first = run_job(*job_args(tmp_path, "first"))
    assert code == 0 and first["pushed_model_dir"] and not first.get("cached_from")
    code, second = run_job(*job_args(tmp_path, "second"))
    assert code == 0, second.get("error")
    assert second["cached_from"] == first["run_dir"] and second["cache_keys"] == {
        **first["cache_keys"], "evaluate": second["cache_keys"]["evaluate"]}  # judged against first's model now
    assert second["pushed_model_dir"] is None and "was trained by run first from the same data" in second["push"]
    assert not second["reused_stages"]  # the whole run is reused, not stage by stage
    assert second["metrics"] == first["metrics"] and second["counts"] == first["counts"]
    assert versions(str(tmp_path / "serving")) == [int(os.path.basename(first["pushed_model_dir"]))]
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
    assert third["reused_stages"] == {"validate": first["run_dir"]}  # the statistics: copied, not recomputed
    with open(RunLayout(third["run_dir"]).statistics_file("train"), "rb") as copied, \
            open(RunLayout(first["run_dir"]).statistics_file("train"), "rb") as computed:
        assert copied.read() == computed.read()
    assert third["anomalies"] == first["anomalies"] and third["counts"] == first["counts"]
    assert _states(store, third) == {"Validate": "CACHED", "Transform": "COMPLETE", "Train": "COMPLETE",
                                     "Evaluate": "COMPLETE", **({"Push": "COMPLETE"} if third["blessed"] else {})}

    code, fourth = run_job(*job_args(tmp_path, "fourth", no_cache="true"))
    assert code == 0 and not fourth.get("cached_from") and not fourth["reused_stages"]  # --no_cache: all again
    assert fourth["pushed_model_dir"]  # the same model as first's, blessed against it: serving now

    fewer_epochs = '{"epochs": 1, "steps_per_epoch": 5, "batch_size": 32, "hidden_units": 16, "learning_rate": 0.01}'
    code, fifth = run_job(*job_args(tmp_path, "fifth", hyperparameters=fewer_epochs))
    assert code == 0, fifth.get("error")
    assert fifth["reused_stages"] == {"validate": fourth["run_dir"], "transform": fourth["run_dir"]}
    assert fifth["blessed"] is False and not fifth["pushed_model_dir"]  # one short epoch: worse than serving
    assert _states(store, fifth)["Transform"] == "CACHED" and _states(store, fifth)["Train"] == "COMPLETE"

    code, sixth = run_job(*job_args(tmp_path, "sixth",
                                    eval_thresholds='{"SparseCategoricalAccuracy": {"lower": 0.85}}'))
    assert code == 0, sixth.get("error")
    assert sixth["reused_stages"] == {"validate": fourth["run_dir"], "transform": fourth["run_dir"],
                                      "train": fourth["run_dir"]}  # from where each was computed (fifth took
    # its statistics and transform over from fourth); the model is the one serving now, judged again
    assert sixth["blessed"] is True and sixth["metrics"] == fourth["metrics"]
    assert sixth["pushed_model_dir"] is None and "taken over from run fourth" in sixth["push"]
    assert versions(str(tmp_path / "serving")) == sorted(
        int(os.path.basename(r["pushed_model_dir"])) for r in (first, fourth) + ((third,) if third["blessed"] else ()))
    assert set(_states(store, sixth).values()) == {"CACHED", "COMPLETE"} and "Push" not in _states(store, sixth)
    code, seventh = run_job(*job_args(tmp_path, "seventh",  # sixth again: the serving model, still not pushed
                                      eval_thresholds='{"SparseCategoricalAccuracy": {"lower": 0.85}}'))
    assert code == 0 and seventh["reused_stages"]["train"] == fourth["run_dir"] and not seventh["pushed_model_dir"]
    assert len(versions(str(tmp_path / "serving"))) == 2 + bool(third["blessed"])
