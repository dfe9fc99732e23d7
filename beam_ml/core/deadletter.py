"""Dead letters: records that could not be used, with where they came from and why. Never dropped silently."""
from __future__ import annotations

import dataclasses
import json

import apache_beam as beam

# The output tag of the dead letters of every step that has them beside its main output.
DEAD_LETTER = "dead_letter"


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One rejected record: its source file, 1-based line number, raw text and the reason."""

    source: str
    line: int
    raw: str
    reason: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


class WriteDeadLetters(beam.PTransform[beam.PCollection[DeadLetter], beam.PCollection[str]]):
    """Writes dead letters as JSON Lines (`source`, `line`, `raw`, `reason`) under `file_prefix`.

    Example::

        dead_letters | WriteDeadLetters(os.path.join(run_dir, "dead_letter", "dead_letter"))
    """

    def __init__(self, file_prefix: str):
        super().__init__()
        self._file_prefix = file_prefix

    def expand(self, dead_letters: beam.PCollection[DeadLetter]) -> beam.PCollection[str]:
        return (dead_letters
                | "ToJson" >> beam.Map(DeadLetter.to_json)
                | "Write" >> beam.io.WriteToText(self._file_prefix, file_name_suffix=".jsonl",
                                                 num_shards=1, shard_name_template=""))
