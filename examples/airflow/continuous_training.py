"""Continuous training with Apache Airflow: every day, train the penguin model on the newest span of data.

Two DAGs share one set of job parameters (`JOB_PARAMETERS`):

* `beam_ml_continuous_training` (production) launches the `train_pipeline` Flex Template on Dataflow with
  `DataflowStartFlexTemplateOperator` (a Cloud Composer environment has its provider); edit `GOOGLE_CLOUD` below.
* `beam_ml_continuous_training_local` runs the same job on this machine, on the DirectRunner, through
  `python -m beam_ml.launch.step` with the package's venv (`job_python`); its parameters point at local paths and
  can be changed per run (`airflow dags trigger --conf '{...}'`, or `run_conf` of `dag.test()`).

Either way the job reads the newest span (`--spans latest` on an input pattern with `{SPAN}`), judges the new model
against the one serving, and pushes it only if it is blessed. A day with no new span trains nothing: the job finds
the run that already trained that span with the same code and config and reuses it (the local DAG marks its task
skipped). The DAGs need Airflow 3 with the Google and Apache Beam providers, in their own venv (`make airflow`), as
their pins collide with the package's.
"""
import json
import os
import subprocess
import tempfile

import pendulum
from airflow.sdk.exceptions import AirflowSkipException
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from airflow.sdk import DAG, Param, task

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Where the production job runs (edit for your project): the Flex Template built by `python -m beam_ml.launch.flex`.
GOOGLE_CLOUD = {
    "project": "my-project",
    "region": "europe-west1",
    "template": "gs://my-bucket/templates/train_pipeline.json",
    "image": "europe-west1-docker.pkg.dev/my-project/beam-ml/train_pipeline:0.1.0",
    "temp_location": "gs://my-bucket/tmp",
}

# The training job's parameters (the Flex Template's, templates/train_pipeline/metadata.json): the newest span.
JOB_PARAMETERS = {
    "config": "gs://my-bucket/examples/penguins/config.yaml",
    "input": "gs://my-bucket/penguins/span-{SPAN}/*.csv",
    "spans": "latest",
    "output_dir": "gs://my-bucket/runs/penguins",
    "serving_dir": "gs://my-bucket/serving/penguins",
}

DEFAULTS = {"start_date": pendulum.datetime(2026, 1, 1, tz="UTC"), "schedule": "@daily", "catchup": False,
            "tags": ["beam_ml"]}

with DAG("beam_ml_continuous_training", description="Train on the newest span on Dataflow (Flex Template)",
         **DEFAULTS) as production:
    DataflowStartFlexTemplateOperator(
        task_id="train",
        project_id=GOOGLE_CLOUD["project"],
        location=GOOGLE_CLOUD["region"],
        body={"launchParameter": {
            "jobName": "beam-ml-train-{{ ds_nodash }}",
            "containerSpecGcsPath": GOOGLE_CLOUD["template"],
            "parameters": JOB_PARAMETERS,
            "environment": {"tempLocation": GOOGLE_CLOUD["temp_location"],
                            "sdkContainerImage": GOOGLE_CLOUD["image"]},
        }},
        wait_until_finished=True,
    )

with DAG("beam_ml_continuous_training_local", description="Train on the newest span here (DirectRunner)",
         params={
             "config": Param("examples/penguins/config.yaml", type="string"),
             "input": Param("examples/penguins/data/*.csv", type="string"),
             "spans": Param("latest", type="string"),
             "output_dir": Param("runs/penguins", type="string"),
             "serving_dir": Param("serving/penguins", type="string"),
             "job_python": Param(os.path.join(".venv", "bin", "python"), type="string",
                                 description="the package's interpreter (make setup's venv)"),
             "workdir": Param(REPOSITORY, type="string", description="where relative paths start"),
         }, **DEFAULTS) as local:

    @task
    def train(params=None) -> dict:
        """Runs the training job to its end; skipped when it reused the run that already trained this span."""
        flags = [f"--{name}={params[name]}" for name in JOB_PARAMETERS]
        with tempfile.TemporaryDirectory() as scratch:
            summary_path = os.path.join(scratch, "summary.json")
            job = subprocess.run([params["job_python"], "-m", "beam_ml.launch.step", "train_pipeline",
                                  "--summary_out", summary_path, "--", *flags], cwd=params["workdir"],
                                 capture_output=True, text=True)
            print(job.stdout + job.stderr)  # into the task's log
            with open(summary_path) as f:
                summary = json.load(f)
        if summary["exit_code"] != 0:
            raise RuntimeError(f"the training job failed ({summary['status']}): {summary['error']}")
        if summary["reused_run"]:
            raise AirflowSkipException(f"no new span: run {summary['reused_run']} trained it with the same code")
        return summary

    train()
