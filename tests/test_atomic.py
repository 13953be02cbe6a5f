import os
import stat

import pytest

from nmt import atomic
from nmt.errors import NmtError


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_file_gets_the_permissions_the_umask_gives_a_new_file(tmp_path, umask, mode):
    """Written through a private temporary file, it still ends up as open() would have made it:
    readable by the others sharing a run directory when the umask says so."""
    previous = os.umask(umask)
    try:
        atomic.write_text(tmp_path / "report.json", "{}")
        open(tmp_path / "plain.txt", "w").close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert (tmp_path / "report.json").read_text() == "{}"


def test_a_file_is_replaced_whole(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    atomic.write_text(path, "old")
    atomic.write_text(path, "new")
    assert path.read_text() == "new" and [entry.name for entry in path.parent.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("name, directory, problem", [
    ("file/out.txt", False, "file is not a directory"),
    ("dir", False, "dir is a directory"),
    ("file", True, "file is not a directory"),
    ("file/deeper/out", True, "file is not a directory"),
])
def test_what_cannot_be_written_is_named_before_anything_is_created(tmp_path, name, directory, problem):
    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(NmtError, match=f"^cannot write --output {tmp_path / name}: {tmp_path}/{problem}; choose another path$"):
        atomic.check_writable(tmp_path / name, "--output", directory)
    atomic.check_writable(tmp_path / "new" / "deeper" / "out.txt", "--output")
    atomic.check_writable(tmp_path / "dir", "--output", directory=True)
    assert sorted(tmp_path.rglob("*")) == before
