"""Images in class folders and free text, read as records and used by tf.Transform's image and text ops."""
import io
import os

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from beam_ml.ingest.files.image_format import IMAGE_FORMAT, ImageFiles, decoded_size
from beam_ml.ingest.files.source import FileSource
from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.split import HashSplit
from beam_ml.train.transform import TransformSplits

ALL = HashSplit((("train", 1),))
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def _image_folders(root) -> None:
    for label, colour in COLOURS.items():
        os.makedirs(root / label)
        for i in range(4):
            size = (8 + i, 6)
            Image.new("RGB", size, colour).save(root / label / f"{i}.png")
    Image.new("RGB", (5, 5), (1, 2, 3)).save(buffer := io.BytesIO(), "JPEG")
    (root / "red" / "truncated.jpg").write_bytes(buffer.getvalue()[:40])


def _mean_pixel(inputs):
    images = tf.sparse.to_dense(inputs["image"], default_value="")[:, 0]
    mean = tf.map_fn(lambda data: tf.reduce_mean(tf.cast(tf.io.decode_image(data, channels=3,
                                                                            expand_animations=False), tf.float32),
                                                 axis=[0, 1]),
                     images, fn_output_signature=tf.float32)
    label = tf.sparse.to_dense(inputs["label"], default_value="")[:, 0]
    return {"mean_rgb": mean, "label": tft.compute_and_apply_vocabulary(label)}


def test_images_in_class_folders_become_records_and_decode_in_tf_transform(tmp_path):
    _image_folders(tmp_path / "images")
    source = FileSource.resolve(str(tmp_path / "images" / "*" / "*"), {})
    assert dict(zip(source.fmt.columns, source.fmt.types)) == {"image": "string", "height": "int", "width": "int",
                                                               "label": "string"}
    out_dir = str(tmp_path / "transform")
    with TestPipeline() as p:
        out = p | ReadSplits(source, ALL)
        assert_that(out.records_read | beam.CombineGlobally(sum), equal_to([13]), label="Read")
        assert_that(out.dead_letter | beam.Map(lambda d: (os.path.basename(d.source), "not a readable image" in
                                                           d.reason)),
                    equal_to([("truncated.jpg", True)]), label="DeadLetter")
        sizes = out.splits["train"] | beam.FlatMap(lambda b: zip(b.column("label").to_pylist(),
                                                          b.column("width").to_pylist(),
                                                          b.column("height").to_pylist()))
        assert_that(sizes | beam.Map(lambda r: (r[0][0].decode(), r[1][0], r[2][0])),
                    equal_to([(label, 8 + i, 6) for label in COLOURS for i in range(4)]), label="Sizes")
        _ = {"train": out.splits["train"]} | TransformSplits(_mean_pixel, source.fmt, out_dir, str(tmp_path / "tmp"))
    examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
        tf.io.gfile.glob(os.path.join(out_dir, "transformed_examples/Split-train/*")))]
    means = sorted(tuple(np.round(e.features.feature["mean_rgb"].float_list.value)) for e in examples)
    assert means == sorted([tuple(float(c) for c in colour) for colour in COLOURS.values() for _ in range(4)])


def test_a_jpeg_cut_short_mid_scan_and_a_decompression_bomb_are_dead_letters(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer := io.BytesIO(), "JPEG")
    whole = buffer.getvalue()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "half.jpg").write_bytes(whole[:len(whole) // 2])  # headers intact: verify() alone passes
    (tmp_path / "a" / "whole.jpg").write_bytes(whole)
    Image.new("L", (300, 300)).save(tmp_path / "a" / "bomb.png")
    assert decoded_size(whole) == (64, 64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 300x300 > twice the limit: an error, not a warning
    [chunk] = ImageFiles(tuple(str(tmp_path / "a" / name) for name in ("half.jpg", "whole.jpg", "bomb.png"))) \
        .parse(IMAGE_FORMAT)
    assert chunk.records_read == 3 and chunk.batch.column("width").to_pylist() == [[64]]
    reasons = {os.path.basename(d.source): d.reason for d in chunk.dead_letters}
    assert "truncated" in reasons["half.jpg"] and "DecompressionBombError" in reasons["bomb.png"]


def test_a_text_column_feeds_tf_transform_text_ops(tmp_path):
    reviews = ["a fine film", "a dull film", "fine acting and a fine plot", "dull", "", "plot holes"]
    (tmp_path / "reviews.csv").write_text("id,review\n" + "".join(f'{i},"{r}"\n' for i, r in enumerate(reviews)))
    source = FileSource.resolve(str(tmp_path / "reviews.csv"), {"review": "string"})

    def preprocessing_fn(inputs):
        text = tf.sparse.to_dense(inputs["review"], default_value="")[:, 0]
        tokens = tf.strings.split(text)
        ids = tft.compute_and_apply_vocabulary(tokens, vocab_filename="words")
        return {"token_ids": ids.to_sparse(), "num_tokens": tf.cast(tokens.row_lengths(), tf.int64)}

    out_dir = str(tmp_path / "transform")
    with TestPipeline() as p:
        out = p | ReadSplits(source, ALL)
        _ = {"train": out.splits["train"]} | TransformSplits(preprocessing_fn, source.fmt, out_dir, str(tmp_path / "tmp"))
    output = tft.TFTransformOutput(out_dir)
    words = [w.decode() for w in output.vocabulary_by_name("words")]
    assert words[:2] == ["fine", "a"] and set(words) == {w for r in reviews for w in r.split()}
    examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
        tf.io.gfile.glob(os.path.join(out_dir, "transformed_examples/Split-train/*")))]
    decoded = sorted(" ".join(words[i] for i in e.features.feature["token_ids"].int64_list.value)
                     for e in examples)
    assert decoded == sorted(reviews)
