"""The training job as one composite PTransform: ingest → validate → transform → (tune →) train → evaluate →
infra-validate (and TFLite export, when asked) → push, and the run record.

`TrainPipeline(plan)` (the plan from `beam_ml.train.plan.plan_run`) wires the stages; each stage is its own reusable
PTransform. Data flows between them as Arrow RecordBatches, never as one Python dict per row.
"""
from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional

import apache_beam as beam
import pyarrow as pa

from beam_ml.core import counts as measures
from beam_ml.core.counts import CountTotals
from beam_ml.core.deadletter import DeadLetter, WriteDeadLetters
from beam_ml.core.layout import RunLayout
from beam_ml.core.run import RunManifest
from beam_ml.ingest.read import ReadSplits
from beam_ml.model.infra import InfraValidate
from beam_ml.model.lite import ExportTFLite
from beam_ml.model.push import PushIfBlessed, push_refusal
from beam_ml.model.serving import ExampleSample, with_warmup_requests
from beam_ml.report.publish import publish_run
from beam_ml.train.cache import ReuseStage
from beam_ml.train.evaluate import EvaluateModel, build_eval_config
from beam_ml.train.labels import CheckLabels
from beam_ml.train.leakage import CheckLeakage
from beam_ml.train.plan import RunPlan
from beam_ml.train.trainer import FnArgs, TrainModel
from beam_ml.train.tuning import TuneHyperparameters, write_hyperparameters
from beam_ml.train.transform import Transformed, TransformSplits, transformed_files
from beam_ml.train.validate import (GenerateSplitStatistics, Validation, ValidateSplits, read_anomaly_records,
                                    read_schema)
from beam_ml.train.windows import WindowRows


class RunFailed(RuntimeError):
    """The run stopped on purpose (anomalies under the `fail` policy, an empty split); the manifest says why."""


class TrainOutputs(NamedTuple):
    """What `TrainPipeline` gives, for tests to assert on: the per-split RecordBatches, the dead letters, and
    singletons: `counts` (the run record's), `anomalies`, `model_dir`, `evaluation` ({blessed, metrics, failures,
    baseline_model}), `pushed` (path or None) and `manifest` (the record written to run_manifest.json)."""

    splits: dict[str, beam.PCollection[pa.RecordBatch]]
    dead_letter: beam.PCollection[DeadLetter]
    counts: beam.PCollection[dict]
    anomalies: beam.PCollection[list[dict]]
    model_dir: beam.PCollection[str]
    evaluation: beam.PCollection[dict]
    pushed: beam.PCollection[Any]
    manifest: beam.PCollection[dict]


def counts_record(totals: dict[str, int], splits: tuple[str, ...], windows: bool = False) -> dict[str, Any]:
    """{read, dead_letter, splits: {name: n}[, windows: {name: n}]} from the counted totals."""
    record = {"read": totals["read"], "dead_letter": totals["dead_letter"],
              "splits": {name: totals[f"split:{name}"] for name in splits}}
    if windows:
        record["windows"] = {name: totals[f"windows:{name}"] for name in splits}
    return record


class CheckData(beam.DoFn):
    """The gate before training: stops the run (failed manifest, then an error) on an empty split or, under the
    `fail` policy, on anomalies; otherwise passes on."""

    def __init__(self, policy: str, manifest: RunManifest):
        self._policy = policy
        self._manifest = manifest

    def process(self, _, counts: dict, anomalies: list):
        empty = [name for name, n in counts["splits"].items() if n == 0]
        if empty:
            error = (f"split(s) {', '.join(empty)} received no rows (read {counts['read']}, dead-lettered "
                     f"{counts['dead_letter']}); check --input and --split_buckets")
            self._manifest.write("failed", counts=counts, anomalies=anomalies, error=error)
            raise RunFailed(error)
        windowless = [name for name, n in counts.get("windows", {}).items() if n == 0]
        if windowless:
            error = (f"split(s) {', '.join(windowless)} have rows but no complete window; check --window_length "
                     f"and --window_max_gap against the rows each key has")
            self._manifest.write("failed", counts=counts, anomalies=anomalies, error=error)
            raise RunFailed(error)
        if anomalies and self._policy == "fail":
            listing = "; ".join(f"[{a['split']}] {a['feature'] or '(dataset)'}: {a['type']}: {a['description']}"
                                for a in anomalies)
            error = f"data validation found {len(anomalies)} anomalies (policy 'fail'): {listing}"
            self._manifest.write("failed", counts=counts, anomalies=anomalies, error=error)
            raise RunFailed(error)
        self._manifest.write_progress("data checked", counts=counts, anomalies=anomalies)
        yield "ok"


class RecordProgress(beam.DoFn):
    """Writes the run record as `running` at `stage` when the element (a singleton) arrives, with the element as
    the record's field `field` when given (the counts), so that a run failing later keeps what it had reached and
    the report can time each stage; passes the element on."""

    def __init__(self, manifest: RunManifest, stage: str, field: Optional[str] = None):
        self._manifest = manifest
        self._stage = stage
        self._field = field

    def process(self, element):
        self._manifest.write_progress(self._stage, **({self._field: element} if self._field else {}))
        yield element


class WriteRunManifest(beam.DoFn):
    """Writes the record of a run that succeeded, with its infra validation (`beam_ml.model.infra`) and TFLite
    export (`beam_ml.model.lite`); `push` says why a blessed model was not pushed (`not_pushed`, known when the
    graph is built, or a check before push that refused it)."""

    def __init__(self, manifest: RunManifest, not_pushed: Optional[str] = None):
        self._manifest = manifest
        self._not_pushed = not_pushed

    def process(self, _, counts: dict, anomalies: list, evaluation: dict, pushed: list, leakage: list,
                infra: list, lite: list, tuning: list):
        not_pushed = self._not_pushed or (push_refusal(infra, lite) if evaluation["blessed"] else None)
        yield self._manifest.write(
            "succeeded", counts=counts, anomalies=anomalies, metrics=evaluation["metrics"],
            **({"tuning": tuning[0]} if tuning else {}),
            blessed=evaluation["blessed"], threshold_failures=evaluation["failures"],
            pushed_model_dir=pushed[0] if pushed else None, leakage=leakage[0] if leakage else None,
            infra_validation=infra[0] if infra else None, **({"tflite": lite[0]} if lite else {}),
            **({"push": not_pushed} if not_pushed else {}))


class TrainPipeline(beam.PTransform[beam.pvalue.PBegin, TrainOutputs]):
    """The whole run as one composite PTransform.

    Example::

        plan = plan_run(PipelineConfig.load("examples/penguins/config.yaml", {}))
        with beam.Pipeline() as p:
            outputs = p | TrainPipeline(plan)
    """

    def __init__(self, plan: RunPlan):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin: beam.pvalue.PBegin) -> TrainOutputs:
        plan, config = self._plan, self._plan.config
        run_dir, splits = plan.run.run_dir, plan.split.names
        layout = RunLayout(run_dir)
        manifest = plan.manifest()

        ingested = pbegin | "Ingest" >> ReadSplits(plan.source, plan.split, config.allow_non_finite)
        batches = ingested.splits
        spec = plan.window_spec
        # What the model learns from and is judged on: the rows, or windows of each key's rows.
        examples = batches if spec is None else {
            name: batches[name] | f"Windows{name.title()}" >> WindowRows(spec, plan.fmt) for name in splits}
        _ = ingested.dead_letter | "WriteDeadLetters" >> WriteDeadLetters(layout.dead_letter_prefix)
        rows = {**{f"split:{name}": batches[name] for name in splits},
                **({} if spec is None else {f"windows:{name}": examples[name] for name in splits})}
        counts = ({"read": ingested.records_read, "dead_letter": ingested.dead_letter, **rows}
                  | "Counts" >> CountTotals({"read": measures.value, "dead_letter": measures.one,
                                             **dict.fromkeys(rows, measures.rows)})
                  | "CountsRecord" >> beam.Map(counts_record, splits, spec is not None)
                  | "RecordCounts" >> beam.ParDo(RecordProgress(manifest, "read", "counts")))  # then CheckData's

        leakage = (ingested.split_batches | "Leakage" >> CheckLeakage(config.leakage_key) if config.leakage_key
                   else pbegin | "NoLeakageCheck" >> beam.Create([]))
        reused = {stage: record["run_dir"] for stage, record in plan.reused_stages.items()}  # see train/cache.py
        if "validate" in reused:
            copied = pbegin | "ReuseValidate" >> ReuseStage("validate", reused["validate"], run_dir)
            validation = Validation(copied | "ReadSchema" >> beam.Map(read_schema),
                                    copied | "ReadAnomalies" >> beam.Map(read_anomaly_records, splits))
        else:
            stats = ingested.split_batches | "Statistics" >> GenerateSplitStatistics(layout.statistics, splits)
            validation = stats | "Validate" >> ValidateSplits(run_dir, plan.schema, plan.drift_baseline,
                                                              config.drift_threshold)
        checked = (pbegin | "CheckTrigger" >> beam.Create([None])
                   | "CheckData" >> beam.ParDo(CheckData(config.anomaly_policy, manifest),
                                               counts=beam.pvalue.AsSingleton(counts),
                                               anomalies=beam.pvalue.AsSingleton(validation.anomalies)))

        if "transform" in reused:
            copied = pbegin | "ReuseTransform" >> ReuseStage("transform", reused["transform"], run_dir)
            transformed = Transformed(
                copied | "TransformOutput" >> beam.Map(lambda copy_dir: RunLayout(copy_dir).transform),
                {name: copied | f"Transformed{name.title()}" >> beam.FlatMap(
                    lambda copy_dir, name=name: transformed_files(RunLayout(copy_dir).transform, name))
                 for name in splits})
        else:
            transformed = examples | "Transform" >> TransformSplits(
                plan.module.load().preprocessing_fn, plan.fmt, layout.transform, plan.temp_dir)

        fn_args = FnArgs(train_files=(), eval_files=(), transform_output=layout.transform,
                         schema_path=layout.schema_file,
                         serving_model_dir=plan.serving_model_dir,
                         model_run_dir=layout.model_logs, label=config.label_key,
                         hyperparameters=config.hyperparameters, seed=config.seed,
                         windowing=None if spec is None else {**spec.to_dict(), "label": config.label_key})
        ready = {"transform_fn": transformed.transform_fn, "checked": checked, "schema": validation.schema}
        tuning_spec = config.tuning_spec
        if tuning_spec:  # the study's remaining trials (none when the train stage is reused: its study is done)
            tuning = (pbegin | "Tune" >> TuneHyperparameters(
                          plan.module, fn_args, tuning_spec, plan.study_path, list(plan.study_trials),
                          plan.run.run_id, layout.tuning, transformed.files["train"], transformed.files["eval"],
                          after=ready, min_ram=config.train_min_ram)
                      | "RecordTuned" >> beam.ParDo(RecordProgress(manifest, "tuned", "tuning")))
        else:
            tuning = pbegin | "NoTuning" >> beam.Create([])
        if "train" in reused:  # the same model: copied once the data passed its checks
            model_dir = (pbegin | "ReuseTrain" >> ReuseStage("train", reused["train"], run_dir,
                                                             after={"checked": checked})
                         | "ModelDir" >> beam.Map(lambda copy_dir: RunLayout(copy_dir).serving_model))
        else:
            tuned = (tuning | "TunedHyperparameters" >> beam.Map(write_hyperparameters, config.hyperparameters,
                                                                  layout.hyperparameters_file)
                     if tuning_spec else None)
            model_dir = pbegin | "Train" >> TrainModel(
                plan.module, fn_args, transformed.files["train"], transformed.files["eval"], after=ready,
                min_ram=config.train_min_ram, hyperparameters=tuned, framework=plan.framework)
        warmup = examples["eval"] | "WarmupSample" >> ExampleSample(config.warmup_rows, without=config.label_key)
        model_dir = (model_dir
                     | "WriteWarmupRequests" >> beam.Map(with_warmup_requests, beam.pvalue.AsSingleton(warmup),
                                                         os.path.basename(config.serving_dir.rstrip("/")))
                     | "RecordTrained" >> beam.ParDo(RecordProgress(manifest, "trained")))

        eval_config = build_eval_config(config.label_key, config.eval_metrics, config.eval_slices,
                                        config.eval_thresholds, config.eval_change_thresholds,
                                        with_baseline=plan.baseline_model is not None,
                                        fairness_features=config.fairness_features,
                                        materialized=plan.materialized_evaluation)
        keyed_examples = ingested.split_batches if spec is None else (
            [examples[name] | f"Key{name.title()}" >> beam.Map(lambda batch, name=name: (name, batch))
             for name in splits] | "KeyedWindows" >> beam.Flatten())
        label_failures = keyed_examples | "CheckLabels" >> CheckLabels(
            config.label_key, model_dir, plan.baseline_model, config.label_set_changed,
            unsupervised=getattr(plan.module.load(), "UNSUPERVISED", False))
        evaluation = ({"examples": examples["eval"], "model": model_dir, "guards": label_failures}
                      | "Evaluate" >> EvaluateModel(eval_config, plan.serving_model_dir, plan.baseline_model,
                                                    layout.evaluation, plan.fmt, plan.materialized_evaluation)
                      | "RecordEvaluated" >> beam.ParDo(RecordProgress(manifest, "evaluated")))

        not_pushed = (f"its model, taken over from run {plan.reused_stages['train'].get('run_id')}, is the one "
                      f"serving as {plan.baseline_model} (an identical model is not a new version)"
                      if plan.reused_serving_model else None)
        infra = (model_dir | "InfraValidate" >> beam.ParDo(InfraValidate(), beam.pvalue.AsSingleton(evaluation))
                 | "RecordInfraValidated" >> beam.ParDo(
                     RecordProgress(manifest, "servable", "infra_validation"))
                 if config.infra_validation and not not_pushed else pbegin | "NoInfraValidation" >> beam.Create([]))
        if config.export_tflite:  # beside the SavedModel before push copies it
            parity_rows = examples["eval"] | "TFLiteSample" >> ExampleSample(config.tflite_rows)
            lite = (model_dir | "ExportTFLite" >> beam.ParDo(
                        ExportTFLite(config.tflite_quantization, config.tflite_max_difference,
                                     config.tflite_on_difference), beam.pvalue.AsSingleton(parity_rows))
                    | "RecordTFLite" >> beam.ParDo(RecordProgress(manifest, "tflite", "tflite")))
        else:
            lite = pbegin | "NoTFLite" >> beam.Create([])
        pushed = (pbegin | "NoPush" >> beam.Create([]) if not_pushed else
                  model_dir | "Push" >> beam.ParDo(PushIfBlessed(config.serving_dir, plan.push_id),
                                                   beam.pvalue.AsSingleton(evaluation), beam.pvalue.AsList(infra),
                                                   beam.pvalue.AsList(lite)))
        written = (pbegin | "ManifestTrigger" >> beam.Create([None])
                   | "WriteManifest" >> beam.ParDo(
                       WriteRunManifest(manifest, not_pushed), counts=beam.pvalue.AsSingleton(counts),
                       anomalies=beam.pvalue.AsSingleton(validation.anomalies),
                       evaluation=beam.pvalue.AsSingleton(evaluation), pushed=beam.pvalue.AsList(pushed),
                       leakage=beam.pvalue.AsList(leakage), infra=beam.pvalue.AsList(infra),
                       lite=beam.pvalue.AsList(lite), tuning=beam.pvalue.AsList(tuning)))
        _ = written | "WriteReport" >> beam.Map(lambda unused_record: publish_run(run_dir))
        return TrainOutputs(batches, ingested.dead_letter, counts, validation.anomalies, model_dir, evaluation,
                            pushed, written)
