import gzip
from pathlib import Path

import pytest

from nmt.config import DataConfig
from nmt.data import sources
from nmt.data.local_text import local_config
from nmt.errors import DataError


def write(directory: Path, name: str, lines: list[str], ending: str = "\n") -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_bytes("".join(line + ending for line in lines).encode("utf-8"))


def corpus(tmp_path: Path, train: int = 10) -> DataConfig:
    directory = tmp_path / "corpus"
    for split, count in (("train", train), ("validation", 2), ("test", 3)):
        write(directory, f"en.{split}.txt", [f"hello {i}" for i in range(count)])
        write(directory, f"fr.{split}.txt", [f"bonjour {i}" for i in range(count)])
    return DataConfig(dataset="local", source_lang="en", target_lang="fr", manual_dir=str(directory),
                      data_dir=str(tmp_path / "tfds"))


def test_splits_keep_the_files_order_and_read_in_slices(tmp_path):
    config = corpus(tmp_path)
    assert sources.read_pairs(config, "train") == ([f"hello {i}" for i in range(10)], [f"bonjour {i}" for i in range(10)])
    assert sources.split_size(config, "train") == 10
    sliced = DataConfig(**{**config.__dict__, "train_split": "train[2:5]+test"})
    assert sources.read_pairs(sliced, "train")[0] == ["hello 2", "hello 3", "hello 4", "hello 0", "hello 1", "hello 2"]
    assert sources.split_size(sliced, "train") == 6
    with pytest.raises(DataError, match=r"data.train_split 'dev' is not a split of dataset 'local'; its splits are test \(3 pairs\)"):
        sources.prepared_builder(DataConfig(**{**config.__dict__, "train_split": "dev"}))


def test_a_line_ends_at_a_newline_only(tmp_path):
    directory = tmp_path / "corpus"
    # Windows line endings, other Unicode line breaks inside a sentence, no newline at the end.
    sources_text = ["one\u2028two", "three\x85four", "five\rsix", "seven"]
    (directory).mkdir()
    (directory / "en.train.txt").write_bytes("\r\n".join(sources_text).encode("utf-8"))
    write(directory, "fr.train.txt", ["un", "deux", "trois", "quatre"])
    for name in ("README.md", "en.train.txt.bak", "notes.txt", "en.train.tsv"):
        (directory / name).write_text("not parallel text")
    config = DataConfig(dataset="local", source_lang="en", target_lang="fr", manual_dir=str(directory), data_dir=str(tmp_path / "tfds"),
                        validation_split="train", test_split="train")
    assert sources.read_pairs(config, "train") == (sources_text, ["un", "deux", "trois", "quatre"])


def test_gzip_compressed_files_read_as_plain_ones(tmp_path):
    config = corpus(tmp_path)
    directory = Path(config.manual_dir)
    for path in directory.glob("*.train.txt"):
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as file:
            file.write(path.read_bytes())
        path.unlink()
    assert sources.read_pairs(config, "train") == ([f"hello {i}" for i in range(10)], [f"bonjour {i}" for i in range(10)])
    (directory / "en.train.txt").write_text("hello\n")
    with pytest.raises(DataError, match=r"holds both en\.train\.txt and en\.train\.txt\.gz; keep one of them"):
        local_config(directory)
    (directory / "en.train.txt").unlink()
    whole = (directory / "fr.train.txt.gz").read_bytes()
    (directory / "fr.train.txt.gz").write_bytes(whole[: len(whole) // 2])
    sources.prepared_builder.cache_clear()
    with pytest.raises(DataError, match=r"cannot read en\.train\.txt\.gz, fr\.train\.txt\.gz: Compressed file ended"):
        sources.prepared_builder(DataConfig(**{**config.__dict__, "data_dir": str(tmp_path / "other")}))


def test_files_of_unequal_length_are_refused_and_nothing_is_prepared(tmp_path):
    config = corpus(tmp_path)
    write(Path(config.manual_dir), "fr.validation.txt", ["bonjour 0"])
    with pytest.raises(DataError, match=r"fr\.validation\.txt ends after 1 line but en\.validation\.txt goes on"):
        sources.prepared_builder(config)
    assert not list((tmp_path / "tfds").glob("local_text/*/1.0.0"))
    write(Path(config.manual_dir), "fr.validation.txt", ["bonjour 0", "bonjour 1"])
    sources.prepared_builder.cache_clear()
    assert sources.read_pairs(config, "validation")[1] == ["bonjour 0", "bonjour 1"]


def test_text_that_is_not_utf8_is_refused_with_its_line(tmp_path):
    config = corpus(tmp_path)
    (Path(config.manual_dir) / "en.test.txt").write_bytes(b"fine\nbad \xff\nfine\n")
    with pytest.raises(DataError, match=r"en\.test\.txt line 2 is not valid UTF-8"):
        sources.prepared_builder(config)


def test_every_split_needs_every_language(tmp_path):
    config = corpus(tmp_path)
    (Path(config.manual_dir) / "fr.test.txt").unlink()
    with pytest.raises(DataError, match=r"corpus lacks fr\.test\.txt: every split needs a <lang>\.<split>\.txt file for each of its languages \(en, fr\)"):
        sources.prepared_builder(config)


def test_a_corpus_is_prepared_once_and_again_when_a_file_changes(tmp_path, caplog):
    config = corpus(tmp_path)
    directory = Path(config.manual_dir)
    first = local_config(directory).name
    assert local_config(directory).name == first
    sources.read_pairs(config, "train")
    prepared = list((tmp_path / "tfds").glob("local_text/*/1.0.0"))
    assert [path.parent.name for path in prepared] == [first]
    write(directory, "en.train.txt", [f"hello again {i}" for i in range(10)])
    assert local_config(directory).name != first
    sources.prepared_builder.cache_clear()
    assert sources.read_pairs(config, "train")[0][0] == "hello again 0"
    # The earlier preparation is named, for the user to delete; another corpus's is not.
    earlier = [record.getMessage() for record in caplog.records if "an earlier version" in record.getMessage()]
    assert len(earlier) == 1 and str(tmp_path / "tfds" / "local_text" / first) in earlier[0], earlier
    (tmp_path / "other").mkdir()
    other = DataConfig(**{**corpus(tmp_path / "other").__dict__, "data_dir": config.data_dir})
    sources.prepared_builder.cache_clear()
    caplog.clear()
    sources.read_pairs(other, "train")
    assert not [record for record in caplog.records if "an earlier version" in record.getMessage()]
