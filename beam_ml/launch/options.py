"""Each job's PipelineOptions, generated from its config dataclass so flags, `--help` and templates agree."""
from __future__ import annotations

import argparse
from typing import Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from beam_ml.config.base import JobConfig, parse_bool
from beam_ml.config.detect import DetectConfig
from beam_ml.config.predict import PredictConfig
from beam_ml.config.train import PipelineConfig
from beam_ml.core.errors import ConfigError


def add_config_flags(parser: argparse.ArgumentParser, config: type[JobConfig]) -> None:
    """`--config FILE`, `--validate_only`, `--wait`, the console switches `--verbose` and `--json`, and one flag per field of
    `config` (a flag overrides the file).

    Jobs share flag names (`--input`, `--output_dir`, ...) with the same meaning, and Beam registers every job's
    flags in one parser when it parses options, so a name already there is not added twice.
    """
    _add_once(parser, "--config", default=None, help="YAML config file; flags of the same names override it.")
    _add_once(parser, "--validate_only", default=False, nargs="?", const="true", type=_true_or_false,
              help="Check the options, config and inputs, print the resolved plan and exit without building "
                   "or running the pipeline.")
    _add_once(parser, "--wait", default=False, nargs="?", const="true", type=_true_or_false,
              help="On Dataflow, wait for the job to end and report it as a local run does (a scheduler's step); "
                   "by default a Dataflow launch returns once the job is submitted, as a Flex Template must.")
    _add_once(parser, "--verbose", default=False, nargs="?", const="true", type=_true_or_false,
              help="Show Beam's and TensorFlow's log messages (hidden by default: the job prints a line per stage).")
    _add_once(parser, "--json", default=False, nargs="?", const="true", type=_true_or_false,
              help="End with the run's summary as JSON (for scripts) instead of the human summary.")
    for field in config.fields():
        switch = {"nargs": "?", "const": "true"} if field.metadata["kind"] == "bool" else {}  # `--no_cache` alone
        _add_once(parser, f"--{field.name}", default=None, help=field.metadata["help"], **switch)


class _ConfigFlags:
    """`to_config()` for a job's options. A mixin, not a PipelineOptions base: Beam registers only direct
    subclasses of PipelineOptions, and calls `_add_argparse_args` of every class in a view's MRO."""

    CONFIG: type[JobConfig]

    def to_config(self):
        values = self.get_all_options(retain_unknown_options=False)
        overrides = {f.name: values.get(f.name) for f in self.CONFIG.fields()}
        return self.CONFIG.load(values.get("config"), overrides)


class TrainPipelineOptions(_ConfigFlags, PipelineOptions):
    """Options of `jobs.train_pipeline`: `--config` plus one flag per `PipelineConfig` field."""

    CONFIG = PipelineConfig

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_config_flags(parser, PipelineConfig)


class BatchPredictOptions(_ConfigFlags, PipelineOptions):
    """Options of `jobs.batch_predict`: `--config` plus one flag per `PredictConfig` field."""

    CONFIG = PredictConfig

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_config_flags(parser, PredictConfig)


class DetectAnomaliesOptions(_ConfigFlags, PipelineOptions):
    """Options of `jobs.detect_anomalies`: `--config` plus one flag per `DetectConfig` field."""

    CONFIG = DetectConfig

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_config_flags(parser, DetectConfig)


def _add_once(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    try:
        parser.add_argument(flag, **kwargs)
    except argparse.ArgumentError:  # registered by another job's options
        pass


def _true_or_false(value: str) -> bool:
    try:
        return parse_bool(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


JOB_OPTIONS = (TrainPipelineOptions, BatchPredictOptions, DetectAnomaliesOptions)


def reject_unknown_flags(argv: Sequence[str], job_options: type[PipelineOptions]) -> None:
    """Fails on flags that neither Beam nor this job knows (Beam would only log and drop them), including another
    job's flags."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for cls in PipelineOptions.__subclasses__():
        if cls not in JOB_OPTIONS or cls is job_options:
            cls._add_argparse_args(parser)  # pylint: disable=protected-access
    _, unknown = parser.parse_known_args(list(argv))
    flags = [a for a in unknown if a.startswith("--")]
    if flags:
        raise ConfigError(flags[0].lstrip("-").split("=")[0], "unknown option (see --help)")
