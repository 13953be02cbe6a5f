"""Our Transformer as a CTranslate2 model: the same weights, decoded by a dedicated C++ inference
engine (CPU or GPU, float or int8 weights).

CTranslate2 ships converters for other toolkits' checkpoints, not for Keras models, so this fills
its TransformerSpec with our weights. The `ctranslate2` package is optional (pip install
'nmt[ctranslate2]'), so it is imported only here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import ctranslate2
import numpy as np
import sentencepiece as spm
from ctranslate2.specs.model_spec import ACCEPTED_MODEL_TYPES

from nmt import export_manifest
from nmt.config import Config
from nmt.data.tokenizer import BOS_ID, PAD_ID
from nmt.errors import NmtError
from nmt.export import write_directory
from nmt.model.embedding import sinusoidal_positions
from nmt.model.transformer import Transformer

# translate_batch's default max_input_length (its max_decoding_length's is lower).
CTRANSLATE2_MAX_INPUT_LENGTH = 1024
# The attention variants CTranslate2's Transformer has.
CONVERTIBLE = ("multi_head", "multi_query", "grouped_query")


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


def export(config: Config, model: Transformer, tokenizer_files: dict[str, Path], checkpoint: Path, output: Path,
           force: bool, quantization: str) -> Path:
    """Writes the model (checkpoint's weights) as a CTranslate2 model directory output, its weights
    stored in quantization, with the SentencePiece models that cut its input and join its output
    (source.model, target.model, from tokenizer_files) and its manifest; refuses a non-empty output
    unless force, and never leaves it half-written. Returns output.

    Raises:
        NmtError: the model's attention cannot be converted, or quantization is not CTranslate2's
            (convert's check; nothing is left written).
    """

    def fill(directory: Path) -> None:
        convert(model, vocabulary(tokenizer_files["source"]), vocabulary(tokenizer_files["target"]), directory, quantization)
        for side, path in tokenizer_files.items():
            shutil.copyfile(path, directory / f"{side}.model")
        export_manifest.write(directory, checkpoint, config, export_format=export_manifest.CTRANSLATE2, quantization=quantization)

    return write_directory(output, force, fill)


def check(attention: str, quantization: str) -> None:
    """Raises NmtError for a model of this attention variant that cannot be converted, or weights
    that CTranslate2 cannot store in quantization: before any work."""
    if attention not in CONVERTIBLE:
        raise NmtError(f"the conversion to CTranslate2 takes {', '.join(CONVERTIBLE)} attention; this model has {attention}")
    if quantization not in ACCEPTED_MODEL_TYPES:
        raise NmtError(f"--quantization {quantization}: CTranslate2 stores weights as one of {', '.join(ACCEPTED_MODEL_TYPES)}")


def convert(model: Transformer, source_vocabulary: list[str], target_vocabulary: list[str], out: Path,
            quantization: str = "float32") -> Path:
    """Writes `model` (pre- or post-norm, shared or separate embeddings, tied or own output layer,
    any key/value heads) as a CTranslate2 model directory `out`, its weights stored in
    quantization; returns it.

    Raises:
        NmtError: the model's attention is not one CTranslate2 has, or quantization not its own.
    """
    check(model.attention, quantization)
    if model.attention == "multi_query":
        heads = {"multi_query_attention": True}
    else:  # grouped_query's groups are query heads next to each other, in CTranslate2 as in ours
        heads = {"num_heads_kv": model.num_kv_heads if model.attention == "grouped_query" else model.num_heads}
    pre_norm = model.norm == "pre"
    spec = ctranslate2.specs.TransformerSpec(
        ctranslate2.specs.TransformerEncoderSpec(model.num_encoder_layers, model.num_heads, pre_norm=pre_norm, **heads),
        ctranslate2.specs.TransformerDecoderSpec(model.num_decoder_layers, model.num_heads, pre_norm=pre_norm, **heads),
    )
    spec.config.layer_norm_epsilon = model.encoder_layers[0].attention_norm.epsilon
    # As many positions as CTranslate2's longest input and output by default (it fails beyond the
    # table): our searches stop at model.max_length, which translate_batch's max_input_length and
    # max_decoding_length reproduce; beyond it the formula goes on where training never went.
    positions = sinusoidal_positions(max(model.max_length, CTRANSLATE2_MAX_INPUT_LENGTH), model.hidden_dim)
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
    spec.optimize(quantization)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    return out
