"""The feature recipes under a real tf.Transform analysis (`TransformSplits` on RecordBatches, so raw features
arrive as the pipeline gives them: [batch, 1] SparseTensors with missing values), each checked against a hand
computation; the analyzed graph is then applied to probe examples, as at serving."""
import datetime
import math
from collections import Counter

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from apache_beam.testing.test_pipeline import TestPipeline

from beam_ml.core.records import ARROW_TYPES, RecordFormat, to_list_array
from beam_ml.train.transform import TransformSplits, transformed_files
from transforms.features import (DATE_PARTS, bag_of_words, clip, clip_to_quantiles, date_parts, fill_missing,
                                 hash_bucket, hashed_cross, pca, quantile_bucket, renamed, signed_log1p, tfidf,
                                 vocabulary_index, z_score)

ROWS = 110
TEXTS = ("the cat sat", "The cat sat on the mat", "the cat ran", "", None)  # "" has no words, None is missing
TIMES = (0, -1, 951782400, 951868799, 1700000000, 4102444799, None)  # 1970, 1969, 29 Feb 2000 (its first and
# last second), 2023, the last second of 2099
PCA_COLUMNS = ("p", "q", "r")
TOP_K = 3  # words: the (4 a cycle of TEXTS), cat (3), sat (2), then on, mat, ran (1) share the OOV bucket


def _columns() -> dict[str, tuple[str, list]]:
    """The train rows: `amount` is 1..100 and missing on 10 rows; every other column misses some values too."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=ROWS)
    pcs = {"p": a + 0.1 * rng.normal(size=ROWS), "q": 2 * a + 0.3 * rng.normal(size=ROWS),
           "r": 0.5 * rng.normal(size=ROWS)}
    return {
        "id": ("int", list(range(ROWS))),
        "amount": ("float", [float(i + 1) if i < 100 else None for i in range(ROWS)]),
        "city": ("string", [None if i % 11 == 5 else f"c{i % 37}" for i in range(ROWS)]),
        "color": ("string", [None if i % 13 == 7 else ("red", "green", "blue")[i % 3] for i in range(ROWS)]),
        "code": ("int", [None if i % 10 == 9 else i % 3 for i in range(ROWS)]),
        "text": ("string", [TEXTS[i % len(TEXTS)] for i in range(ROWS)]),
        "ts": ("int", [TIMES[i % len(TIMES)] for i in range(ROWS)]),
        **{name: ("float", [None if (i + j) % 9 == 0 else float(v) for i, v in enumerate(pcs[name])])
           for j, name in enumerate(PCA_COLUMNS)},
    }


def preprocessing_fn(inputs: dict) -> dict:
    outputs = renamed(inputs, {"id": "row"})
    amount = inputs["amount"]
    outputs.update(amount_bucket=quantile_bucket(amount, 4), amount_log=signed_log1p(amount),
                   amount_clip=clip(amount, 10.0, 50.0, default=-1.0), amount_tails=clip_to_quantiles(amount, 0.05, 0.95),
                   id_bucket=quantile_bucket(fill_missing(inputs["id"]), 5),  # dense inputs
                   id_tails=clip_to_quantiles(fill_missing(inputs["id"]), 0.1, 0.9),
                   city_hash=hash_bucket(inputs["city"], 16),
                   city_color_code=hashed_cross([inputs["city"], inputs["color"], inputs["code"]], 64),
                   code=vocabulary_index(inputs["code"], "code"),
                   words=bag_of_words(inputs["text"], "words", TOP_K),
                   tfidf=tfidf(inputs["text"], "tfidf_words", TOP_K),
                   tfidf_dense=tfidf(fill_missing(inputs["text"]), "tfidf_dense_words", TOP_K),
                   pca=pca([inputs[c] for c in PCA_COLUMNS], 2),
                   pca_scaled=pca([z_score(inputs[c]) for c in PCA_COLUMNS], 2))
    outputs.update(date_parts(inputs["ts"]))
    return outputs


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory) -> tuple[dict, dict[str, np.ndarray], tft.TFTransformOutput]:
    """(raw columns, transformed train features by name in row order, the transform output)."""
    tmp = tmp_path_factory.mktemp("features")
    columns = _columns()
    fmt = RecordFormat(tuple(columns), tuple(kind for kind, _ in columns.values()))
    batch = pa.RecordBatch.from_arrays(
        [to_list_array(pa.array([v.encode() if isinstance(v, str) else v for v in values], ARROW_TYPES[kind]))
         for kind, values in columns.values()], list(columns))
    out_dir = str(tmp / "transform")
    with TestPipeline() as p:
        _ = {"train": p | beam.Create([batch])} | TransformSplits(preprocessing_fn, fmt, out_dir, str(tmp / "tmp"))
    output = tft.TFTransformOutput(out_dir)
    records = list(tf.data.TFRecordDataset(transformed_files(out_dir, "train")))
    parsed = tf.io.parse_example(tf.stack(records), output.transformed_feature_spec())
    order = np.argsort(parsed["row"].numpy())
    return ({name: values for name, (_, values) in columns.items()},
            {name: t.numpy()[order] for name, t in parsed.items()}, output)


def _array(values: list) -> np.ndarray:
    """Raw values as floats, a missing one NaN."""
    return np.array([np.nan if v is None else v for v in values], float)


def _serve(output: tft.TFTransformOutput, rows: list[dict]) -> dict[str, np.ndarray]:
    """The transform graph applied to raw tf.Examples (a feature left out is missing), as the serving model does."""
    def example(row):
        features = {}
        for name, value in row.items():
            if isinstance(value, str):
                features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            elif isinstance(value, float):
                features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            else:
                features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
    raw = tf.io.parse_example(tf.constant([example(r) for r in rows]), output.raw_feature_spec())
    return {name: t.numpy() for name, t in output.transform_raw_features(raw).items()}


def test_quantile_buckets_split_1_to_100_in_quarters_and_missing_has_its_own(analyzed):
    raw, out, _ = analyzed
    expected = [i // 25 if i < 100 else 4 for i in range(ROWS)]  # boundaries 26, 51, 76 on 1..100
    assert out["amount_bucket"].tolist() == expected
    assert out["id_bucket"].tolist() == [i // 22 for i in range(ROWS)]  # a dense input: 0..109 in fifths


def test_log1p_and_clips_with_missing_values_as_their_default(analyzed):
    raw, out, output = analyzed
    amount = _array(raw["amount"])
    np.testing.assert_allclose(out["amount_log"], np.where(np.isnan(amount), 0.0, np.log1p(amount)), rtol=1e-6)
    np.testing.assert_array_equal(out["amount_clip"], np.where(np.isnan(amount), 10.0, np.clip(amount, 10, 50)))
    # the 5% and 95% quantiles of the 100 train amounts: the values with 5 and 95 of them below; a missing amount
    # is 0, below the lower one
    present = sorted(v for v in raw["amount"] if v is not None)
    lower, upper = present[5], present[95]
    assert (lower, upper) == (6.0, 96.0)
    np.testing.assert_array_equal(out["amount_tails"],
                                  np.where(np.isnan(amount), lower, np.clip(amount, lower, upper)))
    assert out["id_tails"].tolist() == np.clip(raw["id"], 11, 99).tolist()  # a dense input: 0..109, 110 values
    served = _serve(output, [{"amount": -3.0}, {"amount": -1e6}, {"amount": 1e6}, {}])
    np.testing.assert_allclose(served["amount_log"], [-math.log1p(3.0), -math.log1p(1e6), math.log1p(1e6), 0.0],
                               rtol=1e-6)
    assert served["amount_tails"].tolist() == [lower, lower, upper, lower]
    assert served["amount_clip"].tolist() == [10.0, 10.0, 50.0, 10.0]


def test_hashes_and_crosses_are_the_tensorflow_hashes_and_missing_values_have_their_own_bucket(analyzed):
    raw, out, _ = analyzed
    city = [c or "" for c in raw["city"]]
    hashed = tf.strings.to_hash_bucket_fast(city, 16).numpy()
    assert out["city_hash"].tolist() == [16 if c is None else h for c, h in zip(raw["city"], hashed)]
    parts = [[[c or ""] for c in raw["city"]], [[c or ""] for c in raw["color"]],
             [[str(c) if c is not None else ""] for c in raw["code"]]]
    crossed = tf.sparse.to_dense(tf.sparse.cross_hashed([tf.constant(p) for p in parts], 64)).numpy()[:, 0]
    complete = [all(raw[c][i] is not None for c in ("city", "color", "code")) for i in range(ROWS)]
    assert out["city_color_code"].tolist() == [h if ok else 64 for h, ok in zip(crossed, complete)]


def test_an_int_category_missing_is_out_of_vocabulary_not_the_category_0(analyzed):
    raw, out, output = analyzed
    vocabulary = [w.decode() for w in output.vocabulary_by_name("code")]
    assert sorted(vocabulary) == ["0", "1", "2"]
    assert out["code"].tolist() == [3 if c is None else vocabulary.index(str(c)) for c in raw["code"]]


def test_bag_of_words_and_tfidf_match_a_hand_computation(analyzed):
    raw, out, output = analyzed
    documents = [(t or "").lower().split() for t in raw["text"]]
    counts = Counter(w for words in documents for w in words)
    top = [w for w, _ in counts.most_common(TOP_K)]
    assert [w.decode() for w in output.vocabulary_by_name("words")] == top == ["the", "cat", "sat"]
    bags = np.zeros((ROWS, TOP_K + 1))  # word counts by vocabulary index, the out-of-vocabulary words last
    for i, words in enumerate(documents):
        for w in words:
            bags[i, top.index(w) if w in top else TOP_K] += 1
    np.testing.assert_array_equal(out["words"], bags)
    # tft.tfidf: tf = count / words in the text, idf = 1 + ln((texts + 1) / (texts with the term + 1))
    idf = 1 + np.log((ROWS + 1) / ((bags > 0).sum(axis=0) + 1))
    expected = bags / np.maximum(bags.sum(axis=1, keepdims=True), 1) * idf
    np.testing.assert_allclose(out["tfidf"], expected, rtol=1e-5)
    np.testing.assert_allclose(out["tfidf_dense"], expected, rtol=1e-5)
    assert out["tfidf"][[3, 4]].tolist() == [[0.0] * (TOP_K + 1)] * 2  # "" and a missing text
    assert output.transformed_feature_spec()["tfidf"].shape == [TOP_K + 1]
    served = _serve(output, [{"text": "Dogs sat"}, {}])  # an unseen word: out of vocabulary
    np.testing.assert_allclose(served["tfidf"], [[0, 0, idf[2] / 2, idf[3] / 2], [0, 0, 0, 0]], rtol=1e-5)


def _assert_same_projection(actual: np.ndarray, data: np.ndarray, k: int) -> None:
    """`actual` is `data` centred and projected on its first k principal components (numpy's SVD), up to sign."""
    centred = data - data.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:k].T
    signs = np.sign((actual * expected).sum(axis=0))
    np.testing.assert_allclose(actual * signs, expected, atol=1e-4)


def test_pca_is_numpys_svd_of_the_mean_imputed_columns(analyzed):
    raw, out, output = analyzed
    columns = np.stack([_array(raw[c]) for c in PCA_COLUMNS], axis=1)
    means = np.nanmean(columns, axis=0)
    data = np.where(np.isnan(columns), means, columns)
    _assert_same_projection(out["pca"], data, 2)
    _assert_same_projection(out["pca_scaled"], (data - means) / np.nanstd(columns, axis=0), 2)  # z-scored first
    assert output.transformed_feature_spec()["pca"].shape == [2]
    served = _serve(output, [{}])
    np.testing.assert_allclose(served["pca"], [[0.0, 0.0]], atol=1e-6)  # every column at its mean


def test_date_parts_are_utc_hour_weekday_and_month(analyzed):
    raw, out, output = analyzed
    for i, ts in enumerate(raw["ts"]):
        if ts is None:
            assert [out[part][i] for part in DATE_PARTS] == list(DATE_PARTS.values())
        else:
            when = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
            assert [out[part][i] for part in DATE_PARTS] == [when.hour, when.weekday(), when.month - 1], when
    dense = date_parts(tf.constant([1700000000.7], tf.float64))
    assert {part: t.numpy().tolist() for part, t in dense.items()} == {"hour": [22], "day_of_week": [1], "month": [10]}


def test_recipes_take_dense_inputs_and_reject_bad_arguments():
    dense = tf.constant([-2.0, 0.0, 99.0])
    np.testing.assert_allclose(signed_log1p(dense).numpy(), [-math.log1p(2), 0, math.log1p(99)], rtol=1e-6)
    assert clip(tf.constant([1, 5, 9]), 2.0, 8.0).numpy().tolist() == [2.0, 5.0, 8.0]
    assert hash_bucket(tf.constant([7, 7]), 5).numpy().tolist() == [tf.strings.to_hash_bucket_fast("7", 5).numpy()] * 2
    crossed = tf.sparse.cross_hashed([tf.constant([["a"], ["a"]]), tf.constant([["1"], ["2"]])], 1000)
    assert hashed_cross([tf.constant(["a", "a"]), tf.constant([1, 2])], 1000).numpy().tolist() == \
        crossed.values.numpy().tolist()
    assert renamed({"a": tf.constant([1.5])}, {"a": "b"})["b"].numpy().tolist() == [1.5]
    with pytest.raises(ValueError, match="num_buckets"):
        quantile_bucket(dense, 1)
    with pytest.raises(ValueError, match="lower"):
        clip(dense, 3.0, 1.0)
    with pytest.raises(ValueError, match="quantiles"):
        clip_to_quantiles(dense, 0.9, 0.1)
    with pytest.raises(ValueError, match="at least 2 columns"):
        hashed_cross([dense], 8)
    with pytest.raises(ValueError, match="k must be"):
        pca([dense, dense], 3)
    with pytest.raises(ValueError, match="top_k"):
        tfidf(tf.constant(["a b"]), "v", 0)
