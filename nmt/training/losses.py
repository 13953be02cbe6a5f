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
    Under a mixed policy the model computes the logits in 16 bits; the loss reads them in float32.
    """
    if not drop_padding:
        return batch["target_out"], model(batch, training=training)
    memory = model.encode(batch["source_ids"], training=training)
    states = model.decoder_states(batch["target_in"], memory, batch["source_ids"], training=training)
    real = tf.not_equal(batch["target_out"], PAD_ID)
    return tf.boolean_mask(batch["target_out"], real), model.logits(tf.boolean_mask(states, real))


def label_smoothed_loss(labels: tf.Tensor, logits: tf.Tensor, smoothing: float) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Summed loss, number of real tokens, and number of them whose label has the highest logit
    (the greedy prediction is right; the accuracy comes with the loss, which has the max at hand).

    Per token: (1 - smoothing) * NLL(label) + smoothing * mean over the vocabulary of -log p.

    Args:
        labels: (...) ids, PAD_ID where there is no token.
        logits: (..., vocab).
    """
    weights = tf.cast(tf.not_equal(labels, PAD_ID), tf.float32)
    per_token, hits = _smoothed_cross_entropy(labels, tf.cast(logits, tf.float32), smoothing)
    return tf.reduce_sum(per_token * weights), tf.reduce_sum(weights), tf.reduce_sum(hits * weights)


def _smoothed_cross_entropy(labels: tf.Tensor, logits: tf.Tensor, smoothing: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-token label-smoothed cross-entropy with a hand-written gradient, and per token 1.0
    where the label has the highest logit (0.0 elsewhere; no gradient).

    Keras's sparse cross-entropy has no label smoothing, the dense one needs one-hot targets of
    size (tokens, vocab), and autodiff through log_softmax takes several passes over that size.
    Here the forward pass is logsumexp(logits) - (1 - s) * logits[label] - s * mean(logits), and
    the gradient softmax(logits) - (1 - s) * onehot(label) - s / vocab. The loss is a large part
    of a small model's step, so each pass over the (tokens, vocab) logits counts: one fused
    softmax (kept for the gradient), two max and one mean reduction forward; two elementwise
    passes and an in-place scatter at the labels backward (4x faster than logsumexp, a second
    exp for the gradient and a one-hot, as measured for 3,700 tokens x 8,000; the accuracy's
    argmax cost ~3x the max it now shares).
    """
    shape = tf.shape(labels)
    vocab = tf.shape(logits)[-1]
    labels = tf.reshape(labels, [-1])
    logits = tf.reshape(logits, [-1, vocab])
    rows = tf.range(tf.shape(labels)[0], dtype=labels.dtype)

    @tf.custom_gradient
    def loss(logits):
        probs = tf.nn.softmax(logits)
        # logsumexp = max logit - log(its probability); that probability is >= 1 / vocab, so
        # unlike a label's it never underflows.
        max_logit = tf.reduce_max(logits, axis=-1)
        log_normaliser = max_logit - tf.math.log(tf.reduce_max(probs, axis=-1))
        label_logit = tf.gather(logits, labels, axis=-1, batch_dims=1)
        value = log_normaliser - (1.0 - smoothing) * label_logit - smoothing * tf.reduce_mean(logits, axis=-1)
        hits = tf.cast(label_logit >= max_logit, tf.float32)

        def gradient(upstream, _):
            spread = upstream[:, tf.newaxis] * (probs - smoothing / tf.cast(vocab, tf.float32))
            at_labels = tf.stack([rows, labels], axis=1)
            return tf.tensor_scatter_nd_sub(spread, at_labels, upstream * (1.0 - smoothing))

        return (value, hits), gradient

    value, hits = loss(logits)
    return tf.reshape(value, shape), tf.reshape(hits, shape)


def real_tokens(labels: tf.Tensor) -> tf.Tensor:
    """Number of non-padding labels, as float32."""
    return tf.reduce_sum(tf.cast(tf.not_equal(labels, PAD_ID), tf.float32))
