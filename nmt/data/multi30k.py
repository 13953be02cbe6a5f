"""TFDS builder for Multi30k task 1 (WMT16 multimodal translation): English, German, French.

Reads the upstream gzip files from a manual directory when one is given (offline machines), and
downloads them from the dataset's GitHub repository otherwise.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import tensorflow_datasets as tfds

LANGUAGES = ("de", "en", "fr")
URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{stem}.{lang}.gz"
# TFDS split name -> upstream file stem.
SPLIT_FILES = {"train": "train", "validation": "val", "test": "test_2016_flickr"}


def missing_files(directory: Path) -> list[str]:
    """Upstream files a manual directory lacks (all of them for a directory that does not exist)."""
    return [
        f"{stem}.{lang}.gz"
        for stem in SPLIT_FILES.values()
        for lang in LANGUAGES
        if not (directory / f"{stem}.{lang}.gz").is_file()
    ]


class Multi30k(tfds.core.GeneratorBasedBuilder):
    """Multi30k task 1: 29,000 / 1,014 / 1,000 image captions, each in English, German and French."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Task 1 raw text: train, val, test_2016_flickr."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional: a directory holding the upstream files "
        + ", ".join(f"{stem}.{{de,en,fr}}.gz" for stem in SPLIT_FILES.values())
        + f" from {URL.format(stem='<stem>', lang='<lang>')}."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.Translation(languages=LANGUAGES),
            homepage="https://github.com/multi30k/dataset",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = self._manual_dir_or_none(dl_manager)
        if manual_dir is not None:
            paths = {(stem, lang): manual_dir / f"{stem}.{lang}.gz" for stem in SPLIT_FILES.values() for lang in LANGUAGES}
        else:
            urls = {f"{stem}.{lang}": URL.format(stem=stem, lang=lang) for stem in SPLIT_FILES.values() for lang in LANGUAGES}
            downloaded = dl_manager.download(urls)
            paths = {(stem, lang): Path(downloaded[f"{stem}.{lang}"]) for stem in SPLIT_FILES.values() for lang in LANGUAGES}
        return {
            split: self._generate_examples({lang: paths[(stem, lang)] for lang in LANGUAGES})
            for split, stem in SPLIT_FILES.items()
        }

    @staticmethod
    def _manual_dir_or_none(dl_manager: tfds.download.DownloadManager) -> Path | None:
        # dl_manager.manual_dir raises when no directory was configured; downloading is the fallback.
        try:
            directory = Path(dl_manager.manual_dir)
        except AssertionError:
            return None
        return directory if not missing_files(directory) else None

    def _generate_examples(self, paths: dict[str, Path]):
        lines = {}
        for lang, path in paths.items():
            with gzip.open(path, "rt", encoding="utf-8") as file:
                lines[lang] = file.read().splitlines()
        counts = {lang: len(texts) for lang, texts in lines.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"Multi30k files differ in line count: {counts}")
        for index, texts in enumerate(zip(*(lines[lang] for lang in LANGUAGES))):
            yield index, dict(zip(LANGUAGES, (text.strip() for text in texts)))
