import os
import subprocess
import sys
import textwrap

from beam_ml.model.push import PARTIAL_PREFIX, latest_model, push_model, pushed_by, versions


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
        import beam_ml.model.push as push
        copied = []
        real_copy = push._copy_file
        def copy_then_die(src, dst):
            real_copy(src, dst)
            copied.append(dst)
            if len(copied) == 7:
                os.kill(os.getpid(), signal.SIGKILL)
        push._copy_file = copy_then_die
        push.push_model({model!r}, {serving!r}, 'killed-run')
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    leftovers = os.listdir(serving)
    assert len(leftovers) == 1 and leftovers[0].startswith(PARTIAL_PREFIX)  # the killed copy, hidden
    assert versions(serving) == [] and latest_model(serving) is None
    assert not any(name.isdigit() for name in leftovers)

    pushed = push_model(model, serving, 'killed-run')
    assert os.listdir(serving) == [os.path.basename(pushed)]
    assert len(os.listdir(os.path.join(pushed, "variables"))) == 20
