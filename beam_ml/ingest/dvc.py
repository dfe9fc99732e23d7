"""DVC inputs: a DVC-tracked file at a git revision, pinned when the graph is built.

`resolve_dvc_input(path, repo, rev)` turns "data/penguins.csv in this repo at v1" into a `DvcInput`: the full
commit sha the revision named, DVC's md5 of the file at that commit, and the URL of its content-addressed object in
the DVC remote (e.g. `gs://bucket/dvcstore/files/md5/ab/cdef...`). Workers read that URL with Beam's `FileSystems`
like any other file, so DVC is needed only where the job is launched (it is imported inside the function), and the
run reads exactly the bytes that were pushed for that commit, whatever the branch or the remote's other objects do
later.

Resolving reaches nothing but the repo and the remote: `dvc.api` sends no usage analytics (only the `dvc` command
does, unless `DVC_NO_ANALYTICS` is set). A local checkout is read in place; a git URL is cloned by DVC, and a cloud
remote is checked by `FileSystems.exists`, so those need the network where the job is launched.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from apache_beam.io.filesystems import FileSystems

from beam_ml.core.redact import masked_url
from beam_ml.ingest.files.source import FileSource


class UnknownRevision(ValueError):
    """The git revision does not exist in the repo."""


@dataclasses.dataclass(frozen=True)
class DvcInput:
    """One DVC-tracked file at one commit, and where its bytes are.

    Attributes:
        repo: The git URL or local path, as given, with any user and token in a URL masked.
        path: The tracked file's path inside the repo, e.g. `data/penguins.csv`.
        rev: The revision asked for (`HEAD` when none was given).
        commit: The full git commit sha that `rev` resolved to.
        md5: DVC's md5 of the file at that commit (what its `.dvc` file or `dvc.lock` records).
        url: The file's object in the DVC remote, readable with Beam's `FileSystems`.
    """

    repo: str
    path: str
    rev: str
    commit: str
    md5: str
    url: str


def resolve_dvc_input(path: str, repo: str, rev: Optional[str] = None) -> DvcInput:
    """Pins a DVC-tracked file at a revision to its commit, md5 and object URL in the DVC remote.

    The revision is resolved once; the md5 and the URL are then both taken at that commit, so they describe the same
    object even if a branch moves meanwhile. The md5 comes from DVC's own index of the commit (the output recorded in
    a `.dvc` file or `dvc.lock`, wherever it lives), the URL from `dvc.api.get_url` for the repo's default remote.

    Example::

        source = resolve_dvc_input("data/penguins.csv", repo="https://github.com/org/data-registry", rev="v1")
        lines = p | beam.io.ReadFromText(source.url, skip_header_lines=1)

    Args:
        path: The tracked file's path relative to the repo root (a file inside a tracked directory works too).
        repo: A git URL or a local path to a git repo with DVC initialised.
        rev: A branch, tag, commit sha or `HEAD~n`; None or empty means HEAD (for a git URL, its default branch).
            Revisions are read from git history, never from a local checkout's working tree.

    Returns:
        The pinned `DvcInput`.

    Raises:
        UnknownRevision: The revision does not exist.
        ValueError: The repo cannot be opened, the path is not a file tracked by DVC
            at that revision, the repo has no default DVC remote, or the object was never pushed to it.
    """
    if not repo:
        raise ValueError("repo must name a git URL or a local path")
    if not path or os.path.isabs(path):
        raise ValueError(f"path must be a file path relative to the repo root, got {path!r}")
    rev = rev or "HEAD"
    shown = masked_url(repo)
    try:
        commit, md5 = _tracked_file(path, repo, rev)
        url = _remote_url(path, repo, commit)
    except ValueError as e:  # the messages (and DVC's, quoted in them) may hold the URL with its token
        raise type(e)(str(e).replace(repo, shown)) from None
    if not FileSystems.exists(url):
        raise ValueError(f"{path} at {rev} ({commit}) in {shown} has not been pushed to its DVC remote: {url} "
                         "does not exist (run `dvc push` in a checkout of that commit)")
    return DvcInput(repo=shown, path=path, rev=rev, commit=commit, md5=md5, url=url)


def _tracked_file(path: str, repo: str, rev: str) -> tuple[str, str]:
    """The commit sha `rev` names in `repo`, and DVC's md5 of `path` at that commit."""
    from dvc.exceptions import NotDvcRepoError, OutputNotFoundError
    from dvc.repo import Repo
    from dvc.scm import RevError, SCMError

    try:
        # The same call dvc.api.get_url makes, so the index entry read below is the one it looks the URL up from.
        dvc_repo = Repo.open(repo, rev=_dvc_rev(repo, rev), subrepos=True, uninitialized=True)
    except RevError as exc:
        raise UnknownRevision(f"unknown git revision {rev!r} in {repo}") from exc
    except (SCMError, NotDvcRepoError) as exc:
        # A path that does not exist is tried as a URL to clone: the clone's error says which.
        raise ValueError(f"cannot open {repo} as a git repository: {exc.__cause__ or exc}") from exc
    with dvc_repo:
        commit = dvc_repo.get_rev()
        try:
            _, entry = dvc_repo.get_data_index_entry(path)
        except OutputNotFoundError as exc:
            raise ValueError(f"{path} is not tracked by DVC at {rev} ({commit}) in {repo}") from exc
    if entry.hash_info is None:  # a directory of git-tracked files: in DVC's tree, but no output of its own
        raise ValueError(f"{path} is not tracked by DVC at {rev} ({commit}) in {repo}")
    if entry.hash_info.isdir:
        raise ValueError(f"{path} is a DVC-tracked directory at {rev} ({commit}) in {repo}; name a file in it")
    return commit, entry.hash_info.value


def _dvc_rev(repo: str, rev: str) -> str:
    """`rev` as DVC must be asked for it in `repo`.

    DVC resolves the revisions of a git URL in its own clone, kept for the life of the process, whose HEAD stays at
    whatever revision that clone was first made for; the remote's HEAD is `refs/remotes/origin/HEAD` there.
    """
    if os.path.exists(repo) or not (rev == "HEAD" or rev.startswith(("HEAD~", "HEAD^"))):
        return rev
    return f"refs/remotes/origin/{rev}"


def _remote_url(path: str, repo: str, commit: str) -> str:
    """The URL of `path`'s object at `commit` in the repo's default DVC remote."""
    import dvc.api
    from dvc.config import NoRemoteError
    from dvc.repo import Repo

    no_remote = f"{repo} has no default DVC remote (set one with `dvc remote add -d`, then `dvc push`)"
    if os.path.exists(repo):
        # Without a remote, get_url answers a local checkout with the object in its cache, which only this
        # machine can read.
        with Repo(repo, uninitialized=True) as local:
            if not local.config["core"].get("remote"):
                raise ValueError(no_remote)
    try:
        return dvc.api.get_url(path, repo=repo, rev=commit)
    except NoRemoteError as exc:
        raise ValueError(no_remote) from exc


class DvcFileSource(FileSource):
    """A DVC-tracked file: read from its remote's content-addressed object; the manifest also records the git
    revision and DVC's md5."""

    def __init__(self, source: FileSource, extra: dict[str, Any]):
        super().__init__(source.files, source.fmt, source.chunk_bytes)
        self._extra = extra

    def describe(self) -> list[dict]:
        return [{**entry, **self._extra} for entry in super().describe()]
