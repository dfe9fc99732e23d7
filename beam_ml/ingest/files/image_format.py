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

from beam_ml.core.chunks import ParsedChunk
from beam_ml.core.deadletter import DeadLetter
from beam_ml.core.records import RecordFormat, to_list_array

# What tf.io.decode_image reads (a preprocessing_fn decodes these bytes).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
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


def decoded_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image, decoding it whole: a truncated or corrupt file fails here, not in
    training. `verify()` checks the structure (and must be followed by a fresh open); `load()` decodes the pixels,
    which is what catches a JPEG cut short."""
    from PIL import Image
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """A group of image files read as one RecordBatch."""

    paths: tuple[str, ...]

    def parse(self, fmt: RecordFormat) -> Iterator[ParsedChunk]:
        images, heights, widths, labels, dead = [], [], [], [], []
        for path in self.paths:
            # A file that cannot be read fails the bundle (Beam retries it); one that cannot be decoded is bad data.
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                data = f.read()
            try:
                width, height = decoded_size(data)
            except Exception as e:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError...)
                dead.append(DeadLetter(source=path, line=0, raw="", reason=f"not a readable image: "
                                                                           f"{type(e).__name__}: {e}"))
                continue
            images.append(data)
            heights.append(height)
            widths.append(width)
            labels.append(image_label(path).encode())
        arrays = [pa.array(images, pa.large_binary()), pa.array(heights, pa.int64()), pa.array(widths, pa.int64()),
                  pa.array(labels, pa.large_binary())]
        batch = pa.RecordBatch.from_arrays([to_list_array(a) for a in arrays], schema=IMAGE_FORMAT.arrow_schema())
        yield ParsedChunk(batch=batch, dead_letters=dead, records_read=len(self.paths))
