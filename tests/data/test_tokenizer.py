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
