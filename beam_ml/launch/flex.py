"""Build and launch the beam_ml jobs as Dataflow Flex Templates: prints (or runs) the docker and gcloud commands.

    python -m beam_ml.launch.flex print --project my-project --region europe-west1 --bucket my-bucket [--job JOB]
    python -m beam_ml.launch.flex run   ...   # the same commands, executed

Run from the repository root (the docker build context).

One image per job, from `templates/Dockerfile` (the job's file is a build argument). It is both the template
launcher and the workers' SDK container (`sdk_container_image`), so workers run exactly what was tested. Give each
build its own `--tag` (e.g. a git commit): autoscaled workers pull the tag again.

Commands are argument lists, run without a shell: no value given here (a bucket, a parameter holding `$(...)` or
quotes) is ever interpreted by one. `print` shows them quoted as a POSIX shell would need them.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import re
import shlex
import subprocess
import sys
import time
from typing import Optional, Sequence

from beam_ml.launch.templates import JOBS

REPOSITORY = "beam-ml"
VERSION = importlib.metadata.version("beam-ml")
# Google Cloud's own rules for these names: a value outside them is refused before anything runs.
NAME_RULES = {"project": r"[a-z][-a-z0-9:.]{4,61}[a-z0-9]", "region": r"[a-z]+-[a-z]+[0-9]+",
              "bucket": r"[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]", "tag": r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"}


def image_uri(project: str, region: str, job: str, tag: str = VERSION, repository: str = REPOSITORY) -> str:
    """The Artifact Registry image built for `job`: its launcher and its workers' container."""
    return f"{region}-docker.pkg.dev/{project}/{repository}/{job}:{tag}"


def template_path(bucket: str, job: str) -> str:
    return f"gs://{bucket}/templates/{job}.json"


def build_commands(project: str, region: str, bucket: str, job: str, tag: str = VERSION) -> list[list[str]]:
    image = image_uri(project, region, job, tag)
    return [
        ["docker", "build", "-f", "templates/Dockerfile", "--build-arg",
         f"FLEX_TEMPLATE_PYTHON_PY_FILE=/template/jobs/{job}.py", "-t", image, "."],
        ["docker", "push", image],
        ["gcloud", "dataflow", "flex-template", "build", template_path(bucket, job), f"--image={image}",
         "--sdk-language=PYTHON", f"--metadata-file=templates/{job}/metadata.json", f"--project={project}"],
    ]


def run_command(project: str, region: str, bucket: str, job: str, parameters: dict[str, str],
                tag: str = VERSION) -> list[str]:
    pairs = {**parameters, "sdk_container_image": image_uri(project, region, job, tag)}
    # gcloud's escaping syntax: a leading ^~^ makes ~ the separator, since values may contain commas (JSON).
    job_name = f"{job.replace('_', '-')}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    return ["gcloud", "dataflow", "flex-template", "run", job_name,
            f"--template-file-gcs-location={template_path(bucket, job)}", f"--region={region}",
            f"--project={project}", f"--temp-location=gs://{bucket}/tmp",
            "--parameters=^~^" + "~".join(f"{k}={v}" for k, v in pairs.items())]


EXAMPLE_PARAMETERS = {
    "train_pipeline": {"config": "gs://{bucket}/examples/penguins/config.yaml",
                       "input": "gs://{bucket}/examples/penguins/data/*.csv",
                       "output_dir": "gs://{bucket}/runs/penguins", "serving_dir": "gs://{bucket}/serving/penguins"},
    "batch_predict": {"input": "gs://{bucket}/examples/penguins/unlabelled/*.csv", "key_column": "penguin_id",
                      "serving_dir": "gs://{bucket}/serving/penguins",
                      "output_dir": "gs://{bucket}/runs/penguins_predict"},
    # A telemetry window model pushed to serving/telemetry (the train_pipeline job with
    # examples/telemetry/config.yaml), and the subscription and topics created beforehand.
    "detect_anomalies": {"subscription": "projects/{project}/subscriptions/telemetry",
                         "serving_dir": "gs://{bucket}/serving/telemetry",
                         "output_dir": "gs://{bucket}/runs/telemetry_detect",
                         "alerts_topic": "projects/{project}/topics/telemetry-alerts",
                         "dead_letter_dir": "gs://{bucket}/dead_letter/telemetry"},
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beam_ml.launch.flex", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("print", "run"))
    parser.add_argument("--project", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--bucket", required=True, help="bucket name (no gs://) for templates, data and runs")
    parser.add_argument("--job", choices=[t.job for t in JOBS], action="append",
                        help="job(s) to build and launch (default: all)")
    parser.add_argument("--tag", default=VERSION)
    args = parser.parse_args(argv)
    for name, rule in NAME_RULES.items():
        if not re.fullmatch(rule, getattr(args, name)):
            parser.error(f"--{name} {getattr(args, name)!r} is not a valid Google Cloud {name} name")
    commands = [["gcloud", "storage", "cp", "-r", "examples", f"gs://{args.bucket}/"]]  # the sample data
    for job in args.job or [t.job for t in JOBS]:
        parameters = {k: v.format(bucket=args.bucket, project=args.project)
                      for k, v in EXAMPLE_PARAMETERS[job].items()}
        commands += build_commands(args.project, args.region, args.bucket, job, args.tag)
        commands.append(run_command(args.project, args.region, args.bucket, job, parameters, args.tag))
    for command in commands:
        print(shlex.join(command))
        if args.action == "run":
            subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
