"""Reading sentences from files or stdin: UTF-8, one sentence per line, line counts preserved."""

from __future__ import annotations

from typing import Sequence

from nmt.errors import NmtError


def decode_lines(data: bytes, name: str) -> list[str]:
    """Splits UTF-8 bytes into lines (without line endings), naming the first line that is not UTF-8."""
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise NmtError(f"{name} line {number} is not valid UTF-8 (byte {error.start + 1}); convert the file to UTF-8") from None
    return lines


def check_text(sentences: Sequence[str]) -> None:
    """Refuses a sentence that cannot be encoded as UTF-8: a lone surrogate, which is what Python
    makes of a command-line argument that is not UTF-8."""
    for number, sentence in enumerate(sentences, start=1):
        try:
            sentence.encode("utf-8")
        except UnicodeEncodeError as error:
            raise NmtError(f"sentence {number} is not valid UTF-8 text (character {error.start + 1} is a lone "
                           f"surrogate, {sentence[error.start]!r}); pass UTF-8 text") from None
