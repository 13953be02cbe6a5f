"""The run's CTranslate2 export (`nmt export --format ctranslate2`) translating in place of our
search: `nmt translate`, `nmt evaluate`, `nmt score` and `nmt serve` with `--ctranslate2`.

The model is the same (the conversion gives every token our log-probability); the search is
CTranslate2's, with our batches, decode settings and per-sentence length limits. Its beam search
ranks hypotheses by log-probability over length^decode.length_penalty, where ours divides by
GNMT's ((5 + length) / 6)^decode.length_penalty, and its scores are those. It computes in the
precision its weights are stored in (the export's quantization), whatever decode.precision says.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from nmt import export_manifest
from nmt.config import Config
from nmt.decoding.plan import (Hypothesis, Scored, check_pairs, check_sentences, decoding_batches, length_limits,
                               length_penalty, scoring_plan, warn_long_prefixes, warn_long_sources)
from nmt.errors import ConfigError, NmtError
from nmt.run_dir import RunDir


class CTranslate2Translator:
    """Translates and scores as nmt.decoding.translator.Translator does (translate,
    translate_n_best, score, start_at), by the CTranslate2 model in directory; prefixes, n-best
    lists and decode.no_repeat_ngram_size included, constraints, sampling and attention not."""

    def __init__(self, directory: Path, config: Config, quantization: str):
        import ctranslate2
        import sentencepiece as spm

        self.config = config
        # What evaluation reports name as their decoder.
        self.description = f"CTranslate2 ({directory}, {quantization} weights)"
        self._engine = ctranslate2.Translator(str(directory), device="auto")
        self._source = spm.SentencePieceProcessor(model_file=str(directory / "source.model"))
        self._target = spm.SentencePieceProcessor(model_file=str(directory / "target.model"))
        self._max_length = config.model.max_length
        self._offset = 0

    @classmethod
    def from_run_dir(cls, run: RunDir, config: Config, checkpoint: Path | None = None) -> "CTranslate2Translator":
        """The run's export in <run dir>/ctranslate2, if it holds the weights of checkpoint
        (default: the one config.eval.checkpoint names; finding it checks its files, so a caller
        that has found it passes it).

        Raises:
            NmtError: no such export, one of other weights, no ctranslate2 package, or sampling.
        """
        if config.decode.sampling != "none":
            raise ConfigError("--ctranslate2 decodes with greedy or beam search: leave out decode.sampling "
                              "(--set decode.sampling=none)")
        directory = run.ctranslate2_dir
        manifest = export_manifest.read(directory)
        if manifest is None or manifest.get("format") != export_manifest.CTRANSLATE2:
            raise NmtError(f"no CTranslate2 export in {directory}; make one with nmt export --run-dir {run.path} --format ctranslate2")
        other = export_manifest.other_checkpoint(manifest, checkpoint or run.checkpoint_path(config.eval.checkpoint))
        if other is not None:
            raise NmtError(f"the CTranslate2 export in {directory} is out of date ({other}); "
                           f"remake it with nmt export --run-dir {run.path} --format ctranslate2 --force")
        if importlib.util.find_spec("ctranslate2") is None:
            raise NmtError("--ctranslate2 needs the ctranslate2 package: pip install 'nmt[ctranslate2]'")
        return cls(directory, config, manifest["quantization"])

    def start_at(self, offset: int) -> None:
        """Warnings number sentences from offset + 1 (see Translator.start_at)."""
        self._offset = offset

    def translate(self, sentences: Sequence[str], on_batch: Callable[[int], None] | None = None,
                  prefixes: Sequence[str] | None = None, constraints: None = None) -> list[str]:
        """One translation per sentence, as Translator.translate (constraints: always None here)."""
        return [best[0].text for best in self.translate_n_best(sentences, 1, on_batch, prefixes)]

    def translate_n_best(self, sentences: Sequence[str], n: int, on_batch: Callable[[int], None] | None = None,
                         prefixes: Sequence[str] | None = None) -> list[list[Hypothesis]]:
        """The n best hypotheses per sentence, as Translator.translate_n_best, scored by
        CTranslate2 (log-probability over length^decode.length_penalty)."""
        decode = self.config.decode
        if not 1 <= n <= decode.beam_size:
            raise ConfigError(f"n-best must be between 1 and decode.beam_size ({decode.beam_size}); got {n}")
        check_sentences(sentences, prefixes)
        pieces = self._source.encode(list(sentences), out_type=str)
        lengths = np.array([len(line) for line in pieces])
        numbers = np.arange(len(sentences)) + self._offset + 1
        todo = np.flatnonzero(lengths)  # an empty sentence translates to '', as in our search
        warn_long_sources(numbers[todo], lengths[todo], self._max_length)
        prefix_pieces = [[] for _ in sentences] if prefixes is None else self._target.encode(list(prefixes), out_type=str)
        prefix_lengths = np.array([len(line) for line in prefix_pieces])
        warn_long_prefixes(numbers[todo], prefix_lengths[todo], self._max_length)
        pieces = [line[: self._max_length] for line in pieces]
        prefix_pieces = [line[: self._max_length - 1] for line in prefix_pieces]  # BOS takes a position
        lengths = np.minimum(lengths, self._max_length)
        limits = length_limits(lengths, decode, self._max_length, np.minimum(prefix_lengths, self._max_length - 1))
        outputs = [[Hypothesis("", 0.0)] * n for _ in sentences]
        per_limit = decode.beam_size > 1 and decode.length_penalty == 0
        for batch in decoding_batches(lengths[todo], decode):
            positions = todo[batch]
            nothing = positions[limits[positions] == 0]
            if len(nothing):
                # Nothing may come before EOS, which translate_batch refuses to search for: the
                # empty translation, scored as our search scores it (EOS, the length penalty 1).
                ends = self._engine.score_batch([pieces[index] for index in nothing], [[]] * len(nothing))
                for index, end in zip(nothing, ends):
                    outputs[index] = [Hypothesis("", float(sum(end.log_probs)))] * n
            searched = positions[limits[positions] > 0]
            if per_limit:
                found = self._search_per_limit(searched, limits, n, pieces, prefix_pieces)
            else:
                found, again = self._search(searched, limits, n, pieces, prefix_pieces)
                # Where beam search had to search a fifth of a batch again (an undertrained model
                # that runs to its limits, tight limits), that costs more than it saves: the next
                # batches call per limit.
                per_limit = again > len(positions) / 5
            for index, hypotheses in found.items():
                outputs[index] = [Hypothesis(self._target.decode(tokens), score) for tokens, score in hypotheses]
            if on_batch:
                on_batch(len(positions))
        return outputs

    def _search(self, positions: np.ndarray, limits: np.ndarray, n: int, pieces: list[list[str]],
                prefix_pieces: list[list[str]]) -> tuple[dict[int, list[tuple[list[str], float]]], int]:
        """The n best (subwords, score) of the sentences at positions, each searched within its own
        length limit, as a call of translate_batch (which takes one limit) with that limit searches;
        and how many were searched twice.

        A sentence's search runs alike under any limit until its limit ends it, so one call with the
        batch's largest limit serves most sentences. Greedy search's output up to a limit is the
        start of its output beyond it: those that reached their own limit are cut back to it
        (_stop_at_limits). Beam search, which ends once beam_size hypotheses have ended
        (CTranslate2's rule with a length penalty), is searched again, a call per limit, where the
        last of them ended at limit - 1 tokens or more (all beam_size are asked for, to see it): a
        call with the limit would have ended every live hypothesis there. Without a length penalty
        CTranslate2's beam search ends when its most likely candidate ends, which the hypotheses it
        returns need not show: the caller calls per limit (_search_per_limit) from the start."""
        decode = self.config.decode
        if not len(positions):
            return {}, 0
        largest = int(limits[positions].max())
        if decode.beam_size == 1:
            found = self._call(positions, largest, n, pieces, prefix_pieces)
            self._stop_at_limits(found, pieces, prefix_pieces, limits, largest)
            return found, 0
        found = self._call(positions, largest, decode.beam_size, pieces, prefix_pieces)
        again = np.array([index for index in positions if limits[index] < largest
                          and max(len(tokens) for tokens, _ in found[index]) >= limits[index] - 1], dtype=int)
        found.update(self._search_per_limit(again, limits, decode.beam_size, pieces, prefix_pieces))
        return {index: hypotheses[:n] for index, hypotheses in found.items()}, len(again)

    def _search_per_limit(self, positions: np.ndarray, limits: np.ndarray, n: int, pieces: list[list[str]],
                          prefix_pieces: list[list[str]]) -> dict[int, list[tuple[list[str], float]]]:
        """_call for each length limit of the sentences at positions."""
        found = {}
        for limit in np.unique(limits[positions]):
            found.update(self._call(positions[limits[positions] == limit], int(limit), n, pieces, prefix_pieces))
        return found

    def _call(self, positions: np.ndarray, limit: int, n: int, pieces: list[list[str]],
              prefix_pieces: list[list[str]]) -> dict[int, list[tuple[list[str], float]]]:
        """The n best (subwords, score) of the sentences at positions, by one translate_batch call
        (two for beam search where some have a prefix and some not: in a batch with prefixes, its
        beam search does not let a sentence without one end at its first step, an empty
        translation, as it does alone)."""
        decode = self.config.decode
        prefixed = np.array([bool(prefix_pieces[index]) for index in positions])
        if decode.beam_size > 1 and prefixed.any() and not prefixed.all():
            return {**self._call(positions[prefixed], limit, n, pieces, prefix_pieces),
                    **self._call(positions[~prefixed], limit, n, pieces, prefix_pieces)}
        results = self._engine.translate_batch(
            [pieces[index] for index in positions], target_prefix=[prefix_pieces[index] or None for index in positions],
            beam_size=decode.beam_size, num_hypotheses=n, length_penalty=decode.length_penalty,
            no_repeat_ngram_size=decode.no_repeat_ngram_size, max_decoding_length=limit,
            min_decoding_length=0, return_scores=True)  # its default, 1, forbids an empty translation
        return {index: list(zip(result.hypotheses, result.scores)) for index, result in zip(positions, results)}

    def _stop_at_limits(self, found: dict[int, list[tuple[list[str], float]]], pieces: list[list[str]],
                        prefix_pieces: list[list[str]], limits: np.ndarray, call_limit: int) -> None:
        """Greedy outputs that reached their sentence's limit in a call with a larger one, cut to it
        and scored as a call with their own limit scores them: the log-probabilities of their first
        limit tokens after the prefix (no EOS) over limit^decode.length_penalty, from a
        teacher-forced pass."""
        reached = [index for index, [(tokens, _)] in found.items()
                   if limits[index] < call_limit and len(tokens) >= limits[index]]
        if not reached:
            return
        cut = [found[index][0][0][: limits[index]] for index in reached]
        scored = self._engine.score_batch([pieces[index] for index in reached], cut)
        for index, tokens, result in zip(reached, cut, scored):
            limit, prefix = int(limits[index]), len(prefix_pieces[index])
            score = sum(result.log_probs[prefix:limit]) / limit ** self.config.decode.length_penalty
            found[index] = [(tokens, float(score))]

    def score(self, sources: Sequence[str], targets: Sequence[str],
              on_batch: Callable[[int], None] | None = None) -> list[Scored]:
        """The model's score of each target as the translation of its source, as
        Translator.score gives it (the log-probability of its tokens and EOS over GNMT's length
        penalty, each token's log-probability, the same empty and too-long cases), by
        CTranslate2's teacher-forced pass."""
        check_pairs(sources, targets)
        source_pieces = self._source.encode(list(sources), out_type=str)
        target_pieces = self._target.encode(list(targets), out_type=str)
        numbers = list(range(self._offset + 1, self._offset + len(sources) + 1))
        scored, todo = scoring_plan([len(line) for line in source_pieces], [len(line) for line in target_pieces],
                                    self._max_length, numbers)
        lengths = [max(min(len(source_pieces[index]), self._max_length), len(target_pieces[index]) + 1) for index in todo]
        for batch in decoding_batches(lengths, self.config.decode):
            positions = [todo[position] for position in batch]
            results = self._engine.score_batch([source_pieces[index][: self._max_length] for index in positions],
                                               [target_pieces[index] for index in positions])
            penalties = length_penalty([len(result.log_probs) for result in results], self.config.decode.length_penalty)
            for index, result, penalty in zip(positions, results, penalties):
                scored[index] = Scored(float(sum(result.log_probs) / penalty), tuple(result.tokens), tuple(result.log_probs))
            if on_batch:
                on_batch(len(positions))
        return scored
