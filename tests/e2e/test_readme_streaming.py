"""The README's streaming commands as written: the telemetry replay and the detector-only detection job, against
the Pub/Sub emulator (project `P` as the README spells it), from a fresh working directory. The job starts, records
itself as running, reads the replayed stream, dead-letters a poison message into its files, and when stopped with
Ctrl-C ends `cancelled` with its report and lineage. (The model-scoring command also writes to BigQuery, which a
subprocess cannot reach offline: its graph runs in test_detect_job.)"""
import glob
import json
import os
import shlex
import signal
import subprocess
import sys

import pytest

from tests.support.paths import ROOT
from tests.support.pubsub import poll
from tests.unit.test_readme import readme_commands

pytestmark = pytest.mark.e2e


def _command(start: str, without: str = "\0") -> list[str]:
    found = [c for c in readme_commands() if c.startswith(start) and without not in c]
    assert len(found) == 1, found
    words = shlex.split(found[0])
    words[0] = sys.executable  # .venv/bin/python: this venv
    return words


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.stderr.read()


def test_the_readme_streaming_commands_run_as_written(tmp_path, pubsub_emulator):
    from google.cloud import pubsub_v1
    detect = _command(".venv/bin/python -m jobs.detect_anomalies", without="--serving_dir")
    replay = _command(".venv/bin/python -m tools.replay_telemetry")
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    publisher.create_topic(name="projects/my-project/topics/telemetry")
    subscriber.create_subscription(name="projects/my-project/subscriptions/telemetry", topic="projects/my-project/topics/telemetry")
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    env = {**os.environ, "PYTHONPATH": ROOT}
    job = subprocess.Popen(detect, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    feed = None
    try:
        records = poll(lambda: glob.glob(str(tmp_path / "runs" / "detect" / "*" / "run_manifest.json")),
                       lambda found: found or job.poll() is not None, timeout=120)
        assert records and job.poll() is None, _stop(job)[-3000:]
        assert json.load(open(records[0]))["status"] == "running"
        feed = subprocess.Popen(replay, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        publisher.publish("projects/my-project/topics/telemetry", b'{"sensor_id": "s1", "timestamp": ').result()
        letters = poll(lambda: [json.loads(line) for path in glob.glob(str(tmp_path / "dead_letter" / "*"))
                                for line in open(path)],
                       lambda found: found or job.poll() is not None, timeout=240, interval=2)
        assert job.poll() is None, _stop(job)[-3000:]
        assert feed.poll() is None, _stop(feed)[-3000:]  # still replaying three weeks at 600x
        assert [letter["raw"] for letter in letters] == ['{"sensor_id": "s1", "timestamp": ']
        # Stopped as a user stops it: the run ends cancelled, with its report and its lineage.
        os.killpg(job.pid, signal.SIGINT)
        assert job.wait(60) == 130, job.stderr.read()[-3000:]
        record = json.load(open(records[0]))
        assert record["status"] == "cancelled" and record["finished"]
        report = open(os.path.join(os.path.dirname(records[0]), "report", "index.html")).read()
        assert "Status: <b>cancelled</b>" in report and "not JSON" in report
        from ml_metadata.proto import metadata_store_pb2 as pb

        from beam_ml.lineage.store import open_store
        store = open_store(str(tmp_path / "runs" / "detect" / "metadata.sqlite"))
        [execution] = store.get_executions()
        assert execution.last_known_state == pb.Execution.CANCELED
    finally:
        if feed is not None:
            _stop(feed)
        _stop(job)
