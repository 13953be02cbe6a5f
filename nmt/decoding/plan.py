"""What decoding a list of sentences needs besides the model, whoever decodes them (our search,
a SavedModel export, CTranslate2): the checks of the input, the decoding batches, each sentence's
length limit, the length penalty, the warnings, and the results.

It imports no TensorFlow, so that decoding with CTranslate2 starts without it. The two formulas
(length limits, length penalty) take an array namespace, xp: numpy by default, or
tensorflow.experimental.numpy where they run on tensors, in a traced search, so that every
decoder computes the same numbers from one formula.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from nmt.config import DecodeConfig
from nmt.errors import NmtError
from nmt.text_io import check_text

log = logging.getLogger("nmt")


def length_limits(source_lengths, decode: DecodeConfig, max_length: int, prefix_lengths=None, xp=np):
    """int32 longest outputs (tokens before EOS) for sources of these lengths (subwords):
    decode.max_length_ratio x length (rounded down) + decode.max_length_offset, and for outputs
    that begin with prefixes of prefix_lengths subwords at least decode.max_length_offset past
    them, within the model's max_length positions (BOS takes one)."""
    # float32 as in a traced search: both round the same products down.
    limits = xp.floor(xp.asarray(source_lengths, xp.float32) * decode.max_length_ratio) + decode.max_length_offset
    if prefix_lengths is not None:
        limits = xp.maximum(limits, xp.asarray(prefix_lengths, xp.float32) + decode.max_length_offset)
    return xp.asarray(xp.minimum(limits, max_length - 1), xp.int32)


def length_penalty(lengths, alpha: float, xp=np):
    """GNMT's length penalty (Wu et al., 2016): ((5 + length) / 6) ** alpha, float32; 1 when alpha is 0."""
    return ((5.0 + xp.asarray(lengths, xp.float32)) / 6.0) ** alpha


def decoding_batches(lengths: Sequence[int], decode: DecodeConfig, hypotheses: int = 1) -> list[list[int]]:
    """Positions of sentences of these lengths (tokens) grouped into decoding batches: in order of
    length, so that a batch pads little, and cut where the next sentence would bring a batch over
    decode.batch_size sentences or decode.batch_tokens tokens counting padding (its sentences
    times the longest). A sentence longer than batch_tokens is a batch of its own.

    hypotheses: decoded per sentence (the samples drawn). Both limits hold for beam search's
    decode.beam_size hypotheses; a sentence of more counts as hypotheses / beam_size sentences,
    since the cache, most of decoding's memory, grows with them."""
    weight = max(1.0, hypotheses / decode.beam_size)
    batches: list[list[int]] = [[]]
    for position in sorted(range(len(lengths)), key=lambda position: lengths[position]):
        batch = batches[-1]
        # In order of length, the sentence joining a batch is its longest.
        grown = (len(batch) + 1) * weight
        if batch and (grown > decode.batch_size or grown * lengths[position] > decode.batch_tokens):
            batches.append([])
        batches[-1].append(position)
    return [batch for batch in batches if batch]


def warn_long_sources(numbers: Sequence[int], lengths: Sequence[int], max_length: int) -> None:
    """Warns of each source of more than max_length subwords, which is translated (or scored) cut
    to its first max_length; numbers: the sentences' numbers in the input, from 1."""
    for number, length in zip(numbers, lengths):
        if length > max_length:
            log.warning("sentence %d has %d tokens; only the first %d (model.max_length) are translated", number, length,
                        max_length)


def check_sentences(sentences: Sequence[str], prefixes: Sequence[str] | None = None) -> None:
    """Refuses (NmtError) a sentence or prefix that is not valid Unicode text, and prefixes that
    are not one per sentence."""
    check_text(sentences)
    if prefixes is not None:
        if len(prefixes) != len(sentences):
            raise NmtError(f"{len(sentences)} sentences but {len(prefixes)} prefixes: give one prefix per sentence")
        check_text(prefixes, "prefix")


def check_pairs(sources: Sequence[str], targets: Sequence[str]) -> None:
    """Refuses (NmtError) pairs to score that are not one target per source, or a text that is not
    valid Unicode."""
    if len(sources) != len(targets):
        raise NmtError(f"{len(sources)} sources but {len(targets)} targets: give one target per source")
    check_text(sources)
    check_text(targets, "target")


def scoring_plan(source_lengths: Sequence[int], target_lengths: Sequence[int], max_length: int,
                 numbers: Sequence[int]) -> tuple[list[Scored], list[int]]:
    """What scoring pairs of sources and targets of these lengths (subwords) needs: the scores
    known without the model (0 for an empty source with an empty target, -inf with any other, nan
    for a target too long for the model, with a warning), and the positions of the pairs the
    model scores, their sources cut to max_length (with a warning); numbers: the pairs' numbers
    in the input, from 1."""
    scored, todo = [Scored(0.0)] * len(source_lengths), []
    for index, (source_length, target_length) in enumerate(zip(source_lengths, target_lengths)):
        if source_length == 0:
            scored[index] = Scored(0.0 if target_length == 0 else float("-inf"))
        elif target_length + 1 > max_length:
            log.warning("target %d has %d tokens; the model produces at most %d: scored nan", numbers[index], target_length,
                        max_length - 1)
            scored[index] = Scored(float("nan"))
        else:
            todo.append(index)
    warn_long_sources([numbers[index] for index in todo], [source_lengths[index] for index in todo], max_length)
    return scored, todo


def warn_long_constraints(numbers: Sequence[int], lengths: Sequence[int], max_length: int, with_prefix: bool) -> None:
    """Warns of each sentence whose constraints (and prefix, with_prefix: lengths, their subwords)
    do not fit in the model's longest output (max_length, BOS included); numbers as
    warn_long_prefixes'."""
    for number, length in zip(numbers, lengths):
        if length > max_length - 1:
            log.warning("the constraints of sentence %d%s have %d tokens; the model produces at most %d: it is translated "
                        "without them", number, " and its prefix" if with_prefix else "", length, max_length - 1)


def warn_long_prefixes(numbers: Sequence[int], lengths: Sequence[int], max_length: int) -> None:
    """Warns of each prefix longer than the model's longest output (max_length, BOS included),
    which is cut to it; numbers: its sentence's number in the input, from 1."""
    for number, length in zip(numbers, lengths):
        if length > max_length - 1:
            log.warning("the prefix of sentence %d has %d tokens; the model produces at most %d: it is cut", number, length,
                        max_length - 1)


def batch_out_of_memory(decode: DecodeConfig, sentences: int, longest: int, samples: int | None = None) -> NmtError:
    """The error of a decoding batch that exhausted the device's memory (searching, or drawing
    `samples` per sentence): what to lower."""
    each = f"beam {decode.beam_size}" if samples is None else f"{samples} samples each"
    return NmtError(
        f"out of memory decoding a batch of {sentences} sentences of up to {longest} tokens ({each}): "
        f"set decode.batch_tokens={max(1, decode.batch_tokens // 2)} (now {decode.batch_tokens}) "
        f"or a smaller decode.batch_size (now {decode.batch_size})"
    )


@dataclass(frozen=True)
class SentenceAttention:
    """Every attention layer's weights while the best translation of one sentence was produced.

    maps: "encoder" (layers, heads, source, source), "decoder_self" (layers, heads, target, target)
    and "cross" (layers, heads, target, source) numpy arrays of weights; target row j is the step
    that produced target_pieces[j] (the last is "</s>"). logits: the scores before the softmax, in
    the same layout (masked positions hold a large negative number).
    """

    source_pieces: list[str]
    target_pieces: list[str]
    maps: dict[str, np.ndarray]
    logits: dict[str, np.ndarray]


@dataclass(frozen=True)
class Hypothesis:
    text: str
    # Log-probability over the GNMT length penalty (decode.length_penalty); higher is better.
    score: float
    # The best hypothesis's attention, when asked for (translate_n_best(..., with_attention=True)).
    attention: SentenceAttention | None = None


@dataclass(frozen=True)
class Scored:
    """A given translation as the model scores it (Translator.score)."""

    # Log-probability over the GNMT length penalty, as Hypothesis.score; -inf or nan (see score).
    score: float
    # The target's subwords and EOS ("</s>"), each with its log-probability given the source and
    # the subwords before it; empty where the score is not computed (an empty source, a target too long).
    pieces: tuple[str, ...] = ()
    log_probs: tuple[float, ...] = ()


class Scorer(Protocol):
    """What score_rows scores with: a Translator or a CTranslate2Translator."""

    def start_at(self, offset: int) -> None: ...

    def score(self, sources: Sequence[str], targets: Sequence[str],
              on_batch: Callable[[int], None] | None = None) -> list[Scored]: ...


def score_rows(scorer: Scorer, sources: Sequence[str], targets: Sequence[str], on_batch: Callable[[int], None] | None = None,
               start: int = 0) -> list[tuple[float, list[str], list[float]]]:
    """scorer's scores (a Translator's or a CTranslate2Translator's) as plain rows, what `nmt
    score` prints and the server sends; start: the number of the first pair in the whole input."""
    scorer.start_at(start)
    return [(scored.score, list(scored.pieces), list(scored.log_probs)) for scored in scorer.score(sources, targets, on_batch)]
