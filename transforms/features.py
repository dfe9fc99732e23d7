"""Reusable tf.Transform recipes for raw features, which arrive as SparseTensors (a value may be missing)."""
from __future__ import annotations

from typing import Union

import tensorflow as tf
import tensorflow_transform as tft


def fill_missing(x: Union[tf.Tensor, tf.SparseTensor], default=None) -> tf.Tensor:
    """A [batch] dense tensor from a [batch, 1] sparse feature; missing values become `default`
    ('' for strings, 0 for numbers when not given)."""
    if not isinstance(x, tf.SparseTensor):
        return x
    if default is None:
        default = "" if x.dtype == tf.string else 0
    dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
                               tf.constant(default, dtype=x.dtype))
    return tf.squeeze(dense, axis=1)


def z_score(x: Union[tf.Tensor, tf.SparseTensor]) -> tf.Tensor:
    """A float feature scaled to mean 0 and variance 1 over the values present; missing values become 0 (the
    mean), so imputation is part of the serving graph too."""
    if isinstance(x, tf.SparseTensor):
        x = tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
    else:
        x = tf.cast(x, tf.float32)
    return fill_missing(tft.scale_to_z_score(x), 0.0)


def vocabulary_index(x: Union[tf.Tensor, tf.SparseTensor], name: str, top_k: int = None,
                     num_oov_buckets: int = 1) -> tf.Tensor:
    """Index of a string (or int) category in the vocabulary built on train; unknown and missing values share
    the out-of-vocabulary buckets."""
    dense = fill_missing(x)
    if dense.dtype != tf.string:
        dense = tf.strings.as_string(dense)
    return tft.compute_and_apply_vocabulary(dense, top_k=top_k, num_oov_buckets=num_oov_buckets,
                                            vocab_filename=name)


def window_values(x: Union[tf.Tensor, tf.SparseTensor], length: int) -> tf.Tensor:
    """A window column (`length` values per window record, see `beam_ml.core.windowing`) as a dense [batch, length]
    tensor, oldest value first."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x)
    return tf.reshape(x, [-1, length])
