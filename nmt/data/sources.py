"""Parallel text through TensorFlow Datasets: catalog datasets, local text files and our builders."""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import math
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import tensorflow as tf
import tensorflow_datasets as tfds

from nmt import atomic
from nmt.config import DataConfig, SplitName
from nmt.data import local_text, multi30k
from nmt.data.corpus import Corpus, corpora_of
from nmt.data.local_text import LocalText
from nmt.data.multi30k import Multi30k
from nmt.data.synthetic import SyntheticTranslation
from nmt.errors import DataError

OUR_BUILDERS = {"synthetic": SyntheticTranslation, "multi30k": Multi30k}
# Hosts that TFDS catalog downloads and our Multi30k builder fetch from.
_DOWNLOAD_HOSTS = {"multi30k": "raw.githubusercontent.com"}
_DEFAULT_DOWNLOAD_HOST = "storage.googleapis.com"
log = logging.getLogger("nmt")
# The parts a mixed split is read from at once (load_split): each is 1/64 of the split, and each
# stretch of the stream draws on all of them.
MIXED_PARTS = 64
# Bytes each of those parts' file readers buffers: TFDS's default buffers took 465 MiB more than
# reading the split in order (64 parts of a 1.5M-pair split), these 11 MiB, at the same speed.
MIXED_READ_BUFFER = 64 * 1024


@dataclass(frozen=True)
class ConfigKeys:
    """The config keys a corpus's settings come from, as its errors name them: data.* for data's
    own corpus; for a further one (prefix data.extra_train[i]) its dataset, manual_dir and split,
    the one split standing for all three, and data.* for the rest, which it shares."""

    prefix: str = "data"

    def __call__(self, field: str) -> str:
        own = {"dataset": "dataset", "manual_dir": "manual_dir", "train_split": "split",
               "validation_split": "split", "test_split": "split"}
        return f"{self.prefix}.{own[field]}" if self.prefix != "data" and field in own else f"data.{field}"


def training_corpora(config: DataConfig) -> list[Corpus]:
    """corpora_of(config), each further one's dataset checked here (so that its errors name its own
    config key)."""
    found = corpora_of(config)
    for corpus in found[1:]:
        prepared_builder(corpus.data, ConfigKeys(corpus.key))
    return found


def epoch_reads(corpora: list[Corpus]) -> list[float] | None:
    """The pairs an epoch reads of each training corpus (its size times its weight); None if a
    size is unknown."""
    sizes = [split_size(corpus.data, "train") for corpus in corpora]
    return None if None in sizes else [size * corpus.weight for size, corpus in zip(sizes, corpora)]


def epoch_pairs(config: DataConfig) -> int | None:
    """The pairs an epoch reads of all the training corpora, as a whole number; None if unknown."""
    reads = epoch_reads(training_corpora(config))
    return None if reads is None else round(sum(reads))


def tags(config: DataConfig) -> list[str]:
    """The distinct tags of data.extra_train's corpora, in their order."""
    return list(dict.fromkeys(extra.tag for extra in config.extra_train if extra.tag is not None))


def network_available(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to host can be opened. Offline, DNS fails at once, so this is fast;
    without it a TFDS download retries for minutes before it gives up."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def load_split(config: DataConfig, split: SplitName, mix_seed: int | None = None) -> tf.data.Dataset:
    """The (source, target) string pairs of one split, in the dataset's order; or with mix_seed,
    mixed: read from MIXED_PARTS equal, contiguous parts of the split at once, each next pair from
    one drawn at random (seeded), so that every stretch of the stream holds pairs from the whole of
    the files, where the dataset's order would give one region of them at a time (local text
    ordered by domain or source, see keeps_file_order). Every pair comes once, as in the
    dataset's order."""
    builder = prepared_builder(config)
    name = split_name(config, split)

    def read(part, **read_config) -> tf.data.Dataset:
        # Whether a split is cached in memory is the input pipeline's choice (pipeline.cache_in_memory,
        # tokenized); TFDS's own cache of a small split's raw examples would hold it a second time.
        return builder.as_dataset(split=part, shuffle_files=False, read_config=tfds.ReadConfig(try_autocache=False, **read_config))

    if mix_seed is None:
        dataset = read(name)
    else:
        parts = [read(part, override_buffer_size=MIXED_READ_BUFFER) for part in tfds.even_splits(name, n=MIXED_PARTS)]
        dataset = tf.data.Dataset.sample_from_datasets(parts, seed=mix_seed, stop_on_empty_dataset=False)
    source_lang, target_lang = config.source_lang, config.target_lang
    pairs = dataset.map(lambda example: (example[source_lang], example[target_lang]), num_parallel_calls=tf.data.AUTOTUNE)
    # tf.data's autotuner thread sleeps up to 60 s between optimisations, and destroying an
    # iterator waits for it to wake: every training epoch ended with a ~50 s stall (measured on
    # Multi30k). Our pipelines are cheap (tokenized once, cached), so autotuning gains nothing.
    # Options pass on to every dataset built from these pairs.
    options = tf.data.Options()
    options.autotune.enabled = False
    return pairs.with_options(options)


def keeps_file_order(config: DataConfig) -> bool:
    """Whether the dataset's pairs are in the order of the files they were prepared from (local
    text), rather than shuffled by TFDS as it prepared them (the catalog's datasets, ours)."""
    return prepared_builder(config).info.disable_shuffling


def read_pairs(config: DataConfig, split: SplitName, limit: int | None = None, spread: bool = False) -> tuple[list[str], list[str]]:
    """Sources and targets of one split as Python strings: all, or at most `limit` pairs, the
    first ones or, with spread, every k-th one, so that a sample covers the whole of a corpus
    ordered by domain, source or length."""
    pairs = load_split(config, split)
    if limit is not None:
        step = spread_step(config, split, limit) if spread else 1
        if step > 1:
            pairs = pairs.shard(step, 0)
        pairs = pairs.take(limit)
    sources, targets = [], []
    # In batches: one Python iteration per pair took 7.9 s for 30,000 pairs, 1.3 s batched.
    for source_batch, target_batch in pairs.batch(1024).as_numpy_iterator():
        sources += [text.decode("utf-8") for text in source_batch]
        targets += [text.decode("utf-8") for text in target_batch]
    return sources, targets


def spread_step(config: DataConfig, split: SplitName, limit: int) -> int:
    """k, where read_pairs(limit=limit, spread=True) takes every k-th pair: line i of its sample
    (from 0) is line i * k of the split."""
    size = split_size(config, split)
    return math.ceil(size / limit) if size is not None and size > limit else 1


def split_size(config: DataConfig, split: SplitName) -> int | None:
    """The number of pairs in a split, when TFDS lists it."""
    try:
        return prepared_builder(config).info.splits[split_name(config, split)].num_examples
    except (KeyError, ValueError):  # a catalog dataset TFDS serves unprepared lists no splits
        return None


def write_local(directory: Path, source_lang: str, target_lang: str, splits: dict[str, tuple[list[str], list[str]]]) -> None:
    """Writes splits ({split name: (sources, targets)}) as the `local` dataset reads them
    (<lang>.<split>.txt, one sentence per line) into directory, which must be absent or empty.
    The files appear all at once: they are written beside it and renamed into place."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise DataError(f"{directory} is not empty; choose a new directory for the cleaned corpus")
    temporary = directory.with_name(f".{directory.name}.tmp")
    try:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        for split, (source_texts, target_texts) in splits.items():
            for lang, texts in ((source_lang, source_texts), (target_lang, target_texts)):
                # A line break inside a sentence would shift every later line against its pair.
                lines = (" ".join(text.splitlines()) for text in texts)
                (temporary / f"{lang}.{split}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        atomic.replace_directory(temporary, directory)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise DataError(f"cannot write the corpus to {directory}: {error.strerror or error}") from None


def split_name(config: DataConfig, split: SplitName) -> str:
    return {"train": config.train_split, "validation": config.validation_split, "test": config.test_split}[split]


# The builders prepared, by config: keys name settings in errors only, and an error is not kept,
# so a further corpus checked under its own keys is not built again when read under data's.
_PREPARED: dict[DataConfig, tfds.core.DatasetBuilder] = {}


def prepared_builder(config: DataConfig, keys: ConfigKeys = ConfigKeys()) -> tfds.core.DatasetBuilder:
    """A TFDS builder whose data is ready to read, after checking languages and split names; its
    errors name config's settings by keys."""
    if config not in _PREPARED:
        builder = _local_builder(config, keys) if config.dataset == "local" else _our_or_catalog_builder(config, keys)
        _check_builder(builder, config, keys)
        _PREPARED[config] = builder
    return _PREPARED[config]


prepared_builder.cache_clear = _PREPARED.clear  # what functools.lru_cache offers: preparing again after files change


def _local_builder(config: DataConfig, keys: ConfigKeys) -> tfds.core.DatasetBuilder:
    if config.manual_dir is None:
        raise DataError(f"{keys('dataset')} 'local' needs {keys('manual_dir')}: a directory of <lang>.<split>.txt files")
    directory = Path(config.manual_dir)
    if not directory.is_dir():
        raise DataError(f"{keys('manual_dir')} {directory} is not a directory")
    def make() -> tfds.core.DatasetBuilder:
        return LocalText(data_dir=config.data_dir, config=local_text.local_config(directory))

    builder = make()
    if not builder.is_prepared():
        try:
            builder = _prepare(builder, make, f"the parallel text of {directory} (once, and again when a file changes)")
        except OSError as error:
            raise DataError(f"cannot prepare the parallel text of {directory}: {error}") from None
        for folder in local_text.other_preparations(Path(builder.data_dir)):
            size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
            log.warning("an earlier version of %s's files was prepared in %s (%.1f MB): delete that folder to free "
                        "its space once no command reads it", directory, folder, size / 1e6)
    return builder


def _our_or_catalog_builder(config: DataConfig, keys: ConfigKeys) -> tfds.core.DatasetBuilder:
    name = config.dataset
    base, _, variant = name.partition("/")
    builder_class = OUR_BUILDERS.get(base)

    def make() -> tfds.core.DatasetBuilder:
        if builder_class is None:
            return tfds.builder(name, data_dir=config.data_dir)
        return builder_class(data_dir=config.data_dir, **({"config": variant} if variant else {}))

    try:
        builder = make()
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"unknown dataset '{name}' ({keys('dataset')}): use synthetic, multi30k, local, or a TFDS catalog "
            "translation dataset such as ted_hrlr_translate/pt_to_en or wmt14_translate/de-en"
        ) from None
    except ValueError as error:
        raise DataError(f"{keys('dataset')} '{name}': {error}") from None
    if builder.is_prepared() or _readable(builder, config):
        return builder
    if name == "multi30k" and config.manual_dir is not None:
        missing = multi30k.missing_files(Path(config.manual_dir))
        if missing:
            raise DataError(
                f"{keys('manual_dir')} {config.manual_dir} lacks Multi30k files: {', '.join(missing[:4])}"
                + (" …" if len(missing) > 4 else "")
            )
    elif base != "synthetic":
        host = _DOWNLOAD_HOSTS.get(name, _DEFAULT_DOWNLOAD_HOST)
        if not network_available(host):
            raise DataError(_offline_message(config, host, keys))
    download_config = tfds.download.DownloadConfig(manual_dir=config.manual_dir)
    try:
        return _prepare(builder, make, f"dataset '{name}'", download_config)
    except (OSError, AssertionError) as error:
        raise DataError(f"cannot prepare dataset '{name}': {str(error).splitlines()[0]}") from None


def _prepare(builder: tfds.core.DatasetBuilder, make: Callable[[], tfds.core.DatasetBuilder], what: str,
             download_config: tfds.download.DownloadConfig | None = None) -> tfds.core.DatasetBuilder:
    """builder's data prepared, here unless another process does it first; make() creates builder
    anew, which reads data that another process prepared.

    Processes that start at once on the same data (the workers of a multi-worker training, a
    `nmt data check` beside a training) take turns under a lock beside the dataset's directory:
    without it, each prepared its own copy and all but the first failed to rename theirs into
    place. The preparation is announced in one line of ours: TFDS's own messages, printed to stdout
    (where reports and translations go), are dropped; its progress bars, on stderr, stay."""
    data_dir = Path(builder.data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(data_dir.parent / f".{data_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its process ends
        builder = make()  # anew: another process may have prepared the data while this one waited
        if not builder.is_prepared():
            log.info("preparing %s for TFDS in %s", what, builder.data_dir)
            with contextlib.redirect_stdout(io.StringIO()):
                builder.download_and_prepare(download_config=download_config)
    return builder


def _readable(builder: tfds.core.DatasetBuilder, config: DataConfig) -> bool:
    """Whether TFDS serves the data without preparing it here (as under tfds.testing.mock_data):
    asked before anything is downloaded, so that the network is needed only when TFDS needs it."""
    try:
        builder.as_dataset(split=config.train_split)
    except (AssertionError, ValueError, OSError, tf.errors.OpError):
        return False
    return True


def _offline_message(config: DataConfig, host: str, keys: ConfigKeys) -> str:
    where = config.data_dir or "~/tensorflow_datasets"
    if config.dataset == "multi30k":
        fix = f"set {keys('manual_dir')} to a directory with the Multi30k .gz files (e.g. ../shared/data/multi30k)"
    else:
        fix = (
            f"prepare it where there is internet (tfds build {config.dataset}) and copy the data to "
            f"{keys('data_dir')} (now {where}), or use your own files with {keys('dataset')}=local and "
            f"{keys('manual_dir')}=DIR (files <lang>.<split>.txt)"
        )
    return f"cannot download dataset '{config.dataset}': no network ({host} unreachable); {fix}"


def _check_builder(builder: tfds.core.DatasetBuilder, config: DataConfig, keys: ConfigKeys) -> None:
    languages = sorted(builder.info.features.keys())
    for key, lang in (("source_lang", config.source_lang), ("target_lang", config.target_lang)):
        if lang not in languages:
            raise DataError(
                f"{keys(key)} '{lang}' is not in dataset '{config.dataset}'; its languages are {', '.join(languages)}"
            )
    available = sorted(builder.info.splits.keys())
    if not available:
        # A catalog dataset TFDS serves unprepared lists no splits: reading a missing one fails later.
        return
    for split in ("train", "validation", "test"):
        name = split_name(config, split)
        # TFDS reads slices and unions of splits too: 'train[:10%]', 'train[:5000]', 'train+validation'.
        try:
            size = builder.info.splits[name].num_examples
        except ValueError as error:
            problem = "is not a split of" if str(error).startswith("Unknown split") else f"({str(error).rstrip('.')}) does not fit"
            raise DataError(
                f"{keys(f'{split}_split')} '{name}' {problem} dataset '{config.dataset}'; its splits are "
                f"{', '.join(f'{n} ({builder.info.splits[n].num_examples:,} pairs)' for n in available)}"
            ) from None
        if size == 0:
            raise DataError(f"{keys(f'{split}_split')} '{name}' of dataset '{config.dataset}' holds no pairs")
