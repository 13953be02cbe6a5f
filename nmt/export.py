"""A trained run as a self-contained TensorFlow SavedModel: raw UTF-8 strings in, translations
out, with SentencePiece tokenization, length limits, the search and detokenization inside the
graph. Loading it needs `tensorflow` and `tensorflow_text` (whose import registers the
SentencePiece ops), not nmt.

Signature `serving_default`: input `text` (string, [batch]); outputs `translation` (string,
[batch]) and `score` (float32, [batch]: log-probability over the length penalty, as
`nmt translate --n-best` prints it). An empty input gives an empty translation scored 0.
Signature `source_lengths`: input `text`; output `length` (int32, [batch]), the tokens of each
sentence that are translated, by which a caller can batch sentences of similar length.
Signature `translate_with_prefix`: inputs `text` and `prefix` (string, [batch]: the text each
translation begins with, '' for none); outputs as `serving_default`'s.
Signature `token_counts`: inputs `text` and `prefix`; outputs `source` and `prefix` (int32,
[batch]), their subwords before any cut to the model's lengths, by which a caller can say which
sentences and prefixes are cut.
Signature `translate_with_constraints`, in an export made with constraints: inputs `text`,
`prefix` and `constraints` (string, [batch]: the texts each translation must contain, separated
by tabs, '' for none); outputs `translation` and `score` as `serving_default`'s, `placed` (bool,
[batch]: the translation holds every constraint the vocabulary can write; an empty sentence's
none), `writable` (bool,
[batch, texts]: whether the target vocabulary can write each text; one it cannot is left out) and
`constraint_tokens` (int32, [batch]: the subwords of the writable constraints and the prefix;
more than the model's longest output, and all are left out). A sentence whose constraints no
hypothesis placed is translated as without them. As `nmt translate --constraint-file` does.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from nmt import atomic, export_manifest
from nmt.config import Config
from nmt.data.tokenizer import EOS_ID, PAD_ID, UNK_ID, Tokenizers
from nmt.decoding.plan import batch_out_of_memory, decoding_batches, length_limits, warn_long_prefixes, warn_long_sources
from nmt.decoding.search import DEAD, beam_search, greedy_search
from nmt.decoding.translator import padded, word_continuations
from nmt.errors import NmtError
from nmt.model.transformer import Transformer

SIGNATURE = "serving_default"
LENGTHS_SIGNATURE = "source_lengths"
PREFIX_SIGNATURE = "translate_with_prefix"
COUNTS_SIGNATURE = "token_counts"
CONSTRAINTS_SIGNATURE = "translate_with_constraints"


class _Serving(tf.Module):
    """What the SavedModel holds: the tokenizers' and the model's resources, and the function."""

    def __init__(self, config: Config, model: Transformer, tokenizers: Tokenizers, constraints: bool = False):
        super().__init__(name="nmt_translator")
        self.source_tokenizer = tokenizers.source
        self.target_tokenizer = tokenizers.target
        # Tracked explicitly: the function captures these variables, and a SavedModel holds only
        # what its root tracks (Keras 3 does not track layers kept in Python lists).
        self.model_variables = list(model.weights)
        self._max_length = model.max_length
        decode = config.decode
        self._limits = functools.partial(length_limits, decode=decode, max_length=model.max_length, xp=tnp)
        if decode.beam_size == 1:
            self._search = functools.partial(greedy_search, model, alpha=decode.length_penalty,
                                             no_repeat_ngram_size=decode.no_repeat_ngram_size)
        else:
            self._search = functools.partial(beam_search, model, beam_size=decode.beam_size, alpha=decode.length_penalty,
                                             num_best=1, no_repeat_ngram_size=decode.no_repeat_ngram_size)
        if constraints:
            # Held only when asked for: a SavedModel keeps every function its root holds, and each
            # search graph makes every load of the export slower.
            self._constrained_search = functools.partial(
                beam_search, model, beam_size=decode.beam_size, alpha=decode.length_penalty, num_best=1,
                no_repeat_ngram_size=decode.no_repeat_ngram_size,
                word_continuations=word_continuations(tokenizers) if decode.constraint_whole_words else None)
            texts = tf.TensorSpec([None], tf.string)
            self.translate_with_constraints = tf.function(
                self._translate_with_constraints, autograph=False,
                input_signature=[tf.TensorSpec.from_spec(texts, name) for name in ("text", "prefix", "constraints")])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")], autograph=False)
    def source_lengths(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"length": tf.cast(self._pieces(text).row_lengths(), tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")], autograph=False)
    def translate(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        # The prefix signature's function with no prefixes: the SavedModel then holds one search
        # graph, not two (a second one took ~1 s more to load, at every translate through the export).
        return self.translate_with_prefix(text, tf.fill(tf.shape(text), ""))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"), tf.TensorSpec([None], tf.string, name="prefix")],
                 autograph=False)
    def translate_with_prefix(self, text: tf.Tensor, prefix: tf.Tensor) -> dict[str, tf.Tensor]:
        """Translations that begin with their prefix ('' for none), as `nmt translate --prefix-file`
        gives them; a prefix longer than the model's longest output is cut."""
        pieces = self._pieces(text)
        lengths = tf.cast(pieces.row_lengths(), tf.int32)
        prefix_pieces, prefix_lengths = self._prefix_pieces(prefix)
        # An empty source is blanked after the search; an empty prefix forces nothing.
        output_ids, scores = self._search(padded(pieces, lengths), self._limits(lengths, prefix_lengths=prefix_lengths),
                                          prefix_ids=padded(prefix_pieces, prefix_lengths))
        empty = tf.equal(lengths, 0)
        return {
            "translation": tf.where(empty, tf.constant(""), self._best_text(output_ids)),
            "score": tf.where(empty, 0.0, tf.cast(scores[:, 0], tf.float32)),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"), tf.TensorSpec([None], tf.string, name="prefix")],
                 autograph=False)
    def token_counts(self, text: tf.Tensor, prefix: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"source": tf.cast(self.source_tokenizer.tokenize(text).row_lengths(), tf.int32),
                "prefix": tf.cast(self.target_tokenizer.tokenize(prefix).row_lengths(), tf.int32)}

    def _translate_with_constraints(self, text: tf.Tensor, prefix: tf.Tensor, constraints: tf.Tensor) -> dict[str, tf.Tensor]:
        """Translations that begin with their prefix and contain their constraints (tab-separated
        texts), as `nmt translate --constraint-file` gives them, with what its warnings say."""
        pieces = self._pieces(text)
        lengths = tf.cast(pieces.row_lengths(), tf.int32)
        prefix_pieces, prefix_lengths = self._prefix_pieces(prefix)
        constraint_pieces = self.target_tokenizer.tokenize(tf.strings.split(constraints, sep="\t"))  # (batch, texts, subwords)
        writable = ~tf.reduce_any(tf.equal(constraint_pieces, UNK_ID), axis=2)  # "⁇" would stand for what it cannot write
        usable = writable & (constraint_pieces.row_lengths(axis=2) > 0)
        kept = tf.ragged.boolean_mask(constraint_pieces, usable)
        tokens = tf.cast(tf.reduce_sum(kept.row_lengths(axis=2), axis=1), tf.int32) + prefix_lengths
        fits = tokens <= self._max_length - 1  # BOS takes a position; a sentence's constraints that do not fit are left out
        bounds = tf.maximum(kept.bounding_shape(), 1)  # the search indexes one constraint of one subword at least
        constraint_ids = tf.where(fits[:, tf.newaxis, tf.newaxis], kept.to_tensor(default_value=PAD_ID, shape=bounds), PAD_ID)
        limits = self._limits(lengths, prefix_lengths=tf.where(fits, tokens, prefix_lengths))
        output_ids, scores = self._constrained_search(padded(pieces, lengths), limits,
                                                      prefix_ids=padded(prefix_pieces, prefix_lengths), constraint_ids=constraint_ids)
        translation = self._best_text(output_ids)
        score = tf.cast(scores[:, 0], tf.float32)
        empty = tf.equal(lengths, 0)
        # No hypothesis placed them (a repeat that no_repeat_ngram_size forbids, say): translated
        # as without them, by the prefix signature's search, traced once in the SavedModel.
        unplaced = tf.where((scores[:, 0] <= DEAD) & ~empty)
        free = tf.cond(tf.size(unplaced) > 0,  # a search of no sentences would size its output by no length limit
                       lambda: self.translate_with_prefix(tf.gather_nd(text, unplaced), tf.gather_nd(prefix, unplaced)),
                       lambda: {"translation": tf.zeros([0], tf.string), "score": tf.zeros([0])})
        translation = tf.tensor_scatter_nd_update(translation, unplaced, free["translation"])
        score = tf.tensor_scatter_nd_update(score, unplaced, free["score"])
        has_constraints = tf.reduce_any(usable, axis=1)
        return {
            "translation": tf.where(empty, tf.constant(""), translation),
            "score": tf.where(empty, 0.0, score),
            "placed": ~has_constraints | (fits & ~empty & (scores[:, 0] > DEAD)),
            "writable": writable.to_tensor(default_value=True),
            "constraint_tokens": tokens,
        }

    def _pieces(self, text: tf.Tensor) -> tf.RaggedTensor:
        return self.source_tokenizer.tokenize(text)[:, : self._max_length]

    def _prefix_pieces(self, prefix: tf.Tensor) -> tuple[tf.RaggedTensor, tf.Tensor]:
        """The prefixes' target subwords, cut to the model's longest output, and their int32 lengths."""
        pieces = self.target_tokenizer.tokenize(prefix)[:, : self._max_length - 1]  # BOS takes a position
        return pieces, tf.cast(pieces.row_lengths(), tf.int32)

    def _best_text(self, output_ids: tf.Tensor) -> tf.Tensor:
        """The search's best hypothesis of each sentence (output_ids (batch, n, steps)), detokenized."""
        best = output_ids[:, 0]
        best = tf.where(tf.equal(best, EOS_ID), PAD_ID, best)  # EOS and the padding after it are dropped
        return self.target_tokenizer.detokenize(tf.RaggedTensor.from_tensor(best, padding=PAD_ID))


def export(config: Config, model: Transformer, tokenizers: Tokenizers, checkpoint: Path, output: Path, force: bool,
           constraints: bool = False) -> Path:
    """Writes the SavedModel of the model (checkpoint's weights) into output (refusing a non-empty
    one unless force), with the signature that places constraints where asked; returns output. It
    is written beside output first, fsynced and renamed into place, so output is never half-written."""
    if config.decode.sampling != "none":
        raise NmtError(f"an export holds greedy or beam search, not sampling (decode.sampling={config.decode.sampling}); "
                       "export with --set decode.sampling=none")
    serving = _Serving(config, model, tokenizers, constraints)

    def fill(directory: Path) -> None:
        signatures = {
            SIGNATURE: serving.translate.get_concrete_function(),
            LENGTHS_SIGNATURE: serving.source_lengths.get_concrete_function(),
            PREFIX_SIGNATURE: serving.translate_with_prefix.get_concrete_function(),
            COUNTS_SIGNATURE: serving.token_counts.get_concrete_function(),
        }
        if constraints:
            signatures[CONSTRAINTS_SIGNATURE] = serving.translate_with_constraints.get_concrete_function()
        tf.saved_model.save(serving, str(directory), signatures=signatures)
        export_manifest.write(directory, checkpoint, config, constraints=constraints)

    return write_directory(output, force, fill)


def write_directory(output: Path, force: bool, fill: Callable[[Path], None]) -> Path:
    """Has fill write an export into a new directory beside output, then renames it into place
    (refusing a non-empty output unless force), fsynced first, so output is never half-written;
    returns output."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not force:
        raise NmtError(f"{output} exists and is not empty; pass --force to replace it, or choose another --output")
    temporary = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir(parents=True)
        fill(temporary)
        atomic.replace_directory(temporary, output)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise NmtError(f"cannot write the export to {output}: {error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return output


def load_matching(directory: Path, checkpoint: Path, config: Config) -> Callable[..., list[tuple[str, float]]] | None:
    """The export in directory as a function from sentences (and optionally on_batch(sentences
    done), a progress callback, their prefixes, and start, the number of the first in the whole
    input, by which warnings name sentences cut to the model's lengths) to (translation, score), if
    it was exported from this checkpoint with these search settings, without constraints, and has
    every signature that `nmt translate` uses (earlier exports lack some); None otherwise (or if
    unreadable)."""
    manifest = export_manifest.read(directory)
    if manifest is None or export_manifest.mismatch(manifest, checkpoint, config) is not None:
        return None
    signatures = tf.saved_model.load(str(directory)).signatures
    if not {SIGNATURE, PREFIX_SIGNATURE, COUNTS_SIGNATURE} <= set(signatures):
        return None
    max_length = config.model.max_length

    def translate(sentences: Sequence[str], on_batch: Callable[[int], None] | None = None,
                  prefixes: Sequence[str] | None = None, start: int = 0) -> list[tuple[str, float]]:
        text = tf.constant(list(sentences), tf.string)
        prefix = None if prefixes is None else tf.constant(list(prefixes), tf.string)
        counts = signatures[COUNTS_SIGNATURE](text=text, prefix=tf.fill(tf.shape(text), "") if prefix is None else prefix)
        source_counts, prefix_counts = counts["source"].numpy(), counts["prefix"].numpy()
        todo = np.flatnonzero(source_counts)  # an empty sentence translates to '' whatever its prefix
        warn_long_sources(todo + start + 1, source_counts[todo], max_length)
        warn_long_prefixes(todo + start + 1, prefix_counts[todo], max_length)
        found: list[tuple[str, float]] = [("", 0.0)] * len(sentences)
        lengths = np.minimum(source_counts, max_length)
        for positions in decoding_batches(lengths, config.decode):
            try:
                batch = tf.gather(text, positions)
                result = signatures[SIGNATURE](text=batch) if prefix is None else signatures[PREFIX_SIGNATURE](
                    text=batch, prefix=tf.gather(prefix, positions))
            except tf.errors.ResourceExhaustedError:
                raise batch_out_of_memory(config.decode, len(positions), int(lengths[positions].max())) from None
            for position, translation, score in zip(positions, result["translation"].numpy(), result["score"].numpy()):
                found[position] = (translation.decode("utf-8"), float(score))
            if on_batch:
                on_batch(len(positions))
        return found

    return translate
