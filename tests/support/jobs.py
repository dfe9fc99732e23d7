"""Running the jobs as a user and as the Flex Template launcher do, and recording what a subprocess reaches on the
network."""
import json
import os
import subprocess
import sys

from tests.support.paths import PENGUINS_CONFIG, ROOT


def run_job(*args: str) -> tuple[int, dict]:
    """Runs jobs.train_pipeline in-process; returns its exit code and the run manifest (if one was written)."""
    from jobs.train_pipeline import main
    argv = list(args)
    code = main(argv)
    out = dict(zip(argv[::2], argv[1::2]))
    manifest_path = os.path.join(out["--output_dir"], out["--run_id"], "run_manifest.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {}
    return code, manifest


def job_args(tmp_path, run_id: str, config: str = PENGUINS_CONFIG, **overrides: str) -> list[str]:
    args = ["--config", config, "--output_dir", str(tmp_path / "runs"), "--serving_dir", str(tmp_path / "serving"),
            "--run_id", run_id]
    for name, value in overrides.items():
        args += [f"--{name}", str(value)]
    return args


# Python code for a subprocess script: an audit hook recording every name lookup and TCP connection in `events`.
NETWORK_AUDIT = """
import sys
events = []
def audit(event, args):
    if event in ("socket.getaddrinfo", "socket.connect", "socket.gethostbyname"):
        target = args[1] if event == "socket.connect" else args[0]
        if not (event == "socket.connect" and isinstance(target, str)):  # AF_UNIX is local
            events.append(f"{event} {target}")
sys.addaudithook(audit)
"""

BUCKET = "gs://my-bucket/"


def flex_launch(job: str, bucket_dir: str, **overrides: str) -> subprocess.CompletedProcess:
    """Runs `jobs/<job>.py` the way the Flex Template Python launcher does: the file named by
    FLEX_TEMPLATE_PYTHON_PY_FILE run as a script, the sample launch request's parameters as `--name=value`, from a
    working directory that is not the repository (the package is installed in the container; here PYTHONPATH).
    `gs://my-bucket/` in the request maps to `bucket_dir`; the runner is the DirectRunner."""
    with open(os.path.join(ROOT, "templates", job, "launch_request.json")) as f:
        parameters = {**json.load(f)["launchParameter"]["parameters"], **overrides}
    args = [f"--{name}={value.replace(BUCKET, bucket_dir.rstrip('/') + '/')}" for name, value in parameters.items()]
    env = {**os.environ, "FLEX_TEMPLATE_PYTHON_PY_FILE": os.path.join(ROOT, "jobs", f"{job}.py"),
           "FLEX_TEMPLATE_PYTHON_SETUP_FILE": os.path.join(ROOT, "setup.py")}
    return subprocess.run([sys.executable, env["FLEX_TEMPLATE_PYTHON_PY_FILE"], *args, "--runner=DirectRunner"],
                          cwd=bucket_dir, env=env, capture_output=True, text=True, timeout=900)
