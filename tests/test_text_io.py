import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmt.errors import NmtError
from nmt.text_io import check_text, decode_lines, read_lines


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


def test_a_gz_file_is_read_as_the_text_it_holds_and_a_broken_one_refused(tmp_path):
    import gzip

    lines = ["Ein Hund läuft.", "", "Zwei Männer\r"]
    (tmp_path / "test.de.gz").write_bytes(gzip.compress("\n".join(lines).encode() + b"\n"))
    assert read_lines(tmp_path / "test.de.gz", "--reference") == ["Ein Hund läuft.", "", "Zwei Männer"]
    (tmp_path / "cut.de.gz").write_bytes(gzip.compress(b"a\nb\n")[:-6])
    (tmp_path / "plain.gz").write_text("a\n")
    for name in ("cut.de.gz", "plain.gz"):
        with pytest.raises(NmtError, match=f"cannot read --reference {tmp_path / name}: not a whole gzip file"):
            read_lines(tmp_path / name, "--reference")


def test_chunks_are_written_to_stdout_in_order(capsys, monkeypatch):
    from nmt import text_io

    monkeypatch.setattr(text_io, "CHUNK_LINES", 2)
    text_io.write_in_chunks(["a", "b", "c"], lambda chunk, start: "".join(f"{start}:{line}\n" for line in chunk), None, {})
    assert capsys.readouterr().out == "0:a\n0:b\n2:c\n"


class Renderer:
    """Upper-cases lines, counting the chunks it renders; stops (as Ctrl-C would) at chunk `stop`."""

    def __init__(self, stop=None):
        self.chunks, self.stop = [], stop

    def __call__(self, chunk, start):
        if len(self.chunks) == self.stop:
            raise KeyboardInterrupt
        self.chunks.append(start)
        return "".join(line.upper() + "\n" for line in chunk)


LINES = [f"line {number}" for number in range(7)]
EXPECTED = "".join(line.upper() + "\n" for line in LINES)


def test_an_interrupted_output_goes_on_from_its_last_chunk(tmp_path, monkeypatch):
    from nmt import text_io

    monkeypatch.setattr(text_io, "CHUNK_LINES", 2)
    output = tmp_path / "out.txt"
    output.write_text("an older output\n")
    with pytest.raises(KeyboardInterrupt):
        text_io.write_in_chunks(LINES, Renderer(stop=2), output, {"beam": 4})
    assert output.read_text() == "an older output\n"  # replaced only once complete
    partial = tmp_path / "out.txt.partial"
    assert partial.read_text() == EXPECTED[: len("LINE 0\nLINE 1\nLINE 2\nLINE 3\n")]

    # Killed after a chunk reached the disk but before its record: that chunk is done again.
    with open(partial, "a") as file:
        file.write("LINE 4\nLI")
    again = Renderer()
    text_io.write_in_chunks(LINES, again, output, {"beam": 4})
    assert again.chunks == [4, 6]
    assert output.read_text() == EXPECTED
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("change", ["settings", "input"])
def test_a_partial_output_of_other_input_or_settings_is_started_afresh(tmp_path, monkeypatch, change):
    from nmt import text_io

    monkeypatch.setattr(text_io, "CHUNK_LINES", 2)
    output = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt):
        text_io.write_in_chunks(LINES, Renderer(stop=2), output, {"beam": 4})
    lines, settings = (LINES, {"beam": 5}) if change == "settings" else (LINES[:6] + ["other"], {"beam": 4})
    again = Renderer()
    text_io.write_in_chunks(lines, again, output, settings)
    assert again.chunks == [0, 2, 4, 6]
    assert output.read_text() == "".join(line.upper() + "\n" for line in lines)


def test_an_output_that_cannot_be_written_is_one_line_error(tmp_path, monkeypatch):
    from nmt import text_io

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(text_io.os, "fsync", disk_full)
    with pytest.raises(NmtError, match=r"cannot write --output .*out.txt: No space left on device; free space .* run the "
                                       r"command again: it goes on from the lines already written"):
        text_io.write_in_chunks(LINES, Renderer(), tmp_path / "out.txt", {})


def test_a_second_run_on_the_same_output_is_refused_and_changes_nothing(tmp_path, monkeypatch):
    from nmt import text_io

    monkeypatch.setattr(text_io, "CHUNK_LINES", 2)
    output, refused = tmp_path / "out.txt", []

    class Meddler(Renderer):
        """In its second chunk, another run starts on the same output (other lines and settings)."""

        def __call__(self, chunk, start):
            if start == 2:
                written = (tmp_path / "out.txt.partial").read_bytes()
                with pytest.raises(NmtError, match=r"another process is writing --output .*out.txt .*choose another --output"):
                    text_io.write_in_chunks(["other"], Renderer(), output, {"beam": 5})
                refused.append((tmp_path / "out.txt.partial").read_bytes() == written)
            return super().__call__(chunk, start)

    text_io.write_in_chunks(LINES, Meddler(), output, {"beam": 4})
    assert refused == [True]
    assert output.read_text() == EXPECTED


def test_a_partial_renamed_by_the_run_that_held_it_is_not_written_into(tmp_path, monkeypatch):
    """The lock is taken just after a run that held it renamed its finished partial to the output:
    the file opened is then that output, and the run must start a partial of its own."""
    from nmt import text_io

    output, partial = tmp_path / "out.txt", tmp_path / "out.txt.partial"
    partial.write_text("A FINISHED OUTPUT\n")
    flock, calls = text_io.fcntl.flock, []

    def finished_meanwhile(file, operation):
        if not calls:
            partial.rename(output)
        calls.append(operation)
        flock(file, operation)

    monkeypatch.setattr(text_io.fcntl, "flock", finished_meanwhile)
    text_io.write_in_chunks(LINES, Renderer(), output, {})
    assert output.read_text() == EXPECTED
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.txt"]


def test_interactive_translates_each_line_as_typed_until_end_of_input(monkeypatch, capsys):
    import io
    import types

    from nmt import text_io

    def render(chunk, start):
        assert len(chunk) == 1
        if chunk[0] == "too long":
            raise NmtError("that sentence cannot be translated")
        return f"{start}:{chunk[0].upper()}\n"

    typed = b"a dog\n\n   \n\xffcat\ntoo long\ntwo cats\r\n"
    monkeypatch.setattr(text_io.sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(typed)))
    assert text_io.interactive(render) == 2
    out, err = capsys.readouterr()
    assert out == "0:A DOG\n1:TWO CATS\n"  # empty lines skipped; errors numbered no line
    assert err.count("> ") == 7
    assert "error: that line is not valid UTF-8 (byte 1); type UTF-8 text" in err
    assert "error: that sentence cannot be translated" in err
