import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from nmt.config import ModelConfig
from nmt.model.transformer import build_transformer
from nmt.training import precision


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(precision, "_gpu_compute_capability", lambda: None)


def with_flags(monkeypatch, *flags):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))


def test_bfloat16_on_a_cpu_with_bf16_units(cpu_only, monkeypatch):
    with_flags(monkeypatch, "avx512f", "avx512_bf16")
    assert precision.resolve("mixed_bfloat16") == "mixed_bfloat16"
    assert precision.resolve("auto") == "mixed_bfloat16"


def test_unsupported_precision_falls_back_to_float32_with_a_warning(cpu_only, monkeypatch, caplog):
    with_flags(monkeypatch, "avx2")
    with caplog.at_level(logging.WARNING, logger="nmt"):
        assert precision.resolve("mixed_bfloat16") == "float32"
        assert precision.resolve("mixed_float16") == "float32"
    assert "no bfloat16 units" in caplog.text and "no fast float16" in caplog.text
    assert precision.resolve("auto") == "float32"


def test_policy_scope_builds_a_mixed_model_and_restores_float32():
    config = ModelConfig(num_encoder_layers=1, num_decoder_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32)
    with precision.policy_scope("mixed_bfloat16"):
        model = build_transformer(config, 30, 30)
    assert keras.config.dtype_policy().name == "float32"
    assert all(weight.dtype == "float32" for weight in model.weights)
    ids = tf.constant([[5, 6, 7]])
    logits = model({"source_ids": ids, "target_in": ids})
    assert logits.dtype == tf.bfloat16 and np.isfinite(logits.numpy().astype(np.float32)).all()
