"""Transform with tf.Transform: analyze on train only, apply to every split, write TFX's layout.

Data contract: input `{split: PCollection[pa.RecordBatch]}` in the ingest layout; output `Transformed(transform_fn:
a singleton that exists once `transform_fn/`, `transformed_metadata/` and the raw `metadata/` are published,
files: {split: PCollection[str]}` of written TFRecord file names (serialized transformed tf.Examples)`)`.
Data reaches tf.Transform as TFXIO RecordBatches, never as instance dicts.
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

import apache_beam as beam
import pyarrow as pa
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

from beam_ml.core.layout import split_dir
from beam_ml.core.records import RecordFormat

TRANSFORMED_EXAMPLES = "transformed_examples"


def tensor_adapter_config(fmt: RecordFormat) -> tensor_adapter.TensorAdapterConfig:
    """How tf.Transform sees the ingest batches: every raw feature a SparseTensor (values may be missing)."""
    return tensor_adapter.TensorAdapterConfig(
        fmt.arrow_schema(),
        tensor_representation_util.InferTensorRepresentationsFromSchema(fmt.tfmd_schema()))


class Transformed(NamedTuple):
    """What `TransformSplits` gives (see the module docstring)."""

    transform_fn: beam.PCollection[str]
    files: dict[str, beam.PCollection[str]]


class TransformSplits(beam.PTransform[dict[str, beam.PCollection[pa.RecordBatch]], Transformed]):
    """Analyzes `analyze_split` with `preprocessing_fn`, transforms every split, writes transformed examples.

    Example::

        out = {"train": train, "eval": eval_} | TransformSplits(preprocessing_fn, fmt, run_dir + "/transform",
                                                                temp_dir=run_dir + "/tmp")
        train_files = out.files["train"]

    Args:
      preprocessing_fn: the user's tf.Transform function (dict of raw tensors → dict of transformed tensors).
      fmt: the raw CSV format (column types give the input TensorRepresentations).
      output_dir: receives `transform_fn/`, `transformed_metadata/` and `transformed_examples/Split-<name>/`.
      temp_dir: tf.Transform's scratch space.
    """

    def __init__(self, preprocessing_fn: Callable, fmt: RecordFormat, output_dir: str, temp_dir: str,
                 analyze_split: str = "train"):
        super().__init__()
        self._preprocessing_fn = preprocessing_fn
        self._fmt = fmt
        self._output_dir = output_dir
        self._temp_dir = temp_dir
        self._analyze_split = analyze_split

    def expand(self, batches_by_split: dict[str, beam.PCollection[pa.RecordBatch]]) -> Transformed:
        adapter_config = tensor_adapter_config(self._fmt)
        files = {}
        with tft_beam.Context(temp_dir=self._temp_dir):
            transform_fn = ((batches_by_split[self._analyze_split], adapter_config)
                            | "Analyze" >> tft_beam.AnalyzeDataset(self._preprocessing_fn))
            published = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self._output_dir)
            written = (published | "WriteRawMetadata" >> beam.Map(
                _write_raw_metadata, self._fmt, os.path.join(self._output_dir, tft.TFTransformOutput.RAW_METADATA_DIR)))
            for split, batches in sorted(batches_by_split.items()):
                name = split.title()
                prefix = _examples_prefix(self._output_dir, split)
                files[split] = (
                    (((batches, adapter_config), transform_fn)
                     | f"Transform{name}" >> tft_beam.TransformDataset(output_record_batches=True))
                    | f"Encode{name}" >> tft_beam.EncodeTransformedDataset()
                    | f"Write{name}" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".tfrecord"))
        return Transformed(written, files)


def _examples_prefix(output_dir: str, split: str) -> str:
    return os.path.join(split_dir(os.path.join(output_dir, TRANSFORMED_EXAMPLES), split), TRANSFORMED_EXAMPLES)


def transformed_files(output_dir: str, split: str) -> list[str]:
    """The transformed example files `TransformSplits` wrote for `split` under `output_dir`."""
    import tensorflow as tf
    return sorted(tf.io.gfile.glob(_examples_prefix(output_dir, split) + "-*.tfrecord"))


def _write_raw_metadata(unused_published, fmt: RecordFormat, path: str) -> str:
    """The raw schema beside transform_fn/, where `TFTransformOutput.raw_feature_spec()` reads it."""
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(fmt.tfmd_schema()), path)
    return path
