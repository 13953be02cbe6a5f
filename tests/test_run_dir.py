import subprocess
import sys

from nmt.run_dir import RunDir, mark_latest

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
