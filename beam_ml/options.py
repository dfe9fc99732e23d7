"""The training job's PipelineOptions, generated from `PipelineConfig` so flags, `--help` and templates agree."""
from __future__ import annotations

import argparse
from typing import Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from beam_ml.config import ConfigError, PipelineConfig, config_fields


class TrainPipelineOptions(PipelineOptions):
    """`--config FILE` plus one flag per config field (a flag overrides the file's value)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", default=None, help="YAML config file; flags of the same names override it.")
        parser.add_argument("--validate_only", default=False, nargs="?", const="true", type=_true_or_false,
                            help="Check the options, config and inputs, print the resolved plan and exit without "
                                 "building or running the pipeline.")
        for field in config_fields():
            parser.add_argument(f"--{field.name}", default=None, help=field.metadata["help"])

    def to_config(self) -> PipelineConfig:
        values = self.get_all_options(retain_unknown_options=False)
        overrides = {f.name: values.get(f.name) for f in config_fields()}
        return PipelineConfig.load(values.get("config"), overrides)


def _true_or_false(value: str) -> bool:
    if str(value).lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return str(value).lower() == "true"


def reject_unknown_flags(argv: Sequence[str]) -> None:
    """Fails on flags that no PipelineOptions class knows (Beam would only log and drop them)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for cls in PipelineOptions.__subclasses__():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    _, unknown = parser.parse_known_args(list(argv))
    flags = [a for a in unknown if a.startswith("--")]
    if flags:
        raise ConfigError(flags[0].lstrip("-").split("=")[0], "unknown option (see --help)")
