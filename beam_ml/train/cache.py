"""Caching (TFX's semantics): a run whose data, code, config and library versions are those of a successful
earlier run reuses that run's results instead of recomputing them; a run that changed something reuses the stages
before the change.

Each stage has a key, a hash of what it reads and of its upstream stage's key, recorded in the run record
(`cache_keys`):

    data      the input files (path, sha256), how they are read and split, the schema and drift settings, the
              versions of the stack, and beam_ml's own sources when it runs from a checkout
    transform data + the sources of the user module and of the code it imports that is not an installed package
              (`module_sources`) + the windowing settings
    train     transform + label, hyperparameters, seed, tuning (and the study's trials when it has all it asks
              for; a run that adds trials trains anew)
    judging   train + the evaluation settings (metrics, slices, thresholds, fairness)
    evaluate  judging + the baseline model it is judged against

A whole run is reused (`cached_from: R`, and no pipeline runs) when an earlier successful run R has the same
`judging` key and R's model is the one serving now (so the new model would be that model: an identical model is
not a new version), or the same `evaluate` key and R's model was not blessed (same model, same baseline: the same
refusal). A blessed model that is not the one serving (another serving_dir, a rollback) is judged and pushed
again.

Otherwise each stage whose key is that of an earlier run that completed it is taken over from that run
(`reused_stages`, `reusable_stages`): its outputs are copied into this run's directory (so each run directory
stands alone) instead of computed: `validate` (statistics, schema, anomalies) on the same `data` key, `transform`
(the transform graph and transformed examples) on the same `transform` key, `train` (the model) on the same
`train` key. So one changed line of the module reruns the transform and everything after it, but not the
statistics; a changed threshold only evaluates the same model again (and does not push it again when it is the one
serving). The data is still read: the counts and the evaluation need it. An input without a content fingerprint (a
database table, a BigQuery query) is never cached. `--no_cache` turns caching off.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import sys
import sysconfig
from typing import Any, Optional

import apache_beam as beam

from beam_ml.core.fileutil import copy_tree
from beam_ml.core.layout import RunLayout
from beam_ml.core.run import RunManifest, package_versions
from beam_ml.model.artifact import is_model
from beam_ml.report.publish import publish_run

# The config fields each stage reads (besides its upstream stage's key).
DATA_FIELDS = ("column_types", "allow_non_finite", "batch_bytes", "split_buckets", "split_key", "split_time_key",
               "split_time_cutoffs", "input_splits", "spans", "input_version", "anomaly_policy", "drift_threshold",
               "leakage_key")
TRANSFORM_FIELDS = ("module", "window_key", "window_time_key", "window_length", "window_stride", "window_max_gap")
TRAIN_FIELDS = ("label_key", "hyperparameters", "seed", "tuning")
# (The fairness bounds only word the report.)
EVALUATE_FIELDS = ("eval_metrics", "eval_slices", "eval_thresholds", "eval_change_thresholds", "fairness_features",
                   "label_set_changed", "infra_validation", "warmup_rows", "export_tflite", "tflite_quantization",
                   "tflite_max_difference", "tflite_on_difference", "tflite_rows")
# The stages a changed run can take over: {stage: (the key that must be the same, the run record's stage that says
# the earlier run completed it, what it wrote: RunLayout attributes)}. Keys chain, so a reused stage's upstream
# stages can be reused too.
REUSABLE_STAGES = {"validate": ("data", "data checked", ("statistics", "schema_file", "anomalies")),
                   "transform": ("transform", "trained", ("transform",)),
                   "train": ("train", "trained", ("serving_model",))}
# What a reused run's record takes over from the run it reuses.
REUSED_FIELDS = ("counts", "anomalies", "metrics", "blessed", "threshold_failures", "evaluation_mode",
                 "baseline_model", "leakage", "record_format")


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _file_hash(path: Optional[str]) -> Optional[str]:
    """sha256 of a file's bytes (a schema text or a binary FeatureStats.pb), local or gs://."""
    if not path:
        return None
    import tensorflow as tf
    with tf.io.gfile.GFile(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _imported_names(source: str, package: str) -> set[str]:
    """The modules a source imports (`import a.b`, `from a import b`: a, a.b), relative imports resolved against
    `package`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            if base:
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _is_library(path: str) -> bool:
    """A module of the Python installation or of an installed package (their versions are in the key)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    return path.startswith(stdlib + os.sep) or f"{os.sep}site-packages{os.sep}" in path or \
        f"{os.sep}dist-packages{os.sep}" in path


def library_sources() -> Optional[str]:
    """sha256 over beam_ml's own sources when it runs from a checkout (an editable install: edits change results
    without changing its version); None when it is an installed package (its version is in the key)."""
    root = os.path.dirname(os.path.abspath(sys.modules["beam_ml"].__file__))
    if _is_library(root):
        return None
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as f:
                    digest.update(os.path.relpath(os.path.join(folder, name), root).encode() + b"\0" + f.read())
    return digest.hexdigest()


def module_sources(user_module: Any) -> dict[str, str]:
    """{module: sha256 of its source} of the user module (`beam_ml.train.user_module.UserModule`) and, following
    its import statements, of every module it reaches that is not part of Python or of an installed package: the
    user's own code (`transforms.penguins`, `transforms.keras_recipes`, a config module it takes a list from), but
    not beam_ml (in the data key). Read from the sources, so the same code gives the same key in any process. A change
    in any of them retrains."""
    module = user_module.load()
    source = user_module.source
    if source is None:
        with open(module.__file__, "rb") as f:
            source = f.read().decode("utf-8")
    found = {module.__name__: hashlib.sha256(source.encode()).hexdigest()}
    # (source, the package its relative imports are against): a .py path module has none
    pending = [(source, "" if user_module.source is not None else module.__name__.rpartition(".")[0])]
    while pending:
        text, package = pending.pop()
        for imported in sorted(_imported_names(text, package)):
            if imported in found:
                continue
            try:
                spec = importlib.util.find_spec(imported)
            except (ImportError, ValueError):  # a name imported from a module, not a module
                continue
            path = getattr(spec, "origin", None) or ""
            if not path.endswith(".py") or _is_library(path) or imported.split(".")[0] == "beam_ml":
                continue  # beam_ml is in the data key (`library_sources`)
            with open(path, "rb") as f:
                data = f.read()
            found[imported] = hashlib.sha256(data).hexdigest()
            is_package = os.path.basename(path) == "__init__.py"
            pending.append((data.decode("utf-8", "replace"), imported if is_package else imported.rpartition(".")[0]))
    return dict(sorted(found.items()))


def cache_keys(config: Any, inputs: list[dict], module: Any, baseline_model: Optional[str],
               tuned_from: Any = None) -> Optional[dict]:
    """The stage keys of a run (see the module's docstring), or None when its inputs have no fingerprint.
    `tuned_from`: with tuning, what the tuned hyperparameters come from (the study's trials)."""
    if not inputs or any(not i.get("sha256") for i in inputs):
        return None
    settings = config.to_dict()
    data = _hash("data", [(i.get("path"), i["sha256"]) for i in inputs], {f: settings.get(f) for f in DATA_FIELDS},
                 _file_hash(config.schema), _file_hash(config.drift_baseline), package_versions(), library_sources())
    transform = _hash("transform", data, {f: settings.get(f) for f in TRANSFORM_FIELDS}, module_sources(module))
    train = _hash("train", transform, {f: settings.get(f) for f in TRAIN_FIELDS}, tuned_from)
    judging = _hash("judging", train, {f: settings.get(f) for f in EVALUATE_FIELDS})
    return {"data": data, "transform": transform, "train": train, "judging": judging,
            "evaluate": _hash("evaluate", judging, baseline_model)}


def reusable_run(records: list[dict], keys: Optional[dict], baseline_model: Optional[str]) -> Optional[dict]:
    """The newest successful training run among `records` (`run_records` of the output directory) this run can
    reuse whole (see the module's docstring): its record, with `run_dir`; None if there is none."""
    if keys is None:
        return None
    candidates = []
    for record in records:
        if record.get("job") != "train_pipeline" or record.get("status") != "succeeded" or \
                record.get("cached_from"):
            continue
        earlier = record.get("cache_keys") or {}
        serving = baseline_model is not None and record.get("pushed_model_dir") == baseline_model
        same_refusal = earlier.get("evaluate") == keys["evaluate"] and record.get("blessed") is False
        if (earlier.get("judging") == keys["judging"] and serving) or same_refusal:
            candidates.append(record)
    return max(candidates, key=lambda r: r.get("started") or "", default=None)


def reusable_stages(records: list[dict], keys: Optional[dict]) -> dict[str, dict]:
    """{stage: the record of the newest earlier training run among `records` that computed that stage (did not take
    it over itself) with this run's key for it, and whose outputs of it are all still there} (see the module's
    docstring)."""
    if keys is None:
        return {}
    newest_first = sorted(records, key=lambda r: r.get("started") or "", reverse=True)
    found = {}
    for stage, (key, done, _) in REUSABLE_STAGES.items():
        for record in newest_first:
            if record.get("job") != "train_pipeline" or record.get("cached_from") or \
                    stage in (record.get("reused_stages") or {}) or \
                    (record.get("cache_keys") or {}).get(key) != keys[key]:
                continue  # a reused run or stage has no outputs of its own: take them from where they were made
            completed = record.get("status") == "succeeded" or \
                done in {s.get("stage") for s in record.get("stages") or []}
            if completed and _outputs_complete(stage, record):
                found[stage] = record
                break
    return found


def _outputs_complete(stage: str, record: dict) -> bool:
    """Whether every file the stage writes for each of the run's splits is there (a run killed mid-stage leaves
    some)."""
    import tensorflow as tf

    from beam_ml.train.transform import transformed_files
    layout = RunLayout(record["run_dir"])
    splits = list((record.get("counts") or {}).get("splits") or {})
    if not splits:
        return False
    if stage == "validate":
        paths = [layout.schema_file] + [f(s) for s in splits for f in (layout.statistics_file, layout.anomalies_file)]
        return all(tf.io.gfile.exists(p) for p in paths)
    if stage == "transform":
        return tf.io.gfile.exists(os.path.join(layout.transform, "transform_fn")) and \
            all(transformed_files(layout.transform, s) for s in splits)
    return is_model(layout.serving_model)


def model_is_serving(records: list[dict], trained_by: str, baseline_model: Optional[str]) -> bool:
    """Whether the model that run `trained_by` trained is the one serving as `baseline_model`: pushed by that run, or
    by a run that took its model over."""
    return baseline_model is not None and any(
        r.get("pushed_model_dir") == baseline_model for r in records
        if r["run_dir"] == trained_by or (r.get("reused_stages") or {}).get("train") == trained_by)


def copy_stage_outputs(unused_trigger: Any, stage: str, earlier_run_dir: str, run_dir: str,
                       **unused_after) -> str:
    """Copies what `stage` wrote in `earlier_run_dir` to the same places in `run_dir`; returns `run_dir`. (`after`
    side inputs only order the copy after its prerequisites.)"""
    for name in REUSABLE_STAGES[stage][2]:
        copy_tree(getattr(RunLayout(earlier_run_dir), name), getattr(RunLayout(run_dir), name))
    return run_dir


def reused_record(earlier: dict, baseline_model: Optional[str]) -> dict:
    """The fields of a run that reuses `earlier`: its computed fields, and (`push`) why nothing new is pushed."""
    fields = {k: earlier.get(k) for k in REUSED_FIELDS if k in earlier}
    serving = earlier.get("pushed_model_dir") and earlier.get("pushed_model_dir") == baseline_model
    reason = (f"the model serving as {baseline_model} was trained by run {earlier.get('run_id')} from the same "
              f"data, code and config" if serving else
              f"run {earlier.get('run_id')} did not bless the same model against the same baseline")
    return {**fields, "cached_from": earlier["run_dir"], "pushed_model_dir": None, "push": reason}


class ReuseStage(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[str]]):
    """One stage taken over from an earlier run (`plan.reused_stages`): copies what it wrote there into this run's
    directory, once every input in `after` has been computed. Outputs this run's directory (a singleton), when
    the copy is complete.

    Example::

        copied = pbegin | ReuseStage("validate", plan.reused_stages["validate"]["run_dir"], plan.run.run_dir)
        schema = copied | beam.Map(lambda run_dir: load_schema(RunLayout(run_dir).schema_file))
    """

    def __init__(self, stage: str, earlier_run_dir: str, run_dir: str,
                 after: Optional[dict[str, beam.PCollection]] = None):
        super().__init__()
        self._stage = stage
        self._earlier_run_dir = earlier_run_dir
        self._run_dir = run_dir
        self._after = after or {}

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[str]:
        return (pbegin | "Trigger" >> beam.Create([None])
                | "Copy" >> beam.Map(copy_stage_outputs, self._stage, self._earlier_run_dir, self._run_dir,
                                     **{k: beam.pvalue.AsList(v) for k, v in self._after.items()}))


class WriteReusedRun(beam.DoFn):
    """Writes the record of a run that reuses an earlier one, then its report."""

    def __init__(self, manifest: RunManifest, earlier: dict, baseline_model: Optional[str]):
        self._manifest = manifest
        self._earlier = earlier
        self._baseline_model = baseline_model

    def process(self, _):
        record = self._manifest.write("succeeded", **reused_record(self._earlier, self._baseline_model))
        publish_run(record["run_dir"])
        yield record


class ReuseRun(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[dict]]):
    """The whole training job when an earlier run can be reused (`plan.reused_run`): one step that writes this
    run's record from the earlier one's (`cached_from`) and its report. Outputs the record.

    Example::

        plan = plan_run(config)
        graph = ReuseRun(plan) if plan.reused_run else TrainPipeline(plan)
    """

    def __init__(self, plan: Any):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[dict]:
        plan = self._plan
        return (pbegin | "Trigger" >> beam.Create([None])
                | "WriteRecord" >> beam.ParDo(WriteReusedRun(plan.manifest(), plan.reused_run,
                                                             plan.baseline_model)))

