"""Our Transformer as a CTranslate2 model: the same weights, decoded by a dedicated C++ inference
engine (CPU or GPU, float or int8 weights).

CTranslate2 ships converters for other toolkits' checkpoints, not for Keras models, so this fills
its TransformerSpec with our weights. The `ctranslate2` package is optional (pip install
'nmt[ctranslate2]'), so it is imported only here.
"""

from __future__ import annotations

from pathlib import Path

import ctranslate2
import numpy as np
import sentencepiece as spm

from nmt.data.tokenizer import BOS_ID, PAD_ID
from nmt.model.embedding import sinusoidal_positions
from nmt.model.transformer import Transformer


def _linear(spec, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
    """CTranslate2 linear layers hold (out, in) weights; ours hold (in, out)."""
    spec.weight = np.ascontiguousarray(weight.T, dtype=np.float32)
    if bias is not None:
        spec.bias = bias.astype(np.float32)


def _norm(spec, layer) -> None:
    spec.gamma, spec.beta = layer.gamma.numpy(), layer.beta.numpy()


def _attention(spec, attention, fused: list[list[str]]) -> None:
    """Fills CTranslate2's fused linear layers, in its order ((query, key, value), (key, value) or
    (output)), with the attention layer's projections."""
    weights = attention.dense_weights()
    for linear, names in zip(spec.linear, fused):
        _linear(linear, np.concatenate([weights[name][0] for name in names], axis=1),
                np.concatenate([weights[name][1] for name in names]))


def _feed_forward(spec, feed_forward, norm) -> None:
    _norm(spec.layer_norm, norm)
    _linear(spec.linear_0, feed_forward.inner.kernel.numpy(), feed_forward.inner.bias.numpy())
    _linear(spec.linear_1, feed_forward.outer.kernel.numpy(), feed_forward.outer.bias.numpy())


def vocabulary(model_file: Path) -> list[str]:
    """The SentencePiece model's pieces in id order; its <unk>, <s>, </s> are CTranslate2's defaults."""
    processor = spm.SentencePieceProcessor(model_file=str(model_file))
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def convert(model: Transformer, source_vocabulary: list[str], target_vocabulary: list[str], out: Path) -> Path:
    """Writes `model` (pre- or post-norm, shared or separate embeddings, tied or own output layer)
    as a float32 CTranslate2 model directory `out`; returns it.

    Raises:
        ValueError: the model's attention is not multi_head (CTranslate2's Transformer specs
            have no additive, single-head unprojected or shared key/value-head attention).
    """
    if model.attention != "multi_head":
        raise ValueError(
            f"CTranslate2 cannot express model.attention={model.attention}: its encoder-decoder Transformer "
            "has multi_head attention only"
        )
    spec = ctranslate2.specs.TransformerSpec.from_config(
        (model.num_encoder_layers, model.num_decoder_layers), model.num_heads, pre_norm=model.norm == "pre",
    )
    spec.config.layer_norm_epsilon = model.encoder_layers[0].attention_norm.epsilon
    positions = sinusoidal_positions(model.max_length, model.hidden_dim)
    source_table = model.source_embedding.token_embedding.embeddings.numpy()
    target_table = model.target_embedding.token_embedding.embeddings.numpy()

    encoder = spec.encoder
    encoder.embeddings[0].weight = source_table
    encoder.position_encodings.encodings = positions
    for layer_spec, layer in zip(encoder.layer, model.encoder_layers):
        _norm(layer_spec.self_attention.layer_norm, layer.attention_norm)
        _attention(layer_spec.self_attention, layer.self_attention,
                   [["query", "key", "value"], ["output"]])
        _feed_forward(layer_spec.ffn, layer.feed_forward, layer.feed_forward_norm)
    if model.encoder_norm is not None:
        _norm(encoder.layer_norm, model.encoder_norm)

    decoder = spec.decoder
    decoder.embeddings.weight = target_table
    decoder.position_encodings.encodings = positions
    for layer_spec, layer in zip(decoder.layer, model.decoder_layers):
        _norm(layer_spec.self_attention.layer_norm, layer.self_attention_norm)
        _attention(layer_spec.self_attention, layer.self_attention,
                   [["query", "key", "value"], ["output"]])
        _norm(layer_spec.attention.layer_norm, layer.cross_attention_norm)
        _attention(layer_spec.attention, layer.cross_attention,
                   [["query"], ["key", "value"], ["output"]])
        _feed_forward(layer_spec.ffn, layer.feed_forward, layer.feed_forward_norm)
    if model.decoder_norm is not None:
        _norm(decoder.layer_norm, model.decoder_norm)
    if model.output_projection is None:
        decoder.projection.weight, bias = target_table, np.zeros(len(target_table), np.float32)  # stored once
    else:
        _linear(decoder.projection, model.output_projection.kernel.numpy())
        bias = model.output_projection.bias.numpy().astype(np.float32)
    # Our searches and scores never give PAD or BOS (next_token_log_probs); CTranslate2 would,
    # so the bias takes them out of its softmax too. Far below any logit, and within float16's range.
    bias[[PAD_ID, BOS_ID]] = -1e4
    decoder.projection.bias = bias

    spec.register_source_vocabulary(source_vocabulary)
    spec.register_target_vocabulary(target_vocabulary)
    spec.validate()
    spec.optimize()
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    return out
