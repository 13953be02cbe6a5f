"""The CTranslate2 conversion: the converted model gives every token the log-probability ours does."""

import dataclasses

import ctranslate2
import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf

from nmt import export_ctranslate2
from nmt.decoding.translator import Translator
from nmt.model.transformer import build_transformer
from tests.decoding.test_translator import tiny_setup

SOURCES = ["the dog runs", "a big house sees the small tree", "tree"]
TARGETS = ["the small cat", "a dog runs to the big house", "the tree the tree"]


@pytest.mark.parametrize("variant", [{}, {"norm": "post", "share_embeddings": False, "tie_output": False}],
                         ids=["pre-norm, tied", "post-norm, separate embeddings and output"])
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
