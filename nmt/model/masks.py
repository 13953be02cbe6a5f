"""Attention masks: True where a query position may attend to a key position."""

from __future__ import annotations

import tensorflow as tf

from nmt.data.tokenizer import PAD_ID


def padding_mask(token_ids: tf.Tensor) -> tf.Tensor:
    """(batch, 1, key_len): keys that are real tokens, not padding."""
    return tf.not_equal(token_ids, PAD_ID)[:, tf.newaxis, :]


def causal_mask(length: tf.Tensor | int) -> tf.Tensor:
    """(1, length, length): position i may attend to positions 0..i only."""
    positions = tf.range(length)
    return (positions[tf.newaxis, :] <= positions[:, tf.newaxis])[tf.newaxis]


def decoder_self_mask(target_ids: tf.Tensor) -> tf.Tensor:
    """(batch, tgt_len, tgt_len): causal and not padding."""
    return tf.logical_and(causal_mask(tf.shape(target_ids)[1]), padding_mask(target_ids))


def cross_mask(target_ids: tf.Tensor, source_ids: tf.Tensor) -> tf.Tensor:
    """(batch, tgt_len, src_len): every target position sees every real source token."""
    queries = tf.ones_like(target_ids, dtype=tf.bool)[:, :, tf.newaxis]
    return tf.logical_and(queries, padding_mask(source_ids))
