"""Caching (TFX's semantics, for a whole run): a run whose data, code, config and library versions are those of a
successful earlier run reuses that run's results instead of recomputing them.

Each stage has a key, a hash of what it reads and of its upstream stage's key, recorded in the run record
(`cache_keys`):

    data      the input files (path, sha256), how they are read and split, the schema and drift settings, and the
              versions of the stack
    transform data + the user module's source (and the sources of the modules it imports from its own package)
              + the windowing settings
    train     transform + label, hyperparameters, seed
    evaluate  train + the evaluation settings + the baseline model it is judged against

A run reuses an earlier successful run R (`cached_from: R`, and no pipeline runs) when R's `train` key is the same
and R's model is the one serving now (so the new model would be that model: an identical model is not a new
version), or when R's `evaluate` key is the same and R's model was not blessed (same model, same baseline: the same
refusal). A blessed model that is not the one serving (another serving_dir, a rollback) is judged and pushed again. Anything else, such
as one changed data row or one changed line of the module, changes the keys from that stage on and the run computes
everything. An input without a content fingerprint (a database table, a BigQuery query) is never cached.
`--no_cache` turns caching off.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import types
from typing import Any, Optional

import apache_beam as beam

from beam_ml.core import fileutil
from beam_ml.core.run import RunManifest, package_versions
from beam_ml.report.publish import write_run_reports_quietly
from beam_ml.report.read import read_manifest, run_dirs

# The config fields each stage reads (besides its upstream stage's key).
DATA_FIELDS = ("column_types", "allow_non_finite", "batch_bytes", "split_buckets", "split_key", "split_time_key",
               "split_time_cutoffs", "input_splits", "spans", "input_version", "anomaly_policy", "drift_threshold",
               "leakage_key")
TRANSFORM_FIELDS = ("module", "window_key", "window_time_key", "window_length", "window_stride", "window_max_gap")
TRAIN_FIELDS = ("label_key", "hyperparameters", "seed")
EVALUATE_FIELDS = ("eval_metrics", "eval_slices", "eval_thresholds", "eval_change_thresholds", "fairness_features",
                   "fairness_max_gap", "label_set_changed")
# What a reused run's record takes over from the run it reuses.
REUSED_FIELDS = ("counts", "anomalies", "metrics", "blessed", "threshold_failures", "evaluation_mode", "leakage",
                 "record_format")


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _file_hash(path: Optional[str]) -> Optional[str]:
    return hashlib.sha256(fileutil.read_text(path).encode()).hexdigest() if path else None


def module_sources(user_module: Any) -> dict[str, str]:
    """{module name: sha256 of its source} of the user module (`beam_ml.train.user_module.UserModule`), of the
    modules of its own top-level package that are loaded, and of the user code it imports names from (a module
    outside site-packages): `transforms.penguins` and `transforms.keras_recipes`. A change in any retrains."""
    module = user_module.load()
    package = module.__name__.split(".")[0] + "."
    imported = {getattr(value, "__module__", None) or getattr(value, "__name__", None)
                for value in vars(module).values() if callable(value) or isinstance(value, types.ModuleType)}
    found = {}
    for name, other in sorted(sys.modules.items()):
        path = getattr(other, "__file__", None) or ""
        if other is module and user_module.source is not None:  # a .py path: the source the job ships
            found[name] = hashlib.sha256(user_module.source.encode()).hexdigest()
        elif ((other is module or name.startswith(package) or name in imported) and path.endswith(".py")
              and "-packages" + os.sep not in path and not name.startswith("beam_ml") and os.path.exists(path)):
            with open(path, "rb") as f:
                found[name] = hashlib.sha256(f.read()).hexdigest()
    return found


def cache_keys(config: Any, inputs: list[dict], module: Any, baseline_model: Optional[str]) -> Optional[dict]:
    """The stage keys of a run (see the module's docstring), or None when its inputs have no fingerprint."""
    if not inputs or any(not i.get("sha256") for i in inputs):
        return None
    settings = config.to_dict()
    data = _hash("data", [(i.get("path"), i["sha256"]) for i in inputs], {f: settings.get(f) for f in DATA_FIELDS},
                 _file_hash(config.schema), _file_hash(config.drift_baseline), package_versions())
    transform = _hash("transform", data, {f: settings.get(f) for f in TRANSFORM_FIELDS}, module_sources(module))
    train = _hash("train", transform, {f: settings.get(f) for f in TRAIN_FIELDS})
    evaluate = _hash("evaluate", train, {f: settings.get(f) for f in EVALUATE_FIELDS}, baseline_model)
    return {"data": data, "transform": transform, "train": train, "evaluate": evaluate}


def reusable_run(output_dir: str, keys: Optional[dict], baseline_model: Optional[str]) -> Optional[dict]:
    """The newest successful training run under `output_dir` this run can reuse (see the module's docstring): its
    record, with `run_dir`; None if there is none."""
    if keys is None:
        return None
    candidates = []
    for run_dir in run_dirs(output_dir):
        try:
            record = read_manifest(run_dir)
        except ValueError:  # a record being written
            continue
        if record.get("job") != "train_pipeline" or record.get("status") != "succeeded" or \
                record.get("cached_from"):
            continue
        earlier = record.get("cache_keys") or {}
        serving = baseline_model is not None and record.get("pushed_model_dir") == baseline_model
        same_refusal = earlier.get("evaluate") == keys["evaluate"] and record.get("blessed") is False
        if (earlier.get("train") == keys["train"] and serving) or same_refusal:
            candidates.append({**record, "run_dir": run_dir})
    return max(candidates, key=lambda r: r.get("started") or "", default=None)


def reused_record(earlier: dict, baseline_model: Optional[str]) -> dict:
    """The fields of a run that reuses `earlier`: its computed fields, and (`push`) why nothing new is pushed."""
    fields = {k: earlier.get(k) for k in REUSED_FIELDS if k in earlier}
    serving = earlier.get("pushed_model_dir") and earlier.get("pushed_model_dir") == baseline_model
    reason = (f"the model serving as {baseline_model} was trained by run {earlier.get('run_id')} from the same "
              f"data, code and config" if serving else
              f"run {earlier.get('run_id')} did not bless the same model against the same baseline")
    return {**fields, "cached_from": earlier["run_dir"], "pushed_model_dir": None, "push": reason}


class WriteReusedRun(beam.DoFn):
    """Writes the record of a run that reuses an earlier one, then its report."""

    def __init__(self, manifest: RunManifest, earlier: dict, baseline_model: Optional[str]):
        self._manifest = manifest
        self._earlier = earlier
        self._baseline_model = baseline_model

    def process(self, _):
        record = self._manifest.write("succeeded", **reused_record(self._earlier, self._baseline_model))
        write_run_reports_quietly(record["run_dir"])
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

