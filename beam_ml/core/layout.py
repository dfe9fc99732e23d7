"""Where a run keeps what it writes, under its run directory: one place that the stages writing the files and the
report reading them both use. The names are TFX's where TFX has one (`Split-<name>/FeatureStats.pb`,
`SchemaDiff.pbtxt`, `schema.pbtxt`, a TFMA output directory, a SavedModel).
"""
from __future__ import annotations

import dataclasses
import os

from beam_ml.core.run import MANIFEST_FILE

STATS_FILE = "FeatureStats.pb"
ANOMALIES_FILE = "SchemaDiff.pbtxt"
SCHEMA_FILE = "schema.pbtxt"
REPORT_FILE = "index.html"  # <run_dir>/report/index.html
RUNS_INDEX_FILE = "index.html"  # <output_dir>/index.html


def runs_index_file(output_dir: str) -> str:
    return os.path.join(output_dir, RUNS_INDEX_FILE)


def study_file(output_dir: str, study: str) -> str:
    """The trials of a hyperparameter study (`beam_ml.train.tuning`): a file in the output directory, shared by its
    runs (not a directory: `<output_dir>/*/` are the runs)."""
    return os.path.join(output_dir, f"study-{study}.json")


def split_dir(base: str, split: str) -> str:
    return os.path.join(base, f"Split-{split}")


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """The paths of one run's artifacts.

    Example::

        layout = RunLayout(run_dir)
        stats = tfdv.load_stats_binary(layout.statistics_file("train"))
    """

    run_dir: str

    def _path(self, *parts: str) -> str:
        return os.path.join(self.run_dir, *parts)

    @property
    def manifest(self) -> str:
        return self._path(MANIFEST_FILE)

    @property
    def statistics(self) -> str:
        return self._path("statistics")

    def statistics_file(self, split: str) -> str:
        return os.path.join(split_dir(self.statistics, split), STATS_FILE)

    @property
    def anomalies(self) -> str:
        return self._path("anomalies")

    def anomalies_file(self, split: str) -> str:
        return os.path.join(split_dir(self.anomalies, split), ANOMALIES_FILE)

    @property
    def schema_file(self) -> str:
        return self._path("schema", SCHEMA_FILE)

    @property
    def transform(self) -> str:
        return self._path("transform")

    @property
    def serving_model(self) -> str:
        return self._path("model", "serving")

    @property
    def tuning(self) -> str:
        """Where each tuning trial of the run trains (`trial-<number>/`)."""
        return self._path("tuning")

    @property
    def hyperparameters_file(self) -> str:
        """The tuned hyperparameters the model trained with, and the trial they come from (TFX's Tuner output)."""
        return self._path("tuning", "hyperparameters.json")

    @property
    def model_logs(self) -> str:
        return self._path("model", "logs")

    @property
    def evaluation(self) -> str:
        return self._path("evaluation")

    @property
    def dead_letter_prefix(self) -> str:
        """`WriteDeadLetters`' prefix: the file is this plus `.jsonl`."""
        return self._path("dead_letter", "dead_letter")

    @property
    def dead_letter_file(self) -> str:
        return self.dead_letter_prefix + ".jsonl"

    @property
    def report(self) -> str:
        return self._path("report")

    @property
    def report_file(self) -> str:
        return os.path.join(self.report, REPORT_FILE)

    @property
    def report_link(self) -> str:
        """The report's path relative to the output directory (the runs index links to it)."""
        return os.path.join(os.path.basename(self.run_dir.rstrip("/")), "report", REPORT_FILE)
