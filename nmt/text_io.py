"""Reading sentences from files or stdin (UTF-8, one sentence per line, line counts preserved),
and writing what they become chunk by chunk, resumably."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import logging
import os
import sys
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

from nmt import atomic
from nmt.errors import NmtError

log = logging.getLogger("nmt")
# Input lines per chunk of `write_in_chunks`: what an interrupted run can lose (~40 s of beam
# search on a 2-core CPU), and large enough for full decoding batches of similar lengths.
CHUNK_LINES = 5000


def decode_lines(data: bytes, name: str) -> list[str]:
    """Splits UTF-8 bytes into lines (without line endings), naming the first line that is not UTF-8."""
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise NmtError(f"{name} line {number} is not valid UTF-8 (byte {error.start + 1}); convert the file to UTF-8") from None
    return lines


def read_lines(path: Path, option: str) -> list[str]:
    """The lines of the file an option names (decode_lines), gzip-compressed where its name ends
    in .gz (as corpora and test sets are often shipped).

    Raises:
        NmtError: the file cannot be read, is not the gzip file its name says, or a line is not UTF-8.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise NmtError(f"cannot read {option} {path}: {error.strerror}") from None
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise NmtError(f"cannot read {option} {path}: not a whole gzip file ({error}); name it without .gz if it is "
                           "plain text") from None
    return decode_lines(data, str(path))


def read_constraints(path: Path, option: str, count: int, what: str) -> list[list[str]]:
    """The constraints of a file an option names: a line per sentence of `what` (count of them),
    its texts separated by tabs, blank ones left out (an empty line: none).

    Raises:
        NmtError: the file cannot be read, a line is not UTF-8, or it has not count lines.
    """
    constraints = [[text for text in line.split("\t") if text.strip()] for line in read_lines(path, option)]
    if len(constraints) != count:
        raise NmtError(f"{option} has {len(constraints)} lines but {what} has {count} sentences; give one line of "
                       "constraints per sentence")
    return constraints


def fingerprint(lines: Sequence[str]) -> str:
    """A digest of lines, to tell whether a resumed output was made from the same ones."""
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def check_text(sentences: Sequence[str], kind: str = "sentence") -> None:
    """Refuses a sentence (or another kind of text, named in the message) that cannot be encoded
    as UTF-8: a lone surrogate, which is what Python makes of a command-line argument that is not UTF-8."""
    for number, sentence in enumerate(sentences, start=1):
        try:
            sentence.encode("utf-8")
        except UnicodeEncodeError as error:
            raise NmtError(f"{kind} {number} is not valid UTF-8 text (character {error.start + 1} is a lone "
                           f"surrogate, {sentence[error.start]!r}); pass UTF-8 text") from None


def write_in_chunks(lines: Sequence[str], render: Callable[[Sequence[str], int], str], output: Path | None,
                    settings: dict, resumed: Callable[[int], None] | None = None) -> None:
    """Writes render(chunk, number of its first line) for the lines, CHUNK_LINES at a time, to
    stdout (as each chunk is done) or to output. resumed: called with the number of lines a
    resumed output already holds (a progress bar's start).

    An output file is built in <output>.partial, beside <output>.partial.json saying which input
    and settings it belongs to and how many lines it holds; once complete it is renamed to output.
    Each chunk is on disk before the next starts. So a run stopped midway (Ctrl-C, a kill, a
    crash) started again with the same input and settings goes on from its last chunk; with other
    input or settings it starts afresh. An existing output is replaced only at the end. A second
    run writing the same output while the first is at work is refused (the partial is locked).

    Raises:
        NmtError: the output cannot be written (its message names it).
    """
    if output is None:
        for start in range(0, len(lines), CHUNK_LINES):
            sys.stdout.write(render(lines[start:start + CHUNK_LINES], start))
            sys.stdout.flush()
        return
    partial, state = output.with_name(f"{output.name}.partial"), output.with_name(f"{output.name}.partial.json")
    key = {"input": fingerprint(lines), "lines": len(lines), **settings}
    try:
        with _locked(partial, output) as file:
            done, size = _resumable(partial, state, key)
            if done:
                log.info("resuming: %d of %d lines already done in %s", done, len(lines), partial)
                if resumed:
                    resumed(done)
            file.truncate(size)
            file.seek(size)
            for start in range(done, len(lines), CHUNK_LINES):
                file.write(render(lines[start:start + CHUNK_LINES], start).encode("utf-8"))
                file.flush()
                os.fsync(file.fileno())
                done = min(start + CHUNK_LINES, len(lines))
                atomic.write_text(state, json.dumps({**key, "done": done, "bytes": file.tell()}, indent=2))
            # Renamed while still locked, so no other run can start on a partial that is complete.
            os.replace(partial, output)
            state.unlink()
    except OSError as error:
        raise NmtError(f"cannot write --output {output}: {error.strerror}; free space (or choose another --output) and run "
                       "the command again: it goes on from the lines already written") from None


@contextlib.contextmanager
def _locked(partial: Path, output: Path) -> Iterator[BinaryIO]:
    """partial, opened for writing without truncating it and locked (flock) for this process: a
    second run writing the same output is refused at once, and a killed run's lock goes with it.

    Raises:
        NmtError: another process is writing output.
    """
    while True:
        # Not open(partial, "wb"): that would truncate the file before knowing whether another run holds it.
        file = os.fdopen(os.open(partial, os.O_RDWR | os.O_CREAT, 0o666), "r+b")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise NmtError(f"another process is writing --output {output} (its {partial.name} is locked); "
                           "wait for it to finish, or choose another --output") from None
        try:
            # The run that held the lock may have renamed the file opened here to output meanwhile.
            if os.path.samestat(os.fstat(file.fileno()), os.stat(partial)):
                break
        except FileNotFoundError:
            pass
        file.close()
    try:
        yield file
    finally:
        file.close()  # closing releases the lock


def interactive(render: Callable[[Sequence[str], int], str]) -> int:
    """Translates sentences as they are typed at a terminal: a prompt on stderr, each line's
    render([line], its number) on stdout as soon as it is entered, until Ctrl-D or Ctrl-C. A line
    that cannot be translated gets its error on stderr and the next prompt. Returns the number of
    sentences translated."""
    sys.stderr.write("Type a sentence and press Enter to translate it; Ctrl-D ends.\n")
    number = 0
    while True:
        sys.stderr.write("> ")
        sys.stderr.flush()
        try:
            raw = sys.stdin.buffer.readline()
        except KeyboardInterrupt:
            raw = b""
        if not raw:
            sys.stderr.write("\n")
            return number
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            sys.stderr.write(f"error: that line is not valid UTF-8 (byte {error.start + 1}); type UTF-8 text\n")
            continue
        if not line.strip():
            continue
        try:
            sys.stdout.write(render([line], number))
        except NmtError as error:
            sys.stderr.write(f"error: {error}\n")
            continue
        sys.stdout.flush()
        number += 1


def _resumable(partial: Path, state: Path, key: dict) -> tuple[int, int]:
    """(input lines, bytes) of partial that a run of this key can keep: those its state records
    when it is this key's, else none."""
    try:
        saved = json.loads(state.read_text(encoding="utf-8"))
        if {name: saved.get(name) for name in key} == key and partial.stat().st_size >= saved["bytes"]:
            return int(saved["done"]), int(saved["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return 0, 0
