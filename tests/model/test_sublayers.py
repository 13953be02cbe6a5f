import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from nmt.config import ModelConfig
from nmt.model.sublayers import BuiltByFirstCall, Dropout
from nmt.model.transformer import build_transformer


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_dropout_drops_at_its_rate_and_keeps_the_expected_value(dtype):
    ones = tf.ones((101, 33, 61), dtype)  # an odd number of elements: half a random word is left over
    dropped = Dropout(0.1, seed=1)(ones, training=True).numpy().astype(np.float32)
    assert dropped.shape == (101, 33, 61)
    zero = dropped == 0
    assert abs(zero.mean() - 0.1) < 0.005
    # The rate is quantised to 1/65536 (the scale follows it); bfloat16 rounds the scale to 8 bits.
    np.testing.assert_allclose(dropped[~zero], 1 / 0.9, rtol=1e-2 if dtype == tf.bfloat16 else 1e-4)
    assert abs(dropped.mean() - 1.0) < (0.01 if dtype == tf.bfloat16 else 0.005)


def test_dropout_draws_a_new_mask_each_call_and_none_outside_training():
    layer = Dropout(0.5, seed=2)
    x = tf.ones((64, 64))
    first, second = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert (first != second).any()
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True).numpy(), x.numpy())


@pytest.mark.parametrize("settings", [
    {},
    {"share_embeddings": False, "tie_output": False, "norm": "post"},
    {"attention": "grouped_query", "num_kv_heads": 1},
    {"attention": "additive", "attention_projections": False},
])
def test_layers_built_by_their_first_call_get_the_weights_of_keras_symbolic_build(monkeypatch, settings):
    config = dataclasses.replace(ModelConfig(num_encoder_layers=2, num_decoder_layers=2, hidden_dim=16, num_heads=2,
                                             intermediate_dim=32), **settings)

    def weights():
        keras.utils.set_random_seed(3)
        model = build_transformer(config, 30, 30)
        return {weight.path: weight.numpy() for weight in model.weights}

    ours = weights()
    # Keras's own build: the layer's call traced on symbolic inputs, creating every weight it reaches.
    monkeypatch.setattr(BuiltByFirstCall, "build", keras.layers.Layer.build)
    theirs = weights()
    assert list(ours) == list(theirs)
    for path, value in theirs.items():
        np.testing.assert_array_equal(ours[path], value, err_msg=path)
