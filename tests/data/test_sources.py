import shutil
from pathlib import Path

import pytest

from nmt.config import CorpusConfig, DataConfig
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


def test_local_files(tmp_path):
    for split, count in (("train", 5), ("validation", 2), ("test", 3)):
        (tmp_path / f"en.{split}.txt").write_text("".join(f"hello {i}\n" for i in range(count)))
        (tmp_path / f"fr.{split}.txt").write_text("".join(f"bonjour {i}\n" for i in range(count)))
    config = DataConfig(dataset="local", source_lang="en", target_lang="fr", manual_dir=str(tmp_path), data_dir=str(tmp_path / "tfds"))
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


def test_splits_take_tfds_slices_and_unions(tfds_dir):
    config = DataConfig(data_dir=tfds_dir, train_split="train[:10%]", validation_split="validation[:7]",
                        test_split="test+validation")
    assert sources.split_size(config, "train") == 3000
    sources_, targets = sources.read_pairs(config, "validation")
    assert (sources_, targets) == tuple(text[:7] for text in sources.read_pairs(DataConfig(data_dir=tfds_dir), "validation"))
    assert len(sources.read_pairs(config, "test")[0]) == sources.split_size(config, "test") == 1000


@pytest.mark.parametrize("split, message", [
    ("trian[:5]", "data.train_split 'trian[:5]' is not a split of dataset 'synthetic'; its splits are test (500 pairs), "
                  "train (30,000 pairs), validation (500 pairs)"),
    ("train[:40000]", "data.train_split 'train[:40000]' (Requested slice [:40000] incompatible with 30000 examples) "
                      "does not fit dataset 'synthetic'"),
    ("train[5:5]", "data.train_split 'train[5:5]' of dataset 'synthetic' holds no pairs"),
])
def test_a_split_that_does_not_read_is_one_line_naming_the_splits(tfds_dir, split, message):
    with pytest.raises(DataError) as error:
        sources.prepared_builder(DataConfig(data_dir=tfds_dir, train_split=split))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


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


# Catalog datasets, offline: tfds.testing.mock_data stands in for the prepared data, under each
# dataset's real name, feature keys (languages) and split names. Its own examples are random
# letters; these are the synthetic corpus's pairs, so that a tiny model has something to learn.
CATALOG = [("ted_hrlr_translate/pt_to_en", "pt", "en"), ("wmt14_translate/de-en", "de", "en")]


def mocked_catalog(source_lang: str, target_lang: str):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from nmt.data.synthetic import generate_splits

    splits = generate_splits(sizes={"train": 3000, "validation": 60, "test": 60})

    def as_dataset(builder, split, **kwargs):
        sources_, targets = zip(*splits[str(split)])
        assert set(builder.info.features) == {source_lang, target_lang}
        return tf.data.Dataset.from_tensor_slices({source_lang: list(sources_), target_lang: list(targets)})

    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


@pytest.mark.parametrize("dataset, source_lang, target_lang", CATALOG)
def test_a_catalog_dataset_trains_end_to_end_without_the_network(dataset, source_lang, target_lang, tmp_path, monkeypatch):
    """`nmt train --set data.dataset=NAME` as a user runs it once the data is there: TFDS is asked
    before the network is, then the tokenizer, the data check, training, validation and the final
    evaluation all read the catalog dataset."""
    import json

    from typer.testing import CliRunner

    from nmt.cli import app

    monkeypatch.setattr(sources, "network_available", lambda host, **_: pytest.fail("the network was checked"))
    monkeypatch.chdir(tmp_path)
    settings = {
        "data.dataset": dataset, "data.source_lang": source_lang, "data.target_lang": target_lang, "data.max_length": 30,
        "tokenizer.vocab_size": 300, "model.num_encoder_layers": 1, "model.num_decoder_layers": 1, "model.hidden_dim": 32,
        "model.num_heads": 2, "model.intermediate_dim": 64, "train.batch_tokens": 2048, "train.max_steps": 40,
        "train.eval_every_steps": 20, "train.learning_rate": 0.005, "train.warmup_steps": 10, "train.validation_bleu": False,
        "train.best_metric": "loss", "train.tensorboard": False, "decode.beam_size": 1,
    }
    overrides = [argument for key, value in settings.items() for argument in ("--set", f"{key}={value}")]
    with mocked_catalog(source_lang, target_lang):
        result = CliRunner().invoke(app, ["train", "--config", "/dev/null", "--run-dir", "run", *overrides])
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in metrics] == [20, 40]
    assert metrics[1]["validation_loss"] < metrics[0]["validation_loss"] < 6.0
    report = json.loads((tmp_path / "run" / "eval" / "test" / "report.json").read_text())
    assert report["num_sentences"] == 60
    assert json.loads((tmp_path / "run" / "data_check.json").read_text())["splits"]["train"]["pairs"] == 3000


def test_a_spread_sample_covers_the_whole_split(tmp_path):
    """What SentencePiece trains on when tokenizer.max_sentences is below the corpus size: every
    k-th pair, not the first ones (a corpus is often ordered by domain)."""
    sources.write_local(tmp_path / "corpus", "en", "fr", {
        split: ([f"hello {i}" for i in range(10)], [f"bonjour {i}" for i in range(10)]) for split in ("train", "validation", "test")})
    config = DataConfig(dataset="local", source_lang="en", target_lang="fr", manual_dir=str(tmp_path / "corpus"), data_dir=str(tmp_path / "tfds"))
    assert sources.split_size(config, "train") == 10
    spread, _ = sources.read_pairs(config, "train", limit=3, spread=True)
    first, _ = sources.read_pairs(config, "train", limit=3)
    assert len(spread) == 3 and len(set(spread)) == 3 and max(int(text.split()[1]) for text in spread) >= 8
    assert len(first) == 3


def test_a_mixed_split_draws_on_the_whole_split_throughout_and_holds_every_pair_once(tmp_path, tfds_dir):
    """How training reads local text (kept in its files' order) larger than its shuffle buffer."""
    sources.write_local(tmp_path / "corpus", "en", "fr", {
        split: ([f"hello {i}" for i in range(6400)], [f"bonjour {i}" for i in range(6400)]) for split in ("train", "validation", "test")})
    config = DataConfig(dataset="local", source_lang="en", target_lang="fr", manual_dir=str(tmp_path / "corpus"),
                        data_dir=str(tmp_path / "tfds"), train_split="train[:6000]")
    assert sources.keeps_file_order(config) and not sources.keeps_file_order(DataConfig(data_dir=tfds_dir))

    def order(seed):
        return [int(source.split()[1]) for source, _ in sources.load_split(config, "train", seed).as_numpy_iterator()]

    mixed = order(1)
    assert order(None) == list(range(6000)) and sorted(mixed) == list(range(6000))
    assert mixed == order(1) and mixed != order(2)
    for stretch in range(10):  # each tenth of the stream holds pairs of every tenth of the split
        assert {number // 600 for number in mixed[stretch * 600:(stretch + 1) * 600]} == set(range(10))


def test_processes_preparing_the_same_data_take_turns(tmp_path, monkeypatch):
    """One waits for the other's preparation under the lock, then reads it instead of preparing a
    copy of its own (whose renaming into place failed)."""
    import fcntl
    import threading

    from nmt.data.local_text import LocalText

    sources.write_local(tmp_path / "corpus", "en", "fr", {
        split: ([f"hello {i}" for i in range(5)], [f"bonjour {i}" for i in range(5)]) for split in ("train", "validation", "test")})
    config = DataConfig(dataset="local", source_lang="en", target_lang="fr", manual_dir=str(tmp_path / "corpus"),
                        data_dir=str(tmp_path / "tfds"))
    generated = []
    original = LocalText._generate_examples
    monkeypatch.setattr(LocalText, "_generate_examples", lambda self, paths: (generated.append(paths), original(self, paths))[1])
    version_dir = Path(sources._local_builder(config, sources.ConfigKeys()).data_dir)  # prepared once, then moved aside
    shutil.move(version_dir, tmp_path / "prepared")
    generated.clear()
    with open(version_dir.parent / f".{version_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process is preparing the data
        waiting = {}
        thread = threading.Thread(target=lambda: waiting.update(builder=sources._local_builder(config, sources.ConfigKeys())))
        thread.start()
        thread.join(timeout=2)
        assert thread.is_alive()
        shutil.move(tmp_path / "prepared", version_dir)  # ... and has finished
    thread.join(timeout=60)
    assert waiting["builder"].info.splits["train"].num_examples == 5 and not generated


def test_extra_training_corpora_errors_name_their_own_config_key(tmp_path, tfds_dir):
    sources.write_local(tmp_path / "bt", "en", "sy", {"train": (["the cat"], ["the cat"])})

    def corpora(**extra):
        return sources.training_corpora(DataConfig(data_dir=tfds_dir, extra_train=(CorpusConfig(**extra),)))

    found = corpora(dataset="local", manual_dir=str(tmp_path / "bt"), weight=0.5, tag="<bt>")
    assert [(corpus.data.dataset, corpus.weight, corpus.tag, corpus.key) for corpus in found] == [
        ("synthetic", 1.0, None, "data"), ("local", 0.5, "<bt>", "data.extra_train[0]")]
    assert sources.read_pairs(found[1].data, "train") == (["the cat"], ["the cat"])
    assert sources.epoch_pairs(DataConfig(data_dir=tfds_dir, train_split="train[:100]", extra_train=(
        CorpusConfig("local", str(tmp_path / "bt"), weight=3),))) == 103
    with pytest.raises(DataError, match=r"^data\.extra_train\[0\]\.split 'dev' is not a split of dataset 'local'; its splits are train \(1 pairs\)"):
        corpora(dataset="local", manual_dir=str(tmp_path / "bt"), split="dev")
    with pytest.raises(DataError, match=r"^data\.extra_train\[0\]\.dataset 'local' needs data\.extra_train\[0\]\.manual_dir"):
        corpora(dataset="local")
    with pytest.raises(DataError, match=r"^unknown dataset 'nope' \(data\.extra_train\[0\]\.dataset\)"):
        corpora(dataset="nope")
    with pytest.raises(DataError, match=r"^data\.extra_train\[0\]\.manual_dir \S+ is not a directory"):
        corpora(dataset="local", manual_dir=str(tmp_path / "none"))
    with pytest.raises(DataError, match=r"^data\.extra_train\[0\]\.manual_dir \S+ lacks Multi30k files"):
        corpora(dataset="multi30k", manual_dir=str(tmp_path / "bt"))
    # The languages are data's own, which every corpus shares.
    with pytest.raises(DataError, match=r"^data\.target_lang 'de' is not in dataset 'local'"):
        sources.training_corpora(DataConfig(data_dir=tfds_dir, target_lang="de", extra_train=(
            CorpusConfig("local", str(tmp_path / "bt")),)))
