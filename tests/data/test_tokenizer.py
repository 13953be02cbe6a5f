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
