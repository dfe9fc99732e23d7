"""Caching keys and the choice of a run to reuse: each stage's key changes with what that stage reads."""
import dataclasses
import json
import os

from beam_ml.config.train import PipelineConfig
from beam_ml.core.run import MANIFEST_FILE
from beam_ml.core.layout import RunLayout
from beam_ml.report.read import run_records
from beam_ml.train.cache import (
    cache_keys, copy_stage_outputs, model_is_serving, reusable_run, reusable_stages, reused_record)
from beam_ml.train.user_module import UserModule
from tests.support.paths import PENGUINS_CONFIG

INPUTS = [{"path": "/data/penguins.csv", "sha256": "aaa", "size": 1, "kind": "csv"}]


def _keys(config=None, inputs=INPUTS, module=UserModule("transforms.penguins"), baseline=None):
    return cache_keys(config or PipelineConfig.load(PENGUINS_CONFIG, {}), inputs, module, baseline)


def _changed(keys: dict, other: dict) -> list[str]:
    return [stage for stage in ("data", "transform", "train", "judging", "evaluate") if keys[stage] != other[stage]]


def test_each_change_invalidates_its_stage_and_everything_after_it(tmp_path):
    config = PipelineConfig.load(PENGUINS_CONFIG, {})
    keys = _keys(config)
    assert _keys(config) == keys  # deterministic
    assert _changed(keys, _keys(config, [{**INPUTS[0], "sha256": "bbb"}])) == ["data", "transform", "train",
                                                                                "judging", "evaluate"]
    assert _changed(keys, _keys(dataclasses.replace(config, split_buckets={"train": 3, "eval": 1}))) == [
        "data", "transform", "train", "judging", "evaluate"]
    source = open("transforms/penguins.py").read()
    (tmp_path / "penguins_copy.py").write_text(source)
    (tmp_path / "penguins_edited.py").write_text(source + "\n# one more line\n")
    copy = _keys(config, module=UserModule.from_spec(str(tmp_path / "penguins_copy.py")))
    edited = _keys(config, module=UserModule.from_spec(str(tmp_path / "penguins_edited.py")))
    assert _changed(copy, edited) == ["transform", "train", "judging", "evaluate"]
    assert _changed(keys, _keys(dataclasses.replace(config, hyperparameters={"epochs": 1}))) == [
        "train", "judging", "evaluate"]
    assert _changed(keys, _keys(dataclasses.replace(config, eval_slices=[[]]))) == ["judging", "evaluate"]
    assert _changed(keys, _keys(config, baseline="/serving/1")) == ["evaluate"]
    assert _changed(keys, _keys(dataclasses.replace(config, output_dir="/elsewhere", run_id="r"))) == []
    assert _keys(config, [{"table": "penguins", "kind": "sql"}]) is None  # no fingerprint: never cached


def test_a_run_reuses_the_newest_success_whose_model_is_serving_or_whose_refusal_stands(tmp_path):
    keys = {"data": "d", "transform": "t", "train": "m", "judging": "j", "evaluate": "e"}

    def run(name, started, status="succeeded", pushed=None, blessed=True, **key_changes):
        (tmp_path / name).mkdir()
        record = {"job": "train_pipeline", "run_id": name, "status": status, "started": started,
                  "pushed_model_dir": pushed, "cache_keys": {**keys, **key_changes}, "blessed": blessed,
                  "metrics": {"accuracy": 0.9}, "counts": {"read": 3}}
        (tmp_path / name / MANIFEST_FILE).write_text(json.dumps(record))

    run("a", "2026-01-01", pushed="/serving/1", evaluate="e-before")
    run("b", "2026-01-02", pushed="/serving/2", evaluate="e-before")
    run("c", "2026-01-03", status="failed")
    run("d", "2026-01-04", train="other", judging="other", evaluate="other")
    run("g", "2026-01-04T12", pushed="/serving/2", judging="other thresholds", evaluate="other")
    assert reusable_run(run_records(str(tmp_path)), keys, "/serving/2")["run_id"] == "b"  # its model is the one serving (g's
    # is too, judged by other thresholds: not reused)
    assert reusable_run(run_records(str(tmp_path)), keys, "/serving/9") is None  # a newer model serves: judge this one again
    run("e", "2026-01-05", pushed="/serving/e")  # same model and baseline, but blessed: push it again
    assert reusable_run(run_records(str(tmp_path)), keys, "/serving/9") is None
    run("f", "2026-01-06", blessed=False)  # same model, same baseline, not blessed: the same refusal
    assert reusable_run(run_records(str(tmp_path)), keys, "/serving/9")["run_id"] == "f"
    assert reusable_run(run_records(str(tmp_path)), None, "/serving/2") is None
    reused = reused_record({"run_dir": str(tmp_path / "b"), "run_id": "b", "pushed_model_dir": "/serving/2",
                            "metrics": {"accuracy": 0.9}, "blessed": True}, "/serving/2")
    assert reused["cached_from"] == str(tmp_path / "b") and reused["pushed_model_dir"] is None
    assert reused["metrics"] == {"accuracy": 0.9} and "the model serving as /serving/2" in reused["push"]


def test_a_changed_run_takes_over_each_stage_an_earlier_run_computed_with_the_same_key(tmp_path):
    keys = {"data": "d", "transform": "t", "train": "m", "judging": "j", "evaluate": "e"}
    splits = ("train", "eval")

    def run(name, started, status="succeeded", stages=(), outputs=("validate", "transform", "train"),
            cached_from=None, reused_stages=None, pushed=None, **key_changes):
        layout = RunLayout(str(tmp_path / name))
        files = {"validate": [layout.schema_file] + [f(s) for s in splits
                                                      for f in (layout.statistics_file, layout.anomalies_file)],
                 "transform": [os.path.join(layout.transform, "transform_fn", "saved_model.pb")] + [
                     os.path.join(layout.transform, "transformed_examples", f"Split-{s}",
                                  "transformed_examples-00000-of-00001.tfrecord") for s in splits],
                 "train": [os.path.join(layout.serving_model, "saved_model.pb")]}
        for path in (p for stage in outputs for p in files[stage]):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(f"{name} {os.path.basename(path)}")
        record = {"job": "train_pipeline", "run_id": name, "status": status, "started": started,
                  "cache_keys": {**keys, **key_changes}, "stages": [{"stage": s} for s in stages],
                  "cached_from": cached_from, "reused_stages": reused_stages or {}, "pushed_model_dir": pushed,
                  "counts": {"splits": dict.fromkeys(splits, 5)}}
        os.makedirs(layout.run_dir, exist_ok=True)
        with open(layout.manifest, "w") as f:
            json.dump(record, f)

    def reused(keys=keys):
        return {stage: record["run_id"] for stage, record in reusable_stages(run_records(str(tmp_path)),
                                                                               keys).items()}

    run("a", "2026-01-01", transform="t-a", train="m-a")
    assert reused() == {"validate": "a"}  # another module: only the statistics are the same
    run("b", "2026-01-02", status="failed", stages=["read", "data checked", "trained"], train="m-b")
    assert reused() == {"validate": "b", "transform": "b"}  # failed at evaluation: its transform is complete
    run("c", "2026-01-03", status="failed", stages=["read"])  # stopped before validation: nothing to take
    run("d", "2026-01-04", outputs=("validate", "transform"))  # its model is gone
    assert reused() == {"validate": "d", "transform": "d"}
    os.remove(RunLayout(str(tmp_path / "d")).anomalies_file("eval"))  # a stage's output half there: not taken
    assert reused() == {"validate": "b", "transform": "d"}
    run("e", "2026-01-05", cached_from=str(tmp_path / "a"))  # reused a whole run: no outputs of its own
    assert reused() == {"validate": "b", "transform": "d"}
    run("f", "2026-01-06", status="failed", stages=["read", "data checked", "trained"])
    assert reused() == {"validate": "f", "transform": "f", "train": "f"}
    # A run that took the model over did not make it: the model comes from where it was trained.
    run("g", "2026-01-07", reused_stages={"train": str(tmp_path / "f")}, pushed="/serving/7", judging="j2")
    assert reused()["train"] == "f"
    records = run_records(str(tmp_path))
    assert model_is_serving(records, str(tmp_path / "f"), "/serving/7")  # g pushed f's model
    assert not model_is_serving(records, str(tmp_path / "f"), "/serving/8")
    assert not model_is_serving(records, str(tmp_path / "f"), None)
    assert reused({**keys, "data": "other", "transform": "other", "train": "other"}) == {}
    assert reusable_stages(run_records(str(tmp_path)), None) == {}

    copy_stage_outputs(None, "transform", str(tmp_path / "f"), str(tmp_path / "new"))
    copied = RunLayout(str(tmp_path / "new"))
    assert open(os.path.join(copied.transform, "transform_fn", "saved_model.pb")).read() == "f saved_model.pb"
    assert not os.path.exists(copied.statistics)  # only the stage's own outputs
    copy_stage_outputs(None, "validate", str(tmp_path / "f"), str(tmp_path / "new"))
    assert open(copied.schema_file).read() == "f schema.pbtxt"


def test_the_module_key_covers_the_user_code_it_imports():
    from beam_ml.train.cache import module_sources
    sources = module_sources(UserModule("transforms.penguins"))
    assert {"transforms.penguins", "transforms.keras_recipes"} <= set(sources)
    assert not any(name.startswith(("tensorflow", "beam_ml", "apache_beam")) for name in sources)


def test_the_module_key_follows_its_imports_to_user_code_outside_its_package(tmp_path, monkeypatch):
    from beam_ml.train.cache import module_sources
    (tmp_path / "shared_cfg.py").write_text("FEATURES = ['a', 'b']\n")
    (tmp_path / "other_lib.py").write_text("X = 1\n")
    (tmp_path / "helper.py").write_text("import other_lib\n")
    module = tmp_path / "model.py"
    module.write_text("import os\nfrom shared_cfg import FEATURES\nimport helper\n"
                      "def preprocessing_fn(inputs):\n    return inputs\n"
                      "def run_fn(fn_args):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = module_sources(UserModule.from_spec(str(module)))
    assert {"shared_cfg", "helper", "other_lib"} <= set(before) and "os" not in before
    (tmp_path / "other_lib.py").write_text("X = 2\n")  # two imports away
    after = module_sources(UserModule.from_spec(str(module)))
    assert [name for name in before if before[name] != after[name]] == ["other_lib"]


def test_a_binary_drift_baseline_is_part_of_the_data_key(tmp_path):
    stats = tmp_path / "FeatureStats.pb"
    stats.write_bytes(b"\x0a\xff\xfe\x00binary")
    config = dataclasses.replace(PipelineConfig.load(PENGUINS_CONFIG, {}), drift_baseline=str(stats))
    before = _keys(config)
    stats.write_bytes(b"\x0a\xff\xfe\x01binary")
    assert _changed(before, _keys(config))[0] == "data"
