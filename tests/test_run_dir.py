import os
import signal
import subprocess
import sys

import pytest

from nmt.errors import RunDirError
from nmt.run_dir import RunDir, mark_latest, writer_lock

# Each process points runs/latest at its own run for 3 s; their loops overlap.
_MARK_FOR_3_S = """
import sys, time
from pathlib import Path
from nmt.run_dir import RunDir, mark_latest
run = RunDir(Path(sys.argv[1]))
end = time.monotonic() + 3
while time.monotonic() < end:
    mark_latest(run)
"""


def test_runs_started_at_once_both_mark_latest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    processes = [subprocess.Popen([sys.executable, "-c", _MARK_FOR_3_S, f"runs/{name}"], stderr=subprocess.PIPE, text=True)
                 for name in ("a", "b")]
    errors = [process.communicate()[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    assert (tmp_path / "runs" / "latest").resolve().name in ("a", "b")
    mark_latest(RunDir(tmp_path / "runs" / "a"))
    assert (tmp_path / "runs" / "latest").resolve() == (tmp_path / "runs" / "a").resolve()
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["a", "b", "latest"]


def test_a_second_writer_is_refused_at_once_naming_the_first(tmp_path):
    run = RunDir(tmp_path / "run")
    with writer_lock(run):
        with pytest.raises(RunDirError, match=rf"{run.path} is being trained by process {os.getpid()} on .*another --run-dir"):
            with writer_lock(run):
                pass
    with writer_lock(run):  # released at the end of the block
        pass


_HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from nmt.run_dir import RunDir, writer_lock
with writer_lock(RunDir(Path(sys.argv[1]))):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_killed_writer_does_not_block_the_next(tmp_path, package_env):
    run = RunDir(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_THE_LOCK, str(run.path)], stdout=subprocess.PIPE, text=True,
                              env=package_env)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunDirError, match=f"process {holder.pid} on"):
            with writer_lock(run):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with writer_lock(run):
        assert f"process {os.getpid()} on" in (run.path / ".lock").read_text()


def test_an_unwritable_run_directory_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RunDirError, match=r"cannot write the run directory .*a-file/run: Not a directory; choose another --run-dir"):
        with writer_lock(RunDir(tmp_path / "a-file" / "run")):
            pass


def test_translate_and_evaluate_pass_over_a_damaged_checkpoint(tmp_path):
    """What `nmt translate`/`evaluate` load: the newest undamaged checkpoint of the kind asked for
    (a damaged best falls back to the last)."""
    import keras

    from nmt import checkpoints

    model = keras.Sequential([keras.layers.Dense(2)])
    model.build((None, 3))
    run = RunDir(tmp_path)
    for step in (1, 2):
        checkpoints.save(run.last_checkpoints, step, model, None, {}, keep=5)
    checkpoints.save(run.best_checkpoints, 2, model, None, {}, keep=1)
    (run.last_checkpoints / "ckpt-2" / "state.json").write_text("{}")
    (run.best_checkpoints / "ckpt-2" / "model.weights.h5").write_bytes(b"")
    assert run.checkpoint_path("last") == run.last_checkpoints / "ckpt-1"
    assert run.checkpoint_path("best") == run.last_checkpoints / "ckpt-1"
