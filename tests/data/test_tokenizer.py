import pytest
import tensorflow as tf

from nmt.config import TokenizerConfig
from nmt.data import tokenizer
from nmt.data.synthetic import generate_splits


def test_round_trip_restores_cased_text_and_spacing(tmp_path):
    pairs = generate_splits(sizes={"train": 2000, "validation": 10, "test": 10})
    sources = [source for source, _ in pairs["train"]]
    targets = [target for _, target in pairs["train"]]
    for joint in (True, False):
        directory = tmp_path / str(joint)
        tokenizer.train(TokenizerConfig(vocab_size=300, joint=joint, model_type="bpe" if joint else "unigram"),
                        sources, targets, directory)
        assert tokenizer.exists(directory, joint)
        tokenizers = tokenizer.load(directory, joint)
        for side, texts in (("source", sources[:50]), ("target", targets[:50])):
            model = getattr(tokenizers, side)
            ids = model.tokenize(tf.constant(texts))
            assert int(tf.reduce_min(ids.flat_values)) > tokenizer.EOS_ID  # no special ids inside text
            restored = [text.decode() for text in model.detokenize(ids).numpy()]
            assert restored == texts
    assert (tmp_path / "False" / "source.model").exists() and (tmp_path / "False" / "target.model").exists()


@pytest.mark.parametrize("model_type, joint", [("unigram", True), ("bpe", False)])
def test_extending_a_vocabulary_keeps_old_ids_and_segmentations_and_covers_new_characters(tmp_path, model_type, joint):
    old = generate_splits(sizes={"train": 3000, "validation": 10, "test": 10})["train"]
    new = generate_splits(sizes={"train": 3000, "validation": 10, "test": 10}, domain="shifted")["train"]
    config = TokenizerConfig(vocab_size=500, joint=joint, model_type=model_type)
    tokenizer.train(config, [source for source, _ in old], [target for _, target in old], tmp_path)
    before = tokenizer.load(tmp_path, joint)
    new_sources, new_targets = [source for source, _ in new], [target for _, target in new]
    known = [text for text in new_sources[:300] if text.isascii()]
    unseen = "Ζωή saw Øyvind and Çağla."
    assert tokenizer.UNK_ID in before.source.tokenize([unseen]).to_list()[0]

    added = tokenizer.extend(tmp_path, config, new_sources, new_targets)

    after = tokenizer.load(tmp_path, joint)
    assert set(added) == ({"joint.model"} if joint else {"source.model", "target.model"}) and all(added.values())
    assert after.source_vocab_size == before.source_vocab_size + added["joint.model" if joint else "source.model"]
    old_pieces = before.source.id_to_string(tf.range(before.source_vocab_size)).numpy().tolist()
    assert after.source.id_to_string(tf.range(before.source_vocab_size)).numpy().tolist() == old_pieces
    assert len(known) > 50 and after.source.tokenize(known).to_list() == before.source.tokenize(known).to_list()
    for model, texts in ((after.source, new_sources), (after.target, new_targets)):
        ids = model.tokenize(texts)
        assert not any(tokenizer.UNK_ID in sentence for sentence in ids.to_list())
        assert [text.decode() for text in model.detokenize(ids).numpy()] == texts
    # Frequent words of the new characters become whole pieces.
    assert "▁Ζωή" in [piece.decode() for piece in after.source.id_to_string(after.source.tokenize([unseen]).to_list()[0]).numpy()]
    assert tokenizer.extend(tmp_path, config, new_sources, new_targets) == dict.fromkeys(added, 0)


@pytest.fixture(scope="module")
def unigram(tmp_path_factory):
    """A unigram model of the synthetic corpus and its file."""
    train = generate_splits(sizes={"train": 2000, "validation": 10, "test": 10})["train"]
    directory = tmp_path_factory.mktemp("unigram")
    tokenizer.train(TokenizerConfig(vocab_size=300), [s for s, _ in train], [t for _, t in train], directory)
    return directory / "joint.model", [source for source, _ in train[:40]]


def test_sampled_segmentations_spell_their_sentence_and_repeat_with_their_seed(unigram):
    path, sentences = unigram
    sampler = tokenizer.SegmentationSampler(path.read_bytes(), alpha=0.1, nbest=64)
    best = tokenizer.load(path.parent, joint=True).source
    texts = tf.constant(["", *sentences])

    first = sampler.tokenize(texts, tf.constant([1, 2])).to_list()
    assert sampler.tokenize(texts, tf.constant([1, 2])).to_list() == first
    other = sampler.tokenize(texts, tf.constant([1, 3])).to_list()
    assert first[0] == [] and sum(a != b for a, b in zip(first, other)) > len(sentences) // 2
    one_best = best.tokenize(texts).to_list()
    assert sum(a != b for a, b in zip(first, one_best)) > len(sentences) // 2
    # A sampled segmentation has no fewer pieces than the best (the most probable uses few, long ones).
    assert sum(map(len, first)) > sum(map(len, one_best))
    for ids in (first, other):
        assert [text.decode() for text in best.detokenize(tf.ragged.constant(ids, dtype=tf.int32)).numpy()] == ["", *sentences]


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_segmentations_are_drawn_with_probability_proportional_to_p_to_the_alpha(unigram, alpha):
    """Kudo's (2018) l-best sampling, checked against SentencePiece's own n-best list and scores."""
    import numpy as np
    import sentencepiece as spm

    path, _ = unigram
    sentence, nbest, draws = "Alice sees a small cat.", 8, 4000
    processor = spm.SentencePieceProcessor(model_file=str(path))
    candidates = [tuple(ids) for ids in processor.nbest_encode_as_ids(sentence, nbest)]
    log_p = np.array([sum(processor.get_score(piece) for piece in ids) for ids in candidates])
    expected = np.exp(alpha * (log_p - log_p.max()))
    expected /= expected.sum()

    sampler = tokenizer.SegmentationSampler(path.read_bytes(), alpha=alpha, nbest=nbest)
    drawn = [tuple(ids) for ids in sampler.tokenize(tf.constant([sentence] * draws), tf.constant([5, 6])).to_list()]
    assert set(drawn) <= set(candidates) and len(candidates) == nbest
    observed = np.array([drawn.count(ids) for ids in candidates]) / draws
    # Three standard deviations of a frequency over 4,000 draws.
    assert np.all(np.abs(observed - expected) <= 3 * np.sqrt(expected * (1 - expected) / draws) + 1e-3), (observed, expected)
    assert expected.max() < 0.9  # the test means something: no candidate takes nearly every draw


def test_samplers_are_made_only_when_sampling_is_on(unigram):
    path, _ = unigram
    assert tokenizer.samplers(path.parent, TokenizerConfig()) is None
    samplers = tokenizer.samplers(path.parent, TokenizerConfig(sample_alpha=0.2, sample_nbest=4))
    assert samplers.source is samplers.target and samplers.source.alpha == 0.2


def test_a_tag_is_a_piece_of_the_source_model_that_no_text_encodes_to(tmp_path):
    pairs = generate_splits(sizes={"train": 1000, "validation": 10, "test": 10})["train"]
    sources, targets = [source for source, _ in pairs], [target for _, target in pairs]
    for joint in (True, False):
        tokenizer.train(TokenizerConfig(vocab_size=200, joint=joint), sources, targets, tmp_path / str(joint), tags=["<bt>"])
        tokenizers = tokenizer.load(tmp_path / str(joint), joint)
        tag = tokenizer.piece_id(tokenizers.source, "<bt>")
        assert tag is not None and tag > tokenizer.EOS_ID
        ids = tokenizers.source.tokenize(tf.constant(["<bt> " + sources[0], "<bt>", sources[1] + " <bt>"]))
        assert tag not in ids.flat_values.numpy()
        plain = tokenizers.source.tokenize(tf.constant(sources[:1])).to_list()[0]
        assert tokenizers.source.detokenize(tf.constant([[tag] + plain])).numpy()[0].decode() == sources[0]  # it writes nothing
        assert tokenizer.piece_id(tokenizers.source, "<other>") is None
        if not joint:
            assert tokenizer.piece_id(tokenizers.target, "<bt>") is None


def test_sentencepiece_samples_the_corpora_by_what_an_epoch_reads_of_them(monkeypatch):
    from nmt.data import sources
    from nmt.data.corpus import Corpus

    corpora = [Corpus(None), Corpus(None, weight=0.5), Corpus(None, weight=3)]
    sizes = iter([6000, 4000, 1000])
    monkeypatch.setattr(sources, "split_size", lambda data, split: next(sizes))
    assert tokenizer._sample_sizes(corpora, 1000) == [545, 182, 273]  # of 6,000 + 2,000 + 3,000 read
    monkeypatch.setattr(sources, "split_size", lambda data, split: None)
    assert tokenizer._sample_sizes(corpora, 1000) == [333, 333, 333]


@pytest.mark.parametrize("joint", [True, False])
def test_extending_a_vocabulary_adds_missing_tags_to_the_source_model_as_control_symbols(tmp_path, joint):
    pairs = generate_splits(sizes={"train": 1000, "validation": 10, "test": 10})["train"]
    sources, targets = [source for source, _ in pairs], [target for _, target in pairs]
    config = TokenizerConfig(vocab_size=200, joint=joint)
    tokenizer.train(config, sources, targets, tmp_path, tags=["<bt>"])
    before = tokenizer.load(tmp_path, joint)
    added = tokenizer.extend(tmp_path, config, sources, targets, tags=["<bt>", "<ft>"])
    assert added == ({"joint.model": 1} if joint else {"source.model": 1, "target.model": 0})
    after = tokenizer.load(tmp_path, joint)
    assert tokenizer.piece_id(after.source, "<bt>") == tokenizer.piece_id(before.source, "<bt>")
    assert tokenizer.piece_id(after.source, "<ft>") == before.source_vocab_size == after.source_vocab_size - 1
    assert after.source.tokenize(sources[:100]).to_list() == before.source.tokenize(sources[:100]).to_list()
    assert tokenizer.piece_id(after.source, "<ft>") not in after.source.tokenize(["<ft> " + sources[0]]).flat_values.numpy()
    assert tokenizer.extend(tmp_path, config, sources, targets, tags=["<bt>", "<ft>"]) == dict.fromkeys(added, 0)
