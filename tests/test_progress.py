"""The progress bar without TensorFlow: shown on a terminal, silent elsewhere."""

import io
import sys

from nmt import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_shown_on_a_terminal_only(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress.bar(10, "Translating") as advance:
        assert advance is None
    assert sys.stderr.getvalue() == ""

    monkeypatch.setattr(sys, "stderr", Terminal())
    with progress.bar(10, "Translating") as advance:
        advance(4)
        advance(6)
    shown = sys.stderr.getvalue()
    assert "Translating" in shown and "100%" in shown
