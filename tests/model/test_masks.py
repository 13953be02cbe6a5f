import numpy as np
import tensorflow as tf

from nmt.model import masks


def test_padding_mask():
    ids = tf.constant([[5, 6, 0], [7, 0, 0]])
    np.testing.assert_array_equal(masks.padding_mask(ids).numpy(), [[[1, 1, 0]], [[1, 0, 0]]])


def test_causal_mask():
    np.testing.assert_array_equal(masks.causal_mask(3).numpy()[0], [[1, 0, 0], [1, 1, 0], [1, 1, 1]])


def test_decoder_self_mask_is_causal_and_hides_padding():
    mask = masks.decoder_self_mask(tf.constant([[2, 8, 0]])).numpy()[0]
    np.testing.assert_array_equal(mask, [[1, 0, 0], [1, 1, 0], [1, 1, 0]])


def test_cross_mask_hides_source_padding():
    mask = masks.cross_mask(tf.constant([[2, 8]]), tf.constant([[4, 0, 0]])).numpy()[0]
    np.testing.assert_array_equal(mask, [[1, 0, 0], [1, 0, 0]])
