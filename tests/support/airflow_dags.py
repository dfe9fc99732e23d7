"""Runs in Airflow's venv (.venv-airflow) for tests/e2e/test_airflow.py, with AIRFLOW_HOME and the DAGs folder set
by the test; prints one JSON line.

    python airflow_dags.py test DAG_FILE LOGICAL_DATE RUN_CONF_JSON   # dag.test() of the local DAG: run and task states
    python airflow_dags.py render DAG_FILE LOGICAL_DATE               # the production DAG's rendered launch request
"""
import importlib.util
import json
import sys

import pendulum


def load(path: str):
    spec = importlib.util.spec_from_file_location("continuous_training", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    command, path, date = sys.argv[1:4]
    dags = load(path)
    when = pendulum.parse(date)
    if command == "test":
        run = dags.local.test(logical_date=when, run_conf=json.loads(sys.argv[4]))
        result = {"state": str(run.state), "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
    else:
        launch = dags.production.get_task("train")
        launch.render_template_fields({"ds": when.to_date_string(), "ds_nodash": when.format("YYYYMMDD")})
        result = {"body": launch.body, "project": launch.project_id, "location": launch.location}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
