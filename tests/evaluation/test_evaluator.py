"""A test set of your own (two files, line for line) scored as a split is, and its mistakes refused
with one-line errors."""

import pytest
import sacrebleu

from nmt.errors import NmtError
from nmt.evaluation.evaluator import Evaluator


class Reversing:
    """A translator that writes each sentence's words backwards."""

    def translate(self, sentences, on_batch=None, constraints=None):
        return [" ".join(reversed(sentence.split())) for sentence in sentences]


def test_files_are_scored_line_for_line_by_sacrebleu(tmp_path):
    sources = ["a b c d", "e f g", "", "h i j k l"]
    references = ["d c b a", "g e f", "", "l k j i h"]
    (tmp_path / "newstest.en").write_text("".join(f"{line}\n" for line in sources), encoding="utf-8")
    (tmp_path / "newstest.de").write_text("".join(f"{line}\r\n" for line in references), encoding="utf-8")
    evaluator = Evaluator.of_files(tmp_path / "newstest.en", tmp_path / "newstest.de")
    assert (evaluator.name, evaluator.title) == ("newstest.en", str(tmp_path / "newstest.en"))
    assert (evaluator.sources, evaluator.references) == (sources, references)
    evaluation = evaluator.run(Reversing())
    expected = sacrebleu.corpus_bleu(Reversing().translate(sources), [references])
    assert evaluation.split == "newstest.en" and evaluation.scores["bleu"] == pytest.approx(expected.score, abs=0.01)
    assert 0 < evaluation.scores["bleu"] < 100


@pytest.mark.parametrize("source,reference,message", [
    ("a\nb\n", "a\n", "--source {dir}/src has 2 lines but --reference {dir}/ref has 1; give one reference per source line"),
    ("", "", "--source {dir}/src is empty; give one sentence per line"),
    (b"caf\xe9\n", "x\n", "{dir}/src"),
    (None, "x\n", "cannot read --source {dir}/src"),
])
def test_files_that_cannot_be_a_test_set_are_refused(tmp_path, source, reference, message):
    if source is not None:
        (tmp_path / "src").write_bytes(source if isinstance(source, bytes) else source.encode())
    (tmp_path / "ref").write_text(reference)
    with pytest.raises(NmtError, match=message.format(dir=tmp_path).replace(".", r"\.")):
        Evaluator.of_files(tmp_path / "src", tmp_path / "ref")


def test_a_source_file_named_as_a_split_is_refused(tmp_path):
    """Its report would replace the split's in eval/test/."""
    (tmp_path / "test").write_text("a\n")
    (tmp_path / "ref").write_text("a\n")
    with pytest.raises(NmtError, match="is named as the test split, whose report its own would replace"):
        Evaluator.of_files(tmp_path / "test", tmp_path / "ref")
