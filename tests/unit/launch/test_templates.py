"""Flex Template metadata: generated from the jobs' options, in step with them, and checked by --validate_only."""
import argparse
import os
import sys
import json
import re

import pytest

from beam_ml.launch.options import BatchPredictOptions, DetectAnomaliesOptions, TrainPipelineOptions
from beam_ml.launch.templates import JOBS, metadata, metadata_path
from tests.support.jobs import job_args

OPTIONS = {"train_pipeline": TrainPipelineOptions, "batch_predict": BatchPredictOptions,
           "detect_anomalies": DetectAnomaliesOptions}
# --validate_only is a pre-flight switch, --wait a scheduler's, --verbose and --json console switches: not launch
# parameters (a Flex Template launcher must return once the job is submitted)
NOT_PARAMETERS = {"help", "validate_only", "wait", "verbose", "json"}


@pytest.mark.parametrize("template", JOBS, ids=lambda t: t.job)
def test_metadata_is_in_step_with_the_job_options(template):
    with open(metadata_path(template.job)) as f:
        committed = json.load(f)
    assert committed == metadata(template), "run: python -m beam_ml.launch.templates"
    parser = argparse.ArgumentParser()
    OPTIONS[template.job]._add_argparse_args(parser)  # pylint: disable=protected-access
    flags = {a.dest for a in parser._actions} - NOT_PARAMETERS
    assert {p["name"] for p in committed["parameters"]} == flags
    assert committed["streaming"] is template.streaming
    for parameter in committed["parameters"]:
        assert set(parameter) <= {"name", "label", "helpText", "isOptional", "regexes", "paramType"}
        assert parameter["helpText"] and parameter["label"]


def _violating(regex: str) -> str:
    for candidate in ("has a space", "-1", "x" * 300, "!", "1.5e"):
        if not re.match(regex, candidate):
            return candidate
    raise AssertionError(f"no violating sample for {regex}")


def test_every_train_parameter_with_a_format_rejects_a_bad_value_by_name(tmp_path, capsys):
    from jobs.train_pipeline import main
    for parameter in metadata(JOBS[0])["parameters"]:
        if "regexes" not in parameter or parameter["name"] == "config":
            continue
        value = _violating(parameter["regexes"][0])
        code = main(job_args(tmp_path, "check") + [f"--{parameter['name']}={value}", "--validate_only"])
        assert code == 2, parameter["name"]
        assert f"--{parameter['name']}:" in capsys.readouterr().err


def test_every_predict_parameter_with_a_format_rejects_a_bad_value_by_name(tmp_path, capsys):
    from jobs.batch_predict import main
    base = ["--input", "examples/penguins/unlabelled/*.csv", "--key_column", "penguin_id",
            "--model_dir", str(tmp_path / "none"), "--output_dir", str(tmp_path / "runs")]
    for parameter in metadata(JOBS[1])["parameters"]:
        if "regexes" not in parameter or parameter["name"] == "config":
            continue
        value = _violating(parameter["regexes"][0])
        code = main(base + [f"--{parameter['name']}={value}", "--validate_only"])
        assert code == 2, parameter["name"]
        assert f"--{parameter['name']}:" in capsys.readouterr().err


def test_flex_runs_each_command_as_an_argument_list_without_a_shell(tmp_path, monkeypatch):
    """`flex run` hands docker and gcloud their arguments as lists: stand-in executables on PATH record exactly
    what they received (the real ones need a cloud project)."""
    from beam_ml.launch import flex
    received = tmp_path / "received.jsonl"
    for tool in ("docker", "gcloud"):
        script = tmp_path / tool
        script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                          f"open({str(received)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert flex.main(["run", "--project", "my-project", "--region", "europe-west1", "--bucket", "my-bucket",
                      "--job", "batch_predict"]) == 0
    calls = [json.loads(line) for line in received.read_text().splitlines()]
    assert [c[:2] for c in calls] == [["storage", "cp"], ["build", "-f"], ["push", "europe-west1-docker.pkg.dev/"
                                      "my-project/beam-ml/batch_predict:" + flex.VERSION],
                                      ["dataflow", "flex-template"], ["dataflow", "flex-template"]]
    parameters = calls[-1][-1]
    assert parameters.startswith("--parameters=^~^input=gs://my-bucket/examples/penguins/unlabelled/*.csv~")
    assert re.fullmatch(r"batch-predict-\d{8}-\d{6}", calls[-1][3])  # named in Python, not by $(date)


@pytest.mark.parametrize("option, value", [("--bucket", "x$(touch /tmp/pwned)"), ("--project", "p; rm -rf ~"),
                                           ("--region", "europe-west1 --impersonate"), ("--tag", "v1`id`")])
def test_flex_refuses_names_google_cloud_would_not_accept(option, value, capsys):
    from beam_ml.launch import flex
    argv = {"--project": "my-project", "--region": "europe-west1", "--bucket": "my-bucket", option: value}
    with pytest.raises(SystemExit) as exit_:
        flex.main(["print", *[x for pair in argv.items() for x in pair]])
    assert exit_.value.code == 2 and f"{option} {value!r} is not a valid Google Cloud" in capsys.readouterr().err
