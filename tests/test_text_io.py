import pytest

from nmt.errors import NmtError
from nmt.text_io import decode_lines


def test_lines_keep_empty_lines():
    assert decode_lines("a\n\nb é\n".encode(), "x") == ["a", "", "b é"]


def test_non_utf8_names_the_line():
    with pytest.raises(NmtError, match=r"in\.txt line 2 is not valid UTF-8"):
        decode_lines(b"fine\nbad \xff byte\n", "in.txt")
