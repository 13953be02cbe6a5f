"""Label-smoothed cross-entropy and accuracy over real (non-padding) target tokens."""

from __future__ import annotations

import tensorflow as tf

from nmt.data.tokenizer import PAD_ID


def label_smoothed_loss(labels: tf.Tensor, logits: tf.Tensor, smoothing: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Summed loss and number of real tokens.

    Keras's sparse cross-entropy has no label smoothing and the dense one needs one-hot targets of
    size (batch, tgt_len, vocab); this mixes the two terms directly from the log-probabilities:
    (1 - smoothing) * NLL(label) + smoothing * mean over the vocabulary of -log p.

    Args:
        labels: (batch, tgt_len) ids, PAD_ID where there is no token.
        logits: (batch, tgt_len, vocab).
    """
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    nll = -tf.gather(log_probs, labels, axis=-1, batch_dims=2)  # (batch, tgt_len)
    uniform = -tf.reduce_mean(log_probs, axis=-1)  # (batch, tgt_len)
    per_token = (1.0 - smoothing) * nll + smoothing * uniform
    weights = tf.cast(tf.not_equal(labels, PAD_ID), tf.float32)
    return tf.reduce_sum(per_token * weights), tf.reduce_sum(weights)


def real_tokens(labels: tf.Tensor) -> tf.Tensor:
    """Number of non-padding labels, as float32."""
    return tf.reduce_sum(tf.cast(tf.not_equal(labels, PAD_ID), tf.float32))


def correct_tokens(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Number of real target tokens whose argmax prediction is right."""
    predictions = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    hits = tf.logical_and(tf.equal(predictions, labels), tf.not_equal(labels, PAD_ID))
    return tf.reduce_sum(tf.cast(hits, tf.float32))
