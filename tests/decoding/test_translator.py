"""Hostile input through the Python translate path: whatever the text, one translation per
sentence, in order, on one line, and no exception but a clear one. The model is untrained (its
outputs are noise, its decoding runs to the length limit): robustness needs no learning."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nmt import config as config_lib
from nmt.data import tokenizer
from nmt.decoding.plan import Hypothesis
from nmt.decoding.translator import Translator
from nmt.errors import NmtError
from nmt.model.transformer import build_transformer

SPECIAL = ["", " ", "\t \u3000", "\u200f\u05e9\u05dc\u05d5\u05dd \u200dabc", "👩‍👩‍👧 🇩🇪", "Ωμέγα мир 世界 عالم",
           "\x00\x07\x1b[31m", "\ufeffBOM", "a\u2028b\u2029c\x85d", "x" * 3000, "⁇ <unk> </s> <s>", "\U0010ffff"]
SENTENCE = st.one_of(st.sampled_from(SPECIAL), st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
# 1,000 generated sentences per run of the suite.
BATCHES = 125
PER_BATCH = 8
WORDS = "the a dog cat runs sees big small house tree".split()  # the words tiny_setup's tokenizer learns


def tiny_setup(directory, **decode):
    """A config of a one-layer model with these decode settings, and a 40-piece joint tokenizer
    trained into directory on sentences of ten English words."""
    sentences = [" ".join(WORDS[i % 10:] + WORDS[: i % 7]) for i in range(200)]
    config = config_lib.from_dict({
        "tokenizer": {"vocab_size": 40},
        "model": {"num_encoder_layers": 1, "num_decoder_layers": 1, "hidden_dim": 16, "num_heads": 2,
                  "intermediate_dim": 32, "max_length": 24},
        "decode": decode,
    })
    tokenizer.train(config.tokenizer, sentences, sentences, directory)
    return config, tokenizer.load(directory, joint=True)


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    config, tokenizers = tiny_setup(tmp_path_factory.mktemp("tokenizer"), beam_size=2, batch_size=4, max_length_ratio=1.0,
                                    max_length_offset=2)
    model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    return Translator(config, model, tokenizers)


@settings(max_examples=BATCHES, deadline=None)
@given(st.lists(SENTENCE, min_size=PER_BATCH, max_size=PER_BATCH))
@example([""] * (PER_BATCH - 1) + ["\x85"])
def test_any_text_gets_one_translation_line_per_sentence_in_order(translator, sentences):
    translations = translator.translate(sentences)
    assert len(translations) == len(sentences)
    # A sentence of nothing the tokenizer keeps translates to nothing. Blank is not enough: Python
    # strips U+0085 (NEL) as whitespace, where SentencePiece keeps it as an unknown piece.
    kept = translator.tokenizers.source.tokenize(sentences).row_lengths().numpy()
    for sentence, translation, pieces in zip(sentences, translations, kept):
        assert isinstance(translation, str) and "\n" not in translation and "\r" not in translation
        if not pieces:
            assert translation == ""
        if not sentence.strip():
            assert not pieces or "\x85" in sentence
    # The same sentence alone gets the same translation as in its batch (order, padding).
    assert translator.translate(sentences[-1:]) == translations[-1:]


def test_text_the_tokenizer_drops_whole_is_an_empty_sentence_alone_or_in_a_batch(translator):
    """Control characters, a zero-width space, a BOM: no tokens. Decoded, such a source translated
    one way alone (a batch of no columns) and another beside a real sentence (a row of padding)."""
    dropped = ["\x08", "\u200b", "\ufeff"]
    assert translator.tokenizers.source.tokenize(dropped).row_lengths().numpy().tolist() == [0, 0, 0]
    empty = [Hypothesis("", 0.0)]
    assert translator.translate_n_best(dropped[:1], 1) == [empty]
    assert translator.translate_n_best(["the dog runs", *dropped], 1)[1:] == [empty] * 3


def test_the_translator_decodes_in_batches_of_at_most_batch_tokens_and_translates_as_in_one(translator, monkeypatch):
    import dataclasses

    sentences = ["the dog runs", "a big cat sees the small house", "tree", "the cat", "a dog sees a big tree and a house"]
    lengths = translator.tokenizers.source.tokenize(sentences).row_lengths().numpy().tolist()
    budget = 2 * max(lengths)
    config = dataclasses.replace(translator.config, decode=dataclasses.replace(translator.config.decode, batch_size=64, batch_tokens=budget))
    budgeted = Translator(config, translator.model, translator.tokenizers)
    shapes = []
    search = budgeted._search
    monkeypatch.setattr(budgeted, "_search", lambda source_ids, *args: shapes.append(source_ids.shape) or search(source_ids, *args))
    translations = budgeted.translate(sentences)
    assert len(shapes) > 1 and all(rows * width <= budget for rows, width in shapes), shapes
    assert sum(rows for rows, _ in shapes) == len(sentences)
    one_batch = dataclasses.replace(config, decode=dataclasses.replace(config.decode, batch_tokens=4096))
    assert translations == Translator(one_batch, translator.model, translator.tokenizers).translate(sentences)


@pytest.mark.parametrize("n, sentences_per_batch", [(1, 4), (2, 2), (4, 1)])
def test_sampling_more_hypotheses_than_the_beam_decodes_fewer_sentences_a_batch(translator, monkeypatch, n, sentences_per_batch):
    """`--n-best n` with sampling draws 2n samples a sentence. The fixture's batches hold 4 sentences
    of beam 2: 2 samples (n = 1) fit as many, 4 and 8 a half and a quarter of them."""
    import dataclasses

    config = dataclasses.replace(translator.config, decode=dataclasses.replace(translator.config.decode, sampling="top_k", seed=1))
    sampler = Translator(config, translator.model, translator.tokenizers)
    rows = []
    search = sampler._search
    monkeypatch.setattr(sampler, "_search", lambda source_ids, *args: rows.append(source_ids.shape[0]) or search(source_ids, *args))
    sampler.translate_n_best(["the dog runs", "tree", "the cat", "a big cat", "the house", "a tree"], n)
    assert rows == [sentences_per_batch] * (6 // sentences_per_batch) + [6 % sentences_per_batch] * (6 % sentences_per_batch > 0)


def test_a_batch_out_of_memory_is_one_clear_error_naming_the_settings_to_lower(translator, monkeypatch):
    import tensorflow as tf

    def exhausted(*args):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(translator, "_search", exhausted)
    with pytest.raises(NmtError, match=r"^out of memory decoding a batch of 2 sentences of up to \d+ tokens \(beam 2\): "
                                       r"set decode.batch_tokens=2048 \(now 4096\) or a smaller decode.batch_size \(now 4\)$"):
        translator.translate(["the dog runs", "a cat"])

    import dataclasses

    config = dataclasses.replace(translator.config, decode=dataclasses.replace(translator.config.decode, sampling="top_k"))
    sampler = Translator(config, translator.model, translator.tokenizers)
    search, calls = sampler._search, []

    def exhausted_in_the_second_batch(*args):
        calls.append(args)
        return search(*args) if len(calls) == 1 else exhausted()

    monkeypatch.setattr(sampler, "_search", exhausted_in_the_second_batch)
    with pytest.raises(NmtError, match=r"^out of memory decoding a batch of 1 sentences of up to \d+ tokens \(6 samples each\): "):
        sampler.translate_n_best(["the dog runs", "a cat"], 3)  # a batch each: 6 samples count as 3 of batch_size 4


def test_a_lone_surrogate_is_one_clear_error(translator):
    # What Python makes of a command-line argument that is not UTF-8.
    with pytest.raises(NmtError, match=r"sentence 2 is not valid UTF-8 text \(character 3 is a lone surrogate"):
        translator.translate(["fine", "ab\udcff"])


@pytest.mark.parametrize("flags, policy", [({"avx512_bf16"}, "bfloat16"), ({"avx2"}, "float32")])
def test_bfloat16_decoding_computes_in_bfloat16_where_the_device_can(translator, monkeypatch, caplog, flags, policy):
    """decode.precision=bfloat16: the decoder computes in bfloat16 (float32 where the CPU has no
    bfloat16 units, with a warning), and the searches get float32 logits either way."""
    import dataclasses
    import logging

    import tensorflow as tf

    from nmt.decoding.translator import decoding_model

    monkeypatch.setattr("nmt.training.precision._gpu_compute_capability", lambda: None)
    monkeypatch.setattr("nmt.training.precision.cpu_flags", lambda: frozenset(flags))
    caplog.set_level(logging.WARNING, logger="nmt")
    config = dataclasses.replace(translator.config, decode=dataclasses.replace(translator.config.decode, precision="bfloat16"))
    model = decoding_model(config, translator.tokenizers)
    assert model.dtype_policy.name == policy
    assert ("decoding in float32 instead" in caplog.text) == (policy == "float32")
    model.set_weights(translator.model.get_weights())
    source = tf.constant([[5, 6, 7, 0]])
    cache = model.start_decoding(source)
    logits, _ = model.decode_step(tf.constant([1]), tf.constant(0), cache, model.output_kernel())
    assert logits.dtype == tf.float32
    expected, _ = translator.model.decode_step(tf.constant([1]), tf.constant(0), translator.model.start_decoding(source))
    tf.debugging.assert_near(logits, expected, atol=0.1)  # bfloat16 keeps ~3 significant digits
    assert len(Translator(config, model, translator.tokenizers).translate(["the dog runs", "a cat"])) == 2


def test_a_score_is_the_sum_of_each_tokens_log_probability_given_the_tokens_before_it(translator):
    """Independently of the one teacher-forced pass: the model run on each prefix of the target
    alone, its last position's log-probability of the next token (EOS at the end). A wrong shift or
    a causal mask that lets a position see the token it predicts gives other sums."""
    import dataclasses

    import numpy as np
    import tensorflow as tf

    from nmt.data.tokenizer import BOS_ID, EOS_ID
    from nmt.decoding.plan import length_penalty
    from nmt.decoding.search import next_token_log_probs

    plain = Translator(dataclasses.replace(translator.config, decode=dataclasses.replace(translator.config.decode,
                                                                                         length_penalty=0.0)),
                       translator.model, translator.tokenizers)
    sources, targets = ["the dog runs", "a big house", "tree"], ["a cat sees the tree", "small", ""]
    for source, target, found in zip(sources, targets, plain.score(sources, targets)):
        assert found.score == pytest.approx(sum(found.log_probs), abs=1e-4) and found.pieces[-1] == "</s>"
        source_ids = translator.tokenizers.source.tokenize([source]).to_tensor()
        target_ids = translator.tokenizers.target.tokenize([target]).numpy()[0].tolist() + [EOS_ID]
        expected = 0.0
        for position, token in enumerate(target_ids):
            target_in = tf.constant([[BOS_ID] + target_ids[:position]], tf.int32)
            logits = translator.model({"source_ids": source_ids, "target_in": target_in})[:, -1]
            expected += float(next_token_log_probs(logits)[0, token])
        assert len(found.pieces) == len(target_ids) and found.score == pytest.approx(expected, abs=1e-4)
        found = found.score
        penalised = translator.score([source], [target])[0].score
        assert penalised == pytest.approx(expected / float(length_penalty(len(target_ids), 0.6)), abs=1e-4)
        assert np.isfinite(found) and found < 0


def test_scores_are_the_same_alone_and_in_batches_with_empty_and_overlong_pairs_named(translator, caplog):
    """decode.batch_size 4: the six pairs go in batches of several lengths, padded."""
    import numpy as np

    sources = ["the dog runs", "", "", "a big house " * 20, "tree", "the cat"]
    targets = ["a cat sees", "", "a dog", "small", "the " * 40, ""]
    scores = [scored.score for scored in translator.score(sources, targets)]
    assert scores[1] == 0.0 and scores[2] == float("-inf")  # an empty source translates to '' only
    assert np.isnan(scores[4]) and "target 5 has" in caplog.text  # too long for the model to produce
    assert "sentence 4 has" in caplog.text  # the source is truncated, as translate truncates it
    for index in (0, 3, 5):
        assert translator.score(sources[index:index + 1], targets[index:index + 1])[0].score == pytest.approx(scores[index], abs=1e-4)
    with pytest.raises(NmtError, match="6 sources but 5 targets"):
        translator.score(sources, targets[:5])


def test_translations_begin_with_their_prefix_whatever_the_length_limit(translator, caplog):
    """decode.max_length_ratio 1 and offset 2: "tree" may produce 3 tokens, fewer than its prefix's.
    The last prefix is cut to the model's longest output, so its sentence has one possible
    translation: the second best repeats it (beam search has no second)."""
    from nmt.decoding.ensemble import Ensemble

    sources = ["the dog runs", "tree", "", "a big house", "small cat"]
    prefixes = ["a cat", "the dog runs sees the big house", "the", "", "house " * 30]
    found = translator.translate_n_best(sources, 2, prefixes=prefixes)
    for source, prefix, hypotheses in zip(sources, prefixes, found):
        for hypothesis in hypotheses:
            assert hypothesis.text.startswith(prefix if source and len(prefix) < 100 else ""), hypothesis.text
            assert hypothesis.score > -1e3
        if not source:
            assert hypotheses == [Hypothesis("", 0.0)] * 2  # an empty sentence translates to nothing, prefix or not
    assert "the prefix of sentence 5 has 150 tokens" in caplog.text
    assert found[4][0].text.startswith("house house") and found[4][1] == found[4][0]

    def same(hypotheses, others):  # the scores to float rounding: batches pad differently
        return [h.text for h in hypotheses] == [o.text for o in others] and all(
            h.score == pytest.approx(o.score, abs=1e-4) for h, o in zip(hypotheses, others))

    assert same(found[3], translator.translate_n_best(sources[3:4], 2)[0]), "an empty prefix is no prefix"
    for index in range(len(sources)):  # the same alone as in the batch
        assert same(translator.translate_n_best(sources[index:index + 1], 2, prefixes=prefixes[index:index + 1])[0], found[index])
    ensemble = Translator(translator.config, Ensemble([translator.model, translator.model]), translator.tokenizers)
    assert ensemble.translate(sources[:1], prefixes=prefixes[:1])[0].startswith(prefixes[0])
    with pytest.raises(NmtError, match="5 sentences but 4 prefixes"):
        translator.translate_n_best(sources, 1, prefixes=prefixes[:4])
    with pytest.raises(NmtError, match="prefix 2 is not valid UTF-8 text"):
        translator.translate_n_best(sources[:2], 1, prefixes=["a", "b\udc80"])


def test_warnings_number_sentences_from_where_the_part_translated_begins(translator, caplog):
    """What `nmt translate` and `nmt score` do for each chunk of a file after the first."""
    sources, prefixes = ["tree", "a big house " * 20, ""], ["", "house " * 30, "house " * 30]
    translator.start_at(5000)
    try:
        translator.translate(sources, prefixes=prefixes)
        translator.score(sources[:2], ["the " * 40, "a"])
    finally:
        translator.start_at(0)
    assert [record.getMessage().split(" has ")[0] for record in caplog.records if record.name == "nmt"] == [
        "sentence 5002", "the prefix of sentence 5002", "target 5001", "sentence 5002"]


@pytest.mark.parametrize("decode", [{"beam_size": 2}, {"sampling": "top_k", "seed": 7}])
def test_warming_up_traces_every_search_once_and_changes_no_translation(translator, decode, caplog):
    """What `nmt serve` does before its first request, silently."""
    config = config_lib.from_dict({**translator.config.to_dict(), "decode": {**translator.config.to_dict()["decode"], **decode}})
    warmed, cold = (Translator(config, translator.model, translator.tokenizers) for _ in range(2))
    warmed.warm_up()
    assert not [record for record in caplog.records if record.name == "nmt"]
    searches = [warmed._search, warmed._search_prefixed] + ([warmed._search_constrained] if "sampling" not in decode else [])
    assert [search.experimental_get_tracing_count() for search in searches] == [1] * len(searches)
    sources, prefixes = ["the dog runs", "a cat"], ["the", ""]
    assert warmed.translate(sources) == cold.translate(sources)
    assert warmed.translate(sources, prefixes=prefixes) == cold.translate(sources, prefixes=prefixes)
    if "sampling" not in decode:
        assert warmed.translate(sources, constraints=[["house"], []]) == cold.translate(sources, constraints=[["house"], []])
    assert [search.experimental_get_tracing_count() for search in searches] == [1] * len(searches)


def test_translations_contain_their_constraints_or_say_why_not(translator, caplog):
    """decode.max_length_ratio 1 and offset 2: "tree" may produce 3 tokens, fewer than its
    constraints'; the limit grows to hold them. The last sentence's constraint is longer than the
    model's longest output: it is translated without it."""
    import dataclasses

    from nmt.decoding.ensemble import Ensemble
    from nmt.errors import ConfigError

    sources = ["the dog runs", "tree", "", "a big house", "small cat"]
    constraints = [["big house", "cat"], ["dog sees the small tree", "a"], ["tree"], [], ["house " * 30]]
    found = translator.translate_n_best(sources, 2, constraints=constraints)
    for index in (0, 1):
        for hypothesis in found[index]:
            assert all(text in hypothesis.text for text in constraints[index]), hypothesis.text
    assert found[2] == [Hypothesis("", 0.0)] * 2  # an empty sentence translates to nothing, constraints or not
    assert "the constraints of sentence 5 have 150 tokens" in caplog.text
    # A constraint the target vocabulary cannot write would be placed as "⁇": it is left out.
    assert translator.translate(sources[:1], constraints=[["世界", "cat"]]) == translator.translate(
        sources[:1], constraints=[["cat"]])
    assert "the constraint '世界' of sentence 1 holds characters the model's target vocabulary cannot write" in caplog.text

    def same(hypotheses, others):  # the scores to float rounding: batches pad differently
        return [h.text for h in hypotheses] == [o.text for o in others] and all(
            h.score == pytest.approx(o.score, abs=1e-4) for h, o in zip(hypotheses, others))

    for index in (3, 4):
        assert same(found[index], translator.translate_n_best(sources[index:index + 1], 2)[0])
    for index in range(len(sources)):  # the same alone as in the batch
        assert same(translator.translate_n_best(sources[index:index + 1], 2, constraints=constraints[index:index + 1])[0],
                    found[index])
    ensemble = Translator(translator.config, Ensemble([translator.model, translator.model]), translator.tokenizers)
    assert "big house" in ensemble.translate(sources[:1], constraints=constraints[:1])[0]
    with_prefix = translator.translate(sources[:1], prefixes=["a tree"], constraints=[["small cat"]])[0]
    assert with_prefix.startswith("a tree") and "small cat" in with_prefix

    # Constraints no translation can hold: "dog dog dog ..." repeats a bigram, which the decode
    # settings forbid. Such a sentence is translated as without them, within its own length limit
    # (the untrained model runs to it), not the one its constraints grew.
    decode = dataclasses.replace(translator.config.decode, no_repeat_ngram_size=2)
    no_repeats = Translator(dataclasses.replace(translator.config, decode=decode), translator.model, translator.tokenizers)
    caplog.clear()
    assert same(no_repeats.translate_n_best(sources[:2], 1, constraints=[["dog " * 6], ["cat"]])[0],
                no_repeats.translate_n_best(sources[:1], 1)[0])
    assert "sentence 1: no translation within its length limit contained all its constraints" in caplog.text

    with pytest.raises(NmtError, match="5 sentences but 4 lists of constraints"):
        translator.translate(sources, constraints=constraints[:4])
    sampling = dataclasses.replace(translator.config.decode, sampling="top_k")
    with pytest.raises(ConfigError, match="constraints are placed by beam search"):
        Translator(dataclasses.replace(translator.config, decode=sampling), translator.model,
                   translator.tokenizers).translate(sources, constraints=constraints)


def test_constraints_stand_as_whole_words_unless_told_otherwise(translator):
    """An untrained model goes on with any subword: given parts of words as constraints, some of
    its translations continue them into longer words, unless decode.constraint_whole_words."""
    import dataclasses
    import re

    sources = ["the dog runs", "a big house", "small cat", "tree", "the cat sees a dog", "big tree"]
    constraints = [["ca"], ["hou"], ["sma", "tre"], ["do"], ["ru"], ["ho"]]

    def translations(whole_words):
        decode = dataclasses.replace(translator.config.decode, constraint_whole_words=whole_words)
        return Translator(dataclasses.replace(translator.config, decode=decode), translator.model,
                          translator.tokenizers).translate_n_best(sources, 2, constraints=constraints)

    def whole(text, constraint):
        return re.search(rf"(?<!\w){re.escape(constraint)}(?!\w)", text) is not None

    assert translator.config.decode.constraint_whole_words
    for found, texts in zip(translations(whole_words=True), constraints):
        assert all(whole(hypothesis.text, text) for hypothesis in found for text in texts), found
    assert not all(whole(hypothesis.text, text) for found, texts in zip(translations(whole_words=False), constraints)
                   for hypothesis in found for text in texts)
