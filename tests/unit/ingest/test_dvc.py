"""DVC inputs resolved against a real git + DVC repo with a local DVC remote, built once for the module:

- commit 1 (annotated tag `v1`): data/penguins.csv = header + 100 rows, and a tracked directory data/extra; pushed.
- commit 2 (branch `main`, HEAD): data/penguins.csv = header + 150 rows; pushed.
- commit 3 (branch `unpushed`): data/penguins.csv = header + 120 rows; `dvc add` and commit, never pushed. The
  checkout is back on `main` afterwards with this content still in the working tree, which HEAD must not see.

Every in-process network attempt fails at once and fails the test; the git and dvc commands run with timeouts and
with DVC's analytics off.
"""
import dataclasses
import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from typing import Iterator, NoReturn

import pytest
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_ml.ingest.dvc import DvcInput, resolve_dvc_input
from tests.support.paths import PENGUINS_CSV

DVC = os.path.join(os.path.dirname(sys.executable), "dvc")
TRACKED = "data/penguins.csv"


def _run(env: dict[str, str], cwd: str, *args: str) -> str:
    """Runs a command to completion (at most two minutes) and returns its output; fails the test if it fails."""
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout.strip()


def _penguins(rows: int) -> bytes:
    with open(PENGUINS_CSV, "rb") as f:
        return b"".join(f.readlines()[:rows + 1])


def _read(url: str) -> bytes:
    with FileSystems.open(url, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


@pytest.fixture(scope="module")
def network_attempts() -> Iterator[list[str]]:
    """Refuses, and records, every TCP/UDP connection and name lookup made in this process."""
    attempts = []
    real_connect = socket.socket.connect

    def refuse(what: str, target) -> NoReturn:
        attempts.append(f"{what} {target!r}")
        raise ConnectionRefusedError(f"no network in test_dvc_source: {what} {target!r}")

    def connect(sock: socket.socket, address) -> None:
        if sock.family != socket.AF_UNIX:
            refuse("connect", address)
        real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs) -> NoReturn:
        refuse("getaddrinfo", host)

    def create_connection(address, *args, **kwargs) -> NoReturn:
        refuse("create_connection", address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        mp.setattr(socket, "create_connection", create_connection)
        yield attempts


@pytest.fixture(autouse=True)
def no_network(network_attempts: list[str]) -> Iterator[None]:
    yield
    assert network_attempts == []


@pytest.fixture(scope="module")
def dvc_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """DVC and git settings of this process and its commands: no analytics, and config and state in temp dirs
    (DVC's clones of git URLs too: it leaves some of them behind)."""
    root = tmp_path_factory.mktemp("dvc_home")
    (root / "tmp").mkdir()
    settings = {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(root / "site_cache"),
                "DVC_GLOBAL_CONFIG_DIR": str(root / "global"), "DVC_SYSTEM_CONFIG_DIR": str(root / "system"),
                "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in settings.items():
            mp.setenv(name, value)
        mp.setattr(tempfile, "tempdir", str(root / "tmp"))
        yield dict(os.environ)


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory, dvc_env) -> dict:
    """The three-commit repo described above; returns its path, remote, commits and contents."""
    base = tmp_path_factory.mktemp("dvc")
    repo, remote = str(base / "repo"), str(base / "remote")
    os.makedirs(os.path.join(repo, "data", "extra"))
    git = functools.partial(_run, dvc_env, repo, "git")
    dvc = functools.partial(_run, dvc_env, repo, DVC)

    def write(rows: int) -> bytes:
        content = _penguins(rows)
        with open(os.path.join(repo, TRACKED), "wb") as f:
            f.write(content)
        return content

    git("init", "-q", "-b", "main")
    git("config", "user.name", "Test")
    git("config", "user.email", "test@example.com")
    git("config", "commit.gpgsign", "false")
    dvc("init", "-q")
    dvc("config", "core.analytics", "false")
    dvc("remote", "add", "-d", "store", remote)
    contents = {1: write(100)}
    with open(os.path.join(repo, "data", "extra", "notes.txt"), "wb") as f:
        f.write(b"extra\n")
    dvc("add", "-q", TRACKED, "data/extra")
    git("add", "-A")
    git("commit", "-q", "-m", "100 penguins")
    git("tag", "-a", "v1", "-m", "v1")
    dvc("push", "-q")
    contents[2] = write(150)
    dvc("add", "-q", TRACKED)
    git("commit", "-q", "-am", "150 penguins")
    dvc("push", "-q")
    git("checkout", "-q", "-b", "unpushed")
    contents[3] = write(120)
    dvc("add", "-q", TRACKED)
    git("commit", "-q", "-am", "120 penguins, not pushed")
    commits = {n: git("rev-parse", ref) for n, ref in ((1, "v1^{commit}"), (2, "main"), (3, "unpushed"))}
    git("checkout", "-q", "main")
    return {"path": repo, "remote": remote, "commits": commits, "contents": contents, "env": dvc_env}


@pytest.mark.parametrize("rev, version", [
    ("v1", 1), ("HEAD~1", 1), ("main", 2), ("HEAD", 2), (None, 2), ("", 2),
])
def test_a_revision_resolves_to_its_commit_md5_and_pushed_object(dvc_repo, rev, version):
    resolved = resolve_dvc_input(TRACKED, repo=dvc_repo["path"], rev=rev)
    content = dvc_repo["contents"][version]
    md5 = hashlib.md5(content).hexdigest()
    assert resolved == DvcInput(repo=dvc_repo["path"], path=TRACKED, rev=rev or "HEAD",
                                commit=dvc_repo["commits"][version], md5=md5,
                                url=os.path.join(dvc_repo["remote"], "files", "md5", md5[:2], md5[2:]))
    assert _read(resolved.url) == content


def test_the_two_revisions_are_different_objects(dvc_repo):
    first, second = (resolve_dvc_input(TRACKED, dvc_repo["path"], dvc_repo["commits"][n]) for n in (1, 2))
    assert first.commit != second.commit and first.md5 != second.md5 and first.url != second.url
    assert (_read(first.url), _read(second.url)) == (dvc_repo["contents"][1], dvc_repo["contents"][2])
    short = dvc_repo["commits"][1][:10]
    assert resolve_dvc_input(TRACKED, dvc_repo["path"], short) == dataclasses.replace(first, rev=short)


def test_a_file_inside_a_tracked_directory(dvc_repo):
    resolved = resolve_dvc_input("data/extra/notes.txt", dvc_repo["path"], "v1")
    assert resolved.md5 == hashlib.md5(b"extra\n").hexdigest()
    assert _read(resolved.url) == b"extra\n"


def test_a_git_url_resolves_like_the_checkout(dvc_repo):
    """Through DVC's clone of the repo; HEAD is the remote's HEAD even after the clone was made for the tag."""
    url = "file://" + dvc_repo["path"]
    local = {rev: resolve_dvc_input(TRACKED, dvc_repo["path"], rev) for rev in ("v1", "HEAD", "HEAD~1")}
    for rev in ("v1", "HEAD", "HEAD~1"):
        assert resolve_dvc_input(TRACKED, url, rev) == dataclasses.replace(local[rev], repo=url)
    assert resolve_dvc_input(TRACKED, url).commit == dvc_repo["commits"][2]


@pytest.mark.parametrize("path, rev, message", [
    (TRACKED, "no-such-rev", "unknown git revision 'no-such-rev'"),
    ("data/missing.csv", None, "data/missing.csv is not tracked by DVC at HEAD"),
    ("data/penguins.csv.dvc", None, "data/penguins.csv.dvc is not tracked by DVC"),
    ("data", None, "data is not tracked by DVC"),
    ("data/extra", "v1", "data/extra is a DVC-tracked directory"),
    (TRACKED, "unpushed", "has not been pushed to its DVC remote"),
])
def test_bad_inputs_are_named(dvc_repo, path, rev, message):
    with pytest.raises(ValueError, match=message):
        resolve_dvc_input(path, dvc_repo["path"], rev)


def test_the_unpushed_object_is_only_in_the_local_cache(dvc_repo):
    """The error above is about the remote: the launcher's own cache has the object."""
    md5 = hashlib.md5(dvc_repo["contents"][3]).hexdigest()
    assert os.path.exists(os.path.join(dvc_repo["path"], ".dvc", "cache", "files", "md5", md5[:2], md5[2:]))
    assert not os.path.exists(os.path.join(dvc_repo["remote"], "files", "md5", md5[:2], md5[2:]))


@pytest.mark.parametrize("path, repo, message", [
    ("", "{repo}", "path must be"),
    ("/abs/data.csv", "{repo}", "path must be"),
    (TRACKED, "", "repo must"),
    (TRACKED, "{repo}/no-such-dir", "cannot open"),
])
def test_bad_arguments_are_named(dvc_repo, path, repo, message):
    with pytest.raises(ValueError, match=message):
        resolve_dvc_input(path, repo.format(repo=dvc_repo["path"]))


def test_a_repo_without_a_remote(dvc_repo, tmp_path):
    """Rejected, not answered with the launcher's own DVC cache; as a checkout and as a git URL."""
    clone = str(tmp_path / "clone")
    _run(dvc_repo["env"], str(tmp_path), "git", "clone", "-q", dvc_repo["path"], clone)
    _run(dvc_repo["env"], clone, DVC, "remote", "default", "--unset")
    _run(dvc_repo["env"], clone, "git", "-c", "user.name=Test", "-c", "user.email=test@example.com",
         "commit", "-q", "-am", "no remote")
    for repo in (clone, "file://" + clone):
        with pytest.raises(ValueError, match="has no default DVC remote"):
            resolve_dvc_input(TRACKED, repo)


def test_a_run_at_two_revisions_records_two_fingerprints_and_gives_two_statistics(dvc_repo, tmp_path):
    """Through the job's own input options: --input data/penguins.csv --input_dvc_repo R --input_dvc_rev v1|main."""
    import tensorflow_data_validation as tfdv
    from apache_beam.testing.test_pipeline import TestPipeline

    from beam_ml.config.train import PipelineConfig
    from beam_ml.ingest.read import ReadSplits
    from beam_ml.ingest.resolve import resolve_source
    from beam_ml.ingest.split import HashSplit
    from beam_ml.core.layout import STATS_FILE, split_dir
    from beam_ml.train.validate import GenerateSplitStatistics
    from tests.support.paths import PENGUINS_CONFIG
    split = HashSplit((("train", 2), ("eval", 1)))
    described, stats = {}, {}
    for rev in ("v1", "main"):
        config = PipelineConfig.load(PENGUINS_CONFIG, {"input": TRACKED, "input_dvc_repo": dvc_repo["path"],
                                                       "input_dvc_rev": rev})
        source = resolve_source(config, config.column_types).source
        [described[rev]] = source.describe()
        with TestPipeline() as p:
            out = p | ReadSplits(source, split)
            _ = out.split_batches | GenerateSplitStatistics(str(tmp_path / rev), split.names)
        stats[rev] = {name: tfdv.load_stats_binary(os.path.join(split_dir(str(tmp_path / rev), name), STATS_FILE))
                      .datasets[0].num_examples for name in split.names}
    v1, main = described["v1"], described["main"]
    assert v1["dvc"]["md5"] != main["dvc"]["md5"] and v1["sha256"] != main["sha256"]
    assert (v1["dvc"]["commit"], main["dvc"]["commit"]) == (dvc_repo["commits"][1], dvc_repo["commits"][2])
    assert v1["sha256"] == hashlib.sha256(dvc_repo["contents"][1]).hexdigest()
    assert sum(stats["v1"].values()) == 100 and sum(stats["main"].values()) == 150


def test_options_name_the_revision_and_never_record_a_token(dvc_repo):
    from beam_ml.config.train import PipelineConfig
    from beam_ml.core.errors import ConfigError
    from beam_ml.core.redact import masked_url
    from beam_ml.ingest.resolve import resolve_source
    from tests.support.paths import PENGUINS_CONFIG
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": TRACKED, "input_dvc_repo": dvc_repo["path"],
                                                   "input_dvc_rev": "no-such-rev"})
    with pytest.raises(ConfigError, match="^--input_dvc_rev: unknown git revision"):
        resolve_source(config, {})
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": "data/missing.csv", "input_dvc_repo": dvc_repo["path"]})
    with pytest.raises(ConfigError, match="^--input: data/missing.csv is not tracked"):
        resolve_source(config, {})
    assert masked_url("https://oauth2:s3cret@gitlab.example.com/org/data.git") == \
        "https://***@gitlab.example.com/org/data.git"
    assert masked_url("https://ghp_token@github.com/org/data") == "https://***@github.com/org/data"
    assert masked_url(dvc_repo["path"]) == dvc_repo["path"]
    tokened = PipelineConfig.load(PENGUINS_CONFIG, {"input": TRACKED,
                                                    "input_dvc_repo": "https://oauth2:s3cret@example.com/d.git"})
    assert "s3cret" not in json.dumps(tokened.to_dict())
