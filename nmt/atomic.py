"""Atomic file writes: readers see the old file or the new one, never a half-written one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from nmt.errors import NmtError


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); a file written in place would get what the
        # process's umask leaves of 0666 (0644 usually), and others sharing the run read it.
        os.fchmod(descriptor, 0o666 & ~_umask())
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def check_writable(path: Path, what: str, directory: bool = False,
                   fix: str = "choose another path") -> None:
    """Checks, creating nothing, that a file (or, with directory, a directory of files) can be
    written at path: path is not the other kind, and the directory it would be written in, or its
    nearest existing ancestor, takes a new file. Work that ends in writing calls it before it starts.

    Raises:
        NmtError: "cannot write <what> <path>: <the directory at fault and why>; <fix>".
    """
    existing = path if path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if path.exists() and path.is_dir() != directory:
        problem = f"{path} is a directory" if path.is_dir() else f"{path} is not a directory"
    elif not existing.is_dir():
        problem = f"{existing} is not a directory"
    else:
        try:
            descriptor, probe = tempfile.mkstemp(dir=existing, prefix=".nmt-write-check.")
            os.close(descriptor)
            os.unlink(probe)
            return
        except OSError as error:
            problem = f"{existing} does not take new files ({error.strerror})"
    raise NmtError(f"cannot write {what} {path}: {problem}; {fix}")


def replace_directory(source: Path, destination: Path) -> None:
    """Makes the directory source durable (every file and directory in it fsynced) and renames it
    to destination, replacing whatever is there. A rename cannot replace a non-empty directory, so
    an existing destination is moved aside first and deleted after: a crash leaves the old one,
    the new one, or the old one aside, never a mixture, and never a new one whose files are not
    yet on disk."""
    _sync_tree(source)
    if destination.exists():
        aside = destination.with_name(f".{destination.name}.old")
        _remove(aside)
        os.replace(destination, aside)
        os.replace(source, destination)
        _remove(aside)
    else:
        os.replace(source, destination)
    _sync(destination.parent)


def _sync_tree(directory: Path) -> None:
    # Children first: a directory's entry is synced after what it names.
    for path in directory.iterdir():
        if path.is_dir() and not path.is_symlink():
            _sync_tree(path)
        elif path.is_file():
            _sync(path)
    _sync(directory)


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
