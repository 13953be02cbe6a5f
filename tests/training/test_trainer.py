"""Stopping and best-checkpoint rules of the training loop, and what it does with a non-finite
loss (its learning is tested end to end in tests/test_cli.py)."""

import json
import logging
import re
import shutil
from types import SimpleNamespace

import pytest
import tensorflow as tf

from nmt import checkpoints
from nmt import config as config_lib
from nmt.run_dir import RunDir
from nmt.training import sinks, trainer
from nmt.training.trainer import NonFiniteTraining, _Loop, _State


def loop(state, **train):
    config = config_lib.from_dict({"train": train})
    return _Loop(config, None, SimpleNamespace(optimizer=SimpleNamespace(iterations=tf.constant(5))), state, None, [])


def test_best_metric_direction():
    assert _State().improves(3.0, "bleu") and _State().improves(3.0, "loss")
    assert _State(best_score=20.0).improves(21.0, "bleu") and not _State(best_score=20.0).improves(20.0, "bleu")
    assert _State(best_score=2.0).improves(1.5, "loss") and not _State(best_score=2.0).improves(2.5, "loss")


def test_early_stopping_after_patience_validations_without_improvement():
    assert loop(_State(validations_without_improvement=1), early_stopping_patience=2)._stop_reason() is None
    assert loop(_State(validations_without_improvement=2), early_stopping_patience=2)._stop_reason() == "early_stopping"
    assert loop(_State(validations_without_improvement=50))._stop_reason() is None


def test_budgets_stop_training():
    assert loop(_State(), max_steps=5)._stop_reason() == "max_steps"
    assert loop(_State(train_seconds=61.0), max_minutes=1)._stop_reason() == "max_minutes"
    assert loop(_State(epoch=3), epochs=3)._stop_reason() == "epochs"


TINY = {
    # The first 5,000 pairs, and of those only sentences of up to 20 subwords: short epochs, and
    # little to read and tokenize for tests of a few steps.
    "data": {"max_length": 20, "train_split": "train[:5000]"},
    "tokenizer": {"vocab_size": 200},
    "model": {"num_encoder_layers": 1, "num_decoder_layers": 1, "hidden_dim": 32, "num_heads": 2,
              "intermediate_dim": 64, "dropout": 0.0},
    # float32, not the default auto, and no data check: these tests are about the loop (a 32-wide
    # model trains slower in bfloat16, casts outweighing its matmuls; the check reads 30,000 pairs).
    "train": {"precision": "float32", "data_check": False, "batch_tokens": 512, "shuffle_buffer": 1000, "eval_every_steps": 1, "validation_bleu": False, "best_metric": "loss",
              "tensorboard": False, "warmup_steps": 1},
}


def tiny(tfds_dir, **train):
    return config_lib.from_dict({**TINY, "data": {**TINY["data"], "data_dir": tfds_dir}, "train": {**TINY["train"], **train}})


@pytest.mark.parametrize("mode, stopped_after", [("stop", ""), ("skip", " (3 steps in a row)")])
def test_a_nonfinite_loss_stops_training_with_the_last_good_checkpoint_kept(tmp_path, tfds_dir, mode, stopped_after):
    """A learning rate of 1e30 sends the weights to ~1e30 in one step; the next loss overflows."""
    run = RunDir(tmp_path / "run")
    config = tiny(tfds_dir, learning_rate=1e30, max_steps=10, on_nonfinite=mode, nonfinite_skip_limit=3)
    with pytest.raises(NonFiniteTraining, match=rf"training stopped at step 2: (loss|gradient norm) (nan|inf){re.escape(stopped_after)}; "
                       rf"the run keeps its last checkpoint, .*ckpt-1\. Lower train.learning_rate"):
        trainer.train(config, run, None, [sinks.MetricsFile(run.metrics_file)])
    assert [path.name for path in checkpoints.all_checkpoints(run.last_checkpoints)] == ["ckpt-1"]
    assert [path.name for path in checkpoints.all_checkpoints(run.best_checkpoints)] == ["ckpt-1"]
    records = [json.loads(line) for line in run.metrics_file.read_text().splitlines()]
    assert [record["step"] for record in records] == [1]


def test_resuming_passes_over_a_damaged_newest_checkpoint(tmp_path, tfds_dir, caplog):
    caplog.set_level(logging.INFO, logger="nmt")
    run = RunDir(tmp_path / "run")
    trainer.train(tiny(tfds_dir, max_steps=2, learning_rate=1e-3), run)
    weights = run.last_checkpoints / "ckpt-2" / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:100])  # a write cut short
    summary = trainer.train(tiny(tfds_dir, max_steps=3, learning_rate=1e-3), run)
    assert f"checkpoint {run.last_checkpoints / 'ckpt-2'} is damaged (model.weights.h5 has 100 bytes" in caplog.text
    assert f"resuming from {run.last_checkpoints / 'ckpt-1'} (step 1" in caplog.text
    assert summary.steps == 3 and (run.last_checkpoints / "ckpt-3").is_dir()


class EpochEnds(sinks.Sink):
    def __init__(self):
        self.records = []

    def epoch_ended(self, record):
        self.records.append(record)


def test_float16_updates_dropped_by_loss_scaling_are_no_steps(tmp_path, tfds_dir, monkeypatch):
    """mixed_float16 runs on GPUs only, but its loss scaling is TensorFlow's on any device: here
    on the CPU, with a Turing GPU's answer for the precision and a scale (2**32) far above
    float16's range, so that the first ~16 updates overflow and are dropped while the scale halves.
    A dropped update is no step (the optimizer's iterations stay): it must not repeat the step's
    record, validation and checkpoint, and a resumed run must go on with the scale it reached."""
    import keras

    from nmt.training import precision

    class StartsTooHigh(keras.optimizers.LossScaleOptimizer):
        def __init__(self, inner_optimizer, **kwargs):
            super().__init__(inner_optimizer, initial_scale=2.0**32, **kwargs)

    monkeypatch.setattr(precision, "_gpu_compute_capability", lambda: (7, 5))
    monkeypatch.setattr(keras.optimizers, "LossScaleOptimizer", StartsTooHigh)

    def train(run, max_steps, sink_list=()):
        config = tiny(tfds_dir, precision="mixed_float16", max_steps=max_steps, eval_every_steps=10, learning_rate=3e-3)
        return trainer.train(config, run, None, [sinks.MetricsFile(run.metrics_file), *sink_list])

    def validations(run):
        return [(record["step"], record["validation_loss"]) for record in map(json.loads, run.metrics_file.read_text().splitlines())]

    def overflows(run, max_steps):
        ends = EpochEnds()
        train(run, max_steps, [ends])
        return sum(end.overflows for end in ends.records)

    run = RunDir(tmp_path / "run")
    assert overflows(run, 10) >= 8
    shutil.copytree(run.path, tmp_path / "moved")
    assert [step for step, _ in validations(run)] == [10]
    # Resumed with the scale it had reached, it hardly overflows any more (from 2**32 again, 8+ times).
    assert overflows(run, 20) <= 2
    losses = dict(validations(run))
    assert list(losses) == [10, 20] and losses[20] < losses[10] - 0.1  # it learns

    # The run moved to a CPU, where mixed_float16 falls back to float32: Adam's state and step go on.
    monkeypatch.setattr(precision, "_gpu_compute_capability", lambda: None)
    moved = RunDir(tmp_path / "moved")
    assert train(moved, 20).steps == 20
    # Resumed at step 10, it keeps the float16 run's validation there (from step 0 it would redo it).
    assert [step for step, _ in validations(moved)] == [10, 20]
    assert validations(moved)[0] == validations(run)[0]


@pytest.mark.parametrize("streamed", [False, True], ids=["cached", "streamed"])
def test_local_text_in_domains_trains_on_both_in_every_batch(tmp_path, monkeypatch, streamed):
    """A file of one domain's sentences, then another's (of the same words, so of one length and
    one bucket), eight times the shuffle buffer: read in the file's order, fewer than half the
    batches hold both domains (0.44 and 0.49 of them, measured), as a batch draws on the lines
    near those just read. Every epoch holds every pair once, in an order of its own, read again
    alike."""
    from nmt.data import pipeline, sources

    if streamed:
        monkeypatch.setattr(pipeline, "MEMORY_CACHE_PAIRS", 1000)
    first = [f"the cat {word} sees the dog" for word in ("runs", "sleeps", "eats", "sits")] * 500
    second = [f"the dog {word} sees the cat" for word in ("runs", "sleeps", "eats", "sits")] * 500
    sources.write_local(tmp_path / "corpus", "en", "fr", {
        "train": (first + second, first + second), "validation": (first[:8], first[:8]), "test": (first[:8], first[:8])})
    config = config_lib.from_dict({**TINY, "data": {"dataset": "local", "source_lang": "en", "target_lang": "fr",
                                                    "manual_dir": str(tmp_path / "corpus"), "data_dir": str(tmp_path / "tfds")},
                                   "train": {**TINY["train"], "shuffle_buffer": 500}})
    setup = trainer.prepare(config, RunDir(tmp_path / "run"))

    def epoch(number):
        batches = [[text.decode() for text in setup.tokenizers.source.detokenize(batch["source_ids"]).numpy()]
                   for batch in setup.train_batches(number)]
        both = sum(any(text.startswith("the cat") for text in batch) and any(text.startswith("the dog") for text in batch)
                   for batch in batches)
        return both / len(batches), sorted(text for batch in batches for text in batch), batches

    (mixed, pairs, order), (mixed_again, pairs_again, order_again) = epoch(1), epoch(2)
    assert mixed > 0.99 and mixed_again > 0.99, (mixed, mixed_again)
    assert pairs == pairs_again == sorted(first + second)
    assert order != order_again and epoch(1)[2] == order  # the same again: what resuming mid-epoch skips


@pytest.mark.parametrize("streamed", [False, True], ids=["cached", "streamed"])
def test_subword_sampling_segments_each_epoch_anew_and_the_same_epoch_alike(tmp_path, tfds_dir, monkeypatch, caplog,
                                                                            streamed):
    """With tokenizer.sample_alpha, each epoch's batches hold every pair once, its source with its
    own target, in segmentations of their own, not the best ones; an epoch read again (as
    resuming does) is the same."""
    from nmt.data import pipeline, sources

    if streamed:
        monkeypatch.setattr(pipeline, "MEMORY_CACHE_PAIRS", 100)
    config = config_lib.from_dict({**TINY, "data": {**TINY["data"], "data_dir": tfds_dir, "max_length": 250,
                                                    "train_split": "train[:300]"},
                                   "tokenizer": {**TINY["tokenizer"], "sample_alpha": 0.1}})
    caplog.set_level(logging.INFO, logger="nmt")
    setup = trainer.prepare(config, RunDir(tmp_path / "run"))
    assert "subword regularization: each epoch segments the training sentences anew (among their 64 best" in caplog.text
    corpus = sorted((source.numpy(), target.numpy()) for source, target in sources.load_split(config.data, "train"))

    def epoch(number):
        batches, pairs, segmented = [], [], {}
        for batch in setup.train_batches(number):
            batches.append(batch["target_out"].numpy().tobytes())
            source = setup.tokenizers.source.detokenize(batch["source_ids"]).numpy()
            target = setup.tokenizers.target.detokenize(batch["target_in"][:, 1:]).numpy()
            pairs += zip(source, target)
            segmented.update(zip(source, (tuple(token for token in row if token) for row in batch["source_ids"].numpy())))
        return batches, sorted(pairs), segmented

    (batches, pairs, segmented), (_, pairs_again, segmented_again) = epoch(1), epoch(2)
    assert pairs == pairs_again == corpus
    best = dict(zip(segmented, map(tuple, setup.tokenizers.source.tokenize(list(segmented)).to_list())))
    assert sum(segmented[text] != best[text] for text in best) > len(best) // 2
    assert sum(segmented[text] != segmented_again[text] for text in best) > len(best) // 2
    assert epoch(1)[0] == batches


@pytest.mark.parametrize("streamed", [False, True], ids=["cached", "streamed"])
def test_extra_corpora_come_by_their_weights_mixed_and_tagged(tmp_path, tfds_dir, monkeypatch, caplog, streamed):
    """data.extra_train: an epoch holds each pair of data.train_split once, each of a corpus of
    weight 2 twice, and about half of one of weight 0.5, another half each epoch (the same when
    read again), the corpora interleaved from the start; only the tagged corpus's sources begin
    with its tag, whose id no text encodes to."""
    from nmt.data import pipeline, sources
    from nmt.data import tokenizer as tokenizer_lib

    if streamed:
        monkeypatch.setattr(pipeline, "MEMORY_CACHE_PAIRS", 100)
    twice = [f"the red cat sees {count} dogs" for count in range(200)]
    halved = [f"the blue bird eats {count} seeds" for count in range(400)]
    sources.write_local(tmp_path / "twice", "en", "sy", {"train": (twice, twice)})
    sources.write_local(tmp_path / "halved", "en", "sy", {"train": (halved, halved)})
    config = config_lib.from_dict({**TINY, "data": {**TINY["data"], "data_dir": tfds_dir, "train_split": "train[:300]", "extra_train": [
        {"dataset": "local", "manual_dir": str(tmp_path / "twice"), "weight": 2},
        {"dataset": "local", "manual_dir": str(tmp_path / "halved"), "weight": 0.5, "tag": "<bt>"}]}})
    caplog.set_level(logging.INFO, logger="nmt")
    setup = trainer.prepare(config, RunDir(tmp_path / "run"))
    assert "train[:300], 300 pairs x 1" in caplog.text and "200 pairs x 2" in caplog.text and "400 pairs x 0.5, tagged <bt>" in caplog.text
    tag = tokenizer_lib.piece_id(setup.tokenizers.source, "<bt>")
    assert tag is not None and tag not in setup.tokenizers.source.tokenize(["<bt> the blue bird", "<bt>"]).flat_values.numpy()
    primary = sorted(source.numpy().decode() for source, target in sources.load_split(config.data, "train")
                     if len(setup.tokenizers.source.tokenize(source)) <= 20 and len(setup.tokenizers.target.tokenize(target)) <= 20)

    def epoch(number):
        texts, tagged = [], []
        for batch in setup.train_batches(number):
            ids = batch["source_ids"].numpy()
            texts += [text.decode() for text in setup.tokenizers.source.detokenize(batch["source_ids"]).numpy()]
            tagged += list(ids[:, 0] == tag)
            assert not (ids[:, 1:] == tag).any()
        return texts, tagged

    (texts, tagged), (texts_again, _) = epoch(1), epoch(2)
    assert all(is_tagged == text.startswith("the blue bird") for text, is_tagged in zip(texts, tagged))
    assert sorted(text for text in texts if text not in twice and text not in halved) == primary
    assert all(texts.count(text) == 2 for text in twice)
    drawn, drawn_again = ({text for text in found if text in halved} for found in (texts, texts_again))
    assert all(texts.count(text) == 1 for text in drawn)
    assert 150 < len(drawn) < 250 and 150 < len(drawn_again) < 250 and drawn != drawn_again
    assert epoch(1)[0] == texts  # the same again: what resuming mid-epoch skips
    start = texts[: len(texts) // 4]
    assert sum(text in twice for text in start) > 50 and sum(text in halved for text in start) > 20, start


def test_a_tag_the_runs_tokenizer_lacks_is_an_error_naming_the_fix(tmp_path, tfds_dir):
    from nmt.data import sources

    sources.write_local(tmp_path / "extra", "en", "sy", {"train": (["the cat"] * 10, ["the cat"] * 10)})
    run = RunDir(tmp_path / "run")
    trainer.prepare(tiny(tfds_dir, max_steps=1), run)
    config = config_lib.from_dict({**TINY, "data": {**TINY["data"], "data_dir": tfds_dir, "extra_train": [
        {"dataset": "local", "manual_dir": str(tmp_path / "extra"), "tag": "<bt>"}]}})
    with pytest.raises(trainer.NmtError, match=r"data.extra_train\[0\].tag '<bt>' is not in the run's tokenizer, which was made "
                                               r"without it: train in a new run directory"):
        trainer.prepare(config, run)
