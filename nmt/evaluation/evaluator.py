"""Translate a split and score it: the one path behind validation BLEU and `nmt evaluate`.

Both call `Evaluator.run` with a Translator, so they share the data reading, the decoding
settings (the Translator's config.decode), the detokenization and the sacreBLEU signature; a
validation BLEU logged during training is reproduced exactly by `nmt evaluate` on that checkpoint.
TensorFlow is imported only to read a split (through TFDS): a test set of files scored by a
CTranslate2Translator needs none.
"""

from __future__ import annotations

import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from nmt.config import DataConfig, SplitName
from nmt.errors import NmtError
from nmt.evaluation.scoring import score
from nmt.text_io import read_lines


@dataclass(frozen=True)
class Evaluation:
    # The test set's name (Evaluator.name).
    split: str
    sources: list[str]
    references: list[str]
    hypotheses: list[str]
    # score()'s keys: bleu, chrf, ter, signature, chrf_signature, ter_signature, bleu_details, length_ratio.
    scores: dict
    seconds: float

    @property
    def sentences_per_second(self) -> float:
        return len(self.sources) / max(self.seconds, 1e-9)


class Translates(Protocol):
    """What an Evaluator scores: a Translator or a CTranslate2Translator."""

    def translate(self, sentences: Sequence[str], on_batch: Callable[[int], None] | None = None,
                  constraints: Sequence[Sequence[str]] | None = None) -> list[str]: ...


class Evaluator:
    """Holds one test set's sentence pairs (read once) and scores translators on them.

    name: what reports call the test set, and the name of its report's directory (eval/<name>/);
    title: what it is, for people ("the test split of multi30k").
    """

    def __init__(self, name: str, title: str, sources: list[str], references: list[str]):
        self.name = name
        self.title = title
        self.sources = sources
        self.references = references

    @classmethod
    def of(cls, data: DataConfig, split: SplitName, files: tuple[Path, Path] | None) -> "Evaluator":
        """The split of the configured data, or the test set of files (sources, references)."""
        return cls.of_split(data, split) if files is None else cls.of_files(*files)

    @staticmethod
    def name_of(split: SplitName, files: tuple[Path, Path] | None) -> str:
        """The name Evaluator.of(data, split, files) will have, known before the test set is read
        (to check that its report's directory is writable first)."""
        return split if files is None else files[0].name

    @classmethod
    def of_split(cls, data: DataConfig, split: SplitName) -> "Evaluator":
        """A split of the configured data."""
        from nmt.data import sources  # TFDS imports TensorFlow, which a test set of files does without

        return cls(split, f"the {split} split of {data.dataset}", *sources.read_pairs(data, split))

    @classmethod
    def of_files(cls, source: Path, reference: Path) -> "Evaluator":
        """A test set of your own: a file of sources and one of references, line for line (e.g.
        WMT's newstest2014.en and newstest2014.de), named by the source file's name.

        Raises:
            NmtError: a file cannot be read or is not UTF-8 text, the two differ in lines, they
                are empty, or the source file is named as a split, whose report it would replace.
        """
        if source.name in typing.get_args(SplitName):
            raise NmtError(f"--source {source} is named as the {source.name} split, whose report its own would replace; "
                           f"give it another name (e.g. {source.name}.txt)")
        found, references = read_lines(source, "--source"), read_lines(reference, "--reference")
        if len(found) != len(references):
            raise NmtError(f"--source {source} has {len(found)} lines but --reference {reference} has {len(references)}; "
                           "give one reference per source line")
        if not found:
            raise NmtError(f"--source {source} is empty; give one sentence per line")
        return cls(source.name, str(source), found, references)

    def run(self, translator: Translates, on_batch: Callable[[int], None] | None = None,
            constraints: Sequence[Sequence[str]] | None = None) -> Evaluation:
        """constraints: the texts each translation must contain, a list per sentence (Translator.translate)."""
        started = time.monotonic()
        hypotheses = translator.translate(self.sources, on_batch=on_batch, constraints=constraints)
        seconds = time.monotonic() - started
        return Evaluation(
            self.name, self.sources, self.references, hypotheses, score(hypotheses, self.references), seconds
        )
