"""What the file-source tests on object stores (gs://, s3://) share: the bundled penguins' split, checked for each
source in one pipeline."""
import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.split import HashSplit

TRAIN_EVAL = HashSplit((("train", 2), ("eval", 1)))
SPLITS = {"train": 243, "eval": 101}  # the bundled data's split, as the demo prints it


def assert_each_reads_the_penguin_splits(sources: dict) -> None:
    """Every source ({label: FileSource}) reads the bundled penguins into the same split, with no dead letters."""
    with TestPipeline() as p:
        for label, source in sources.items():
            out = p | label >> ReadSplits(source, TRAIN_EVAL)
            assert_that(out.dead_letter, equal_to([]), label=f"{label}NoDeadLetters")
            for name, count in SPLITS.items():
                assert_that(out.splits[name] | f"{label}Rows{name}" >> beam.Map(lambda b: b.num_rows)
                            | f"{label}Sum{name}" >> beam.CombineGlobally(sum), equal_to([count]),
                            label=f"{label}Count{name}")
