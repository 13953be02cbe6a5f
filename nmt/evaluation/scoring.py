"""Corpus scores with sacreBLEU: detokenized, cased BLEU, chrF and TER with their signatures."""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF, TER


def constraints_held(constraints: list[list[str]], hypotheses: list[str]) -> int:
    """How many of each hypothesis's constraints (texts it had to contain) it holds as text."""
    return sum(text in hypothesis for texts, hypothesis in zip(constraints, hypotheses) for text in texts)


def score(hypotheses: list[str], references: list[str]) -> dict:
    """BLEU, chrF and TER (translation edit rate: edits per reference word, in %, lower is
    better) of hypotheses against one reference each, as sacreBLEU computes them."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    bleu, chrf, ter = BLEU(), CHRF(), TER()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    ter_score = ter.corpus_score(hypotheses, [references])
    return {
        "bleu": round(bleu_score.score, 2),
        "chrf": round(chrf_score.score, 2),
        "ter": round(ter_score.score, 2),
        "signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "ter_signature": str(ter.get_signature()),
        "bleu_details": str(bleu_score),
        "length_ratio": round(bleu_score.sys_len / max(bleu_score.ref_len, 1), 3),
    }
