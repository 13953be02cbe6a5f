"""Translator: a trained run directory turned into a function from sentences to sentences."""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from nmt import checkpoints
from nmt.config import Config, DecodeConfig
from nmt.data import tokenizer
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizers
from nmt.decoding.ensemble import Ensemble
from nmt.decoding.plan import (Hypothesis, Scored, SentenceAttention, batch_out_of_memory, check_pairs, check_sentences,
                               decoding_batches, length_limits, length_penalty, scoring_plan, warn_long_constraints,
                               warn_long_prefixes, warn_long_sources)
from nmt.decoding.search import DEAD, beam_search, greedy_search, next_token_log_probs, sample
from nmt.errors import ConfigError, NmtError
from nmt.model.transformer import Transformer, build_transformer
from nmt.run_dir import RunDir
from nmt.text_io import check_text
from nmt.training import precision

log = logging.getLogger("nmt")


def padded(pieces: tf.RaggedTensor, lengths: tf.Tensor) -> tf.Tensor:
    """pieces (rows of lengths ids) as a PAD-padded matrix of at least one column, so that a batch
    of empty rows still runs through a search, which indexes the columns."""
    width = tf.maximum(tf.reduce_max(tf.concat([tf.cast(lengths, tf.int32), [0]], axis=0)), 1)
    return pieces.to_tensor(default_value=PAD_ID, shape=tf.stack([tf.shape(lengths)[0], width]))


def word_continuations(tokenizers: Tokenizers) -> tf.Tensor:
    """(target vocab,) bool: the target pieces that go on with the word before them, which a
    constraint placed as whole words is not followed by (beam_search's word_continuations)."""
    pieces = tokenizers.target.id_to_string(tf.range(tokenizers.target_vocab_size)).numpy()
    # A piece continues the word before it unless it begins one ("▁") or is not a word's part:
    # punctuation, symbols, the special tokens ("</s>"). A hyphen joins a compound (without it,
    # "Reh" was placed as "Reh-Spieler").
    return tf.constant([not piece.startswith("▁".encode()) and (piece.decode()[:1].isalnum() or piece.startswith(b"-"))
                        for piece in pieces])


class Translator:
    """Translates lists of sentences in batches with the decoding settings of `config.decode`:
    greedy search when decode.beam_size is 1, beam search otherwise, or sampling
    (decode.sampling: top_k or top_p).

    Example:
        translator = Translator.from_run_dir(run_dir.resolve("runs/quickstart"))
        translator.translate(["The dog saw a cat."])
    """

    def __init__(self, config: Config, model: Transformer | Ensemble, tokenizers: Tokenizers):
        self.config = config
        self.model = model
        self.tokenizers = tokenizers
        decode = config.decode
        if decode.sampling != "none":
            draw = functools.partial(sample, model, method=decode.sampling, temperature=decode.temperature,
                                     top_k=decode.top_k, top_p=decode.top_p, alpha=decode.length_penalty,
                                     no_repeat_ngram_size=decode.no_repeat_ngram_size)

            def search(source_ids, max_lengths, num_samples, seed, prefix_ids=None):
                return draw(source_ids, max_lengths, num_samples, seed, prefix_ids=prefix_ids)
        elif decode.beam_size == 1:
            search = _ignoring_sampling(functools.partial(greedy_search, model, alpha=decode.length_penalty,
                                                          no_repeat_ngram_size=decode.no_repeat_ngram_size))
        else:
            beam = functools.partial(beam_search, model, beam_size=decode.beam_size, alpha=decode.length_penalty,
                                     no_repeat_ngram_size=decode.no_repeat_ngram_size)

            def search(source_ids, max_lengths, n, seed, prefix_ids=None):
                # Beam search stops a sentence once the n best asked for are settled.
                return beam(source_ids, max_lengths, num_best=n, prefix_ids=prefix_ids)
        # One graph for every batch shape (and number of samples): the whole search compiles once.
        # The searches write their loops and conditions as TensorFlow ops, so AutoGraph has nothing
        # to convert: without it the graph traced in 2.1-3.1 s instead of 4.6-6.5 s (the quickstart's
        # beam search), a part of every command's start.
        ids = tf.TensorSpec([None, None], tf.int32)
        signature = [ids, tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int32)]
        self._search = tf.function(search, input_signature=signature, autograph=False)
        # Searches following target prefixes are a graph of their own, traced only when asked for:
        # the one without them has no per-step check of a prefix.
        self._search_prefixed = tf.function(search, input_signature=[*signature, ids], autograph=False)
        self.start_at(0)

    @functools.cached_property
    def _search_constrained(self) -> Callable:
        """(source_ids, max_lengths, n, prefix_ids, constraint_ids) -> beam search's (ids, scores)
        with lexical constraints (a beam of decode.beam_size, 1 included), traced when first asked for."""
        decode = self.config.decode
        beam = functools.partial(beam_search, self.model, beam_size=decode.beam_size, alpha=decode.length_penalty,
                                 no_repeat_ngram_size=decode.no_repeat_ngram_size)

        continuations = word_continuations(self.tokenizers) if decode.constraint_whole_words else None

        def search(source_ids, max_lengths, n, prefix_ids, constraint_ids):
            return beam(source_ids, max_lengths, num_best=n, prefix_ids=prefix_ids, constraint_ids=constraint_ids,
                        word_continuations=continuations)

        ids = tf.TensorSpec([None, None], tf.int32)
        signature = [ids, tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32), ids,
                     tf.TensorSpec([None, None, None], tf.int32)]
        return tf.function(search, input_signature=signature, autograph=False)

    def warm_up(self) -> None:
        """Traces every search this translator has: the plain one, the one that follows prefixes
        and, unless it samples, the one that places constraints, so that no first request of a
        kind waits for its graph (~2 s each with reference_base on 2 CPU cores). What follows
        translates as if this had not run (sampling's seeds restart)."""
        # The prefix and constraint are a piece of the target vocabulary: any text traces the
        # searches, but a constraint the vocabulary cannot write is left out with a warning.
        pieces = self.tokenizers.target.detokenize(tf.range(EOS_ID + 1, self.tokenizers.target_vocab_size)[:, None])
        word = next((piece.decode() for piece in pieces.numpy() if piece.strip()), "")
        self.translate([word])
        self.translate([word], prefixes=[word])
        if self.config.decode.sampling == "none":
            self.translate([word], constraints=[[word]])
        self.start_at(self._offset)

    def start_at(self, offset: int) -> None:
        """What follows translates (or scores) the part of a longer input that begins `offset`
        sentences into it, as `nmt translate` and `nmt score` go through a file in chunks: warnings
        number sentences by their place in the whole input, and sampling's seeds (drawn from
        decode.seed, one per batch) restart as for that part, so that a part translated again
        (what a resumed `nmt translate --output` does) draws the samples it drew the first time.
        Without decode.seed, the seeds are new each time anyway."""
        self._offset = offset
        seed = self.config.decode.seed
        self._seeds = random.Random(None if seed is None else f"{seed}:{offset}")

    def _numbers(self, indices: Sequence[int]) -> list[int]:
        """The input's numbers (from 1) of the sentences at indices of what is being translated."""
        return [self._offset + index + 1 for index in indices]

    @classmethod
    def from_run_dir(cls, run: RunDir, config: Config | None = None, checkpoint: Path | None = None) -> "Translator":
        """Rebuilds tokenizer and model from the run and loads the weights of checkpoint (default:
        the one config.eval.checkpoint names; finding it checks its files, so a caller that has
        found it passes it)."""
        config = config or run.load_config()
        tokenizers = tokenizer.load(run.tokenizer_dir, config.tokenizer.joint)
        model = decoding_model(config, tokenizers)
        path = checkpoint or run.checkpoint_path(config.eval.checkpoint)
        checkpoints.restore(path, model)
        log.debug("loaded %s", path)
        return cls(config, model, tokenizers)

    @classmethod
    def ensemble(cls, runs: Sequence[RunDir], config: Config, found: Sequence[Path] | None = None) -> "Translator":
        """The runs' models decoding as one (nmt.decoding.ensemble), with config's decode
        settings and the checkpoint config.eval.checkpoint names in each run (found: those
        checkpoints, where the caller has found them already; finding checks their files).

        Raises:
            ConfigError: the runs' tokenizers differ (an ensemble needs one source and one target
                vocabulary).
        """
        first = runs[0]
        files = tokenizer.model_files(first.tokenizer_dir, config.tokenizer.joint)
        members, vocabularies = [], None
        for index, run in enumerate(runs):
            own = run.load_config()
            for side, path in tokenizer.model_files(run.tokenizer_dir, own.tokenizer.joint).items():
                if path.read_bytes() != files[side].read_bytes():
                    raise ConfigError(
                        f"{run.path} has another {side} vocabulary than {first.path} (tokenizer {path} differs): an ensemble "
                        "needs runs trained with the same data and tokenizer settings"
                    )
            # The files are the same: the first run's tokenizers serve every member.
            vocabularies = vocabularies or tokenizer.load(run.tokenizer_dir, own.tokenizer.joint)
            model = decoding_model(dataclasses.replace(config, model=own.model), vocabularies)
            checkpoints.restore(found[index] if found else run.checkpoint_path(config.eval.checkpoint), model)
            members.append(model)
        return cls(config, Ensemble(members), vocabularies)

    def translate(self, sentences: Sequence[str], on_batch: Callable[[int], None] | None = None,
                  prefixes: Sequence[str] | None = None, constraints: Sequence[Sequence[str]] | None = None) -> list[str]:
        """One translation per sentence, in order; an empty sentence (blank, or of nothing the
        tokenizer keeps) gives ''.

        Args:
            on_batch: called with the number of sentences after each batch (for progress bars).
            prefixes: the text each translation must begin with, one per sentence (see translate_n_best).
            constraints: the texts each translation must contain, a list per sentence (see translate_n_best).
        """
        return [best[0].text for best in self.translate_n_best(sentences, 1, on_batch, prefixes=prefixes,
                                                               constraints=constraints)]

    def translate_n_best(
        self, sentences: Sequence[str], n: int, on_batch: Callable[[int], None] | None = None,
        with_attention: bool = False, prefixes: Sequence[str] | None = None,
        constraints: Sequence[Sequence[str]] | None = None,
    ) -> list[list[Hypothesis]]:
        """The n best hypotheses per sentence (n <= decode.beam_size), best first; an empty
        sentence (blank, or of nothing the tokenizer keeps) gives n empty hypotheses scored 0.
        with_attention: the best hypothesis of each (non-empty) sentence carries its attention
        weights (one more, teacher-forced, pass).
        prefixes: one per sentence, the text each translation must begin with ('' for none): the
        search decodes its subwords first, scoring them, and goes on from there. A prefix is
        tokenized as text of its own, so one that ends inside a word forces that word's first
        pieces as a word's end. Longer than the model's longest output, it is cut (a warning).
        constraints: one list per sentence of texts its translations must contain (lexically
        constrained beam search: nmt.decoding.search), e.g. the terms a glossary prescribes; each
        is tokenized as text of its own, so it is placed as whole words (it may be followed by
        more of a word). The length limit grows to hold them. A constraint the target vocabulary
        cannot write is left out, and a sentence whose constraints cannot all be placed (more
        tokens than the model's longest output, or none of its hypotheses met them within its
        limit) is translated without them, each with a warning.

        Raises:
            ConfigError: n is not between 1 and decode.beam_size, or constraints with sampling.
            NmtError: a sentence, prefix or constraint is not valid Unicode text (a lone
                surrogate), the prefixes or constraints are not one per sentence, or a batch does
                not fit in the device's memory (the message says which decode settings to lower).
        """
        sampling = self.config.decode.sampling != "none"
        if constraints is not None and sampling:
            raise ConfigError("constraints are placed by beam search: leave out decode.sampling (--set decode.sampling=none)")
        if n < 1:
            raise ConfigError(f"n-best must be 1 or more; got {n}")
        if n > self.config.decode.beam_size and not sampling:
            raise ConfigError(
                f"n-best must be between 1 and decode.beam_size ({self.config.decode.beam_size}); got {n}. "
                f"Raise the beam: --set decode.beam_size={n} (or decode.beam_size in the config)"
            )
        check_sentences(sentences, prefixes)
        if constraints is not None:
            if len(constraints) != len(sentences):
                raise NmtError(f"{len(sentences)} sentences but {len(constraints)} lists of constraints: give one list per sentence")
            check_text([text for texts in constraints for text in texts], "constraint")
            if not any(text.strip() for texts in constraints for text in texts):
                constraints = None
        outputs = [[Hypothesis("", 0.0)] * n for _ in sentences]
        token_ids = self.tokenizers.source.tokenize(tf.constant(list(sentences), tf.string))
        # A sentence of no tokens (blank, or of what the tokenizer drops whole: control characters,
        # zero-width spaces, a BOM) is empty, as in the export: decoded, it would translate
        # differently alone (a batch of no columns) than beside others (a row of padding).
        todo = np.flatnonzero(token_ids.row_lengths().numpy()).tolist()
        if not todo:
            return outputs
        token_ids = tf.gather(token_ids, todo)
        warn_long_sources(self._numbers(todo), token_ids.row_lengths().numpy(), self.model.max_length)
        token_ids = token_ids[:, : self.model.max_length]
        prefix_ids = None if prefixes is None else self._prefix_ids([prefixes[index] for index in todo], todo)
        constraint_ids = None if constraints is None else self._constraint_ids([constraints[index] for index in todo], todo, prefix_ids)
        drawn = 2 * n if sampling else 1  # sampling draws 2n per sentence, of which the n best distinct are kept
        for positions in decoding_batches(token_ids.row_lengths().numpy(), self.config.decode, drawn):
            batch = tf.gather(token_ids, positions).to_tensor(default_value=PAD_ID)
            prefix_batch = None if prefix_ids is None else tf.gather(prefix_ids, positions)
            constraint_batch = None if constraint_ids is None else tf.gather(constraint_ids, positions)
            try:
                translated = self._translate_batch(batch, n, with_attention, prefix_batch, constraint_batch,
                                                   self._numbers([todo[position] for position in positions]))
            except tf.errors.ResourceExhaustedError:
                raise batch_out_of_memory(self.config.decode, len(positions), batch.shape[1],
                                          drawn if sampling else None) from None
            for position, hypotheses in zip(positions, translated):
                outputs[todo[position]] = hypotheses
            if on_batch:
                on_batch(len(positions))
        return outputs

    def score(self, sources: Sequence[str], targets: Sequence[str],
              on_batch: Callable[[int], None] | None = None) -> list[Scored]:
        """The model's score of each target as the translation of its source, as the searches
        score their hypotheses (`translate_n_best`): the log-probability of its tokens and EOS
        over the length penalty (decode.length_penalty; 0 gives the log-probability itself), in
        one teacher-forced pass, with each token's log-probability. An empty source, which
        translates to '', scores 0 for an empty target and -inf for any other; a source longer
        than model.max_length tokens is truncated (a warning), and a target too long for the
        model to produce scores nan (a warning).

        An ensemble scores as it searches: each token by the renormalised mean of its members'
        log-probabilities.

        Raises:
            NmtError: the lists differ in length, a text is not valid Unicode, or a batch does not
                fit in memory.
        """
        check_pairs(sources, targets)
        source_ids = self.tokenizers.source.tokenize(tf.constant(list(sources), tf.string))
        target_ids = self.tokenizers.target.tokenize(tf.constant(list(targets), tf.string))
        source_lengths, target_lengths = source_ids.row_lengths().numpy(), target_ids.row_lengths().numpy()
        scored, todo = scoring_plan(source_lengths, target_lengths, self.model.max_length, self._numbers(range(len(sources))))
        if not todo:
            return scored
        source_ids = tf.gather(source_ids, todo)[:, : self.model.max_length]
        target_ids = tf.gather(target_ids, todo)
        lengths = np.maximum(source_ids.row_lengths().numpy(), target_ids.row_lengths().numpy() + 1)
        for positions in decoding_batches(lengths, self.config.decode):
            sources_batch = tf.gather(source_ids, positions).to_tensor(default_value=PAD_ID)
            targets_batch = tf.gather(target_ids, positions)
            bos = tf.RaggedTensor.from_tensor(tf.fill([len(positions), 1], BOS_ID))
            eos = tf.RaggedTensor.from_tensor(tf.fill([len(positions), 1], EOS_ID))
            target_out = tf.concat([targets_batch, eos], axis=1)
            try:
                scores, token_log_probs = self._score(sources_batch, tf.concat([bos, targets_batch], axis=1).to_tensor(PAD_ID),
                                                      target_out.to_tensor(PAD_ID))
            except tf.errors.ResourceExhaustedError:
                raise batch_out_of_memory(self.config.decode, len(positions), int(lengths[positions].max())) from None
            for position, row_ids, value, row_log_probs in zip(positions, target_out.to_list(), scores.numpy(),
                                                               token_log_probs.numpy()):
                scored[todo[position]] = Scored(float(value), tuple(self._pieces(self.tokenizers.target, row_ids)),
                                                tuple(float(lp) for lp in row_log_probs[: len(row_ids)]))
            if on_batch:
                on_batch(len(positions))
        return scored

    @functools.cached_property
    def _score(self) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
        """(source_ids, target_in, target_out) -> scores (batch,) and each target_out token's
        log-probability (batch, tgt_len), 0 at padding."""
        alpha = self.config.decode.length_penalty

        def score(source_ids, target_in, target_out):
            logits = self.model({"source_ids": source_ids, "target_in": target_in})
            real = tf.not_equal(target_out, PAD_ID)
            token_log_probs = tf.where(real, tf.gather(next_token_log_probs(logits), target_out, batch_dims=2), 0.0)
            lengths = tf.reduce_sum(tf.cast(real, tf.int32), axis=1)
            return tf.reduce_sum(token_log_probs, axis=1) / length_penalty(lengths, alpha, tnp), token_log_probs

        spec = tf.TensorSpec([None, None], tf.int32)
        return tf.function(score, input_signature=[spec, spec, spec], autograph=False)

    def _prefix_ids(self, prefixes: Sequence[str], indices: Sequence[int]) -> tf.RaggedTensor:
        """The prefixes' target subwords, cut to the model's longest output (a warning naming the
        sentence, at `indices` of what is being translated)."""
        prefix_ids = self.tokenizers.target.tokenize(tf.constant(list(prefixes), tf.string))
        warn_long_prefixes(self._numbers(indices), prefix_ids.row_lengths().numpy(), self.model.max_length)
        return prefix_ids[:, : self.model.max_length - 1]  # BOS takes a position

    def _constraint_ids(self, constraints: Sequence[Sequence[str]], indices: Sequence[int],
                        prefix_ids: tf.RaggedTensor | None) -> tf.RaggedTensor:
        """(sentences, constraints, subwords) ragged: each sentence's constraints' target subwords,
        blank ones left out, each with a warning naming its sentence (at `indices`) left out too
        where the target vocabulary cannot write it (it would be placed as "⁇"), and all of a
        sentence's where their subwords (with its prefix's) exceed the model's longest output."""
        texts = [[text for text in row if text.strip()] for row in constraints]
        flat = self.tokenizers.target.tokenize(tf.constant([text for row in texts for text in row] or [""], tf.string)).to_list()
        numbers, kept, start = self._numbers(indices), [], 0
        for number, row in zip(numbers, texts):
            pieces = flat[start:start + len(row)]
            start += len(row)
            for text, ids in zip(row, pieces):
                if UNK_ID in ids:
                    shown = text if len(text) <= 40 else text[:40] + "..."  # a warning stays one line
                    log.warning("the constraint %r of sentence %d holds characters the model's target vocabulary cannot "
                                "write; it is left out", shown, number)
            kept.append([ids for ids in pieces if UNK_ID not in ids])
        lengths = np.array([sum(map(len, row)) for row in kept], dtype=np.int64)
        if prefix_ids is not None:
            lengths = lengths + prefix_ids.row_lengths().numpy()
        warn_long_constraints(numbers, lengths, self.model.max_length, prefix_ids is not None)
        kept = [row if length <= self.model.max_length - 1 else [] for row, length in zip(kept, lengths)]
        return tf.ragged.constant(kept, dtype=tf.int32, ragged_rank=2)

    def _translate_batch(self, source_ids: tf.Tensor, n: int, with_attention: bool,
                         prefix_ids: tf.RaggedTensor | None = None, constraint_ids: tf.RaggedTensor | None = None,
                         numbers: Sequence[int] = ()) -> list[list[Hypothesis]]:
        """numbers: the sentences' numbers in the input, for the warnings of constraints not placed."""
        decode = self.config.decode
        source_lengths = tf.reduce_sum(tf.cast(tf.not_equal(source_ids, PAD_ID), tf.int32), axis=1)
        prefix_lengths = None if prefix_ids is None else prefix_ids.row_lengths()
        forced_lengths = prefix_lengths
        if constraint_ids is not None:
            constrained_lengths = tf.reduce_sum(constraint_ids.row_lengths(axis=2), axis=1)
            forced_lengths = constrained_lengths if prefix_lengths is None else prefix_lengths + constrained_lengths
        max_lengths = length_limits(source_lengths, decode, self.model.max_length, forced_lengths, tnp)
        seed = tf.constant([self._seeds.randrange(2**31), 0], tf.int32)
        search, prefix = self._search, ()
        if prefix_ids is not None:
            search, prefix = self._search_prefixed, (padded(prefix_ids, prefix_lengths),)  # PAD: no token forced
        if constraint_ids is not None:
            # A sentence whose constraints cannot be placed is translated as it would be without them.
            free_lengths = length_limits(source_lengths, decode, self.model.max_length, prefix_lengths, tnp)
            output_ids, scores = self._constrained(source_ids, max_lengths, free_lengths, n, prefix, constraint_ids, numbers)
        elif decode.sampling == "none":
            output_ids, scores = _best_repeated_for_dead(*search(source_ids, max_lengths, n, seed, *prefix), n)
        else:
            output_ids, scores = _distinct(*search(source_ids, max_lengths, 2 * n, seed, *prefix), n)
        scores = scores.numpy()
        attention = self._attention(source_ids, output_ids[:, 0]) if with_attention else [None] * len(scores)
        # EOS and everything after it is dropped: EOS becomes padding and trailing padding is stripped.
        output_ids = tf.where(tf.equal(output_ids, EOS_ID), PAD_ID, output_ids)
        flat = tf.reshape(output_ids, [-1, tf.shape(output_ids)[2]])
        texts = self.tokenizers.target.detokenize(tf.RaggedTensor.from_tensor(flat, padding=PAD_ID)).numpy()
        return [
            [
                Hypothesis(texts[row * n + rank].decode("utf-8"), float(scores[row, rank]), attention[row] if rank == 0 else None)
                for rank in range(n)
            ]
            for row in range(len(scores))
        ]

    def _constrained(self, source_ids: tf.Tensor, max_lengths: tf.Tensor, free_lengths: tf.Tensor, n: int, prefix: tuple,
                     constraint_ids: tf.RaggedTensor, numbers: Sequence[int]) -> tuple[tf.Tensor, tf.Tensor]:
        """The n best of constrained beam search (ids, scores) within max_lengths, where a sentence
        none of whose hypotheses met its constraints has its n best without them, within its
        free_lengths (a warning). prefix: () or the padded prefix ids, as the searches take them."""
        search, forced = (self._search, None) if not prefix else (self._search_prefixed, prefix[0])
        # At least one constraint of one subword in the shape, so that the search's indexing holds.
        bounds = tf.maximum(constraint_ids.bounding_shape(), 1)
        ids, scores = self._search_constrained(source_ids, max_lengths, n,
                                               tf.fill([tf.shape(source_ids)[0], 1], PAD_ID) if forced is None else forced,
                                               constraint_ids.to_tensor(default_value=PAD_ID, shape=bounds))
        ids, scores = _best_repeated_for_dead(ids, scores, n)
        unmet = np.flatnonzero(scores[:, 0].numpy() <= DEAD).tolist()
        if not unmet:
            return ids, scores
        for row in unmet:
            log.warning("sentence %d: no translation within its length limit contained all its constraints; it is "
                        "translated without them", numbers[row])
        seed = tf.constant([0, 0], tf.int32)  # beam and greedy search draw nothing
        free_ids, free_scores = _best_repeated_for_dead(*search(tf.gather(source_ids, unmet), tf.gather(free_lengths, unmet), n, seed,
                                                                *(tf.gather(part, unmet) for part in prefix)), n)
        width = tf.maximum(tf.shape(ids)[2], tf.shape(free_ids)[2])
        ids = tf.pad(ids, [[0, 0], [0, 0], [0, width - tf.shape(ids)[2]]], constant_values=PAD_ID)
        free_ids = tf.pad(free_ids, [[0, 0], [0, 0], [0, width - tf.shape(free_ids)[2]]], constant_values=PAD_ID)
        positions = tf.constant(unmet)[:, tf.newaxis]
        return tf.tensor_scatter_nd_update(ids, positions, free_ids), tf.tensor_scatter_nd_update(scores, positions, free_scores)

    def _attention(self, source_ids: tf.Tensor, output_ids: tf.Tensor) -> list[SentenceAttention]:
        """The model's attention on (source, output) pairs, teacher-forced: the same weights as
        the cached steps that produced the output, which decoding does not keep."""
        outputs = output_ids.numpy()  # (batch, steps): each ends with EOS, then PAD
        target_in = np.where(outputs == EOS_ID, PAD_ID, np.concatenate([np.full_like(outputs[:, :1], BOS_ID), outputs[:, :-1]], axis=1))
        maps = self.model.attention_maps(source_ids, tf.constant(target_in))
        sources = source_ids.numpy()
        found = []

        def crop(layers: list[dict], name: str, queries: int, keys: int) -> np.ndarray:
            return np.stack([layer[name][row, :, :queries, :keys].numpy() for layer in layers])

        for row in range(len(outputs)):
            source_length = int(np.sum(sources[row] != PAD_ID))
            target_length = int(np.argmax(outputs[row] == EOS_ID)) + 1
            lengths = {"encoder": (source_length, source_length), "decoder_self": (target_length, target_length),
                       "cross": (target_length, source_length)}
            found.append(SentenceAttention(
                source_pieces=self._pieces(self.tokenizers.source, sources[row, :source_length]),
                target_pieces=self._pieces(self.tokenizers.target, outputs[row, :target_length]),
                maps={kind: crop(layers, "weights", *lengths[kind]) for kind, layers in maps.items()},
                logits={kind: crop(layers, "logits", *lengths[kind]) for kind, layers in maps.items()},
            ))
        return found

    @staticmethod
    def _pieces(segmenter, ids) -> list[str]:
        return [piece.decode("utf-8") for piece in segmenter.id_to_string(tf.constant(ids, tf.int32)).numpy()]


def decoding_policy(decode: DecodeConfig) -> str:
    """The Keras dtype policy of decode.precision (see DecodeConfig): float32 where the device has
    no bfloat16 units, with a warning. bfloat16 weights, not mixed precision's float32 ones: these
    are rounded once, where a mixed-precision model casts every weight at every decoding step
    (greedy search then ran at 0.8x the speed of bfloat16 weights, at equal BLEU)."""
    if decode.precision == "float32":
        return "float32"
    reason = precision.unsupported_reason("mixed_bfloat16")
    if reason is not None:
        log.warning("decode.precision=bfloat16: %s; decoding in float32 instead", reason)
        return "float32"
    return "bfloat16"


def decoding_model(config: Config, tokenizers: Tokenizers) -> Transformer:
    """An untrained config.model that computes in the decoding_policy of config.decode."""
    with precision.policy_scope(decoding_policy(config.decode)):
        return build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)


def _ignoring_sampling(search: Callable) -> Callable:
    """A search with the sampling search's arguments (the number of samples and the seed unused)."""
    return lambda source_ids, max_lengths, num_samples, seed, prefix_ids=None: search(source_ids, max_lengths, prefix_ids=prefix_ids)


def _best_repeated_for_dead(ids: tf.Tensor, scores: tf.Tensor, n: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The n best of beam search's hypotheses, where a sentence that has fewer possible outputs
    than that (its length limit reached at once, or right after its prefix) repeats its best in
    place of the dead ones, as _distinct does."""
    ids, scores = ids[:, :n], scores[:, :n]
    ranks = tf.where(scores > DEAD, tf.range(n)[tf.newaxis], 0)
    return tf.gather(ids, ranks, batch_dims=1), tf.gather(scores, ranks, batch_dims=1)


def _distinct(ids: tf.Tensor, scores: tf.Tensor, n: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The n best distinct samples of each sentence out of those drawn (best first); when a
    sentence has fewer distinct ones, its best is repeated."""
    ids_numpy, scores_numpy = ids.numpy(), scores.numpy()
    chosen_ids, chosen_scores = [], []
    for row_ids, row_scores in zip(ids_numpy, scores_numpy):
        seen, keep = set(), []
        for rank, sample_ids in enumerate(row_ids):
            key = sample_ids.tobytes()
            if key not in seen:
                seen.add(key)
                keep.append(rank)
        keep = (keep + [keep[0]] * n)[:n]
        chosen_ids.append(row_ids[keep])
        chosen_scores.append(row_scores[keep])
    return tf.constant(np.stack(chosen_ids)), tf.constant(np.stack(chosen_scores))
