import pytest

from nmt.evaluation.scoring import score

REFERENCES = [
    "Ein Mann fährt mit dem Fahrrad.",
    "Zwei Hunde spielen im Schnee.",
    "Eine Frau liest ein Buch im Park.",
    "Kinder laufen am Strand entlang.",
]


def test_perfect_translations_score_100_with_a_detokenized_cased_signature():
    scores = score(list(REFERENCES), REFERENCES)
    assert scores["bleu"] == 100.0
    assert scores["chrf"] == 100.0
    assert scores["ter"] == 0.0 and scores["ter_signature"].startswith("nrefs:1|case:lc|tok:tercom")
    assert scores["length_ratio"] == 1.0
    assert "case:mixed" in scores["signature"] and "tok:13a" in scores["signature"]


def test_case_counts_and_short_output_is_penalised():
    lowercased = score([line.lower() for line in REFERENCES], REFERENCES)
    truncated = score([" ".join(line.split()[:2]) for line in REFERENCES], REFERENCES)
    assert lowercased["bleu"] < 100.0
    assert truncated["length_ratio"] < 0.5
    assert truncated["bleu"] < lowercased["bleu"]


def test_hypothesis_count_must_match():
    with pytest.raises(ValueError, match="3 hypotheses for 4 references"):
        score(REFERENCES[:3], REFERENCES)


def test_ter_counts_edits_per_reference_word():
    """One substituted word in a 6-word reference (TER does not split off the full stop): 1/6."""
    scores = score(["Ein Mann fährt mit dem Auto."], ["Ein Mann fährt mit dem Fahrrad."])
    assert scores["ter"] == pytest.approx(100 / 6, abs=0.01)
