"""Reusable tf.Transform recipes for raw features, which arrive as SparseTensors (a value may be missing)."""
from __future__ import annotations

from typing import Union

import tensorflow as tf
import tensorflow_transform as tft

Feature = Union[tf.Tensor, tf.SparseTensor]


def fill_missing(x: Feature, default=None) -> tf.Tensor:
    """A [batch] dense tensor from a [batch, 1] sparse feature; missing values become `default`
    ('' for strings, 0 for numbers when not given)."""
    if not isinstance(x, tf.SparseTensor):
        return x
    if default is None:
        default = "" if x.dtype == tf.string else 0
    dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
                               tf.constant(default, dtype=x.dtype))
    return tf.squeeze(dense, axis=1)


def _present(x: Feature) -> tf.Tensor:
    """The values present: a SparseTensor's values, a dense tensor itself."""
    return x.values if isinstance(x, tf.SparseTensor) else x


def _with_values(x: Feature, values: tf.Tensor) -> Feature:
    """`x` with its present values replaced by `values` (computed from `_present(x)`): missing stays missing."""
    return tf.SparseTensor(x.indices, values, x.dense_shape) if isinstance(x, tf.SparseTensor) else values


def _floats(x: Feature) -> Feature:
    return _with_values(x, tf.cast(_present(x), tf.float32))


def _strings(x: Feature) -> Feature:
    """Categories as strings: an int column's values are their decimal text, so a missing int stays missing rather
    than becoming the category 0."""
    values = _present(x)
    return x if values.dtype == tf.string else _with_values(x, tf.strings.as_string(values))


def z_score(x: Feature) -> tf.Tensor:
    """A float feature scaled to mean 0 and variance 1 over the values present; missing values become 0 (the
    mean), so imputation is part of the serving graph too."""
    return fill_missing(tft.scale_to_z_score(_floats(x)), 0.0)


def vocabulary_index(x: Feature, name: str, top_k: int = None, num_oov_buckets: int = 1) -> tf.Tensor:
    """Index of a string (or int) category in the vocabulary built on train; unknown and missing values share
    the out-of-vocabulary buckets."""
    return tft.compute_and_apply_vocabulary(fill_missing(_strings(x)), top_k=top_k,
                                            num_oov_buckets=num_oov_buckets, vocab_filename=name)


def window_values(x: Feature, length: int) -> tf.Tensor:
    """A window column (`length` values per window record, see `beam_ml.core.windowing`) as a dense [batch, length]
    tensor, oldest value first."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x)
    return tf.reshape(x, [-1, length])
