"""Greedy search: at each step, append the most likely next token."""

from __future__ import annotations

import tensorflow as tf

from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.model.transformer import Transformer


def greedy_search(model: Transformer, source_ids: tf.Tensor, max_lengths: tf.Tensor) -> tf.Tensor:
    """Translates a batch; every output ends at EOS or at its length limit.

    Args:
        source_ids: (batch, src_len) 0-padded source ids.
        max_lengths: (batch,) most tokens each output may have before EOS.

    Returns:
        (batch, out_len) target ids without BOS, each followed by EOS and then PAD_ID.
    """
    batch_size = tf.shape(source_ids)[0]
    memory = model.encode(source_ids, training=False)  # (batch, src_len, hidden_dim)
    # PAD and BOS are never correct outputs; excluding them keeps the output well-formed.
    forbidden = tf.scatter_nd([[PAD_ID], [BOS_ID]], [True, True], [model.target_vocab_size])

    def not_done(step, ids, finished):
        return tf.logical_not(tf.reduce_all(finished))

    def extend(step, ids, finished):
        logits = model.decode(ids, memory, source_ids, training=False)[:, -1, :]  # (batch, vocab)
        logits = tf.where(forbidden, tf.cast(-1e9, logits.dtype), logits)
        next_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
        next_ids = tf.where(step >= max_lengths, EOS_ID, next_ids)
        next_ids = tf.where(finished, PAD_ID, next_ids)
        finished = tf.logical_or(finished, tf.equal(next_ids, EOS_ID))
        return step + 1, tf.concat([ids, next_ids[:, tf.newaxis]], axis=1), finished

    _, ids, _ = tf.while_loop(
        not_done,
        extend,
        (tf.constant(0), tf.fill([batch_size, 1], BOS_ID), tf.zeros([batch_size], tf.bool)),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None]), tf.TensorShape([None])),
    )
    return ids[:, 1:]
