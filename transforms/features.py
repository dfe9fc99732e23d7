"""Reusable tf.Transform recipes for raw features, which arrive as SparseTensors (a value may be missing).

Every recipe takes a raw column as it arrives, a [batch, 1] SparseTensor with no entry where the value is missing,
or a dense [batch] tensor, and returns dense tensors, so the transformed examples hold fixed-length features.
Analyzers (means, quantiles, vocabularies, principal components) see only the values present, on the train split.
What a missing value becomes is part of each recipe, and so of the serving graph:
  * numbers scaled or projected (`z_score`, `pca`): the train mean;
  * numbers reshaped (`signed_log1p`, `clip`, `clip_to_quantiles`): `default` (0 unless given);
  * indices with a fixed range (`quantile_bucket`, `hash_bucket`, `hashed_cross`, `date_parts`): the index after
    the last, a category of its own, so a feature of n indices has n + 1 values;
  * vocabulary indices and text (`vocabulary_index`, `bag_of_words`, `tfidf`): the out-of-vocabulary buckets, and
    no terms;
  * columns passed through (`renamed`): '' or 0.
"""
from __future__ import annotations

from typing import Sequence, Union

import tensorflow as tf
import tensorflow_transform as tft

Feature = Union[tf.Tensor, tf.SparseTensor]

QUANTILE_RESOLUTION = 1000  # clip_to_quantiles learns quantiles in steps of 0.1%
DATE_PARTS = {"hour": 24, "day_of_week": 7, "month": 12}  # each part's number of values, a missing one not counted


def fill_missing(x: Feature, default=None) -> tf.Tensor:
    """A [batch] dense tensor from a [batch, 1] sparse feature; missing values become `default`, a value or a
    scalar tensor such as an analyzer's result ('' for strings, 0 for numbers when not given)."""
    if not isinstance(x, tf.SparseTensor):
        return x
    if default is None:
        default = "" if x.dtype == tf.string else 0
    dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
                               tf.convert_to_tensor(default, dtype=x.dtype))
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


def renamed(inputs: dict, names: dict[str, str], default=None) -> dict[str, tf.Tensor]:
    """The raw columns `names` maps (old name → new name) under their new names, as dense [batch] tensors (missing
    → `default`, see `fill_missing`): a pass-through for a `preprocessing_fn`."""
    return {new: fill_missing(inputs[old], default) for old, new in names.items()}


def quantile_bucket(x: Feature, num_buckets: int) -> tf.Tensor:
    """Bucket index (int64, 0 to num_buckets - 1) of a numeric feature, by quantiles of the train values present;
    a missing value gets bucket `num_buckets` of its own. A value repeated across a quantile leaves buckets empty
    (equal boundaries)."""
    if num_buckets < 2:
        raise ValueError(f"num_buckets must be at least 2, got {num_buckets}")
    return fill_missing(tft.bucketize(_floats(x), num_buckets), num_buckets)


def signed_log1p(x: Feature, default: float = 0.0) -> tf.Tensor:
    """sign(x)·log(1 + |x|) as float32: log1p for skewed non-negative amounts, and defined, odd, for negative ones
    (a refund) where log1p is not; missing values become `default` first."""
    dense = fill_missing(_floats(x), default)
    return tf.sign(dense) * tf.math.log1p(tf.abs(dense))


def clip(x: Feature, lower: float, upper: float, default: float = 0.0) -> tf.Tensor:
    """A float feature clipped to [lower, upper]; missing values become `default` first (then clipped too)."""
    if not lower <= upper:
        raise ValueError(f"lower must not exceed upper, got lower={lower}, upper={upper}")
    return tf.clip_by_value(fill_missing(_floats(x), default), lower, upper)


def clip_to_quantiles(x: Feature, lower: float = 0.01, upper: float = 0.99, default: float = 0.0) -> tf.Tensor:
    """A float feature clipped to its `lower` and `upper` quantiles over the train values present (tft.quantiles,
    to 0.1%; the q quantile is the value with a fraction q of them below it), in training and at serving; missing
    values become `default` first (then clipped too)."""
    if not 1 / QUANTILE_RESOLUTION <= lower < upper <= 1 - 1 / QUANTILE_RESOLUTION:
        raise ValueError(f"lower and upper must be quantiles with 0.001 <= lower < upper <= 0.999, got {lower}, "
                         f"{upper}")
    floats = _floats(x)
    boundaries = tft.quantiles(_present(floats), QUANTILE_RESOLUTION, 1 / QUANTILE_RESOLUTION)[0]
    return tf.clip_by_value(fill_missing(floats, default), boundaries[round(lower * QUANTILE_RESOLUTION) - 1],
                            boundaries[round(upper * QUANTILE_RESOLUTION) - 1])


def hash_bucket(x: Feature, num_buckets: int) -> tf.Tensor:
    """A high-cardinality string (or int) category hashed into `num_buckets` buckets (int64, 0 to num_buckets - 1;
    no vocabulary to learn or ship); a missing value gets bucket `num_buckets` of its own."""
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be at least 1, got {num_buckets}")
    return fill_missing(tft.hash_strings(_strings(x), num_buckets), num_buckets)


def hashed_cross(columns: Sequence[Feature], num_buckets: int) -> tf.Tensor:
    """The cross of two or more string (or int) categories, hashed into `num_buckets` buckets (int64, 0 to
    num_buckets - 1, tf.sparse.cross_hashed); a row missing any of the values gets bucket `num_buckets` of its own."""
    if len(columns) < 2:
        raise ValueError(f"a cross needs at least 2 columns, got {len(columns)}")
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be at least 1, got {num_buckets}")
    parts = [c if isinstance(c, tf.SparseTensor) else tf.expand_dims(c, 1) for c in map(_strings, columns)]
    return fill_missing(tf.sparse.cross_hashed(parts, num_buckets), num_buckets)


def bag_of_words(text: Feature, name: str, top_k: int, num_oov_buckets: int = 1) -> tf.Tensor:
    """Term counts of a text column, float32 [batch, top_k + num_oov_buckets]: column i counts the words with index
    i in the vocabulary of the `top_k` most frequent words on train (written as `name`), the last columns the other
    words, hashed. Words are the text lower-cased and split on whitespace; a missing text has none (a zero row).

    Dense per-term weights rather than tft's sparse (index, weight) pairs: a fixed width is a FixedLenFeature in
    the transformed examples and a plain `Input(shape=(width,))` for a Keras model, at the cost of width floats per
    example on disk, so keep `top_k` to thousands.
    """
    ids = _term_ids(text, name, top_k, num_oov_buckets)
    return _per_term(ids, tf.ones_like(ids.values, tf.float32), top_k + num_oov_buckets)


def tfidf(text: Feature, name: str, top_k: int, num_oov_buckets: int = 1) -> tf.Tensor:
    """TF-IDF weights of a text column's words, laid out as `bag_of_words` (which says why dense): tft.tfidf's
    term count / words in the text × (1 + ln((train texts + 1) / (train texts with the term + 1))), where missing
    texts count among the train texts; a missing text has a zero row."""
    width = top_k + num_oov_buckets
    terms, weights = tft.tfidf(_term_ids(text, name, top_k, num_oov_buckets), width)
    return _per_term(terms, weights.values, width)


def _term_ids(text: Feature, name: str, top_k: int, num_oov_buckets: int) -> tf.SparseTensor:
    """[batch, words] vocabulary indices of a text column's words (see `bag_of_words`)."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    words = tf.strings.split(tf.strings.lower(fill_missing(text), encoding="utf-8")).to_sparse()
    return tft.compute_and_apply_vocabulary(words, top_k=top_k, num_oov_buckets=num_oov_buckets,
                                            vocab_filename=name)


def _per_term(terms: tf.SparseTensor, weights: tf.Tensor, width: int) -> tf.Tensor:
    """Dense [batch, width] sums of `weights` (one per entry of `terms`) by row and term index; the width is static,
    so tf.Transform writes a FixedLenFeature."""
    return tf.ensure_shape(tf.math.bincount(terms, weights=_with_values(terms, weights), minlength=width,
                                            maxlength=width, dtype=tf.float32, axis=-1), [None, width])


def pca(columns: Sequence[Feature], k: int) -> tf.Tensor:
    """Numeric columns projected on their first `k` principal components on train (tft.pca), centred on their
    train means, float32 [batch, k]; a missing value is imputed by its column's train mean first (it adds nothing
    along that column). Columns in different units should be passed through `z_score` first."""
    if not 0 < k <= len(columns):
        raise ValueError(f"k must be between 1 and the number of columns ({len(columns)}), got {k}")
    data = tf.stack([_mean_imputed(c) for c in columns], axis=1)
    # The mean and the components in one analysis phase, so z_score inputs make two phases: tf.Transform 1.16 on
    # Beam 2.66's DirectRunner fails on three ("watermark-pending bundles did not execute").
    return tf.matmul(data - tft.mean(data, reduce_instance_dims=False), tft.pca(data, k, tf.float32))


def _mean_imputed(x: Feature) -> tf.Tensor:
    """[batch] float32 values, a missing one replaced by the train mean of those present."""
    floats = _floats(x)
    return fill_missing(floats, tft.mean(floats)) if isinstance(floats, tf.SparseTensor) else floats


def date_parts(x: Feature) -> dict[str, tf.Tensor]:
    """Hour of day (0–23), day of week (0–6, Monday 0) and month (0–11, January 0), in UTC, of a unix-seconds
    column, as int64 [batch] indices keyed as in `DATE_PARTS`; a missing timestamp gets the index after the last
    (24, 7, 12), a value of its own. A float column is floored to whole seconds first (float32 holds today's
    timestamps only to about 2 minutes: prefer an int column)."""
    seconds = _present(x)
    if seconds.dtype.is_floating:
        seconds = tf.math.floor(seconds)
    parts = _utc_parts(tf.cast(seconds, tf.int64))
    return {part: fill_missing(_with_values(x, parts[part]), size) for part, size in DATE_PARTS.items()}


def _utc_parts(seconds: tf.Tensor) -> dict[str, tf.Tensor]:
    """The `DATE_PARTS` of int64 unix seconds, with the days-to-civil-date arithmetic of H. Hinnant's
    `civil_from_days` (proleptic Gregorian calendar, any year)."""
    days = seconds // 86400  # floor division: times before 1970 land on the right day too
    day_of_era = (days + 719468) % 146097  # days since the 400-year era began, on a 1 March
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)  # from 1 March
    month_from_march = (5 * day_of_year + 2) // 153
    return {"hour": seconds % 86400 // 3600, "day_of_week": (days + 3) % 7,  # 1 January 1970 was a Thursday
            "month": (month_from_march + 2) % 12}
