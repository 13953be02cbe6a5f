import numpy as np
import tensorflow as tf

from nmt.training.losses import correct_tokens, label_smoothed_loss


def test_padding_is_ignored_and_matches_sparse_cross_entropy():
    logits = tf.random.stateless_normal((2, 3, 7), seed=(1, 2))
    labels = tf.constant([[4, 5, 0], [6, 0, 0]])
    total, tokens = label_smoothed_loss(labels, logits, 0.0)
    assert float(tokens) == 3.0
    expected = tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True).numpy()
    np.testing.assert_allclose(float(total), expected[0, 0] + expected[0, 1] + expected[1, 0], rtol=1e-5)
    changed = tf.tensor_scatter_nd_update(logits, [[0, 2, 0]], [100.0])  # a padding position
    np.testing.assert_allclose(float(label_smoothed_loss(labels, changed, 0.0)[0]), float(total), rtol=1e-6)


def test_smoothing_penalises_overconfidence():
    labels = tf.constant([[1]])
    confident = tf.constant([[[0.0, 50.0, 0.0]]])
    assert float(label_smoothed_loss(labels, confident, 0.0)[0]) < 1e-6
    assert float(label_smoothed_loss(labels, confident, 0.1)[0]) > 1.0


def test_correct_tokens_counts_real_tokens_only():
    logits = tf.one_hot([[3, 2, 1]], 4) * 10
    assert float(correct_tokens(tf.constant([[3, 1, 0]]), logits)) == 1.0
