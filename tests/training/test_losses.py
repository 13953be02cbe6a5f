import numpy as np
import tensorflow as tf

from nmt.config import ModelConfig
from nmt.model.transformer import build_transformer
from nmt.training.losses import label_smoothed_loss, real_target_logits


def test_padding_is_ignored_and_matches_sparse_cross_entropy():
    logits = tf.random.stateless_normal((2, 3, 7), seed=(1, 2))
    labels = tf.constant([[4, 5, 0], [6, 0, 0]])
    total, tokens, _ = label_smoothed_loss(labels, logits, 0.0)
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
    assert float(label_smoothed_loss(tf.constant([[3, 1, 0]]), logits, 0.1)[2]) == 1.0


def test_loss_is_exact_where_the_label_probability_underflows():
    # p(label) = e^-200 is 0 in float32; the loss must still be 200, not inf or a clipped value.
    logits = tf.constant([[0.0, 200.0, 0.0]])
    total, _, correct = label_smoothed_loss(tf.constant([2]), logits, 0.0)
    np.testing.assert_allclose(float(total), 200.0, rtol=1e-6)
    assert float(correct) == 0.0


def test_gradient_equals_autodiff_of_log_softmax_form():
    logits = tf.random.stateless_normal((2, 3, 7), seed=(3, 4))
    labels = tf.constant([[4, 5, 0], [6, 1, 2]])
    weights = tf.cast(tf.not_equal(labels, 0), tf.float32)
    upstream = tf.random.stateless_normal((), seed=(5, 6))
    for smoothing in (0.0, 0.1):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(logits)
            log_probs = tf.nn.log_softmax(logits)
            nll = -tf.gather(log_probs, labels, axis=-1, batch_dims=2)
            expected = tf.reduce_sum(((1 - smoothing) * nll - smoothing * tf.reduce_mean(log_probs, -1)) * weights)
            total, _, _ = label_smoothed_loss(labels, logits, smoothing)
        np.testing.assert_allclose(float(total), float(expected), rtol=1e-5)
        np.testing.assert_allclose(
            tape.gradient(total, logits, output_gradients=upstream).numpy(),
            tape.gradient(expected, logits, output_gradients=upstream).numpy(), atol=1e-6,
        )


def test_dropping_padding_positions_changes_no_loss():
    model = build_transformer(ModelConfig(num_encoder_layers=1, num_decoder_layers=1, hidden_dim=16, num_heads=2,
                                          intermediate_dim=32), 30, 30)
    batch = {
        "source_ids": tf.constant([[5, 6, 7], [8, 9, 0]]),
        "target_in": tf.constant([[1, 10, 11, 12], [1, 13, 0, 0]]),
        "target_out": tf.constant([[10, 11, 12, 2], [13, 2, 0, 0]]),
    }
    labels, logits = real_target_logits(model, batch, training=False)
    assert labels.shape == (6,) and logits.shape == (6, 30)
    all_labels, all_logits = real_target_logits(model, batch, training=False, drop_padding=False)
    assert all_logits.shape == (2, 4, 30)
    dropped, kept = label_smoothed_loss(labels, logits, 0.1), label_smoothed_loss(all_labels, all_logits, 0.1)
    np.testing.assert_allclose([float(x) for x in dropped], [float(x) for x in kept], rtol=1e-5)


def test_rows_of_padding_change_neither_loss_nor_gradient_under_xla():
    """Fixed-shape batches (what jit_compile trains on) fill a bucket's last batch with rows of
    padding: the XLA-compiled loss and gradient must be those of the real rows alone."""
    model = build_transformer(ModelConfig(num_encoder_layers=1, num_decoder_layers=1, hidden_dim=16, num_heads=2,
                                          intermediate_dim=32, dropout=0.0, attention_dropout=0.0), 30, 30)
    real = {
        "source_ids": tf.constant([[5, 6, 7, 0], [8, 9, 0, 0]]),
        "target_in": tf.constant([[1, 10, 11, 12], [1, 13, 0, 0]]),
        "target_out": tf.constant([[10, 11, 12, 2], [13, 2, 0, 0]]),
    }
    filled = {key: tf.pad(value, [[0, 3], [0, 0]]) for key, value in real.items()}

    @tf.function(jit_compile=True)
    def loss_and_gradients(batch):
        with tf.GradientTape() as tape:
            labels, logits = real_target_logits(model, batch, training=True, drop_padding=False)
            loss = label_smoothed_loss(labels, logits, 0.1)[0]
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, gradients = loss_and_gradients(real)
    filled_loss, filled_gradients = loss_and_gradients(filled)
    np.testing.assert_allclose(float(filled_loss), float(loss), rtol=1e-5)
    for expected, got in zip(gradients, filled_gradients):
        np.testing.assert_allclose(tf.convert_to_tensor(got).numpy(), tf.convert_to_tensor(expected).numpy(),
                                   rtol=1e-4, atol=1e-6)
