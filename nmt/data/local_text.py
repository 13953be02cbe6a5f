"""TFDS builder for the user's own parallel text (`data.dataset: local`): a directory of
<lang>.<split>.txt files (or <lang>.<split>.txt.gz), one sentence per line, a split's files
matching line for line.

TFDS's own tfds.TranslateFolder reads every file of every split into memory when it is created
and serves whole splits only. This builder reads the files a line at a time while TFDS prepares
them, as it prepares any dataset: into shards under data.data_dir that training streams, with
slices such as train[:5000] and every split's size known. Its config is named after the files'
names, sizes and modification times, so a corpus is prepared once, and again when a file changes.
The pairs keep the files' order, so that "line N" (`nmt data check`) is line N of the files and a
sample of every k-th pair spreads over them.

Lines end at "\\n" only (a "\\r\\n" ending loses its "\\r"), as `wc -l` counts them: a sentence that
holds another Unicode line separator (U+2028, U+0085, ...) stays one sentence, so pairs cannot shift.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import re
from pathlib import Path

import tensorflow_datasets as tfds

from nmt.errors import DataError

FILE_NAME = re.compile(r"^([\w-]+)\.([\w-]+)\.txt(\.gz)?$")  # split names as TFDS reads them


def parallel_files(directory: Path) -> dict[str, dict[str, Path]]:
    """{split: {lang: file}} of directory's <lang>.<split>.txt files, or gzip-compressed
    <lang>.<split>.txt.gz ones; other files are ignored.

    Raises:
        DataError: a file both plain and compressed.
    """
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(directory.iterdir()):
        match = FILE_NAME.match(path.name)
        if match and path.is_file():
            lang, split, _ = match.groups()
            if lang in found.get(split, {}):
                raise DataError(f"{directory} holds both {found[split][lang].name} and {path.name}; keep one of them")
            found.setdefault(split, {})[lang] = path
    return found


class LocalTextConfig(tfds.core.BuilderConfig):
    def __init__(self, *, files: dict[str, dict[str, Path]], **kwargs):
        super().__init__(version=tfds.core.Version("1.0.0"), **kwargs)
        self.files = files


def local_config(directory: Path) -> LocalTextConfig:
    """The builder config of directory's files as they are now.

    Raises:
        DataError: no <lang>.<split>.txt files, or a split without a file of a language that others have.
    """
    files = parallel_files(directory)
    if not files:
        raise DataError(
            f"no parallel text in {directory}: expected files named <lang>.<split>.txt, e.g. en.train.txt and "
            "de.train.txt with matching lines"
        )
    languages = sorted({lang for paths in files.values() for lang in paths})
    missing = [f"{lang}.{split}.txt" for split, paths in files.items() for lang in languages if lang not in paths]
    if missing:
        raise DataError(
            f"{directory} lacks {', '.join(missing)}: every split needs a <lang>.<split>.txt file for each of "
            f"its languages ({', '.join(languages)})"
        )
    stats = [(path.name, stat.st_size, stat.st_mtime_ns)
             for paths in files.values() for path in paths.values() for stat in [path.stat()]]
    name = hashlib.sha256(json.dumps(sorted(stats)).encode()).hexdigest()[:16]
    return LocalTextConfig(name=name, files=files, description=f"<lang>.<split>.txt files of {directory.resolve()}")


def other_preparations(version_dir: Path) -> list[Path]:
    """The folders beside version_dir's config (<data_dir>/local_text/<config>) that hold an
    earlier preparation of the same directory's files: what a changed corpus leaves behind."""
    config_dir = version_dir.parent

    def description(info: Path) -> str | None:
        try:
            return json.loads(info.read_text(encoding="utf-8")).get("configDescription")
        except (OSError, ValueError):
            return None

    mine = description(version_dir / "dataset_info.json")
    return sorted(info.parent.parent for info in config_dir.parent.glob("*/*/dataset_info.json")
                  if info.parent.parent != config_dir and mine is not None and description(info) == mine)


class LocalText(tfds.core.GeneratorBasedBuilder):
    """Parallel text from <lang>.<split>.txt files; create it with config=local_config(directory)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        languages = sorted(next(iter(self.builder_config.files.values())))
        return self.dataset_info_from_configs(
            description=__doc__, features=tfds.features.Translation(languages=languages), disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        return {split: self._generate_examples(paths) for split, paths in self.builder_config.files.items()}

    def _generate_examples(self, paths: dict[str, Path]):
        languages = sorted(paths)
        files = [(gzip.open if paths[lang].suffix == ".gz" else open)(paths[lang], "rb") for lang in languages]
        try:
            # Binary files split lines at b"\n" alone.
            for index, lines in enumerate(itertools.zip_longest(*files)):
                if None in lines:
                    raise DataError(_count_mismatch(paths, languages, lines, index))
                yield index, {lang: _text(line, paths[lang], index) for lang, line in zip(languages, lines)}
        except (OSError, EOFError) as error:  # a damaged or truncated .gz file
            raise DataError(f"cannot read {', '.join(path.name for path in paths.values())}: {error}") from None
        finally:
            for file in files:
                file.close()


def _text(line: bytes, path: Path, index: int) -> str:
    try:
        return line.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} line {index + 1} is not valid UTF-8; convert the file to UTF-8 (iconv -t UTF-8)") from None


def _count_mismatch(paths: dict[str, Path], languages: list[str], lines: tuple, index: int) -> str:
    ended = [paths[lang].name for lang, line in zip(languages, lines) if line is None]
    longer = [paths[lang].name for lang, line in zip(languages, lines) if line is not None]
    return (
        f"{', '.join(ended)} ends after {index:,} line{'' if index == 1 else 's'} but {', '.join(longer)} goes on: "
        "a split's files need one sentence per line, line for line"
    )
