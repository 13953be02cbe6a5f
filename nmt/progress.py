"""A progress bar for work that spares TensorFlow's import (a server's, CTranslate2's), which
Keras's (nmt.jobs.progress_bar, as training and our search show) would bring in."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

import typer


@contextlib.contextmanager
def bar(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A bar of total items on stderr when it is a terminal, labelled; entered, it gives what to call
    with each part's number of items (None where stderr is not a terminal)."""
    if not sys.stderr.isatty():
        yield None
        return
    with typer.progressbar(length=total, label=label, file=sys.stderr) as shown:
        yield shown.update
