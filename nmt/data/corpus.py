"""The training corpora a config names, described without reading them (and without TensorFlow,
so that `nmt info` stays quick); nmt.data.sources reads and checks them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nmt.config import DataConfig


@dataclass(frozen=True)
class Corpus:
    """One training corpus, which `data` reads as its train split (load_split(data, "train"))."""

    data: DataConfig
    # Passes over it per epoch, and the tag before its sources (see CorpusConfig).
    weight: float = 1.0
    tag: str | None = None
    # The config key it comes from, for messages.
    key: str = "data"

    @property
    def name(self) -> str:
        """How a person names it: the dataset (a local one by its directory) and split."""
        dataset = self.data.manual_dir if self.data.dataset == "local" else self.data.dataset
        return f"{dataset} {self.data.train_split}"

    def describe(self, size: int | None = None) -> str:
        """One line for logs and `nmt info`: name, pairs (when given), passes an epoch, tag."""
        pairs = "" if size is None else f", {size:,} pairs"
        return f"{self.name}{pairs} x {self.weight:g}" + (f", tagged {self.tag}" if self.tag else "")


def corpora_of(config: DataConfig) -> list[Corpus]:
    """data.train_split (one pass an epoch, untagged), then each of data.extra_train, as config
    says, unchecked (training_corpora checks them)."""
    found = [Corpus(config)]
    for index, extra in enumerate(config.extra_train):
        # Its split stands for all three: a corpus of back-translations has no validation split.
        data = dataclasses.replace(config, dataset=extra.dataset, manual_dir=extra.manual_dir, train_split=extra.split,
                                   validation_split=extra.split, test_split=extra.split, extra_train=())
        found.append(Corpus(data, extra.weight, extra.tag, f"data.extra_train[{index}]"))
    return found
