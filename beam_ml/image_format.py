"""A folder of images in class sub-folders (`flowers/daisy/1.jpg`: label `daisy`) as records: the encoded image
bytes (for `tf.io.decode_image` in a preprocessing_fn), its height and width, and the label.

Images are read in groups of files; one that cannot be read or decoded is a dead letter naming the file and why.
"""
from __future__ import annotations

import dataclasses
import io
import posixpath
from typing import Iterator

import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_ml.csv_format import ParsedChunk
from beam_ml.deadletter import DeadLetter
from beam_ml.records import RecordFormat, to_list_array

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
IMAGE_FORMAT = RecordFormat(columns=("image", "height", "width", "label"), types=("string", "int", "int", "string"))
FILES_PER_CHUNK = 256


def image_label(path: str) -> str:
    """The class: the name of the folder the image is in."""
    return posixpath.basename(posixpath.dirname(path.replace("\\", "/")))


def check_image_paths(paths: list[str]) -> RecordFormat:
    """Every image must sit in a class folder; the record format is fixed."""
    for path in paths:
        if not image_label(path):
            raise ValueError(f"{path}: an image must be in a class folder (its label)")
    return IMAGE_FORMAT


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """A group of image files read as one RecordBatch."""

    paths: tuple[str, ...]

    def parse(self, fmt: RecordFormat) -> Iterator[ParsedChunk]:
        from PIL import Image, UnidentifiedImageError
        images, heights, widths, labels, dead = [], [], [], [], []
        for path in self.paths:
            try:
                with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                    data = f.read()
                with Image.open(io.BytesIO(data)) as image:
                    image.verify()  # reads the whole file: a truncated or corrupt image fails here, not in training
                    width, height = image.size
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
                dead.append(DeadLetter(source=path, line=0, raw="", reason=f"not a readable image: {e}"))
                continue
            images.append(data)
            heights.append(height)
            widths.append(width)
            labels.append(image_label(path).encode())
        arrays = [pa.array(images, pa.large_binary()), pa.array(heights, pa.int64()), pa.array(widths, pa.int64()),
                  pa.array(labels, pa.large_binary())]
        batch = pa.RecordBatch.from_arrays([to_list_array(a) for a in arrays], schema=IMAGE_FORMAT.arrow_schema())
        yield ParsedChunk(batch=batch, dead_letters=dead, records_read=len(self.paths))
