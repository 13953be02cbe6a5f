"""Ensembles: the searches on several models decoding as one, each step the mean of their
log-probabilities."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding.ensemble import Ensemble
from nmt.decoding.plan import length_penalty
from nmt.decoding.search import beam_search, greedy_search
from nmt.model.transformer import build_transformer
from tests.decoding.test_search import MAX_LENGTHS, SOURCE, TINY, VOCAB, tiny_model


def other_model():
    """Another shape (3 decoder layers, untied output), so that each member's cache is its own."""
    tf.keras.utils.set_random_seed(9)
    return build_transformer(dataclasses.replace(TINY, num_decoder_layers=3, tie_output=False, hidden_dim=24), VOCAB, VOCAB)


def mean_log_probs(models, source_ids, target_in):
    """Per position, the mean of the models' log-probabilities from the uncached decoder."""
    return np.mean([tf.nn.log_softmax(model.decode(target_in, model.encode(source_ids), source_ids)).numpy() for model in models], axis=0)


def test_cached_ensemble_steps_equal_the_mean_of_the_members_full_prefix_decoding():
    models = [tiny_model(seed=1), other_model()]
    ensemble = Ensemble(models)
    target_in = tf.constant([[BOS_ID, 5, 9, 3, 7, 7], [BOS_ID, 4, 4, 8, 6, 10], [BOS_ID, 11, 6, 5, 9, 4]])
    expected = mean_log_probs(models, SOURCE, target_in)
    cache, kernels = ensemble.start_decoding(SOURCE), ensemble.output_kernel()
    for index in range(target_in.shape[1]):
        log_probs, cache = ensemble.decode_step(target_in[:, index], tf.constant(index), cache, kernels)
        np.testing.assert_allclose(log_probs.numpy(), expected[:, index], atol=1e-4)


def test_an_ensemble_of_one_decodes_as_its_model():
    model = tiny_model(seed=2)
    for search in (greedy_search, lambda model, *args: beam_search(model, *args, beam_size=3)):
        alone, together = search(model, SOURCE, MAX_LENGTHS), search(Ensemble([model]), SOURCE, MAX_LENGTHS)
        np.testing.assert_array_equal(alone[0].numpy(), together[0].numpy())
        np.testing.assert_allclose(alone[1].numpy(), together[1].numpy(), rtol=1e-5)


def test_ensemble_beam_hypotheses_are_scored_by_the_renormalised_mean():
    """A cache whose members' rows were not reordered with their hypotheses would score wrong prefixes."""
    models = [tiny_model(seed=3), other_model()]
    ids, scores = beam_search(Ensemble(models), SOURCE, MAX_LENGTHS, beam_size=4, alpha=0.6)
    for row in range(3):
        for rank in range(4):
            tokens = [token for token in ids[row, rank].numpy() if token != PAD_ID]
            assert tokens[-1] == EOS_ID and len(tokens) - 1 <= MAX_LENGTHS[row]
            mean = mean_log_probs(models, SOURCE[row : row + 1], tf.constant([[BOS_ID, *tokens[:-1]]]))[0]
            mean[:, [PAD_ID, BOS_ID]] = -np.inf
            log_probs = mean - np.log(np.exp(mean).sum(-1, keepdims=True))
            expected = sum(log_probs[step, token] for step, token in enumerate(tokens)) / length_penalty(len(tokens), 0.6)
            np.testing.assert_allclose(scores[row, rank].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_an_ensemble_scores_given_translations_by_the_renormalised_mean(tmp_path):
    """Translator.score on an ensemble, teacher-forced in one pass, against the members run on the
    whole target: at each position the mean of their log-probabilities, PAD and BOS excluded and
    renormalised, as the ensemble's searches score their hypotheses."""
    from nmt.data import tokenizer
    from nmt.decoding.translator import Translator
    from tests.decoding.test_translator import tiny_setup

    config, tokenizers = tiny_setup(tmp_path, length_penalty=0.0)
    vocab = tokenizers.source_vocab_size
    members = []
    for seed in (1, 2):
        tf.keras.utils.set_random_seed(seed)
        members.append(build_transformer(config.model, vocab, vocab))
    # Seeding clears TensorFlow's resources, the tokenizer's among them: loaded after.
    tokenizers = tokenizer.load(tmp_path, joint=True)
    translator = Translator(config, Ensemble(members), tokenizers)
    sources, targets = ["the dog runs", "a big house"], ["a cat sees the tree", "small"]
    for source, target, scored in zip(sources, targets, translator.score(sources, targets)):
        source_ids = tokenizers.source.tokenize([source]).to_tensor()
        target_ids = tokenizers.target.tokenize([target]).to_list()[0] + [EOS_ID]
        mean = mean_log_probs(members, source_ids, tf.constant([[BOS_ID, *target_ids[:-1]]]))[0]
        mean[:, [PAD_ID, BOS_ID]] = -np.inf
        log_probs = mean - np.log(np.exp(mean).sum(-1, keepdims=True))
        expected = [log_probs[step, token] for step, token in enumerate(target_ids)]
        np.testing.assert_allclose(scored.log_probs, expected, atol=1e-4)
        assert scored.score == pytest.approx(sum(expected), abs=1e-4)
