"""Starting a run from another: weights, vocabulary growth, optimizer state, and refusals. Whether
fine-tuning helps (BLEU on a new domain, words of new characters) is tested end to end in
tests/test_cli.py."""

import dataclasses
import logging

import numpy as np
import pytest

from nmt import checkpoints
from nmt import config as config_lib
from nmt.data import tokenizer
from nmt.errors import RunDirError
from nmt.model.transformer import build_transformer
from nmt.run_dir import RunDir
from nmt.training import finetune, trainer
from tests.training.test_trainer import tiny


def test_grow_pads_new_rows_around_the_old_mean_or_with_zeros():
    value = np.arange(6, dtype=np.float32).reshape(3, 2)
    initial = np.full((5, 2), 0.5, np.float32)
    grown = finetune.grow(value, initial, "mean")
    np.testing.assert_array_equal(grown[:3], value)
    np.testing.assert_array_equal(grown[3:], [[2.5, 3.5]] * 2)  # the old rows' mean + the fresh rows
    np.testing.assert_array_equal(finetune.grow(value, np.ones((3, 4), np.float32), "zeros")[:, 2:], np.zeros((3, 2)))
    assert finetune.grow(value, np.ones((3, 2)), "mean") is value
    with pytest.raises(RunDirError, match=r"shape \(3, 2\) does not fit this model's \(2, 2\)"):
        finetune.grow(value, np.ones((2, 2)), "mean")


@pytest.fixture(scope="module")
def base(tmp_path_factory, tfds_dir):
    run = RunDir(tmp_path_factory.mktemp("base") / "run")
    config = tiny(tfds_dir, max_steps=2, learning_rate=1e-3)
    run.path.mkdir()
    run.save_config(config)
    trainer.train(config, run)
    return run


def fine_tuning(tfds_dir, base, update_vocab=False, **train):
    config = tiny(tfds_dir, init_from=str(base.path), **train)
    data = dataclasses.replace(config.data, dataset="synthetic/shifted")
    return dataclasses.replace(config, data=data, tokenizer=dataclasses.replace(config.tokenizer, update_vocab=update_vocab))


def base_model(base):
    tokenizers = tokenizer.load(base.tokenizer_dir, True)
    model = build_transformer(tiny("").model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    checkpoints.restore(base.checkpoint_path("best"), model)
    return model


def started(config, run):
    setup = trainer.prepare(config, run)
    finetune.Base.open(config).initialize(setup.model, setup.optimizer, config.train.resume_optimizer)
    return setup


def test_a_run_starts_from_the_base_weights_and_tokenizer(tmp_path, tfds_dir, base):
    setup = started(fine_tuning(tfds_dir, base), RunDir(tmp_path / "run"))
    assert (tmp_path / "run" / "tokenizer" / "joint.model").read_bytes() == (base.tokenizer_dir / "joint.model").read_bytes()
    for ours, theirs in zip(setup.model.weights, base_model(base).weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert int(setup.optimizer.iterations.numpy()) == 0


def test_a_vocabulary_update_grows_the_embeddings_keeping_the_old_rows(tmp_path, tfds_dir, base):
    setup = started(fine_tuning(tfds_dir, base, update_vocab=True, resume_optimizer=True), RunDir(tmp_path / "run"))
    old = base_model(base)
    embedding, old_embedding = setup.model.source_embedding.token_embedding.embeddings.numpy(), old.source_embedding.token_embedding.embeddings.numpy()
    rows = old_embedding.shape[0]
    assert embedding.shape[0] > rows and setup.tokenizers.source_vocab_size == embedding.shape[0]
    np.testing.assert_array_equal(embedding[:rows], old_embedding)
    # New rows: centred on the old rows' mean, distinct from one another.
    new_rows = embedding[rows:]
    assert np.abs(new_rows.mean(axis=0) - old_embedding.mean(axis=0)).max() < 3 * new_rows.std(axis=0).max() / np.sqrt(len(new_rows))
    assert len(np.unique(new_rows.round(6), axis=0)) == len(new_rows)
    assert tokenizer.UNK_ID not in setup.tokenizers.source.tokenize(["Ζωή saw Øyvind."]).to_list()[0]
    # The optimizer goes on from the base's step, its moments of the new rows at zero.
    assert int(setup.optimizer.iterations.numpy()) == 2
    moments = [variable.numpy() for variable in setup.optimizer.variables if variable.shape == embedding.shape]
    assert moments and all(not moment[rows:].any() and moment[:rows].any() for moment in moments)


def test_a_fine_tuned_run_resumes_from_its_own_checkpoints(tmp_path, tfds_dir, base, caplog):
    caplog.set_level(logging.INFO, logger="nmt")
    run = RunDir(tmp_path / "run")
    trainer.train(fine_tuning(tfds_dir, base, max_steps=1), run)
    assert f"starting from {base.checkpoint_path('best')}" in caplog.text
    caplog.clear()
    trainer.train(fine_tuning(tfds_dir, base, max_steps=2), run)
    assert "resuming from" in caplog.text and "starting from" not in caplog.text


def test_a_base_that_is_not_a_run_or_does_not_fit_is_refused(tmp_path, tfds_dir, base):
    def refused(config, message):
        with pytest.raises(RunDirError, match=message):
            finetune.Base.open(config)

    refused(tiny(tfds_dir, init_from=str(tmp_path / "nowhere")), r"init_from: .*nowhere does not exist; name a training run")
    refused(tiny(tfds_dir, init_from=str(tmp_path)), r"is not a training run \(no config.yaml\)")
    bigger = tiny(tfds_dir, init_from=str(base.path))
    bigger = dataclasses.replace(bigger, model=dataclasses.replace(bigger.model, hidden_dim=64, num_decoder_layers=2))
    refused(bigger, r"it was trained with model.num_decoder_layers=1, model.hidden_dim=32; this config says 2, 64. "
                    r"Set them as in .*config.yaml")
    best = base.checkpoint_path("best")
    refused(tiny(tfds_dir, init_from=str(best), resume_optimizer=True), "holds no optimizer state")
    last = checkpoints.latest(base.last_checkpoints)
    assert finetune.Base.open(tiny(tfds_dir, init_from=str(last), resume_optimizer=True)).checkpoint == last


def test_a_vocabulary_update_adds_the_tags_of_further_training_corpora(tmp_path, tfds_dir, base):
    from nmt.data import sources

    sources.write_local(tmp_path / "bt", "en", "sy", {"train": (["the cat sees the dog"] * 20, ["the cat sees the dog"] * 20)})
    config = tiny(tfds_dir, init_from=str(base.path))  # the base's own data: only the tag is new
    config = dataclasses.replace(config, tokenizer=dataclasses.replace(config.tokenizer, update_vocab=True),
                                 data=dataclasses.replace(config.data, extra_train=(
        config_lib.CorpusConfig("local", str(tmp_path / "bt"), tag="<bt>"),)))
    setup = started(config, RunDir(tmp_path / "run"))
    tag = tokenizer.piece_id(setup.tokenizers.source, "<bt>")
    assert tag == setup.tokenizers.source_vocab_size - 1 == setup.model.source_embedding.token_embedding.embeddings.shape[0] - 1
    with pytest.raises(trainer.NmtError, match=r"'<bt>' is not in the run's tokenizer.*with tokenizer\.update_vocab=true, which adds it"):
        started(dataclasses.replace(config, tokenizer=dataclasses.replace(config.tokenizer, update_vocab=False)),
                RunDir(tmp_path / "other"))
