import numpy as np
import pytest
import tensorflow as tf

from nmt.config import TokenizerConfig
from nmt.data import pipeline, tokenizer
from nmt.data.tokenizer import BOS_ID, EOS_ID


def test_shift_target():
    target_in, target_out = pipeline.shift_target(tf.constant([7, 8, 9]))
    np.testing.assert_array_equal(target_in.numpy(), [BOS_ID, 7, 8, 9])
    np.testing.assert_array_equal(target_out.numpy(), [7, 8, 9, EOS_ID])


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """300 pairs of 1 to 10 words and a SentencePiece model trained on them."""
    sources = [" ".join(WORDS[: 1 + i % 10]) for i in range(300)]
    targets = [" ".join(reversed(WORDS[: 1 + i % 10])) for i in range(300)]
    directory = tmp_path_factory.mktemp("tokenizer")
    tokenizer.train(TokenizerConfig(vocab_size=40), sources, targets, directory)
    return sources, targets, tokenizer.load(directory, joint=True)


def test_batches_respect_token_budget_and_length_limit(corpus):
    sources, targets, tokenizers = corpus
    pairs = tf.data.Dataset.from_tensor_slices((sources, targets))
    examples = pipeline.make_examples(pairs, tokenizers, max_length=6)
    batches = list(pipeline.batch_examples(examples, batch_tokens=64, max_length=6, shuffle_seed=1, shuffle_buffer=100))
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


def test_fixed_lengths_round_the_buckets_up_to_multiples_of_8():
    lengths = pipeline.fixed_lengths(101)
    assert lengths == sorted(set(lengths)) and all(length % 8 == 0 for length in lengths)
    assert lengths[0] == 8 and lengths[-1] >= 101 and lengths[-2] < 101
    assert len(lengths) < len(pipeline.bucket_boundaries(101))


def test_fixed_shape_batches_have_a_few_shapes_and_every_example_once(corpus):
    """What jit_compile trains on: each bucket's batches share one shape (its last one filled up
    with rows of padding), and the real rows are the same examples as the bucketed batches'."""
    sources, targets, tokenizers = corpus
    examples = pipeline.make_examples(tf.data.Dataset.from_tensor_slices((sources, targets)), tokenizers, max_length=12)

    def rows(fixed_shapes):
        shapes, real = set(), []
        for batch in pipeline.batch_examples(examples, batch_tokens=64, max_length=12, shuffle_seed=1,
                                             shuffle_buffer=100, fixed_shapes=fixed_shapes):
            shapes.add((batch["source_ids"].shape, batch["target_in"].shape, batch["target_out"].shape))
            for source, target in zip(batch["source_ids"].numpy(), batch["target_out"].numpy()):
                if target.any():
                    real.append((tuple(source[source != 0]), tuple(target[target != 0])))
                else:
                    assert not source.any()  # a row of padding is padding on both sides
        return shapes, sorted(real)

    shapes, fixed = rows(fixed_shapes=True)
    assert fixed == rows(fixed_shapes=False)[1]
    expected = {(64 // length, length) for length in pipeline.fixed_lengths(13)}
    assert {source for source, target_in, target_out in shapes} <= expected
    assert all(source == target_in == target_out for source, target_in, target_out in shapes)
    assert len(shapes) > 1


def test_the_partly_filled_batch_is_not_always_last_in_an_epoch(corpus):
    _, _, tokenizers = corpus
    # One length bucket: 103 equal pairs make full batches and one smaller leftover batch.
    pairs = tf.data.Dataset.from_tensor_slices(([" ".join(WORDS[:3])] * 103, [" ".join(WORDS[:3])] * 103))

    examples = pipeline.make_examples(pairs, tokenizers, max_length=6)

    def leftover_positions(shuffle_buffer):
        positions = []
        for epoch in range(1, 6):
            batches = pipeline.batch_examples(examples, batch_tokens=64, max_length=6,
                                              shuffle_seed=pipeline.epoch_seed(3, epoch), shuffle_buffer=shuffle_buffer)
            rows = [int(batch["source_ids"].shape[0]) for batch in batches]
            assert sum(rows) == 103 and len(set(rows)) == 2
            positions.append((rows.index(min(rows)), len(rows)))
        return positions

    assert all(position == count - 1 for position, count in leftover_positions(0))
    assert any(position != count - 1 for position, count in leftover_positions(100))


def test_an_epochs_batches_depend_on_its_seed_alone(corpus):
    """What exact resumption rests on: epoch e's batches, rebuilt in another process (another
    dataset object), are the same batches in the same order; other epochs differ."""
    sources, targets, tokenizers = corpus

    def epoch(number):
        pairs = tf.data.Dataset.from_tensor_slices((sources, targets))
        examples = pipeline.make_examples(pairs, tokenizers, max_length=8)
        batches = pipeline.batch_examples(examples, batch_tokens=64, max_length=8,
                                          shuffle_seed=pipeline.epoch_seed(7, number), shuffle_buffer=100)
        return [batch["source_ids"].numpy().tobytes() for batch in batches]

    assert epoch(2) == epoch(2) and epoch(2) != epoch(3)


def test_streamed_examples_are_the_cached_ones(corpus):
    """A large training split streams (tokenized anew each epoch) instead of being cached: the
    epochs' batches must not change with it."""
    sources, targets, tokenizers = corpus

    def epoch(cache):
        examples = pipeline.make_examples(tf.data.Dataset.from_tensor_slices((sources, targets)), tokenizers, 8, cache)
        batches = pipeline.batch_examples(examples, batch_tokens=64, max_length=8,
                                          shuffle_seed=pipeline.epoch_seed(7, 1), shuffle_buffer=100)
        return [batch["target_out"].numpy().tobytes() for batch in batches]

    assert epoch(cache=False) == epoch(cache=True)
    assert pipeline.cache_in_memory(pipeline.MEMORY_CACHE_PAIRS) and not pipeline.cache_in_memory(pipeline.MEMORY_CACHE_PAIRS + 1)
    assert not pipeline.cache_in_memory(None)


def test_a_tag_goes_before_every_source_and_counts_in_its_length(corpus):
    sources, targets, tokenizers = corpus
    pairs = tf.data.Dataset.from_tensor_slices((sources + [""], targets + ["alpha"]))
    plain = list(pipeline.make_examples(pairs, tokenizers, max_length=8).as_numpy_iterator())
    tagged = list(pipeline.make_examples(pairs, tokenizers, max_length=8, tag_id=39).as_numpy_iterator())
    assert all(example["source_ids"][0] == 39 and 39 not in example["source_ids"][1:] for example in tagged)
    kept = [example for example in plain if len(example["source_ids"]) < 8]  # a full-length source has no room for it
    assert len(tagged) == len(kept) < len(plain)  # the empty source stays out
    for before, after in zip(kept, tagged):
        np.testing.assert_array_equal(after["source_ids"][1:], before["source_ids"])
        np.testing.assert_array_equal(after["target_out"], before["target_out"])


def test_mixed_corpora_come_by_their_weights_interleaved():
    """Weight 2: every element twice; 0.3: about 30% of them, another draw with another seed and
    the same with the same; the corpora interleave in proportion, their shares the same in the
    first and last quarters of the epoch."""
    first, second = tf.data.Dataset.range(1000), tf.data.Dataset.range(10_000, 12_000)

    def epoch(seed):
        return list(pipeline.mix([first, second], [1000, 2000], [2, 0.3], seed).as_numpy_iterator())

    mixed = epoch(1)
    assert sorted(element for element in mixed if element < 10_000) == sorted(list(range(1000)) * 2)
    drawn = [element for element in mixed if element >= 10_000]
    assert len(set(drawn)) == len(drawn) and 520 < len(drawn) < 680
    assert epoch(1) == mixed and set(epoch(2)) != set(mixed)
    quarter = len(mixed) // 4
    for stretch in (mixed[:quarter], mixed[-quarter:]):
        share = sum(element >= 10_000 for element in stretch) / quarter
        assert 0.15 < share < 0.30, share  # 600 of 2,600: 0.23
    assert pipeline.mix([first], [1000], [1], 1) is first
