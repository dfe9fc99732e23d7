"""The TFX way: the pipeline run component by component, as TFX 1.16 runs it, for `benchmarks.e2e`.

Each component is its own executor (a Beam pipeline where TFX's executor runs one, a plain call where it does not)
that reads the earlier components' outputs from disk and writes its own under `<work_dir>/<Component>/`:

  ExampleGen        CSV → tf.Examples, hash split, gzipped TFRecords          Split-<name>/data_tfrecord-*.gz
  StatisticsGen     TFDV statistics of each split, read back through TFXIO    Split-<name>/FeatureStats.pb
  SchemaGen         the schema inferred from the splits' statistics           schema.pbtxt
  ExampleValidator  each split's statistics checked against the schema        Split-<name>/SchemaDiff.pb
  Transform         tf.Transform: analyze train, transform every split; with  transform_graph/, transformed_examples/,
                    TFX's default pre- and post-transform statistics          {pre,post}_transform_{stats,schema}/
  Trainer           the user module's run_fn on the transformed examples      serving_model_dir/
  Evaluator         TFMA over the eval split's raw tf.Examples; the blessing  evaluation/, blessing/
  Pusher            the blessed model copied to the serving directory         pushed_model/, <serving_dir>/<version>/

The logic follows TFX's executors (each function names the file it mirrors) and calls the libraries they call
(tfx_bsl, TFDV, tf.Transform, TFMA). TFX itself is not installed: its pins do not resolve with this environment's.
Left out are TFX's orchestration (ML Metadata, artifact resolution, launching each component) and Transform's
analyzer-cache planning, which re-traces the preprocessing_fn: both would only add to TFX's time.

    result = run("taxi.csv", "/tmp/tfx_way", PipelineConfig.load("examples/taxi/config.yaml", {...}))
    result["stages"]["Transform"], result["metrics"]["auc"], result["blessed"]
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import os
import shutil
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata
from tfx_bsl.coders import csv_decoder, example_coder
from tfx_bsl.public import tfxio

import beam_ml  # noqa: F401  (before TensorFlow)
from beam_ml.config.train import PipelineConfig
from beam_ml.core import fileutil
from beam_ml.core.records import TFMD_TYPES
from beam_ml.train import user_module
from beam_ml.train.evaluate import BLESSED, NOT_BLESSED, build_eval_config, overall_metrics
from beam_ml.train.trainer import FnArgs, set_seeds
from beam_ml.train.validate import SCHEMA_FILE, STATS_FILE, split_dir  # TFX's layout, which beam_ml writes too

COMPONENTS = ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer", "Evaluator",
              "Pusher")
BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
EXAMPLES_PREFIX = "data_tfrecord"  # example_gen/write_split.py DEFAULT_FILE_NAME
ANOMALIES_FILE = "SchemaDiff.pb"
TRANSFORM_GRAPH = "transform_graph"
TRANSFORMED_EXAMPLES = "transformed_examples"


def all_files(directory: str) -> str:
    """The pattern TFX reads an artifact directory with (utils/io_utils.py `all_files_pattern`)."""
    return os.path.join(directory, "*")


def new_pipeline() -> beam.Pipeline:
    """One component's own pipeline on the in-process DirectRunner."""
    return beam.Pipeline(options=PipelineOptions(BEAM_ARGS))


# ---- ExampleGen (example_gen/csv_example_gen/executor.py, example_gen/base_example_gen_executor.py) -------------
def csv_column_names(path: str) -> list[str]:
    """The header of a CSV file (utils/io_utils.py `load_csv_column_names`)."""
    with tf.io.gfile.GFile(path) as f:
        return f.readline().strip().split(",")


def read_csv_records(path: str) -> Iterator[str]:
    """The records after a CSV file's header, a record running on over line breaks inside quotes
    (`_ReadCsvRecordsFromTextFile` with `_CsvLineBuffer`)."""
    pending, quotes = [], 0
    with beam.io.filesystems.FileSystems.open(path) as f:
        f.readline()
        for line in f:
            text = line.decode("utf-8")
            pending.append(text)
            quotes += text.count('"')
            if quotes % 2 == 0:
                yield "".join(pending)
                pending, quotes = [], 0
    if pending:
        raise ValueError(f"CSV record had unbalanced quotes. File: {path}")


def _int_feature(cell: bytes) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(cell)] if cell else []))


def _float_feature(cell: bytes) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(cell)] if cell else []))


def _bytes_feature(cell: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[cell] if cell else []))


FEATURE_MAKERS = {csv_decoder.ColumnType.INT: _int_feature, csv_decoder.ColumnType.FLOAT: _float_feature,
                  csv_decoder.ColumnType.STRING: _bytes_feature}


class ParsedCsvToTfExample(beam.DoFn):
    """Parsed CSV cells → a tf.Example typed by the inferred column types (`_ParsedCsvToTfExample`); an empty
    cell gives an empty feature, a column without any value (type UNKNOWN) a feature without a kind."""

    def __init__(self):
        self._makers = None

    def process(self, cells: list[bytes], column_infos: list[csv_decoder.ColumnInfo]
                ) -> Iterator[tf.train.Example]:
        if self._makers is None:
            self._makers = [(info.name, FEATURE_MAKERS.get(info.type)) for info in column_infos]
        if cells:  # not a blank line
            if len(cells) != len(self._makers):
                raise ValueError(f"Invalid CSV line: {cells}")
            yield tf.train.Example(features=tf.train.Features(feature={
                name: make(cell) if make else tf.train.Feature() for (name, make), cell in zip(self._makers, cells)}))


def partition_fn(example: tf.train.Example, num_partitions: int, buckets: Sequence[int]) -> int:
    """The split of an example: sha256 of its deterministic serialization modulo the total bucket count, given to
    the split whose cumulative bucket bound lies above it (`_GeneratePartitionKey` and `_PartitionFn`)."""
    assert num_partitions == len(buckets), "Partitions do not match bucket number."
    bucket = int(hashlib.sha256(example.SerializeToString(deterministic=True)).hexdigest(), 16) % buckets[-1]
    return bisect.bisect(buckets, bucket)


@beam.ptransform_fn
def WriteSplit(examples: beam.PCollection, output_dir: str) -> beam.pvalue.PDone:
    """Serializes, shuffles and writes one split as gzipped TFRecords (example_gen/write_split.py)."""
    return (examples
            | "MaybeSerialize" >> beam.Map(lambda example: example.SerializeToString())
            | "Shuffle" >> beam.Reshuffle()
            | "Write" >> beam.io.WriteToTFRecord(os.path.join(output_dir, EXAMPLES_PREFIX), file_name_suffix=".gz"))


def example_gen(csv_pattern: str, output_dir: str, split_buckets: dict[str, int]) -> None:
    """CsvExampleGen: reads the CSV files line by line, infers each column's type from every value
    (`ColumnTypeInferrer`, a side input to the conversion), converts each row to a tf.Example, splits by hash
    into `split_buckets` (name → hash buckets, TFX's `output_config`) and writes `Split-<name>/`."""
    files = tf.io.gfile.glob(csv_pattern)
    if not files:
        raise RuntimeError(f"Split pattern {csv_pattern} does not match any files.")
    column_names = csv_column_names(files[0])
    if any(csv_column_names(path) != column_names for path in files[1:]):
        raise RuntimeError(f"Files in same split {csv_pattern} have different header.")
    buckets = list(itertools.accumulate(split_buckets.values()))
    with new_pipeline() as p:
        cells = (p
                 | "CreateFilenames" >> beam.Create(files)
                 | "ReadFromText" >> beam.FlatMap(read_csv_records)
                 | "ParseCSVLine" >> beam.ParDo(csv_decoder.ParseCSVLine(delimiter=","))
                 | "ExtractParsedCSVLines" >> beam.Keys())
        column_infos = beam.pvalue.AsSingleton(
            cells | "InferColumnTypes" >> beam.CombineGlobally(
                csv_decoder.ColumnTypeInferrer(column_names, skip_blank_lines=True)))
        splits = (cells
                  | "ToTFExample" >> beam.ParDo(ParsedCsvToTfExample(), column_infos)
                  | "SplitData" >> beam.Partition(partition_fn, len(buckets), buckets))
        for name, examples in zip(split_buckets, splits):
            _ = examples | f"WriteSplit[{name}]" >> WriteSplit(split_dir(output_dir, name))


# ---- StatisticsGen (statistics_gen/executor.py) -----------------------------------------------------------------
def statistics_gen(examples_dir: str, splits: Sequence[str], output_dir: str) -> None:
    """TFDV statistics of each split (default StatsOptions, no schema), the examples read as RecordBatches
    through TFXIO; all splits in one pipeline."""
    with new_pipeline() as p:
        for split in splits:
            examples = tfxio.TFExampleRecord(all_files(split_dir(examples_dir, split)),
                                             telemetry_descriptors=["StatisticsGen"])
            _ = (p
                 | f"TFXIORead[{split}]" >> examples.BeamSource()
                 | f"GenerateStatistics[{split}]" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
                 | f"WriteStatsOutput[{split}]" >> tfdv.WriteStatisticsToBinaryFile(
                     os.path.join(split_dir(output_dir, split), STATS_FILE)))


def split_counts(statistics_dir: str, splits: Sequence[str]) -> dict[str, int]:
    """Examples per split, as StatisticsGen counted them."""
    return {split: tfdv.load_stats_binary(os.path.join(split_dir(statistics_dir, split), STATS_FILE))
            .datasets[0].num_examples for split in splits}


# ---- SchemaGen (schema_gen/executor.py) -------------------------------------------------------------------------
def schema_gen(statistics_dir: str, splits: Sequence[str], output_path: str,
               infer_feature_shape: bool = False) -> schema_pb2.Schema:
    """The schema inferred from the first split's statistics and updated with each later split's (SchemaGen
    excludes no split by default). `infer_feature_shape=False` is what TFX's Chicago taxi example sets
    (examples/chicago_taxi_pipeline/taxi_pipeline_native_keras.py): every feature stays variable-length, a
    SparseTensor in tf.Transform, which the taxi preprocessing_fn expects."""
    schema = None
    for split in splits:
        stats = tfdv.load_stats_binary(os.path.join(split_dir(statistics_dir, split), STATS_FILE))
        schema = (tfdv.infer_schema(stats, infer_feature_shape) if schema is None
                  else tfdv.update_schema(schema, stats, infer_feature_shape))
    fileutil.write_text(output_path, text_format.MessageToString(schema))
    return schema


def check_column_types(schema: schema_pb2.Schema, column_types: dict[str, str]) -> None:
    """Raises ValueError unless the schema types the columns as `column_types` does. CsvExampleGen infers the types
    from the data, as TFX does, where beam_ml takes them from the config: the ways compare only if they agree."""
    found = {feature.name: feature.type for feature in schema.feature}
    wrong = sorted(name for name, kind in column_types.items() if found.get(name) != TFMD_TYPES[kind])
    if wrong:
        raise ValueError(f"CsvExampleGen inferred other types than column_types for {wrong}")


# ---- ExampleValidator (example_validator/executor.py) -----------------------------------------------------------
def example_validator(statistics_dir: str, schema_path: str, splits: Sequence[str],
                      output_dir: str) -> dict[str, anomalies_pb2.Anomalies]:
    """Each split's statistics validated against the schema; anomalies are written, not raised (TFX's default)."""
    schema = tfdv.load_schema_text(schema_path)
    anomalies = {}
    for split in splits:
        stats = tfdv.load_stats_binary(os.path.join(split_dir(statistics_dir, split), STATS_FILE))
        anomalies[split] = tfdv.validate_statistics(stats, schema)
        fileutil.write_bytes(os.path.join(split_dir(output_dir, split), ANOMALIES_FILE),
                             anomalies[split].SerializeToString())
    return anomalies


# ---- Transform (transform/executor.py) --------------------------------------------------------------------------
@beam.ptransform_fn
def GenerateAndWriteStatistics(batches: beam.PCollection, options: tfdv.StatsOptions, output_dir: str,
                               prefix: str, validate: bool) -> beam.PCollection:
    """Statistics of `batches` to `<prefix>_stats/`, the schema they were computed with to `<prefix>_schema/`
    and, with `validate`, the anomalies against it to `<prefix>_anomalies/` (`_GenerateAndMaybeValidateStats`)."""
    stats = batches | "GenerateStatistics" >> tfdv.GenerateStatistics(options)
    _ = stats | "WriteStats" >> tfdv.WriteStatisticsToBinaryFile(
        os.path.join(output_dir, f"{prefix}_stats", STATS_FILE))
    _ = (batches.pipeline
         | "CreateSchema" >> beam.Create([text_format.MessageToString(options.schema)])
         | "WriteSchema" >> beam.io.WriteToText(os.path.join(output_dir, f"{prefix}_schema", SCHEMA_FILE),
                                                append_trailing_newlines=False, shard_name_template=""))
    if validate:
        schema = options.schema
        _ = (stats
             | "ValidateStatistics" >> beam.Map(lambda s: tfdv.validate_statistics(s, schema))
             | "WriteValidation" >> beam.io.WriteToText(
                 os.path.join(output_dir, f"{prefix}_anomalies", ANOMALIES_FILE), append_trailing_newlines=False,
                 shard_name_template="", coder=beam.coders.ProtoCoder(anomalies_pb2.Anomalies)))
    return stats


class RecordBatchToExamples(beam.DoFn):
    """Transformed RecordBatches → serialized tf.Examples (`_RecordBatchToExamplesFn`; without passthrough keys
    there is no key column to drop)."""

    def __init__(self, schema: schema_pb2.Schema):
        self._schema = schema

    def setup(self):
        self._encoder = example_coder.RecordBatchToExamplesEncoder(self._schema)

    def process(self, transformed: tuple[pa.RecordBatch, dict[str, pa.Array]]) -> list[bytes]:
        record_batch, _unary_passthrough = transformed
        return self._encoder.encode(record_batch)


def transform(examples_dir: str, schema_path: str, preprocessing_fn: Callable, output_dir: str,
              splits: Sequence[str], analyze_split: str = "train") -> None:
    """Transform with TFX's defaults (no analyzer cache, statistics on; `TransformProcessor._RunBeamImpl`), one
    pipeline: analyzes `analyze_split`, writes `transform_graph/` (transform_fn/, transformed_metadata/ and the raw
    metadata/), transforms every split (each read again from ExampleGen's files) into
    `transformed_examples/Split-<name>/`, and computes pre-transform statistics of the analyzed split and
    post-transform statistics and anomalies of all transformed splits together."""
    schema = tfdv.load_schema_text(schema_path)
    graph_dir = os.path.join(output_dir, TRANSFORM_GRAPH)
    temp_dir = os.path.join(graph_dir, ".temp_path")

    def examples(split: str) -> tfxio.TFExampleRecord:
        return tfxio.TFExampleRecord(all_files(split_dir(examples_dir, split)), schema=schema,
                                     telemetry_descriptors=["Transform"])

    typespecs = examples(analyze_split).TensorAdapter().OriginalTypeSpecs()
    transform_columns = tft.get_transform_input_columns(preprocessing_fn, typespecs, force_tf_compat_v1=False)
    # With statistics on, TFX reads the analyzed split once for both analysis and pre-transform statistics.
    analyze_columns = set(tft.get_analyze_input_columns(preprocessing_fn, typespecs, force_tf_compat_v1=False))
    analyzed = examples(analyze_split).Project(sorted(analyze_columns | set(transform_columns)))
    with new_pipeline() as p, tft_beam.Context(temp_dir=temp_dir, use_deep_copy_optimization=True,
                                               force_tf_compat_v1=False):
        raw = p | f"TFXIOReadAndDecode[Analyze[{analyze_split}]]" >> analyzed.BeamSource()
        transform_fn = (raw, analyzed.TensorAdapterConfig()) | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = dataset_metadata.DatasetMetadata(schema) | "WriteMetadata" >> tft_beam.WriteMetadata(
            os.path.join(graph_dir, tft.TFTransformOutput.RAW_METADATA_DIR), p)
        written = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(graph_dir)
        _ = raw | "PreTransformStatistics" >> GenerateAndWriteStatistics(
            tfdv.StatsOptions(schema=schema, use_sketch_based_topk_uniques=True), output_dir, "pre_transform",
            validate=False)

        _, metadata = transform_fn
        transformed = []
        for split in splits:
            source = examples(split).Project(transform_columns)
            batches, _ = (((p | f"TFXIOReadAndDecode[Transform[{split}]]" >> source.BeamSource(),
                            source.TensorAdapterConfig()), transform_fn)
                          | f"Transform[{split}]" >> tft_beam.TransformDataset(output_record_batches=True))
            # Uncompressed, where TFX gzips (`_EncodeAndWrite`): the Trainer reads these files through
            # beam_ml's `FnArgs.make_dataset`, whose TFRecordDataset takes no compression type.
            _ = (batches
                 | f"EncodeAndSerialize[{split}]" >> beam.ParDo(RecordBatchToExamples(metadata.schema))
                 | f"WriteToTFRecord[{split}]" >> beam.io.WriteToTFRecord(
                     os.path.join(split_dir(os.path.join(output_dir, TRANSFORMED_EXAMPLES), split),
                                  TRANSFORMED_EXAMPLES)))
            transformed.append(batches | f"ExtractRecordBatches[{split}]" >> beam.Keys())
        assets = os.path.join(graph_dir, tft.TFTransformOutput.TRANSFORM_FN_DIR, "assets")
        post_options = tfdv.StatsOptions(
            schema=metadata.schema, use_sketch_based_topk_uniques=True,
            vocab_paths={key: os.path.join(assets, name) for key, name in metadata.asset_map.items()})
        _ = (transformed
             | "FlattenTransformedDatasets" >> beam.Flatten()
             | "WaitForTransformWrite" >> beam.Map(lambda batch, _: batch, beam.pvalue.AsSingleton(written))
             | "PostTransformStatistics" >> GenerateAndWriteStatistics(post_options, output_dir, "post_transform",
                                                                       validate=True))
    tf.io.gfile.rmtree(temp_dir)


# ---- Trainer (trainer/executor.py GenericExecutor, trainer/fn_args_utils.py) -------------------------------------
def trainer(module: user_module.UserModule, transform_dir: str, schema_path: str, output_dir: str,
            config: PipelineConfig) -> str:
    """Calls the module's `run_fn` once, in this process, with fn_args built as TFX builds them (the transformed
    splits, the transform graph, the schema, the hyperparameters); returns the exported serving model dir."""
    examples_dir = os.path.join(transform_dir, TRANSFORMED_EXAMPLES)
    fn_args = FnArgs(
        train_files=tuple(sorted(tf.io.gfile.glob(all_files(split_dir(examples_dir, "train"))))),
        eval_files=tuple(sorted(tf.io.gfile.glob(all_files(split_dir(examples_dir, "eval"))))),
        transform_output=os.path.join(transform_dir, TRANSFORM_GRAPH), schema_path=schema_path,
        serving_model_dir=os.path.join(output_dir, "serving_model_dir"),
        model_run_dir=os.path.join(output_dir, "model_run"), label=config.label_key,
        hyperparameters=config.hyperparameters, seed=config.seed)
    set_seeds(config.seed)
    module.load().run_fn(fn_args)
    if not tf.io.gfile.exists(os.path.join(fn_args.serving_model_dir, "saved_model.pb")):
        raise RuntimeError(f"run_fn of {module.spec} exported no model to {fn_args.serving_model_dir}")
    return fn_args.serving_model_dir


# ---- Evaluator (evaluator/executor.py) --------------------------------------------------------------------------
def evaluator(model_dir: str, examples_dir: str, schema_path: str, eval_config: tfma.EvalConfig,
              output_dir: str) -> tuple[dict[str, float], bool]:
    """TFMA over the eval split's raw tf.Examples (RecordBatches from TFXIO with the serialized examples as TFMA's
    input column, which the serving signature takes), results to `evaluation/`; then the blessing, `BLESSED` or
    `NOT_BLESSED` in `blessing/`, only when thresholds are configured. Returns (overall metrics, blessed)."""
    eval_config = tfma.utils.update_eval_config_with_defaults(eval_config, has_baseline=False)
    tfma.utils.verify_eval_config(eval_config)
    # TFX does not validate without thresholds, so that a model is never blessed by default.
    run_validation = bool(tfma.metrics.metric_thresholds_from_metrics_specs(eval_config.metrics_specs))
    models = [tfma.default_eval_shared_model(eval_saved_model_path=model_dir, model_name=spec.name,
                                             eval_config=eval_config) for spec in eval_config.model_specs]
    examples = tfxio.TFExampleRecord(all_files(split_dir(examples_dir, "eval")),
                                     schema=tfdv.load_schema_text(schema_path),
                                     raw_record_column_name=tfma.ARROW_INPUT_COLUMN,
                                     telemetry_descriptors=["Evaluator"])
    evaluation = os.path.join(output_dir, "evaluation")
    with new_pipeline() as p:
        _ = (p
             | "ReadFromTFRecordToArrow[eval]" >> examples.BeamSource()
             | "ExtractEvaluateAndWriteResults" >> tfma.ExtractEvaluateAndWriteResults(
                 eval_shared_model=models[0] if len(models) == 1 else models, eval_config=eval_config,
                 output_path=evaluation,
                 tensor_adapter_config=tfxio.TensorAdapterConfig(examples.ArrowSchema(),
                                                                 examples.TensorRepresentations())))
    blessed = run_validation and tfma.load_validation_result(evaluation).validation_ok
    if run_validation:
        fileutil.write_text(os.path.join(output_dir, "blessing", BLESSED if blessed else NOT_BLESSED), "")
    return overall_metrics(evaluation), blessed


# ---- Pusher (pusher/executor.py) --------------------------------------------------------------------------------
def copy_dir(source: str, destination: str) -> None:
    """A directory tree copied file by file (utils/io_utils.py `copy_dir`)."""
    if tf.io.gfile.exists(destination):
        tf.io.gfile.rmtree(destination)
    for directory, _, files in tf.io.gfile.walk(source):
        target = os.path.join(destination, os.path.relpath(directory, source))
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(directory, name), os.path.join(target, name))


def pusher(model_dir: str, blessed: bool, serving_dir: str, output_dir: str) -> Optional[str]:
    """A blessed model copied to `<serving_dir>/<unix time>/` (unless that version exists) and, for the record, to
    `pushed_model/`; returns the serving path, or None when the model is not blessed."""
    if not blessed:
        return None
    serving_path = os.path.join(serving_dir, str(int(time.time())))
    if not tf.io.gfile.exists(serving_path):
        copy_dir(model_dir, serving_path)
    copy_dir(model_dir, os.path.join(output_dir, "pushed_model"))
    return serving_path


# ---- the pipeline -----------------------------------------------------------------------------------------------
def run(csv_path: str, work_dir: str, config: PipelineConfig) -> dict:
    """Runs every component in turn, each as its own Beam pipeline (in-process DirectRunner) or call, and returns
    {"stages": {component: wall seconds}, "metrics": {TFMA overall metric: value},
     "splits": {split: examples}, "blessed": bool}. `config` gives the split buckets, the user module, the label,
    the hyperparameters and seed, the evaluation (as beam_ml builds it: same metrics, slices and thresholds, no
    baseline) and the serving directory."""
    dirs = {component: os.path.join(work_dir, component) for component in COMPONENTS}
    for directory in dirs.values():  # TFX gives each execution fresh output directories
        shutil.rmtree(directory, ignore_errors=True)
    splits = tuple(config.split_buckets)
    module = user_module.check(config.module)
    schema_path = os.path.join(dirs["SchemaGen"], SCHEMA_FILE)
    eval_config = build_eval_config(config.label_key, config.eval_metrics, config.eval_slices,
                                    config.eval_thresholds, config.eval_change_thresholds, with_baseline=False)
    stages: dict[str, float] = {}

    def timed(component: str, fn: Callable, *args: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args)
        stages[component] = time.perf_counter() - start
        return result

    timed("ExampleGen", example_gen, csv_path, dirs["ExampleGen"], config.split_buckets)
    timed("StatisticsGen", statistics_gen, dirs["ExampleGen"], splits, dirs["StatisticsGen"])
    schema = timed("SchemaGen", schema_gen, dirs["StatisticsGen"], splits, schema_path)
    check_column_types(schema, config.column_types)
    anomalies = timed("ExampleValidator", example_validator, dirs["StatisticsGen"], schema_path, splits,
                      dirs["ExampleValidator"])
    for split, found in anomalies.items():
        if found.anomaly_info:
            logging.warning("ExampleValidator: anomalies in %s: %s", split, sorted(found.anomaly_info))
    timed("Transform", transform, dirs["ExampleGen"], schema_path, module.load().preprocessing_fn,
          dirs["Transform"], splits)
    model_dir = timed("Trainer", trainer, module, dirs["Transform"], schema_path, dirs["Trainer"], config)
    metrics, blessed = timed("Evaluator", evaluator, model_dir, dirs["ExampleGen"], schema_path, eval_config,
                             dirs["Evaluator"])
    timed("Pusher", pusher, model_dir, blessed, config.serving_dir, dirs["Pusher"])
    return {"stages": stages, "metrics": metrics, "splits": split_counts(dirs["StatisticsGen"], splits),
            "blessed": blessed}
