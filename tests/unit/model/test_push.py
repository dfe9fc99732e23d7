import os
import subprocess
import sys
import textwrap
import time

import pytest

from beam_ml.model.push import (
    LOCK_FILE, PARTIAL_PREFIX, latest_model, push_model, pushed_by, pushed_from, versions)


def _fake_model(path, n_files=5):
    os.makedirs(os.path.join(path, "variables"))
    for i in range(n_files):
        with open(os.path.join(path, "variables", f"v{i}"), "wb") as f:
            f.write(os.urandom(1000))
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"pb")
    return str(path)


def test_push_publishes_numbered_versions(tmp_path):
    model = _fake_model(tmp_path / "model")
    serving = str(tmp_path / "serving")
    first = push_model(model, serving, "run-1")
    second = push_model(model, serving, "run-2")
    assert int(os.path.basename(second)) > int(os.path.basename(first))
    assert latest_model(serving) == second
    assert sorted(os.listdir(second)) == ["assets.extra", "saved_model.pb", "variables"]
    assert versions(serving) == [int(os.path.basename(first)), int(os.path.basename(second))]
    assert pushed_by(serving, "run-1") == first and pushed_by(serving, "run-3") is None
    assert pushed_from(first) == model and pushed_from(model) is None  # the lineage of what uses a version


def test_a_retried_push_returns_the_version_it_pushed_and_a_new_launch_pushes_again(tmp_path):
    model = _fake_model(tmp_path / "model")
    serving = str(tmp_path / "serving")
    first = push_model(model, serving, "run-1/launch-a")
    assert push_model(model, serving, "run-1/launch-a") == first  # the runner retried the push
    assert versions(serving) == [int(os.path.basename(first))]
    second = push_model(model, serving, "run-1/launch-b")  # a later launch that reuses the run id pushes anew
    assert second != first and len(versions(serving)) == 2


def test_a_push_killed_midway_leaves_no_partial_version_and_the_next_push_is_clean(tmp_path):
    model = _fake_model(tmp_path / "model", n_files=20)
    serving = str(tmp_path / "serving")
    script = textwrap.dedent(f"""
        import os, signal, sys
        import beam_ml.core.fileutil as fileutil
        import beam_ml.model.push as push
        copied = []
        real_copy = fileutil.copy_file
        def copy_then_die(src, dst):
            real_copy(src, dst)
            copied.append(dst)
            if len(copied) == 7:
                os.kill(os.getpid(), signal.SIGKILL)
        fileutil.copy_file = copy_then_die
        push.push_model({model!r}, {serving!r}, 'killed-run')
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    leftovers = sorted(os.listdir(serving))
    assert len(leftovers) == 2 and leftovers[1] == LOCK_FILE  # the killed push's lock
    assert leftovers[0].startswith(PARTIAL_PREFIX)  # and its copy, hidden
    assert versions(serving) == [] and latest_model(serving) is None
    assert not any(name.isdigit() for name in leftovers)

    pushed = push_model(model, serving, 'killed-run')
    assert os.listdir(serving) == [os.path.basename(pushed)]
    assert len(os.listdir(os.path.join(pushed, "variables"))) == 20


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, n), path) for d, _, names in os.walk(path) for n in names)


def test_concurrent_pushes_from_three_processes_each_publish_a_complete_version(tmp_path):
    """Three processes push a model of 3,000 files to one serving dir at once; a reader watching the directory
    meanwhile never sees a numbered version that is incomplete."""
    model = _fake_model(tmp_path / "model", n_files=3000)
    serving = str(tmp_path / "serving")
    expected = sorted(_tree(model) + [os.path.join("assets.extra", "beam_ml_push.json")])
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import os, sys, time
        from beam_ml.model.push import push_model
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        print(push_model({model!r}, {serving!r}, sys.argv[1]))
    """)
    pushers = [subprocess.Popen([sys.executable, "-c", script, f"run-{i}"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(3)]
    time.sleep(3)  # let all three import and wait at the line
    go.touch()
    seen_incomplete = []
    while any(p.poll() is None for p in pushers):
        for version in os.listdir(serving) if os.path.isdir(serving) else []:
            path = os.path.join(serving, version)
            if version.isdigit() and len(_tree(path)) != len(expected):
                seen_incomplete.append((version, len(_tree(path))))
        time.sleep(0.05)
    results = [p.communicate() for p in pushers]
    assert all(p.returncode == 0 for p in pushers), [err[-2000:] for _, err in results]
    published = sorted(out.strip() for out, _ in results)
    assert len(set(published)) == 3 and sorted(os.path.join(serving, str(v)) for v in versions(serving)) == published
    for version_dir in published:
        assert _tree(version_dir) == expected
        assert open(os.path.join(version_dir, "variables", "v2999"), "rb").read() == \
            open(os.path.join(model, "variables", "v2999"), "rb").read()
    assert sorted(pushed_by(serving, f"run-{i}") for i in range(3)) == published
    assert sorted(os.listdir(serving)) == sorted(os.path.basename(p) for p in published)  # no staging, no lock
    assert seen_incomplete == []


def test_a_push_waits_for_the_one_in_progress_and_a_stale_staging_dir_is_removed_by_age(tmp_path):
    model = _fake_model(tmp_path / "model")
    serving = tmp_path / "serving"
    old = serving / f"{PARTIAL_PREFIX}123@elsewhere-0123abcd"  # another machine's push that never finished
    young = serving / f"{PARTIAL_PREFIX}456@elsewhere-89abcdef"  # another machine's push still copying
    for d in (old, young):
        d.mkdir(parents=True)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    pushed = push_model(model, str(serving), "run-1")
    assert sorted(os.listdir(serving)) == sorted([os.path.basename(pushed), young.name])


def test_a_live_push_on_this_host_keeps_its_staging_however_old_and_a_lost_lock_publishes_nothing(tmp_path):
    from beam_ml.core.lock import LockLost
    import beam_ml.model.push as push
    model = _fake_model(tmp_path / "model")
    serving = tmp_path / "serving"
    import socket
    alive = serving / f"{PARTIAL_PREFIX}{os.getpid()}@{socket.gethostname()}-0123abcd"
    alive.mkdir(parents=True)
    os.utime(alive, (time.time() - 7200, time.time() - 7200))
    pushed = push_model(model, str(serving), "run-1")
    assert sorted(os.listdir(serving)) == sorted([os.path.basename(pushed), alive.name])

    real_copy = push._copy_tree

    def copy_then_lose_the_lock(src, dst):
        real_copy(src, dst)
        os.unlink(serving / LOCK_FILE)  # as if it had expired and another push had broken it
    push._copy_tree = copy_then_lose_the_lock
    try:
        with pytest.raises(LockLost, match="lost it; nothing was published"):
            push_model(model, str(serving), "run-2")
    finally:
        push._copy_tree = real_copy
    assert versions(serving) == [int(os.path.basename(pushed))]
    assert sorted(os.listdir(serving)) == sorted([os.path.basename(pushed), alive.name])


def test_rollback_serves_an_earlier_version_again_as_the_newest_keeping_the_rest(tmp_path):
    import filecmp
    import json

    from beam_ml.model.push import main, rollback
    serving = str(tmp_path / "serving")
    first = push_model(_fake_model(tmp_path / "model-1"), serving, "run-1")
    second = push_model(_fake_model(tmp_path / "model-2"), serving, "run-2")
    back = rollback(serving)  # TF Serving serves the highest number: now a copy of the first
    assert latest_model(serving) == back and versions(serving)[-3:-1] == [int(os.path.basename(first)),
                                                                          int(os.path.basename(second))]
    assert pushed_from(back) == pushed_from(first) == str(tmp_path / "model-1")  # the training run's model
    assert not os.listdir(serving)[0].startswith(PARTIAL_PREFIX)
    assert not filecmp.dircmp(os.path.join(first, "variables"), os.path.join(back, "variables")).diff_files
    assert os.path.exists(os.path.join(second, "saved_model.pb"))  # the rolled-back version stays, for the record
    with pytest.raises(ValueError, match=r"cannot roll .* back to 123: its versions are \["):
        rollback(serving, to_version=123)
    with pytest.raises(ValueError, match="is serving now"):
        rollback(serving, to_version=versions(serving)[-1])

    proc = subprocess.run([sys.executable, "-m", "beam_ml.model.push", "rollback", "--serving_dir", serving,
                           "--to", os.path.basename(second)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer == {"serving": latest_model(serving), "model_dir": str(tmp_path / "model-2")}
    assert len(versions(serving)) == 4 and pushed_by(serving, "run-2") == second  # the copy is not push run-2
    assert main(["rollback", "--serving_dir", str(tmp_path / "empty")]) == 2
