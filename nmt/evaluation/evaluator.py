"""Translate a split and score it: the one path behind validation BLEU and `nmt evaluate`.

Both call `SplitEvaluator.run` with a Translator, so they share the data reading, the decoding
settings (the Translator's config.decode), the detokenization and the sacreBLEU signature; a
validation BLEU logged during training is reproduced exactly by `nmt evaluate` on that checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from nmt.config import DataConfig, SplitName
from nmt.data import sources
from nmt.decoding.translator import Translator
from nmt.evaluation.scoring import score


@dataclass(frozen=True)
class Evaluation:
    split: SplitName
    sources: list[str]
    references: list[str]
    hypotheses: list[str]
    # score()'s keys: bleu, chrf, ter, signature, chrf_signature, ter_signature, bleu_details, length_ratio.
    scores: dict
    seconds: float

    @property
    def sentences_per_second(self) -> float:
        return len(self.sources) / max(self.seconds, 1e-9)


class SplitEvaluator:
    """Holds one split's sentence pairs (read once) and scores translators on them."""

    def __init__(self, data: DataConfig, split: SplitName):
        self.split = split
        self.sources, self.references = sources.read_pairs(data, split)

    def run(self, translator: Translator, on_batch: Callable[[int], None] | None = None,
            constraints: Sequence[Sequence[str]] | None = None) -> Evaluation:
        """constraints: the texts each translation must contain, a list per sentence (Translator.translate)."""
        started = time.monotonic()
        hypotheses = translator.translate(self.sources, on_batch=on_batch, constraints=constraints)
        seconds = time.monotonic() - started
        return Evaluation(
            self.split, self.sources, self.references, hypotheses, score(hypotheses, self.references), seconds
        )
