import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmt.errors import NmtError
from nmt.text_io import check_text, decode_lines


def test_lines_keep_empty_lines():
    assert decode_lines("a\n\nb é\n".encode(), "x") == ["a", "", "b é"]


def test_non_utf8_names_the_line():
    with pytest.raises(NmtError, match=r"in\.txt line 2 is not valid UTF-8"):
        decode_lines(b"fine\nbad \xff byte\n", "in.txt")


# Any Unicode but the line breaks bytes.splitlines knows (\n, \r): controls, RTL marks,
# zero-width joiners, emoji, every script.
LINE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, max_size=12), st.lists(st.sampled_from(["\n", "\r\n"]), min_size=12, max_size=12))
def test_every_line_comes_back_whatever_its_characters_and_ending(lines, endings):
    data = "".join(line + ending for line, ending in zip(lines, endings)).encode("utf-8")
    assert decode_lines(data, "x") == lines


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_lines_or_one_error_naming_the_first_bad_line(data):
    try:
        lines = decode_lines(data, "in.txt")
    except NmtError as error:
        bad = next(number for number, raw in enumerate(data.splitlines(), start=1) if not _is_utf8(raw))
        assert str(error).startswith(f"in.txt line {bad} is not valid UTF-8")
    else:
        assert len(lines) == len(data.splitlines())


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_a_lone_surrogate_is_named():
    check_text(["fine", "also fine ✓"])
    with pytest.raises(NmtError, match=r"sentence 2 is not valid UTF-8 text \(character 5 is a lone surrogate, '\\udcff'\)"):
        check_text(["fine", "bad \udcff"])
