"""Atomic file writes: readers see the old file or the new one, never a half-written one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def replace_directory(source: Path, destination: Path) -> None:
    """Renames the directory source to destination, replacing whatever is there. A rename cannot
    replace a non-empty directory, so an existing destination is moved aside first and deleted
    after: a crash leaves the old one, the new one, or the old one aside, never a mixture."""
    if not destination.exists():
        os.replace(source, destination)
        return
    aside = destination.with_name(f".{destination.name}.old")
    _remove(aside)
    os.replace(destination, aside)
    os.replace(source, destination)
    _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
