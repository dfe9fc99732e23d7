
import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from beam_ml.config.train import PipelineConfig
from beam_ml.core.errors import ConfigError
from beam_ml.launch.options import TrainPipelineOptions, reject_unknown_flags
from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV


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


@pytest.mark.parametrize("overrides, option", [
    ({"split_time_key": "ts", "split_time_cutoffs": '{"train": 1, "eval": null}', "split_key": "island"},
     "split_key"),
    ({"split_time_key": "ts", "split_time_cutoffs": '{"train": 1, "eval": null}',
      "split_buckets": '{"train": 3, "eval": 1}'}, "split_buckets"),
    ({"input": None, "input_splits": '{"train": "a/*.csv", "eval": "b/*.csv"}', "split_key": "island"}, "split_key"),
    ({"input": None, "input_splits": '{"train": "a/*.csv", "eval": "b/*.csv"}', "spans": "last:2"}, "spans"),
    ({"input": None, "input_splits": '{"train": "a/*.csv", "eval": "b/*.csv"}', "input_dvc_repo": "."},
     "input_dvc_repo"),
    ({"input": "postgresql://beam@db/ml", "input_table": "t", "input_dvc_repo": "."}, "input_dvc_repo"),
    ({"input": "bigquery:my-project", "input_table": "d.t", "input_dvc_repo": "."}, "input_dvc_repo"),
    ({"input": "postgresql://beam@db/ml", "input_table": "my-schema.t"}, "input_table"),
])
def test_conflicting_options_are_named(overrides, option, tmp_path):
    settings = yaml.safe_load(open(PENGUINS_CONFIG))
    settings.pop("input")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    values = {"input": PENGUINS_CSV, **overrides}
    with pytest.raises(ConfigError, match=f"^--{option}: "):
        PipelineConfig.load(str(tmp_path / "config.yaml"), {k: v for k, v in values.items() if v is not None})


def test_a_bigquery_table_may_name_a_hyphenated_project():
    config = _config(input="bigquery:my-project", input_table="other-project.penguins.raw")
    assert config.input_table == "other-project.penguins.raw"


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
        from beam_ml.launch.options import BatchPredictOptions
        reject_unknown_flags(["--label_key", "species"], BatchPredictOptions)


def test_help_documents_every_option(capsys):
    from jobs.train_pipeline import main
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for field in PipelineConfig.fields():
        assert f"--{field.name}" in text


def test_validate_only_checks_everything_and_builds_nothing(tmp_path, capsys):
    from tests.support.jobs import job_args, run_job
    code, _ = run_job(*job_args(tmp_path, "check", anomaly_policy="sometimes"), "--validate_only")
    assert code == 2 and "--anomaly_policy" in capsys.readouterr().err
    code, _ = run_job(*job_args(tmp_path, "check"), "--validate_only")
    out = capsys.readouterr().out
    assert code == 0 and '"valid": true' in out and '"species": "string"' in out
    assert not (tmp_path / "runs").exists()


def test_a_boolean_option_takes_true_or_false_and_names_itself_otherwise():
    from beam_ml.config.predict import PredictConfig
    base = {"input": "x.csv", "key_column": "id", "serving_dir": "s", "output_dir": "o"}
    assert PredictConfig.load(None, base).allow_missing_features is False
    assert PredictConfig.load(None, {**base, "allow_missing_features": "true"}).allow_missing_features is True
    assert PredictConfig.load(None, {**base, "allow_missing_features": False}).allow_missing_features is False
    with pytest.raises(ConfigError, match="^--allow_missing_features: cannot parse 'maybe' as bool"):
        PredictConfig.load(None, {**base, "allow_missing_features": "maybe"})


def test_a_model_dir_flag_replaces_the_config_files_serving_dir_and_both_flags_are_refused(tmp_path):
    """A scheduler (the KFP component) points a prediction config at the model it was handed."""
    from beam_ml.config.predict import PredictConfig
    config = tmp_path / "predict.yaml"
    config.write_text("input: x.csv\nkey_column: id\nserving_dir: serving/p\noutput_dir: o\n")
    assert PredictConfig.load(str(config), {}).serving_dir == "serving/p"
    chosen = PredictConfig.load(str(config), {"model_dir": "m/1", "serving_dir": None})
    assert (chosen.model_dir, chosen.serving_dir) == ("m/1", None)
    with pytest.raises(ConfigError, match="^--model_dir: give exactly one of"):
        PredictConfig.load(str(config), {"model_dir": "m/1", "serving_dir": "serving/q"})


@pytest.mark.parametrize("option, value", [("subscription", "projects/P/subscriptions/telemetry"),
                                           ("alerts_topic", "projects/x/topics/alerts")])
def test_a_pubsub_path_whose_project_beam_would_reject_fails_at_launch(option, value):
    """Beam's Pub/Sub IO refuses a project id outside Google's rule only when the pipeline starts: checked here."""
    from beam_ml.config.detect import DetectConfig
    options = {"subscription": "projects/my-project/subscriptions/telemetry", "output_dir": "runs",
               "alerts_dir": "alerts", "dead_letter_dir": "dead", "detector": "zscore", "channels": "temperature",
               option: value}
    with pytest.raises(ConfigError, match=f"^--{option}: "):
        DetectConfig.load(None, options)
    assert DetectConfig.load(None, {**options, option: value.replace("/P/", "/my-project/").replace(
        "/x/", "/my-project/")})
