"""The CTranslate2 conversion: the converted model gives every token the log-probability ours
does; the export holds it with its tokenizers and manifest (end to end in tests/test_cli_translate.py)."""

import dataclasses

import ctranslate2
import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf

from nmt import export_ctranslate2, export_manifest
from nmt.data import tokenizer
from nmt.decoding.translator import Translator
from nmt.errors import NmtError
from nmt.model.transformer import build_transformer
from tests.decoding.test_translator import tiny_setup

SOURCES = ["the dog runs", "a big house sees the small tree", "tree"]
TARGETS = ["the small cat", "a dog runs to the big house", "the tree the tree"]


@pytest.mark.parametrize("variant", [{}, {"norm": "post", "share_embeddings": False, "tie_output": False},
                                     {"attention": "multi_query", "num_heads": 4},
                                     {"attention": "grouped_query", "num_heads": 4, "num_kv_heads": 2}],
                         ids=["pre-norm, tied", "post-norm, separate embeddings and output", "multi_query", "grouped_query"])
def test_the_converted_model_scores_each_token_as_ours_does(tmp_path, variant):
    tf.keras.utils.set_random_seed(0)  # before the tokenizer loads: seeding drops its resources
    config, tokenizers = tiny_setup(tmp_path / "tokenizer", length_penalty=0.0)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, **variant))
    model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    ours = Translator(config, model, tokenizers).score(SOURCES, TARGETS)

    vocabulary = export_ctranslate2.vocabulary(tmp_path / "tokenizer" / "joint.model")
    converted = ctranslate2.Translator(str(export_ctranslate2.convert(model, vocabulary, vocabulary, tmp_path / "ct2")))
    pieces = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer" / "joint.model"))
    theirs = converted.score_batch(pieces.encode(SOURCES, out_type=str), pieces.encode(TARGETS, out_type=str))
    for scored, result in zip(ours, theirs):
        assert list(scored.pieces) == result.tokens
        np.testing.assert_allclose(scored.log_probs, result.log_probs, atol=1e-4)


def test_separate_vocabularies_convert_each_to_its_side(tmp_path):
    """Source and target SentencePiece models of other pieces: each side's ids are its own."""
    tf.keras.utils.set_random_seed(0)
    config, _ = tiny_setup(tmp_path / "unused")
    config = dataclasses.replace(config, tokenizer=dataclasses.replace(config.tokenizer, joint=False),
                                 model=dataclasses.replace(config.model, share_embeddings=False, max_length=64))
    targets = [" ".join(reversed(sentence.split())) for sentence in TARGETS]
    tokenizer.train(config.tokenizer, SOURCES * 30, targets * 30, tmp_path / "tokenizer")
    tokenizers = tokenizer.load(tmp_path / "tokenizer", joint=False)
    model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    ours = Translator(config, model, tokenizers).score(SOURCES, targets)
    files = tokenizer.model_files(tmp_path / "tokenizer", joint=False)
    vocabularies = {side: export_ctranslate2.vocabulary(files[side]) for side in ("source", "target")}
    assert vocabularies["source"] != vocabularies["target"]
    converted = export_ctranslate2.convert(model, vocabularies["source"], vocabularies["target"], tmp_path / "ct2")
    source, target = (spm.SentencePieceProcessor(model_file=str(files[side])) for side in ("source", "target"))
    theirs = ctranslate2.Translator(str(converted)).score_batch(source.encode(SOURCES, out_type=str),
                                                               target.encode(targets, out_type=str))
    for scored, result in zip(ours, theirs):
        assert list(scored.pieces) == result.tokens and len(result.tokens) > 1
        np.testing.assert_allclose(scored.log_probs, result.log_probs, atol=1e-4)


def test_an_export_holds_the_model_and_its_tokenizers_and_is_replaced_only_when_forced(tmp_path):
    tf.keras.utils.set_random_seed(0)
    config, tokenizers = tiny_setup(tmp_path / "tokenizer")
    model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    files = {side: tmp_path / "tokenizer" / "joint.model" for side in ("source", "target")}
    checkpoint, output = tmp_path / "checkpoints" / "best" / "ckpt-5", tmp_path / "ct2"
    export_ctranslate2.export(config, model, files, checkpoint, output, force=False, quantization="float32")
    assert {"model.bin", "config.json", "source.model", "target.model", export_manifest.FILE} <= {p.name for p in output.iterdir()}
    manifest = export_manifest.read(output)
    assert (manifest["format"], manifest["quantization"], manifest["checkpoint"]) == ("ctranslate2", "float32", str(checkpoint))
    float32_bytes = (output / "model.bin").stat().st_size

    with pytest.raises(NmtError, match="exists and is not empty; pass --force"):
        export_ctranslate2.export(config, model, files, checkpoint, output, force=False, quantization="int8")
    with pytest.raises(NmtError, match="CTranslate2 stores weights as one of int8, "):
        export_ctranslate2.export(config, model, files, checkpoint, output, force=True, quantization="int4")
    additive = dataclasses.replace(config.model, attention="additive", num_heads=1)
    with pytest.raises(NmtError, match="takes multi_head, multi_query, grouped_query attention; this model has additive"):
        export_ctranslate2.export(config, build_transformer(additive, tokenizers.source_vocab_size, tokenizers.target_vocab_size),
                                  files, checkpoint, output, force=True, quantization="int8")
    assert (output / "model.bin").stat().st_size == float32_bytes  # refused: the export is as it was

    export_ctranslate2.export(config, model, files, checkpoint, output, force=True, quantization="int8")
    assert export_manifest.read(output)["quantization"] == "int8" and (output / "model.bin").stat().st_size < float32_bytes
    pieces = spm.SentencePieceProcessor(model_file=str(output / "source.model")).encode(SOURCES, out_type=str)
    assert len(ctranslate2.Translator(str(output)).translate_batch(pieces)) == len(SOURCES)
