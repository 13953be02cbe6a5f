"""Label-smoothed cross-entropy and accuracy over real (non-padding) target tokens."""

from __future__ import annotations

import tensorflow as tf

from nmt.data.tokenizer import PAD_ID


def real_target_logits(
    model, batch: dict[str, tf.Tensor], training: bool, drop_padding: bool = True
) -> tuple[tf.Tensor, tf.Tensor]:
    """(labels (tokens,), logits (tokens, vocab)) of the batch's real target tokens only.

    The vocabulary projection and the softmax over it are most of a small model's work per
    token; running them on padding positions (~10% of a bucketed batch) would be waste. With
    drop_padding=False all positions are kept ((batch, tgt_len) labels, PAD_ID on padding): XLA
    compiles once per input shape, and the number of real tokens would be a new shape every step.
    """
    if not drop_padding:
        return batch["target_out"], model(batch, training=training)
    memory = model.encode(batch["source_ids"], training=training)
    states = model.decoder_states(batch["target_in"], memory, batch["source_ids"], training=training)
    real = tf.not_equal(batch["target_out"], PAD_ID)
    return tf.boolean_mask(batch["target_out"], real), model.logits(tf.boolean_mask(states, real))


def label_smoothed_loss(labels: tf.Tensor, logits: tf.Tensor, smoothing: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Summed loss and number of real tokens.

    Per token: (1 - smoothing) * NLL(label) + smoothing * mean over the vocabulary of -log p.

    Args:
        labels: (...) ids, PAD_ID where there is no token.
        logits: (..., vocab).
    """
    weights = tf.cast(tf.not_equal(labels, PAD_ID), tf.float32)
    per_token = _smoothed_cross_entropy(labels, tf.cast(logits, tf.float32), smoothing)
    return tf.reduce_sum(per_token * weights), tf.reduce_sum(weights)


def _smoothed_cross_entropy(labels: tf.Tensor, logits: tf.Tensor, smoothing: float) -> tf.Tensor:
    """Per-token label-smoothed cross-entropy with a hand-written gradient.

    Keras's sparse cross-entropy has no label smoothing, the dense one needs one-hot targets of
    size (tokens, vocab), and autodiff through log_softmax takes several passes over that size:
    on a small model the loss was a fifth of the training step. Here the forward pass is
    logsumexp(logits) - (1 - s) * logits[label] - s * mean(logits), and the gradient is
    softmax(logits) - (1 - s) * onehot(label) - s / vocab, each one pass over the logits.
    """
    vocab = tf.shape(logits)[-1]

    @tf.custom_gradient
    def loss(logits):
        log_normaliser = tf.reduce_logsumexp(logits, axis=-1)
        label_logit = tf.gather(logits, labels, axis=-1, batch_dims=labels.shape.rank)
        value = log_normaliser - (1.0 - smoothing) * label_logit - smoothing * tf.reduce_mean(logits, axis=-1)

        def gradient(upstream):
            upstream = upstream[..., tf.newaxis]
            probs = tf.exp(logits - log_normaliser[..., tf.newaxis])
            label_mass = tf.one_hot(labels, vocab, on_value=1.0 - smoothing, off_value=0.0)
            return upstream * (probs - label_mass - smoothing / tf.cast(vocab, tf.float32))

        return value, gradient

    return loss(logits)


def real_tokens(labels: tf.Tensor) -> tf.Tensor:
    """Number of non-padding labels, as float32."""
    return tf.reduce_sum(tf.cast(tf.not_equal(labels, PAD_ID), tf.float32))


def correct_tokens(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Number of real target tokens whose argmax prediction is right."""
    predictions = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    hits = tf.logical_and(tf.equal(predictions, labels), tf.not_equal(labels, PAD_ID))
    return tf.reduce_sum(tf.cast(hits, tf.float32))
