import numpy as np
import tensorflow as tf

from nmt.config import ModelConfig
from nmt.model.embedding import sinusoidal_positions
from nmt.model.transformer import Transformer, build_transformer

TINY = ModelConfig(num_encoder_layers=2, num_decoder_layers=2, hidden_dim=16, num_heads=2,
                   intermediate_dim=32, dropout=0.0, attention_dropout=0.0, max_length=32)


def run(model, source, target):
    return model({"source_ids": tf.constant(source), "target_in": tf.constant(target)}).numpy()


def test_output_shape_and_every_layer_has_weights():
    model = build_transformer(TINY, 40, 40)
    assert run(model, [[5, 6, 7, 0]], [[2, 9, 10]]).shape == (1, 3, 40)
    names = {weight.path.split("/")[1] for weight in model.weights}
    assert {"encoder_0", "encoder_1", "decoder_0", "decoder_1"} <= names


def test_decoder_is_causal():
    for norm in ("pre", "post"):
        model = build_transformer(ModelConfig(**{**TINY.__dict__, "norm": norm}), 40, 40)
        before = run(model, [[5, 6, 7]], [[2, 9, 10, 11, 12]])
        after = run(model, [[5, 6, 7]], [[2, 9, 10, 30, 31]])
        np.testing.assert_allclose(before[:, :3], after[:, :3], atol=1e-5)
        assert np.abs(before[:, 3:] - after[:, 3:]).max() > 1e-3


def test_source_padding_changes_nothing():
    model = build_transformer(TINY, 40, 40)
    np.testing.assert_allclose(
        run(model, [[5, 6, 7]], [[2, 9]]), run(model, [[5, 6, 7, 0, 0]], [[2, 9]]), atol=1e-5
    )


def test_separate_vocabularies_and_untied_output():
    config = ModelConfig(**{**TINY.__dict__, "share_embeddings": False, "tie_output": False})
    model = build_transformer(config, 30, 50)
    assert run(model, [[5, 29]], [[2, 49]]).shape == (1, 2, 50)


def test_get_config_round_trip():
    model = build_transformer(TINY, 40, 40)
    clone = Transformer.from_config(model.get_config())
    assert clone.get_config() == model.get_config()


def test_sinusoidal_positions():
    table = sinusoidal_positions(4, 6)
    np.testing.assert_allclose(table[0], [0, 1, 0, 1, 0, 1])
    np.testing.assert_allclose(table[2, 0], np.sin(2.0))
