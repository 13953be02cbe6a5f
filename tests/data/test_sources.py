import pytest

from nmt.config import DataConfig
from nmt.data import sources
from nmt.errors import DataError


def test_synthetic_splits(tfds_dir):
    config = DataConfig(data_dir=tfds_dir)
    source_texts, targets = sources.read_pairs(config, "test")
    assert len(source_texts) == len(targets) == 500
    assert all(text.endswith(".") for text in source_texts + targets)


def test_datasets_built_from_a_split_do_not_autotune(tfds_dir):
    # The autotuner's sleeping thread made each epoch's iterator take ~50 s to close.
    pairs = sources.load_split(DataConfig(data_dir=tfds_dir), "validation")
    batches = pairs.map(lambda source, target: source).shuffle(10).padded_batch(4).prefetch(2)
    assert batches.options().autotune.enabled is False


def test_local_files_through_translate_folder(tmp_path):
    for split, count in (("train", 5), ("validation", 2), ("test", 3)):
        (tmp_path / f"en.{split}.txt").write_text("".join(f"hello {i}\n" for i in range(count)))
        (tmp_path / f"fr.{split}.txt").write_text("".join(f"bonjour {i}\n" for i in range(count)))
    config = DataConfig(dataset="local", source_lang="en", target_lang="fr", manual_dir=str(tmp_path))
    source_texts, targets = sources.read_pairs(config, "test")
    assert sorted(zip(source_texts, targets)) == [(f"hello {i}", f"bonjour {i}") for i in range(3)]


def test_local_without_files(tmp_path):
    with pytest.raises(DataError, match=r"expected files named <lang>\.<split>\.txt"):
        sources.prepared_builder(DataConfig(dataset="local", manual_dir=str(tmp_path)))


def test_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'no_such_corpus'"):
        sources.prepared_builder(DataConfig(dataset="no_such_corpus", data_dir=str(tmp_path)))


def test_wrong_language(tfds_dir):
    with pytest.raises(DataError, match=r"data\.target_lang 'de' is not in dataset 'synthetic'; its languages are en, sy"):
        sources.prepared_builder(DataConfig(data_dir=tfds_dir, target_lang="de"))


def test_offline_catalog_download_fails_fast_with_a_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "network_available", lambda host, **_: False)
    config = DataConfig(dataset="ted_hrlr_translate/pt_to_en", source_lang="pt", target_lang="en", data_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"cannot download dataset 'ted_hrlr_translate/pt_to_en': no network.*data\.dataset=local"):
        sources.prepared_builder(config)


def test_multi30k_offline_without_manual_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "network_available", lambda host, **_: False)
    config = DataConfig(dataset="multi30k", source_lang="en", target_lang="de", data_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"set data\.manual_dir to a directory with the Multi30k"):
        sources.prepared_builder(config)


def test_multi30k_manual_dir_missing_files(tmp_path):
    config = DataConfig(dataset="multi30k", source_lang="en", target_lang="de", data_dir=str(tmp_path), manual_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"lacks Multi30k files: train\.de\.gz"):
        sources.prepared_builder(config)
