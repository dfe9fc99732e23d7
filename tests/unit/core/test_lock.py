import json
import os
import socket
import subprocess
import sys
import time

import pytest

from beam_ml.core.lock import LockBusy, PathLock, _store, create_exclusive


def test_create_exclusive_creates_a_name_once(tmp_path):
    path = str(tmp_path / "sub" / "claim")
    assert create_exclusive(path, b"first")
    assert not create_exclusive(path, b"second")
    assert open(path, "rb").read() == b"first"
    assert os.listdir(tmp_path / "sub") == ["claim"]  # no private names left behind


def test_a_held_lock_keeps_others_out_and_names_its_holder(tmp_path):
    path = str(tmp_path / ".push.lock")
    with PathLock(path, owner="run-a"):
        holder = json.load(open(path))
        assert holder["owner"] == "run-a" and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(LockBusy, match=r"held by run-a \(pid \d+ on .*, since .*, expires "):
            PathLock(path, owner="run-b", wait_seconds=0.3).acquire()
    assert not os.path.exists(path)
    with PathLock(path, owner="run-b"):
        assert json.load(open(path))["owner"] == "run-b"


def test_a_lock_past_its_expiry_is_broken(tmp_path):
    path = str(tmp_path / ".push.lock")
    first = PathLock(path, owner="slow", ttl_seconds=0.2)
    first.acquire()
    time.sleep(0.3)
    with PathLock(path, owner="next", wait_seconds=0):
        assert json.load(open(path))["owner"] == "next"
        first.release()  # the slow holder finishing late must not remove the lock it lost
        assert json.load(open(path))["owner"] == "next"
    assert not os.path.exists(path)


def test_a_lock_whose_process_died_on_this_host_is_broken_at_once(tmp_path):
    path = str(tmp_path / ".push.lock")
    script = f"from beam_ml.core.lock import PathLock; PathLock({path!r}, owner='killed').acquire()"
    subprocess.run([sys.executable, "-c", script], check=True)  # exits holding the lock for an hour
    assert json.load(open(path))["owner"] == "killed"
    with PathLock(path, owner="next", wait_seconds=0):
        assert json.load(open(path))["owner"] == "next"


def test_a_live_holder_is_waited_for(tmp_path):
    path = str(tmp_path / ".push.lock")
    script = (f"import time; from beam_ml.core.lock import PathLock\n"
              f"with PathLock({path!r}, owner='first'):\n    print('held', flush=True); time.sleep(1.5)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with PathLock(path, owner="second", wait_seconds=30):
        waited = time.monotonic() - started
        assert json.load(open(path))["owner"] == "second"
    assert holder.wait(10) == 0
    assert waited > 0.5


def test_schemes_without_an_exclusive_create_are_refused_by_name():
    with pytest.raises(ValueError, match=r"hdfs://bucket/x: no exclusive create for hdfs://"):
        PathLock("hdfs://bucket/x", owner="a")


def _content(path: str):
    """The object at gs:// or s3:// `path`, or None, read with the store's own client."""
    bucket, _, name = path.split("://", 1)[1].partition("/")
    if path.startswith("gs://"):
        from google.cloud import storage
        blob = storage.Client().bucket(bucket).blob(name)
        return blob.download_as_bytes() if blob.exists() else None
    import boto3
    try:
        return boto3.client("s3").get_object(Bucket=bucket, Key=name)["Body"].read()
    except boto3.client("s3").exceptions.NoSuchKey:
        return None


@pytest.fixture(params=["gs", "s3"])
def remote_dir(request):
    """A directory on the GCS emulator, or on the S3 API server: the two object stores' preconditions."""
    if request.param == "gs":
        from tests.support import emulators
        emulators.ensure_bucket("locks", request.getfixturevalue("gcs_emulator")["url"])
    else:
        import boto3
        request.getfixturevalue("s3_server")
        client = boto3.client("s3")
        if "locks" not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
            client.create_bucket(Bucket="locks")
    return f"{request.param}://locks/{request.node.name}"


def test_on_object_stores_a_name_is_created_once_and_a_held_lock_keeps_others_out(remote_dir):
    assert create_exclusive(f"{remote_dir}/claim", b"first")
    assert not create_exclusive(f"{remote_dir}/claim", b"second")
    assert _content(f"{remote_dir}/claim") == b"first"
    path = f"{remote_dir}/.push.lock"
    with PathLock(path, owner="run-a"):
        with pytest.raises(LockBusy, match=r"held by run-a \(pid"):
            PathLock(path, owner="run-b", wait_seconds=0.3).acquire()
    assert _content(path) is None
    with PathLock(path, owner="run-b", wait_seconds=0):
        pass


def test_on_object_stores_an_expired_lock_is_broken_and_its_late_holder_cannot_remove_the_new_one(remote_dir):
    path = f"{remote_dir}/.push.lock"
    first = PathLock(path, owner="slow", ttl_seconds=0.2)
    first.acquire()
    time.sleep(0.3)
    with PathLock(path, owner="next", wait_seconds=0):
        first.release()
        assert json.loads(_content(path))["owner"] == "next"
        other_version = {"gs": 1, "s3": '"0123456789abcdef0123456789abcdef"'}[remote_dir[:2]]  # generation, ETag
        assert not _store(path).delete_if_unchanged(path, other_version)  # a delete of another version is refused
        assert json.loads(_content(path))["owner"] == "next"
    assert _content(path) is None
