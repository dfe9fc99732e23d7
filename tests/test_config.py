import argparse
import json
import os

import pytest

from beam_ml.config import ConfigError, PipelineConfig
from beam_ml.options import TrainPipelineOptions, reject_unknown_flags
from conftest import PENGUINS_CONFIG, ROOT

from apache_beam.options.pipeline_options import PipelineOptions


def _config(**overrides):
    return PipelineConfig.load(PENGUINS_CONFIG, overrides)


def test_flags_override_the_yaml_and_json_fields_parse():
    options = PipelineOptions(["--config", PENGUINS_CONFIG, "--anomaly_policy", "warn",
                               "--split_buckets", '{"train": 3, "eval": 1}', "--seed", "7"])
    config = options.view_as(TrainPipelineOptions).to_config()
    assert config.anomaly_policy == "warn" and config.split_buckets == {"train": 3, "eval": 1} and config.seed == 7
    assert config.label_key == "species"  # from the file


@pytest.mark.parametrize("name,value,message", [
    ("anomaly_policy", "explode", "--anomaly_policy"),
    ("split_buckets", '{"train": 2}', "--split_buckets"),
    ("split_buckets", '{"train": 2, "eval": 0}', "--split_buckets"),
    ("split_buckets", "{not json", "--split_buckets"),
    ("seed", "abc", "--seed"),
    ("column_types", '{"x": "decimal"}', "--column_types"),
    ("eval_thresholds", '{"AUC": {"lowest": 1}}', "--eval_thresholds"),
    ("eval_change_thresholds", '{"AUC": {"direction": "up", "absolute": 1}}', "--eval_change_thresholds"),
    ("run_id", "../escape", "--run_id"),
    ("schema", "schema.json", "--schema"),
    ("split_buckets", '{"train": 2, "eval": 1, "dead_letter": 1}', "--split_buckets"),
    ("drift_threshold", "nan", "--drift_threshold"),
    ("seed", "-1", "--seed"),
    ("eval_thresholds", "[]", "--eval_thresholds"),
])
def test_a_bad_value_names_its_option(name, value, message):
    with pytest.raises(ConfigError, match=message):
        _config(**{name: value})


def test_required_fields_and_unknown_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match="--label_key: is required"):
        PipelineConfig.load(None, {"input": "x", "module": "m", "output_dir": "o", "serving_dir": "s"})
    bad = tmp_path / "c.yaml"
    bad.write_text("input: x\nlabels: y\n")
    with pytest.raises(ConfigError, match="--labels: unknown option"):
        PipelineConfig.load(str(bad), {})


def test_unknown_flags_fail_instead_of_being_dropped():
    reject_unknown_flags(["--config", "c.yaml", "--runner", "DirectRunner", "--direct_num_workers=2"],
                         TrainPipelineOptions)
    with pytest.raises(ConfigError, match="--anomaly_polcy"):
        reject_unknown_flags(["--anomaly_polcy", "warn"], TrainPipelineOptions)
    with pytest.raises(ConfigError, match="--key_column: unknown option"):  # another job's flag
        reject_unknown_flags(["--key_column", "id"], TrainPipelineOptions)
    with pytest.raises(ConfigError, match="--label_key: unknown option"):
        from beam_ml.options import BatchPredictOptions
        reject_unknown_flags(["--label_key", "species"], BatchPredictOptions)


def test_help_documents_every_option(capsys):
    from jobs.train_pipeline import main
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for field in PipelineConfig.fields():
        assert f"--{field.name}" in text


def test_validate_only_checks_everything_and_builds_nothing(tmp_path, capsys):
    from conftest import job_args, run_job
    code, _ = run_job(*job_args(tmp_path, "check", anomaly_policy="sometimes"), "--validate_only")
    assert code == 2 and "--anomaly_policy" in capsys.readouterr().err
    code, _ = run_job(*job_args(tmp_path, "check"), "--validate_only")
    out = capsys.readouterr().out
    assert code == 0 and '"valid": true' in out and '"species": "string"' in out
    assert not (tmp_path / "runs").exists()
