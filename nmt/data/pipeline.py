"""tf.data pipeline from string pairs to padded, length-bucketed training batches.

A batch is a dict:
  source_ids  (batch, src_len)  source subwords, 0-padded
  target_in   (batch, tgt_len)  BOS + target: what the decoder reads
  target_out  (batch, tgt_len)  target + EOS: what it must predict at each position
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from nmt.data.tokenizer import BOS_ID, EOS_ID, Samplers, Tokenizers

# See cache_in_memory. A cached Multi30k example takes ~0.9 KB (29,000 pairs: +26 MiB of RSS), so
# a million pairs take ~0.9 GiB; `scripts/benchmark.py corpus` measures 5 million.
MEMORY_CACHE_PAIRS = 1_000_000
# Batches (not examples) held for shuffling: a whole epoch of a corpus like Multi30k (~134).
BATCH_SHUFFLE_BUFFER = 256


def shift_target(target_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(BOS + target, target + EOS) for one unpadded target sequence (tgt_len,)."""
    bos = tf.constant([BOS_ID], dtype=target_ids.dtype)
    eos = tf.constant([EOS_ID], dtype=target_ids.dtype)
    return tf.concat([bos, target_ids], axis=0), tf.concat([target_ids, eos], axis=0)


def bucket_boundaries(max_length: int) -> list[int]:
    """Upper length bounds of the buckets: fine-grained for short sentences, about 10% apart above."""
    boundaries, length = [], 8
    while length <= max_length:
        boundaries.append(length)
        length = max(length + 2, int(length * 1.1))
    return boundaries


def tokenize_pairs(pairs: tf.data.Dataset, tokenizers: Tokenizers, samplers: Samplers | None = None,
                   seed: int = 0) -> tf.data.Dataset:
    """(source, target) strings -> (source_ids, target_ids) int32 vectors, tokenized in chunks:
    each sentence's best segmentation, or with samplers one drawn for it. The draws are a function
    of the seed and the pairs' order alone."""
    chunks = pairs.batch(1024)
    if samplers is None:
        tokenized = chunks.map(
            lambda source, target: (tokenizers.source.tokenize(source), tokenizers.target.tokenize(target)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        def sample(index: tf.Tensor, chunk: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
            source, target = chunk
            return (samplers.source.tokenize(source, tf.stack([tf.constant(seed, tf.int64), 2 * index])),
                    samplers.target.tokenize(target, tf.stack([tf.constant(seed, tf.int64), 2 * index + 1])))

        tokenized = chunks.enumerate().map(sample, num_parallel_calls=tf.data.AUTOTUNE)
    return tokenized.unbatch()


def make_examples(pairs: tf.data.Dataset, tokenizers: Tokenizers, max_length: int, cache: bool = True,
                  samplers: Samplers | None = None, seed: int = 0, tag_id: int | None = None) -> tf.data.Dataset:
    """Tokenized, shifted examples, in the pairs' order; pairs longer than max_length tokens on a
    side, or empty on one, are dropped. With cache, they are kept in memory after the first pass
    (see cache_in_memory); without, every pass tokenizes again. samplers, seed: see tokenize_pairs
    (sampled examples differ by seed: cache the pairs instead). tag_id: a token put before every
    source (a corpus's tag), counted in its length."""
    tagged = 0 if tag_id is None else 1
    examples = tokenize_pairs(pairs, tokenizers, samplers, seed).filter(
        lambda source, target: tf.logical_and(
            tf.logical_and(tf.size(source) > 0, tf.size(target) > 0),
            tf.logical_and(tf.size(source) + tagged <= max_length, tf.size(target) <= max_length),
        )
    )
    if tag_id is not None:
        examples = examples.map(lambda source, target: (tf.concat([[tag_id], source], axis=0), target),
                                num_parallel_calls=tf.data.AUTOTUNE)
    examples = examples.map(_to_example, num_parallel_calls=tf.data.AUTOTUNE)
    return examples.cache() if cache else examples


def mix(corpora: Sequence[tf.data.Dataset], sizes: Sequence[int | None], weights: Sequence[float],
        seed: int) -> tf.data.Dataset:
    """One epoch of several training corpora (examples or pairs): each corpus read `weight` times
    over (2: each of its elements twice; 0.25: about a quarter of them, drawn anew by each seed), the
    corpora interleaved at random in proportion to what each contributes (its size, where known,
    times its weight), so that every stretch of the epoch holds them in those shares."""
    if len(corpora) == 1 and weights[0] == 1:
        return corpora[0]
    parts = []
    for index, (corpus, weight) in enumerate(zip(corpora, weights)):
        whole, fraction = divmod(weight, 1.0)
        part = corpus.repeat(int(whole)) if whole else None
        if fraction:
            def kept(position, _, index=index, fraction=fraction):
                return tf.random.stateless_uniform([], tf.stack([tf.constant(seed, tf.int64), index * 2**32 + position])) < fraction

            drawn = corpus.enumerate().filter(kept).map(lambda _, element: element)
            part = drawn if part is None else part.concatenate(drawn)
        parts.append(part)
    shares = [(size or 1) * weight for size, weight in zip(sizes, weights)]
    return tf.data.Dataset.sample_from_datasets(parts, weights=[share / sum(shares) for share in shares], seed=seed,
                                                stop_on_empty_dataset=False)


def cache_in_memory(pairs: int | None) -> bool:
    """Whether a training split of this many pairs (None: unknown) is cached in memory. Up to
    MEMORY_CACHE_PAIRS, caching saves tokenizing every epoch again; above, the cache would grow
    with the corpus, so the data streams."""
    return pairs is not None and pairs <= MEMORY_CACHE_PAIRS


def fixed_lengths(max_length: int, multiple: int = 8) -> list[int]:
    """Padded sequence lengths of fixed-shape batches for sequences of up to max_length positions:
    bucket_boundaries' buckets with their longest length rounded up to a multiple of `multiple`
    (buckets that round to the same length merge)."""
    longest = [boundary - 1 for boundary in bucket_boundaries(max_length)] + [max_length]
    return sorted({-(-length // multiple) * multiple for length in longest})


def rows_per_batch(batch_tokens: int, length: int) -> int:
    """Sequences in a batch of sequences padded to `length` positions under a budget of
    batch_tokens (padding counted): at least one, however long."""
    return max(1, batch_tokens // length)


def batch_examples(
    examples: tf.data.Dataset, batch_tokens: int, max_length: int, shuffle_seed: int | None = None, shuffle_buffer: int = 0,
    fixed_shapes: bool = False,
) -> tf.data.Dataset:
    """Length-bucketed batches of examples (make_examples').

    Args:
        batch_tokens: token budget per batch: batch size x the bucket's longest sequence.
        max_length: longest kept sequence, counted without BOS/EOS.
        shuffle_seed: with shuffle_buffer, shuffle examples (and so batches) into the order this
            seed gives: the same seed, the same batches in the same order, in any process (an
            epoch resumed mid-way continues exactly where it stopped).
        fixed_shapes: every batch of a bucket has the same shape: sequences padded to one of
            fixed_lengths(max_length + 1) and rows_per_batch rows, the last batch of
            a bucket filled up with all-padding rows (which hold no tokens: the loss and the
            update are those of the real rows). XLA compiles a step once per input shape: a
            dozen shapes instead of one per batch.
    """
    if shuffle_buffer:
        examples = examples.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False)

    def length(example: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.maximum(tf.shape(example["source_ids"])[0], tf.shape(example["target_in"])[0])

    if fixed_shapes:
        lengths = fixed_lengths(max_length + 1)
        # Bucket i holds sequences of up to lengths[i] positions, padded to that; the final
        # bucket, for longer ones, never fills: its batch size is unused.
        batches = examples.bucket_by_sequence_length(
            element_length_func=length,
            bucket_boundaries=[bucket + 1 for bucket in lengths],
            bucket_batch_sizes=[rows_per_batch(batch_tokens, bucket) for bucket in lengths] + [1],
            pad_to_bucket_boundary=True,
        )
        rows = tf.constant([rows_per_batch(batch_tokens, length) for length in range(1, lengths[-1] + 1)])
        batches = batches.map(lambda batch: _fill_rows(batch, rows))
    else:
        boundaries = bucket_boundaries(max_length + 1)
        # Bucket i holds sequences shorter than boundaries[i]; the last one up to max_length + 1.
        longest = [*boundaries, max_length + 2]
        batches = examples.bucket_by_sequence_length(
            element_length_func=length,
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[rows_per_batch(batch_tokens, bucket - 1) for bucket in longest],
        )
    if shuffle_buffer:
        # Bucketing emits each bucket's partly filled batch when the data runs out: ~20 small
        # batches (down to 2 sentences) in a row at every epoch's end, just before validation and
        # the checkpoint. Adam gives each as large a step as a full batch: on Multi30k a model
        # scored validation BLEU 20.9 at an epoch's end and 29.9 half an epoch later. Shuffled
        # among full batches, they lowered validation loss at every epoch (see README).
        batches = batches.shuffle(BATCH_SHUFFLE_BUFFER, seed=shuffle_seed, reshuffle_each_iteration=False)
    return batches.prefetch(tf.data.AUTOTUNE)


def make_batches(pairs: tf.data.Dataset, tokenizers: Tokenizers, batch_tokens: int, max_length: int) -> tf.data.Dataset:
    """Batches of the pairs in a fixed order (validation): make_examples, then batch_examples."""
    return batch_examples(make_examples(pairs, tokenizers, max_length), batch_tokens, max_length)


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of one epoch (from 1): a function of the run's seed and the epoch alone."""
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def _fill_rows(batch: dict[str, tf.Tensor], rows: tf.Tensor) -> dict[str, tf.Tensor]:
    """A fixed-length batch with all-padding rows added up to its bucket's batch size (rows[n - 1]
    for sequences padded to n positions)."""
    missing = rows[tf.shape(batch["target_in"])[1] - 1] - tf.shape(batch["target_in"])[0]
    return {key: tf.pad(value, [[0, missing], [0, 0]]) for key, value in batch.items()}


def _to_example(source_ids: tf.Tensor, target_ids: tf.Tensor) -> dict[str, tf.Tensor]:
    target_in, target_out = shift_target(target_ids)
    return {"source_ids": source_ids, "target_in": target_in, "target_out": target_out}
