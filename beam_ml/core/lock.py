"""Exclusive ownership across processes and machines, on a local disk, gs:// and s3://.

The primitive is *create only if absent*: on a local file system, a file written whole under a private name and
hard-linked into place (link fails if the name exists, and the file never appears half-written); on Cloud Storage, an
upload with the precondition `ifGenerationMatch=0`; on S3, a put with `If-None-Match: *`. Network and FUSE mounts (NFS, gcsfuse) are not supported: their
hard links and flock are not reliable across machines; give the gs:// path instead of a gcsfuse mount. On it:

- `create_exclusive(path, data)`: claims a name once (a run directory's claim marker).
- `PathLock`: one holder at a time (one pusher per serving directory). The lock file names its owner, host, pid and
  expiry. A lock past its expiry, or held by a process that no longer runs on this host, is stale and broken by the
  next acquirer, removing exactly the stale file (on gs:// a delete preconditioned on its generation, on s3:// on its ETag; locally under
  an advisory lock on the directory, which every remover takes), so two acquirers can never both break a lock and
  both hold it. Release removes the file only if it is still this holder's. The expiry is not renewed: a holder
  must finish within it, and checks `held()` before acting on its ownership (a push publishes nothing once lost).

Other schemes have no exclusive create here: `create_exclusive` and `PathLock` refuse them by name.

Example::

    with PathLock(os.path.join(serving_dir, ".push.lock"), owner=push_id):
        ...  # nobody else holding this lock runs this block now
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import time
import uuid
from typing import Any, Iterator, Optional


class LockBusy(RuntimeError):
    """The lock stayed held by another owner for as long as we were willing to wait."""


class LockLost(RuntimeError):
    """A holder outlived its lock's expiry and another owner took the lock."""


def _scheme(path: str) -> str:
    return path.split("://", 1)[0] if "://" in path else ""


class _LocalFiles:
    """Local file system: hard-link creates; removals serialized by flock on the parent directory."""

    def create(self, path: str, data: bytes) -> bool:
        # written whole under a private name, then hard-linked into place: link() fails if the name exists, and a
        # reader never sees the file half-written (which would look like a lock without an owner)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        private = f"{path}.{uuid.uuid4().hex}"
        with open(private, "xb") as f:
            f.write(data)
        try:
            os.link(private, path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(private)

    def read(self, path: str) -> Optional[tuple[bytes, Any]]:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, data  # the content carries a unique token: it is the version

    def delete_if_unchanged(self, path: str, version: Any) -> bool:
        with self._removals(os.path.dirname(path)):
            found = self.read(path)
            if found is None or found[1] != version:
                return False
            os.unlink(path)
            return True

    @contextlib.contextmanager
    def _removals(self, directory: str) -> Iterator[None]:
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock


class _CloudStorage:
    """gs://: generation preconditions make create-if-absent and delete-if-unchanged single atomic requests."""

    def __init__(self):
        from google.cloud import storage
        self._client = storage.Client()

    def _blob(self, path: str):
        bucket, _, name = path[len("gs://"):].partition("/")
        return self._client.bucket(bucket).blob(name)

    def create(self, path: str, data: bytes) -> bool:
        from google.api_core.exceptions import PreconditionFailed
        try:
            self._blob(path).upload_from_string(data, if_generation_match=0)
            return True
        except PreconditionFailed:  # someone else's; or ours, when a retried upload's first attempt had landed
            found = self.read(path)
            return found is not None and found[0] == data

    def read(self, path: str) -> Optional[tuple[bytes, Any]]:
        from google.api_core.exceptions import NotFound, PreconditionFailed
        bucket, _, name = path[len("gs://"):].partition("/")
        while True:
            blob = self._client.bucket(bucket).get_blob(name)
            if blob is None:
                return None
            generation = blob.generation  # the content read next is this generation's, or the read is repeated
            try:
                return blob.download_as_bytes(if_generation_match=generation), generation
            except (NotFound, PreconditionFailed):
                continue  # replaced or removed in between

    def delete_if_unchanged(self, path: str, version: Any) -> bool:
        from google.api_core.exceptions import NotFound, PreconditionFailed
        try:
            self._blob(path).delete(if_generation_match=version)
            return True
        except (NotFound, PreconditionFailed):
            return False


class _S3:
    """s3://: conditional writes (`If-None-Match: *`) and deletes (`If-Match: <ETag>`), single atomic requests;
    credentials and endpoint from AWS's standard environment, as Beam's S3 filesystem takes them."""

    def __init__(self):
        import boto3
        self._client = boto3.client("s3")

    @staticmethod
    def _key(path: str) -> tuple[str, str]:
        bucket, _, key = path[len("s3://"):].partition("/")
        return bucket, key

    @staticmethod
    def _status(error: Exception) -> int:
        return int(getattr(error, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0))

    def create(self, path: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError
        bucket, key = self._key(path)
        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            return True
        except ClientError as e:
            if self._status(e) not in (409, 412):  # 409: a concurrent conditional write to the same key
                raise
            found = self.read(path)  # ours, when a retried put's first attempt had landed
            return found is not None and found[0] == data

    def read(self, path: str) -> Optional[tuple[bytes, Any]]:
        from botocore.exceptions import ClientError
        bucket, key = self._key(path)
        try:
            answer = self._client.get_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if self._status(e) == 404:
                return None
            raise
        return answer["Body"].read(), answer["ETag"]  # the body read is the ETag's: one response

    def delete_if_unchanged(self, path: str, version: Any) -> bool:
        from botocore.exceptions import ClientError
        bucket, key = self._key(path)
        try:
            self._client.delete_object(Bucket=bucket, Key=key, IfMatch=version)
            return True
        except ClientError as e:
            if self._status(e) in (404, 412):
                return False
            raise


def _store(path: str):
    scheme = _scheme(path)
    if scheme == "":
        return _LocalFiles()
    if scheme == "gs":
        return _CloudStorage()
    if scheme == "s3":
        return _S3()
    raise ValueError(f"{path}: no exclusive create for {scheme}:// here (local paths, gs:// and s3:// have one)")


def create_exclusive(path: str, data: bytes) -> bool:
    """Creates `path` holding `data` only if nothing is there; True if this call created it."""
    return _store(path).create(path, data)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def is_stale(holder: dict, now: float) -> bool:
    """A lock nobody holds any more: past its expiry, or its process is gone from this host."""
    if holder.get("expires", 0) < now:
        return True
    return holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", 0)))


def describe(holder: dict) -> str:
    expires = datetime.datetime.fromtimestamp(holder.get("expires", 0), datetime.timezone.utc)
    return (f"{holder.get('owner')!s} (pid {holder.get('pid')} on {holder.get('host')}, since "
            f"{holder.get('acquired')}, expires {expires.isoformat(timespec='seconds')})")


class PathLock:
    """Holds `path` exclusively for `owner` (a context manager).

    `ttl_seconds` bounds how long a holder that vanished without releasing (a killed worker on another machine) keeps
    others out; a holder must finish within it. `wait_seconds` is how long `acquire` waits for a live holder before
    raising LockBusy, which names that holder.
    """

    def __init__(self, path: str, owner: str, ttl_seconds: float = 3600.0, wait_seconds: float = 900.0,
                 poll_seconds: float = 0.2):
        self.path = path
        self.owner = owner
        self._ttl = ttl_seconds
        self._wait = wait_seconds
        self._poll = poll_seconds
        self._store = _store(path)
        self._mine: Optional[bytes] = None

    def acquire(self) -> None:
        deadline = time.monotonic() + self._wait
        while True:
            now = time.time()
            mine = json.dumps({
                "owner": self.owner, "token": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                "acquired": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds"),
                "expires": now + self._ttl}).encode()
            if self._store.create(self.path, mine):
                self._mine = mine
                return
            found = self._store.read(self.path)
            if found is None:
                continue  # released between our create and read
            data, version = found
            holder = _parse_holder(data)
            if is_stale(holder, time.time()):
                self._store.delete_if_unchanged(self.path, version)
                continue
            if time.monotonic() >= deadline:
                raise LockBusy(f"{self.path} is held by {describe(holder)}")
            time.sleep(self._poll)

    def held(self) -> bool:
        """Whether the lock is still this holder's (not expired and taken by another)."""
        found = self._mine is not None and self._store.read(self.path)
        return bool(found) and found[0] == self._mine

    def release(self) -> None:
        if self._mine is None:
            return
        found = self._store.read(self.path)
        if found is not None and found[0] == self._mine:
            self._store.delete_if_unchanged(self.path, found[1])
        self._mine = None

    def __enter__(self) -> "PathLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _parse_holder(data: bytes) -> dict:
    try:
        holder = json.loads(data)
        return holder if isinstance(holder, dict) else {}
    except ValueError:
        return {}  # unreadable (a writer died mid-write): no expiry, so stale
