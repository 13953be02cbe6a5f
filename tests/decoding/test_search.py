"""Cached incremental decoding against full-prefix decoding, and greedy/beam search invariants, on
tiny random models (sharpened so that they end some sentences early with EOS)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from nmt.config import ModelConfig
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding.plan import length_penalty
from nmt.decoding.search import DEAD, _by_banks, beam_search, greedy_search, sample
from nmt.model.transformer import Transformer, build_transformer

TINY = ModelConfig(num_encoder_layers=2, num_decoder_layers=2, hidden_dim=16, num_heads=2,
                   intermediate_dim=32, dropout=0.0, attention_dropout=0.0, max_length=40)
VOCAB = 12
SOURCE = tf.constant([[5, 6, 7, 8, 9, 4], [4, 10, 0, 0, 0, 0], [11, 11, 5, 0, 0, 0]])
MAX_LENGTHS = tf.constant([9, 4, 7])


def tiny_model(norm="pre", seed=0, tie_output=True):
    tf.keras.utils.set_random_seed(seed)
    model = build_transformer(dataclasses.replace(TINY, norm=norm, tie_output=tie_output), VOCAB, VOCAB)
    table = model.target_embedding.token_embedding.embeddings
    # Larger embeddings make the tied output layer's distributions peaked, like a trained model's.
    table.assign(table * 6.0)
    return model


def full_prefix_log_probs(model, source_ids, hypothesis):
    """Per-token log-probabilities of one hypothesis, from the uncached decoder on the whole prefix,
    with the searches' rules: PAD and BOS excluded; an EOS forced at the length limit counts at its
    own log-probability, as any other."""
    tokens = [token for token in hypothesis if token != PAD_ID]
    target_in = tf.constant([[BOS_ID, *tokens[:-1]]])
    logits = model.decode(target_in, model.encode(source_ids), source_ids)[0].numpy().astype(np.float64)
    logits[:, [PAD_ID, BOS_ID]] = -np.inf
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    return np.array([log_probs[step, token] for step, token in enumerate(tokens)])


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("tie_output", [True, False])
def test_cached_steps_equal_full_prefix_decoding(norm, tie_output):
    """With and without the output kernel that the searches compute once and pass to every step."""
    model = tiny_model(norm, tie_output=tie_output)
    target_in = tf.constant([[BOS_ID, 5, 9, 3, 7, 7], [BOS_ID, 4, 4, 8, 6, 10], [BOS_ID, 11, 6, 5, 9, 4]])
    expected = model.decode(target_in, model.encode(SOURCE), SOURCE).numpy()
    for output_kernel in (None, model.output_kernel()):
        cache = model.start_decoding(SOURCE)
        for index in range(target_in.shape[1]):
            logits, cache = model.decode_step(target_in[:, index], tf.constant(index), cache, output_kernel)
            np.testing.assert_allclose(logits.numpy(), expected[:, index], atol=1e-4)


@pytest.mark.parametrize("attention, num_kv_heads", [("multi_head", None), ("grouped_query", 1), ("additive", None)])
def test_hypotheses_sharing_their_sentences_memory_step_as_full_prefix_decoding(attention, num_kv_heads):
    """A beam's rows (sentence-major) attend to their sentence's one row of memory: each row's
    logits are those of its own prefix decoded whole against its sentence."""
    tf.keras.utils.set_random_seed(0)
    model = build_transformer(dataclasses.replace(TINY, attention=attention, num_kv_heads=num_kv_heads), VOCAB, VOCAB)
    hypotheses = 2
    target_in = tf.constant([[BOS_ID, 5, 9, 3], [BOS_ID, 7, 7, 4], [BOS_ID, 4, 4, 8], [BOS_ID, 6, 10, 10],
                             [BOS_ID, 11, 6, 5], [BOS_ID, 9, 4, 6]])
    sources = tf.repeat(SOURCE, hypotheses, axis=0)
    expected = model.decode(target_in, model.encode(sources), sources).numpy()
    cache = model.start_decoding(SOURCE)
    cache["layers"] = [{**layer, "self": tf.nest.map_structure(lambda tensor: tf.repeat(tensor, hypotheses, axis=0), layer["self"])}
                       for layer in cache["layers"]]
    for index in range(target_in.shape[1]):
        logits, cache = model.decode_step(target_in[:, index], tf.constant(index), cache, hypotheses=hypotheses)
        np.testing.assert_allclose(logits.numpy(), expected[:, index], atol=1e-4)
    assert cache["layers"][0]["memory"]["key"].shape[0] == SOURCE.shape[0]


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 0, 2]])
def test_cached_greedy_equals_uncached_greedy(order):
    """In every order of the batch, so that sentences leave the working batch from its start, middle
    and end (a finished sentence's rows are dropped, and the others' must follow them)."""
    model = tiny_model(seed=1)
    # A louder cross-attention makes every step depend on its own sentence's source, so that a
    # sentence decoded against another's encoder output (rows mixed up) scores differently.
    for layer in model.decoder_layers:
        layer.cross_attention.output_dense.kernel.assign(layer.cross_attention.output_dense.kernel * 30.0)
    source_ids, max_lengths = tf.gather(SOURCE, order), tf.gather(MAX_LENGTHS, order)
    ids, scores = greedy_search(model, source_ids, max_lengths)
    memory = model.encode(source_ids)
    for row in range(source_ids.shape[0]):
        source = source_ids[row : row + 1]
        prefix = [BOS_ID]
        while prefix[-1] != EOS_ID:
            logits = model.decode(tf.constant([prefix]), memory[row : row + 1], source)[0, -1].numpy()
            logits[[PAD_ID, BOS_ID]] = -np.inf
            prefix.append(EOS_ID if len(prefix) - 1 >= max_lengths[row] else int(np.argmax(logits)))
        produced = [token for token in ids[row, 0].numpy() if token != PAD_ID]
        assert produced == prefix[1:]
        # The score is sensitive to every step's source memory, even where the argmax is not (rows
        # mixed up moved one by 0.64; the tolerance leaves room for other CPUs' rounding).
        expected = full_prefix_log_probs(model, source, produced).sum()
        np.testing.assert_allclose(scores[row, 0].numpy(), expected, atol=1e-3)
    lengths = [len([t for t in ids[row, 0].numpy() if t != PAD_ID]) for row in range(3)]
    assert len(set(lengths)) == 3, "sentences should finish at different steps"


def test_beam_of_one_is_greedy():
    model = tiny_model(seed=3)
    greedy_ids, greedy_scores = greedy_search(model, SOURCE, MAX_LENGTHS, alpha=0.6)
    beam_ids, beam_scores = beam_search(model, SOURCE, MAX_LENGTHS, beam_size=1, alpha=0.6)
    steps = greedy_ids.shape[2]
    np.testing.assert_array_equal(beam_ids[:, :, :steps].numpy(), greedy_ids.numpy())
    assert np.all(beam_ids[:, :, steps:].numpy() == PAD_ID)
    np.testing.assert_allclose(beam_scores.numpy(), greedy_scores.numpy(), atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_hypotheses_are_well_formed_sorted_and_scored_exactly(alpha):
    model = tiny_model(seed=1)
    ids, scores = beam_search(model, SOURCE, MAX_LENGTHS, beam_size=4, alpha=alpha)
    ids, scores = ids.numpy(), scores.numpy()
    assert ids.shape[:2] == (3, 4)
    for row in range(3):
        assert np.all(np.diff(scores[row]) <= 1e-6), "hypotheses not sorted best first"
        seen = set()
        for rank in range(4):
            tokens = [token for token in ids[row, rank] if token != PAD_ID]
            assert tokens[-1] == EOS_ID and EOS_ID not in tokens[:-1] and BOS_ID not in tokens
            assert len(tokens) - 1 <= MAX_LENGTHS[row]
            assert tuple(tokens) not in seen, "duplicate hypothesis in the beam"
            seen.add(tuple(tokens))
            # The score must be the model's own probability of the hypothesis: a cache that is not
            # reordered with its beams would score (and extend) the wrong prefixes.
            log_prob = full_prefix_log_probs(model, SOURCE[row : row + 1], tokens).sum()
            expected = log_prob / length_penalty(len(tokens), alpha)
            np.testing.assert_allclose(scores[row, rank], expected, rtol=1e-4, atol=1e-4)



# Sentence 0 and 2 follow prefixes of unlikely tokens (forced, not chosen); sentence 1 has none.
PREFIX = tf.constant([[7, 7, 9], [PAD_ID, PAD_ID, PAD_ID], [5, PAD_ID, PAD_ID]])


def searches_following(model, prefix_ids, alpha=0.0):
    """Each search's (ids, scores) of SOURCE, following prefix_ids (None: no prefix)."""
    return {
        "greedy": greedy_search(model, SOURCE, MAX_LENGTHS, alpha, prefix_ids=prefix_ids),
        "beam": beam_search(model, SOURCE, MAX_LENGTHS, beam_size=3, alpha=alpha, prefix_ids=prefix_ids),
        "sampling": sample(model, SOURCE, MAX_LENGTHS, tf.constant(4), tf.constant((3, 0)), "top_k", 1.5, VOCAB, 1.0,
                           alpha, prefix_ids=prefix_ids),
    }


def test_outputs_begin_with_their_prefix_and_are_scored_whole():
    alpha = 1.0  # the length penalty divides the whole score, the prefix's tokens included
    model = tiny_model(seed=1)
    unforced = searches_following(model, None, alpha)
    for name, (ids, scores) in searches_following(model, PREFIX, alpha).items():
        ids, scores = ids.numpy(), scores.numpy()
        for row in range(3):
            prefix = [token for token in PREFIX[row].numpy() if token != PAD_ID]
            if prefix:
                assert prefix != list(unforced[name][0][row, 0].numpy()[: len(prefix)]), "the prefix would be chosen anyway"
            for rank in range(ids.shape[1]):
                tokens = [token for token in ids[row, rank] if token != PAD_ID]
                assert tokens[: len(prefix)] == prefix, f"{name}: {tokens} does not begin with {prefix}"
                assert tokens[-1] == EOS_ID and EOS_ID not in tokens[:-1] and BOS_ID not in tokens
                # The forced tokens count with their own log-probabilities.
                log_prob = full_prefix_log_probs(model, SOURCE[row : row + 1], tokens).sum()
                np.testing.assert_allclose(scores[row, rank], log_prob / length_penalty(len(tokens), alpha),
                                           rtol=1e-4, atol=1e-4, err_msg=name)
            if name == "beam":
                assert len({tuple(hypothesis) for hypothesis in ids[row]}) == 3, "duplicate hypotheses in the beam"


def test_a_sentence_without_prefix_is_searched_as_without_prefixes():
    model = tiny_model(seed=1)
    unforced = searches_following(model, None)
    forced = searches_following(model, PREFIX)
    for name in ("greedy", "beam"):  # samples follow the rows' positions in the working batch
        steps = unforced[name][0].shape[2]
        np.testing.assert_array_equal(forced[name][0][1, :, :steps].numpy(), unforced[name][0][1].numpy(), err_msg=name)
        np.testing.assert_allclose(forced[name][1][1].numpy(), unforced[name][1][1].numpy(), atol=1e-5, err_msg=name)


def test_greedy_search_following_its_own_output_ends_as_without_it():
    model = tiny_model(seed=2)
    ids, scores = greedy_search(model, SOURCE, MAX_LENGTHS, 0.6)
    own = tf.where(tf.equal(ids[:, 0, :2], EOS_ID), PAD_ID, ids[:, 0, :2])  # up to two tokens, EOS not forced
    followed_ids, followed_scores = greedy_search(model, SOURCE, MAX_LENGTHS, 0.6, prefix_ids=own)
    np.testing.assert_array_equal(followed_ids.numpy(), ids.numpy())
    np.testing.assert_allclose(followed_scores.numpy(), scores.numpy(), atol=1e-5)


# Sentence 0 must contain the two tokens 7 9 and the token 4, sentence 2 the token 10; sentence 1 is free.
CONSTRAINTS = tf.constant([[[7, 9], [4, PAD_ID]], [[PAD_ID, PAD_ID], [PAD_ID, PAD_ID]], [[10, PAD_ID], [PAD_ID, PAD_ID]]])
ROOM = MAX_LENGTHS + 3  # as the translator makes the limits hold the constraints


def contains(tokens, phrase):
    return any(list(tokens[start:start + len(phrase)]) == phrase for start in range(len(tokens) - len(phrase) + 1))


@pytest.mark.parametrize("alpha, beam_size", [(0.0, 4), (1.0, 2), (0.6, 1)])
def test_constrained_outputs_contain_every_constraint_and_are_scored_by_the_model(alpha, beam_size):
    model = tiny_model(seed=1)
    ids, scores = (tensor.numpy() for tensor in beam_search(model, SOURCE, ROOM, beam_size, alpha, constraint_ids=CONSTRAINTS))
    free_ids, free_scores = (tensor.numpy() for tensor in beam_search(model, SOURCE, ROOM, beam_size, alpha))
    for row in (0, 2):
        phrases = [[token for token in phrase if token != PAD_ID] for phrase in CONSTRAINTS[row].numpy().tolist()]
        phrases = [phrase for phrase in phrases if phrase]
        assert not all(contains(free_ids[row, 0], phrase) for phrase in phrases), "the constraints are met anyway"
        assert scores[row, 0] > DEAD, "no hypothesis met the constraints"
        for rank in np.flatnonzero(scores[row] > DEAD):
            tokens = [token for token in ids[row, rank] if token != PAD_ID]
            assert tokens[-1] == EOS_ID and EOS_ID not in tokens[:-1] and BOS_ID not in tokens
            assert len(tokens) - 1 <= ROOM[row]
            for phrase in phrases:
                assert contains(tokens, phrase), f"{tokens} lacks {phrase}"
            # The constraints' tokens count with the model's own log-probabilities, and the cache
            # follows hypotheses that the banks, not the scores, kept.
            log_prob = full_prefix_log_probs(model, SOURCE[row : row + 1], tokens).sum()
            np.testing.assert_allclose(scores[row, rank], log_prob / length_penalty(len(tokens), alpha),
                                       rtol=1e-4, atol=1e-4)
    # A sentence without constraints is searched as without them, beside constrained ones.
    np.testing.assert_array_equal(ids[1], free_ids[1])
    np.testing.assert_allclose(scores[1], free_scores[1], atol=1e-5)


@pytest.mark.parametrize("beam_size", [4, 1])
def test_a_constraint_is_not_followed_by_a_token_that_continues_its_word(beam_size):
    model = tiny_model(seed=1)
    continuations = tf.constant([token in (5, 6, 8, 9, 11) for token in range(VOCAB)])

    def continued(ids, scores):
        """Live hypotheses (row, rank) in which a constraint's last token is followed by a continuation."""
        found = []
        for row in (0, 2):
            ends = {phrase[-1] for phrase in ([t for t in p if t != PAD_ID] for p in CONSTRAINTS[row].numpy().tolist()) if phrase}
            for rank in np.flatnonzero(scores[row] > DEAD):
                tokens = ids[row, rank].tolist()
                if any(a in ends and continuations[b] for a, b in zip(tokens, tokens[1:])):
                    found.append((row, rank))
        return found

    free = [tensor.numpy() for tensor in beam_search(model, SOURCE, ROOM + 2, beam_size, constraint_ids=CONSTRAINTS)]
    assert continued(*free), "the test means something: some constraint goes on with a continuation without the rule"
    ids, scores = (tensor.numpy() for tensor in beam_search(model, SOURCE, ROOM + 2, beam_size, constraint_ids=CONSTRAINTS,
                                                            word_continuations=continuations))
    assert continued(ids, scores) == []
    for row in (0, 2):
        assert scores[row, 0] > DEAD
        for rank in np.flatnonzero(scores[row] > DEAD):
            tokens = [token for token in ids[row, rank] if token != PAD_ID]
            for phrase in ([t for t in p if t != PAD_ID] for p in CONSTRAINTS[row].numpy().tolist()):
                assert not phrase or contains(tokens, phrase)
            log_prob = full_prefix_log_probs(model, SOURCE[row : row + 1], tokens).sum()
            np.testing.assert_allclose(scores[row, rank], log_prob, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ids[1], free[0][1])  # the sentence without constraints: as before


def test_a_met_constraints_last_token_may_be_continued_where_it_comes_again():
    """The whole-word rule holds for the token that completes a constraint, not for a later
    repeat of it: "X Y X-Z" (Z continuing the word of the second X) meets the constraint X as a
    whole word."""
    x, y, z = 4, 5, 6
    probabilities = np.full((VOCAB, VOCAB), 1e-6)
    probabilities[BOS_ID, x] = 0.9
    probabilities[x, z], probabilities[x, y], probabilities[x, EOS_ID] = 0.6, 0.3, 0.01
    probabilities[y, x] = 0.9
    probabilities[z, EOS_ID] = 0.95
    decoder = ScriptedDecoder(np.log(probabilities / probabilities.sum(axis=1, keepdims=True)))
    continuations = tf.constant([token == z for token in range(VOCAB)])
    ids, scores = beam_search(decoder, tf.constant([[7, 8]]), tf.constant([8]), 4, constraint_ids=tf.constant([[[x]]]),
                              word_continuations=continuations)
    assert scores[0, 0] > DEAD
    assert [token for token in ids[0, 0].numpy() if token != PAD_ID] == [x, y, x, z, EOS_ID]


def test_a_sentence_whose_constraint_cannot_be_placed_has_dead_hypotheses_only():
    model = tiny_model(seed=1)
    # 5 5 5 holds the bigram 5 5 twice, which no_repeat_ngram_size=2 forbids.
    constraints = tf.constant([[[5, 5, 5]], [[PAD_ID] * 3], [[11, PAD_ID, PAD_ID]]])
    _, scores = beam_search(model, SOURCE, ROOM, 3, constraint_ids=constraints, no_repeat_ngram_size=2)
    assert np.all(scores[0].numpy() <= DEAD)
    assert np.all(scores[1:, 0].numpy() > DEAD)


def test_the_beam_takes_the_best_of_each_bank_in_turn_most_constraint_tokens_first():
    scores = tf.constant([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1e9]])
    banks = tf.constant([[0, 0, 0, 1, 1, 2, 3]])  # the last candidate is dead: never before a live one
    assert _by_banks(scores, banks, 6).numpy().tolist() == [[5, 3, 0, 4, 1, 2]]
    # A bank without candidates leaves its turns to the others.
    assert _by_banks(scores[:, :3], banks[:, :3] * 0 + [[0, 0, 2]], 3).numpy().tolist() == [[2, 0, 1]]

def repeats(tokens, n, start=0):
    """The n-grams of tokens that end at position start or later and occurred before."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return {gram for end, gram in enumerate(grams, start=n - 1) if end >= start and gram in grams[:end - n + 1]}


@pytest.mark.parametrize("n", [1, 3])  # no earlier tokens to match, and two
def test_no_output_repeats_an_ngram_and_scores_stay_the_models(n):
    """The tiny model repeats itself (checked): with no_repeat_ngram_size none of its outputs does,
    each search's scores are still the model's log-probabilities of what it chose, and a prefix
    that repeats itself is followed all the same."""
    model = tiny_model(seed=1)
    max_lengths = tf.constant([20, 20, 20])
    free = beam_search(model, SOURCE, max_lengths, beam_size=3)[0].numpy()
    assert any(repeats([t for t in hypothesis if t not in (PAD_ID, EOS_ID)], n) for hypothesis in free.reshape(-1, free.shape[2]))
    prefix = tf.constant([[7, 7, 7], [PAD_ID] * 3, [PAD_ID] * 3])
    found = {
        "greedy": greedy_search(model, SOURCE, max_lengths, prefix_ids=prefix, no_repeat_ngram_size=n),
        "beam": beam_search(model, SOURCE, max_lengths, beam_size=3, prefix_ids=prefix, no_repeat_ngram_size=n),
        "sampling": sample(model, SOURCE, max_lengths, tf.constant(4), tf.constant((3, 0)), "top_k", 1.5, VOCAB, 1.0,
                           prefix_ids=prefix, no_repeat_ngram_size=n),
    }
    for name, (ids, scores) in found.items():
        for row in range(3):
            for rank in range(ids.shape[1]):
                tokens = [token for token in ids[row, rank].numpy() if token != PAD_ID]
                if row == 0:
                    assert tokens[:3] == [7, 7, 7], name
                # Past the prefix, which may repeat itself.
                assert tokens[-1] == EOS_ID and not repeats(tokens[:-1], n, 3 if row == 0 else 0), (name, tokens)
                log_prob = full_prefix_log_probs(model, SOURCE[row : row + 1], tokens).sum()
                np.testing.assert_allclose(scores[row, rank], log_prob, rtol=1e-4, atol=1e-4, err_msg=name)


def draw(model, method="top_k", temperature=1.0, top_k=VOCAB, top_p=1.0, num_samples=3, seed=(7, 0), alpha=0.0,
         source=SOURCE, max_lengths=MAX_LENGTHS):
    return sample(model, source, max_lengths, tf.constant(num_samples), tf.constant(seed), method, temperature, top_k, top_p, alpha)


@pytest.mark.parametrize("settings", [{"top_k": 1}, {"method": "top_p", "top_p": 1e-6}, {"temperature": 1e-4}])
def test_sampling_cut_to_one_token_is_greedy(settings):
    model = tiny_model(seed=2)
    greedy_ids, greedy_scores = greedy_search(model, SOURCE, MAX_LENGTHS)
    ids, scores = draw(model, **settings)
    for index in range(3):
        np.testing.assert_array_equal(ids[:, index, : greedy_ids.shape[2]].numpy(), greedy_ids[:, 0].numpy())
        np.testing.assert_allclose(scores[:, index].numpy(), greedy_scores[:, 0].numpy(), rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_samples_are_well_formed_sorted_and_scored_by_the_model(alpha):
    model = tiny_model(seed=3)
    ids, scores = draw(model, temperature=1.5, num_samples=6, alpha=alpha)
    ids, scores = ids.numpy(), scores.numpy()
    assert ids.shape[:2] == (3, 6)
    for row in range(3):
        assert np.all(np.diff(scores[row]) <= 1e-6), "samples not sorted best first"
        for rank in range(6):
            tokens = [token for token in ids[row, rank] if token != PAD_ID]
            assert tokens[-1] == EOS_ID and EOS_ID not in tokens[:-1] and BOS_ID not in tokens
            assert len(tokens) - 1 <= MAX_LENGTHS[row]
            # The model's own (untempered) probability, whatever the sampling distribution was.
            log_prob = full_prefix_log_probs(model, SOURCE[row : row + 1], tokens).sum()
            np.testing.assert_allclose(scores[row, rank], log_prob / length_penalty(len(tokens), alpha), rtol=1e-4, atol=1e-4)
    assert len({tuple(sample_ids) for sample_ids in ids[0]}) > 1, "six samples, all alike"


@pytest.mark.parametrize("method, temperature, top_k, top_p", [("top_k", 2.0, 4, 1.0), ("top_p", 3.0, VOCAB, 0.8)])
def test_first_tokens_follow_the_cut_tempered_distribution(method, temperature, top_k, top_p):
    """4,000 samples of one sentence: their first tokens' frequencies against the model's first-step
    distribution, divided by the temperature and cut to the top k or the nucleus, renormalised."""
    model = tiny_model(seed=4)
    source = SOURCE[:1]
    ids, _ = draw(model, method, temperature, top_k, top_p, num_samples=4000, source=source, max_lengths=MAX_LENGTHS[:1])
    first = ids[0, :, 0].numpy()
    logits = model.decode(tf.constant([[BOS_ID]]), model.encode(source), source)[0, 0].numpy().astype(np.float64)
    logits[[PAD_ID, BOS_ID]] = -np.inf
    tempered = (logits - logits.max()) / temperature
    probabilities = np.exp(tempered) / np.exp(tempered).sum()
    order = np.argsort(-probabilities)
    if method == "top_k":
        kept = order[:top_k]
    else:
        before = np.cumsum(probabilities[order]) - probabilities[order]
        kept = order[before < top_p]
    expected = np.zeros(VOCAB)
    expected[kept] = probabilities[kept] / probabilities[kept].sum()
    observed = np.bincount(first, minlength=VOCAB) / len(first)
    assert set(np.flatnonzero(observed)) <= set(kept)
    assert 1 < len(kept) < VOCAB - 2
    np.testing.assert_allclose(observed, expected, atol=0.03)


def test_the_same_seed_gives_the_same_samples():
    model = tiny_model(seed=5)
    first, again, other = (draw(model, temperature=3.0, seed=seed)[0] for seed in ((1, 0), (1, 0), (2, 0)))
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.array_equal(first.numpy(), other.numpy())


@pytest.mark.parametrize("width", [8000, 1000, 30])
@pytest.mark.parametrize("k", [1, 8])
def test_chunked_top_k_equals_top_k(width, k):
    from nmt.decoding.search import _top_k

    values = tf.random.stateless_normal([64, width], seed=[width, k])
    # Rows whose k best lie in the last chunks (padded where 32 does not divide the width) or share the first.
    values = tf.concat([values, tf.range(width, dtype=tf.float32)[tf.newaxis], -tf.range(width, dtype=tf.float32)[tf.newaxis]], 0)
    expected, expected_ids = tf.math.top_k(values, k=k)
    best, ids = _top_k(values, k)
    np.testing.assert_array_equal(ids.numpy(), expected_ids.numpy())
    np.testing.assert_array_equal(best.numpy(), expected.numpy())


class ScriptedDecoder:
    """A stand-in for the Transformer in the searches: its next-token log-probabilities depend on
    the previous token only, rows of `log_probs` (vocab, vocab)."""

    decoding_shape_invariants = staticmethod(Transformer.decoding_shape_invariants)

    def __init__(self, log_probs: np.ndarray):
        self.log_probs = tf.constant(log_probs, tf.float32)
        self.decoded_rows = 0

    def start_decoding(self, source_ids):
        return {"memory_mask": tf.ones([tf.shape(source_ids)[0], 1, 1], tf.bool), "layers": []}

    def output_kernel(self):
        return None

    def decode_step(self, token_ids, index, cache, output_kernel=None, hypotheses=1):
        self.decoded_rows += int(tf.size(token_ids))
        return tf.gather(self.log_probs, token_ids), cache


def scripted_decoder():
    """After BOS, EOS (log-probability -1) is the likeliest token and A (-1.2) the next; after A,
    EOS is nearly certain. So "A EOS" scores -1.21, below "EOS" in log-probability but above it
    once a length penalty of alpha 2 rewards its length."""
    probabilities = np.full((VOCAB, VOCAB), 1e-12)
    ordinary = np.arange(4, VOCAB)
    probabilities[:, EOS_ID] = 0.1
    probabilities[:, ordinary] = 0.9 / len(ordinary)
    a = ordinary[0]
    probabilities[BOS_ID, EOS_ID], probabilities[BOS_ID, a] = np.exp(-1.0), np.exp(-1.2)
    probabilities[BOS_ID, ordinary[1:]] = (1 - np.exp(-1.0) - np.exp(-1.2)) / (len(ordinary) - 1)
    probabilities[a, EOS_ID], probabilities[a, ordinary] = 0.99, 0.01 / len(ordinary)
    return ScriptedDecoder(np.log(probabilities)), a


@pytest.mark.parametrize("alpha", [0.0, 2.0])
def test_a_sentence_stops_once_its_best_hypotheses_cannot_change(alpha):
    decoder, a = scripted_decoder()
    source, max_lengths = tf.constant([[5, 6]]), tf.constant([4])
    all_ids, all_scores = beam_search(decoder, source, max_lengths, 4, alpha)
    decoded_all, decoder.decoded_rows = decoder.decoded_rows, 0
    ids, scores = beam_search(decoder, source, max_lengths, 4, alpha, num_best=1)
    expected = [EOS_ID] if alpha == 0 else [a, EOS_ID]
    assert [token for token in ids[0, 0].numpy() if token != PAD_ID] == expected
    np.testing.assert_array_equal(ids[0, 0], all_ids[0, 0])
    np.testing.assert_allclose(scores[0, 0], all_scores[0, 0], atol=1e-6)
    # Without a length penalty no hypothesis can beat "EOS" after the first step; with one, "A"
    # could still (and does), so the search goes on.
    assert decoder.decoded_rows == (1 if alpha == 0 else 5) < decoded_all


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_asking_for_fewer_hypotheses_gives_the_same_best_ones(alpha):
    model = tiny_model(seed=0)
    source = tf.concat([SOURCE, tf.constant(np.random.default_rng(1).integers(4, VOCAB, size=(5, 6)), tf.int32)], axis=0)
    max_lengths = tf.concat([MAX_LENGTHS, tf.constant([3, 6, 9, 12, 15])], axis=0)
    all_ids, all_scores = beam_search(model, source, max_lengths, 4, alpha)
    for num_best in (2, 1):
        ids, scores = beam_search(model, source, max_lengths, 4, alpha, num_best=num_best)
        np.testing.assert_array_equal(ids[:, :num_best], all_ids[:, :num_best])
        np.testing.assert_allclose(scores[:, :num_best], all_scores[:, :num_best], atol=1e-5)
