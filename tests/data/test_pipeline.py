import numpy as np
import tensorflow as tf

from nmt.config import TokenizerConfig
from nmt.data import pipeline, tokenizer
from nmt.data.tokenizer import BOS_ID, EOS_ID


def test_shift_target():
    target_in, target_out = pipeline.shift_target(tf.constant([7, 8, 9]))
    np.testing.assert_array_equal(target_in.numpy(), [BOS_ID, 7, 8, 9])
    np.testing.assert_array_equal(target_out.numpy(), [7, 8, 9, EOS_ID])


def test_batches_respect_token_budget_and_length_limit(tmp_path):
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    sources = [" ".join(words[: 1 + i % 10]) for i in range(300)]
    targets = [" ".join(reversed(words[: 1 + i % 10])) for i in range(300)]
    tokenizer.train(TokenizerConfig(vocab_size=40), sources, targets, tmp_path)
    tokenizers = tokenizer.load(tmp_path, joint=True)
    pairs = tf.data.Dataset.from_tensor_slices((sources, targets))
    batches = list(pipeline.make_batches(pairs, tokenizers, batch_tokens=64, max_length=6, shuffle_buffer=100, seed=1))
    seen = 0
    for batch in batches:
        rows, length = batch["target_in"].shape
        assert rows * max(length, batch["source_ids"].shape[1]) <= 64
        assert batch["source_ids"].shape[1] <= 6 and length <= 7
        np.testing.assert_array_equal(batch["target_in"][:, 0].numpy(), BOS_ID)
        target_in, target_out = batch["target_in"].numpy(), batch["target_out"].numpy()
        real = target_in[:, 1:] != 0
        np.testing.assert_array_equal(target_in[:, 1:][real], target_out[:, :-1][real])  # shifted by one
        row_lengths = (target_out != 0).sum(axis=1)
        np.testing.assert_array_equal(target_out[np.arange(rows), row_lengths - 1], EOS_ID)
        seen += rows
    lengths = [len(tokenizers.source.tokenize(s).numpy()) for s in sources]
    target_lengths = [len(tokenizers.target.tokenize(t).numpy()) for t in targets]
    assert seen == sum(1 for a, b in zip(lengths, target_lengths) if a <= 6 and b <= 6)
    assert seen < 300  # the longest sentences exceed 6 subwords and were dropped


def test_bucket_boundaries_increase():
    boundaries = pipeline.bucket_boundaries(100)
    assert boundaries[0] == 8 and boundaries[-1] <= 100
    assert all(b > a for a, b in zip(boundaries, boundaries[1:]))
