"""The label guard's rules, each alone (the whole guard runs in tests/e2e/test_penguins.py)."""
import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.train.labels import MAX_CLASSES, MergeLabelRows, is_constant, label_failures, label_rows, split_values

BASELINE = {"values": {"train": ["a", "b", "c"], "eval": ["a", "b", "c"]}, "classes": ["b", "a", "c"],
            "output_shape": [None, 3]}


def _batch(columns):
    return pa.Table.from_pydict(columns).to_batches()[0]


def _found(batches):
    merge = MergeLabelRows()
    found = {}
    for split, batch in batches:
        for key, rows in label_rows((split, batch), "y"):
            found[key] = merge.add_input(found.get(key, merge.create_accumulator()), rows)
    return found


def test_label_rows_keep_one_row_per_value_and_floats_are_not_classes():
    found = _found([("train", _batch({"y": ["a", "b", None, "a"], "x": [1, 2, 3, 4]})),
                    ("train", _batch({"y": ["c", "a"], "x": [5, 6]})),
                    ("eval", _batch({"y": [0.5, 0.7], "x": [1, 2]}))])
    assert {v: r.column("x")[0].as_py() for v, r in found["train"].items()} == {"a": 1, "b": 2, "c": 5}
    assert split_values(found) == {"eval": None, "train": ["a", "b", "c"]}
    assert list(label_rows(("train", _batch({"x": [1]})), "y")) == []  # no label column: nothing to say


def test_too_many_values_are_not_classes():
    found = _found([("train", _batch({"y": list(range(MAX_CLASSES + 5))}))])
    assert split_values(found) == {"train": None} and is_constant(found) is None


def test_a_constant_label_is_found_across_splits_whatever_its_type():
    assert is_constant(_found([("train", _batch({"y": ["a", "a"]})),
                               ("eval", _batch({"y": ["a"]}))])) == ["a"]
    assert is_constant(_found([("train", _batch({"y": [2.5, 2.5]})),
                               ("eval", _batch({"y": [2.5]}))])) == [2.5]
    assert is_constant(_found([("train", _batch({"y": [2.5]})),
                               ("eval", _batch({"y": [3.0]}))])) is None
    assert is_constant(_found([("train", _batch({"y": [0, 0]})),
                               ("eval", _batch({"y": [0, 1]}))])) is None


def test_lost_and_new_classes_and_a_new_output_shape_are_failures_unless_changed_on_purpose():
    candidate = {"values": {"train": ["a", "b"], "eval": ["a", "b", "d"]}, "output_shape": [None, 2]}
    failures = label_failures("y", candidate, BASELINE, label_set_changed=False, constant=None)
    assert failures == [
        "the train split lacks label values the baseline model's train split had: ['c'] (label_set_changed: true "
        "if on purpose)",
        "the eval split lacks label values the baseline model's eval split had: ['c'] (label_set_changed: true if "
        "on purpose)",
        "label values the baseline model never saw: ['d'] (label_set_changed: true if on purpose)",
        "the model's outputs have shape [None, 2], the baseline's [None, 3] (label_set_changed: true if on purpose)"]
    assert label_failures("y", candidate, BASELINE, label_set_changed=True, constant=None) == []
    assert label_failures("y", candidate, None, label_set_changed=False, constant=None) == []  # a first model


def test_an_autoencoder_trained_on_one_class_is_judged_split_by_split():
    baseline = {"values": {"train": [0], "eval": [0, 1]}, "output_shape": [None, 24, 4]}
    same = {"values": {"train": [0], "eval": [0, 1]}, "output_shape": [None, 24, 4]}
    assert label_failures("is_anomaly", same, baseline, label_set_changed=False, constant=None) == []


def test_a_constant_label_fails_even_when_the_label_set_changed_on_purpose():
    candidate = {"values": {"train": ["a"], "eval": ["a"]}, "output_shape": [None, 1]}
    assert label_failures("y", candidate, BASELINE, label_set_changed=True, constant=["a"]) == [
        "label 'y' has one value in the whole run ('a'): a model of it predicts nothing"]


def test_an_unsupervised_model_may_learn_from_a_history_without_anomalies_but_not_from_anomalies_alone():
    normal_only = {"values": {"train": [0], "eval": [0]}, "output_shape": [None]}
    assert label_failures("anomaly", normal_only, None, False, constant=[0], unsupervised=True) == []
    assert label_failures("anomaly", normal_only, None, False, constant=[0]) == [  # a classifier of it: useless
        "label 'anomaly' has one value in the whole run (0): a model of it predicts nothing"]
    anomalies_only = {"values": {"train": [1], "eval": [1]}, "output_shape": [None]}
    assert label_failures("anomaly", anomalies_only, None, False, constant=[1], unsupervised=True) == [
        "label 'anomaly' has one value in the whole run (1): a model of it predicts nothing"]


def test_the_combine_merges_values_of_a_split_across_bundles():
    batches = [("train", _batch({"y": ["a"]})), ("train", _batch({"y": ["b", "a"]})),
               ("eval", _batch({"y": ["b"]}))]
    with beam.Pipeline() as p:
        merged = (p | beam.Create(batches) | beam.FlatMap(label_rows, "y")
                  | beam.CombinePerKey(MergeLabelRows()) | beam.MapTuple(lambda split, rows: (split, sorted(rows))))
        assert_that(merged, equal_to([("train", ["a", "b"]), ("eval", ["b"])]))


def test_bytes_labels_are_named_as_text():
    found = _found([("train", pa.Table.from_arrays([pa.array([b"Adelie", b"Gentoo"], pa.binary())], ["y"])
                     .to_batches()[0])])
    assert split_values(found) == {"train": ["Adelie", "Gentoo"]}


def test_missing_labels_are_skipped_and_do_not_hide_a_constant_float_label():
    empty_lists = pa.Table.from_arrays([pa.array([[], [b"a"], None, [b"b"]], pa.list_(pa.binary()))], ["y"])
    assert split_values(_found([("train", empty_lists.to_batches()[0])])) == {"train": ["a", "b"]}
    unlabelled = _batch({"y": pa.array([None, None], pa.float64())})
    found = _found([("train", _batch({"y": [2.5]})), ("train", unlabelled), ("eval", _batch({"y": [2.5]}))])
    assert is_constant(found) == [2.5]
    merge = MergeLabelRows()
    assert merge.merge_accumulators([{}, {None: 2.5}]) == merge.merge_accumulators([{None: 2.5}, {}]) == {None: 2.5}
