"""Greedy search, beam search and sampling over the Transformer's cached decoder, each one
tf.while_loop.

All return (ids, scores):
  ids     (batch, n, steps) target ids without BOS, each hypothesis ending with EOS then PAD_ID,
          best first (n = 1 for greedy, beam_size for beam search, the samples drawn for sampling);
  scores  (batch, n) log-probability divided by the GNMT length penalty ((5 + length) / 6) ** alpha,
          length counting EOS.

Every output ends at EOS or at its sentence's length limit (`max_lengths`, tokens before EOS).
PAD and BOS are never produced.

prefix_ids (batch, prefix steps), optional: each sentence's output begins with its row of tokens
(PAD past its prefix's end), forced one a step with its real log-probability, so scores cover the
whole output; the search goes on from there (fairseq's --prefix-size, CTranslate2's target_prefix).
The caller makes each length limit hold its prefix.

constraint_ids (batch, constraints, constraint steps), optional, beam search only: subword
sequences (PAD-padded, rows of PAD: none) each of a sentence's outputs must contain, anywhere and in
any order: lexically constrained decoding by dynamic beam allocation (Post & Vilar, 2018), as
fairseq's --constraints does it vectorised (Hu et al., 2019). Each hypothesis also extends by the
next token of every constraint it has not met (continuing one it has begun, or beginning one); the
candidates fall into banks by how many constraint tokens they have met, and the beam takes the
best of each bank in turn, the most met first, so that hypotheses that have placed a constraint
are kept beside better-scored ones that have not yet. EOS is allowed once all are met, so a
hypothesis that has not met them by its length limit dies: the caller makes the limits hold the
constraints, and a sentence whose hypotheses all die (its constraints could not be placed, e.g.
a repeat that no_repeat_ngram_size forbids) has only dead ones (scores below DEAD). A constraint
a hypothesis begins and then leaves counts as not begun. Scores stay the model's own
log-probabilities of the tokens chosen. word_continuations (vocab,) bool, optional: the tokens
that go on with the word before them; a hypothesis whose last token completed a constraint does
not take one next, so that each constraint stands as whole words ("Hund" not as the start of
"Hunde"; a later "Hunde" is free).

no_repeat_ngram_size N > 0: no output holds the same N subwords twice, because a token that would
complete a repeat is never chosen (fairseq's --no-repeat-ngram-size, CTranslate2's
no_repeat_ngram_size); a prefix is followed regardless. Scores stay the model's own
log-probabilities of the tokens chosen.

Why our own beam search: Keras has none for encoder-decoder models, and TF's (tf-models, the
retired tensorflow-addons) would add a dependency for ~80 lines. It follows fairseq's rules, so
that beam 1 is exactly greedy: a hypothesis ending in EOS is finished only when it ranks among the
beam_size best candidates, and a sentence is done when beam_size hypotheses have finished.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding.plan import length_penalty
from nmt.model.transformer import Transformer

# Finite stand-in for -inf: arithmetic on it stays finite, and a score below DEAD is not a
# hypothesis (beam search's, where a sentence has fewer possible outputs than the beam).
_NEG = -1e9
DEAD = _NEG / 2
# Columns per chunk of the chunked top-k over the vocabulary (`_top_k`).
_CHUNK = 32


def greedy_search(
    model: Transformer, source_ids: tf.Tensor, max_lengths: tf.Tensor, alpha: float = 0.0,
    prefix_ids: tf.Tensor | None = None, no_repeat_ngram_size: int = 0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The most likely next token at every step; ids (batch, 1, steps), scores (batch, 1)."""
    def most_likely(log_probs, step, limits):
        best, ids = _best_next_tokens(log_probs, step, limits, 1)
        return best[:, 0], ids[:, 0]

    return _token_by_token(model, source_ids, max_lengths, alpha, 1, most_likely, prefix_ids, no_repeat_ngram_size)


def sample(
    model: Transformer, source_ids: tf.Tensor, max_lengths: tf.Tensor, num_samples: tf.Tensor, seed: tf.Tensor,
    method: str, temperature: float, top_k: int, top_p: float, alpha: float = 0.0, prefix_ids: tf.Tensor | None = None,
    no_repeat_ngram_size: int = 0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """num_samples translations per sentence, each token drawn from the model's distribution with
    its logits divided by temperature and cut to the top_k most likely tokens (method 'top_k') or
    to the fewest whose probabilities add up to top_p (method 'top_p', nucleus sampling; Holtzman
    et al., 2020). Scores are the model's own log-probabilities (not the tempered ones) over the
    length penalty, and samples are sorted by them, best first. seed (2,) int32: the same seed and
    batch give the same samples. Returns ids (batch, num_samples, steps), scores (batch, num_samples)."""
    def draw(log_probs, step, limits):
        tempered = log_probs / temperature
        if method == "top_k":
            threshold = tf.math.top_k(tempered, k=tf.minimum(top_k, tf.shape(tempered)[-1])).values[:, -1:]
        else:
            ranked = tf.sort(tempered, direction="DESCENDING")
            probabilities = tf.nn.softmax(ranked)
            # A token is kept while the probability of the tokens ranked above it is below top_p:
            # the most likely one always is.
            before = tf.cumsum(probabilities, axis=-1, exclusive=True)
            kept = tf.reduce_sum(tf.cast(before < top_p, tf.int32), axis=-1, keepdims=True)
            threshold = tf.gather(ranked, kept - 1, batch_dims=1)
        candidates = tf.where(tempered >= threshold, tempered, _NEG)
        ids = tf.random.stateless_categorical(candidates, 1, seed=tf.stack([seed[0], seed[1] + step]), dtype=tf.int32)[:, 0]
        ids = tf.where(step >= limits, EOS_ID, ids)
        return tf.gather(log_probs, ids, batch_dims=1), ids

    ids, scores = _token_by_token(model, source_ids, max_lengths, alpha, num_samples, draw, prefix_ids, no_repeat_ngram_size)
    scores, order = tf.math.top_k(scores, k=tf.shape(scores)[1])
    return tf.gather(ids, order, batch_dims=1), scores


def _token_by_token(model: Transformer, source_ids: tf.Tensor, max_lengths: tf.Tensor, alpha: float,
                    per_sentence, choose, prefix_ids: tf.Tensor | None, ngram: int) -> tuple[tf.Tensor, tf.Tensor]:
    """per_sentence hypotheses per sentence, each extended by one token per step by choose(log_probs,
    step, limits) -> (log-probabilities, ids) of the rows; a row leaves the working batch at its EOS.
    Returns ids (batch, per_sentence, steps), scores (batch, per_sentence)."""
    batch_size = tf.shape(source_ids)[0]
    max_steps = tf.reduce_max(max_lengths) + 1
    cache = model.start_decoding(source_ids)
    output_kernel = model.output_kernel()  # once, not every step
    if not (isinstance(per_sentence, int) and per_sentence == 1):
        # Each sentence's row becomes per_sentence rows (sentence-major), sharing one encoder pass.
        cache = tf.nest.map_structure(lambda tensor: tf.repeat(tensor, per_sentence, axis=0), cache)
    rows = batch_size * per_sentence

    # `active` (A,) indexes the rows still decoded; tokens, limits, history (the tokens so far) and
    # cache rows are theirs.
    def not_done(step, active, tokens, limits, history, log_prob, length, output, cache):
        return tf.logical_and(step < max_steps, tf.size(active) > 0)

    def extend(step, active, tokens, limits, history, log_prob, length, output, cache):
        logits, cache = model.decode_step(tokens, step, cache, output_kernel)
        log_probs = _log_probs(logits, step, active // per_sentence, history, prefix_ids, ngram)
        next_log_prob, next_ids = choose(log_probs, step, limits)
        if ngram:  # otherwise nothing reads it: it stays empty
            history = tf.concat([history, next_ids[:, tf.newaxis]], axis=1)
        positions = active[:, tf.newaxis]
        log_prob = tf.tensor_scatter_nd_add(log_prob, positions, next_log_prob)
        length = tf.tensor_scatter_nd_add(length, positions, tf.ones_like(next_ids))
        output = output.write(step, tf.tensor_scatter_nd_update(tf.fill([rows], PAD_ID), positions, next_ids))
        going_on = tf.where(tf.not_equal(next_ids, EOS_ID))[:, 0]
        cache = tf.cond(
            tf.size(going_on) < tf.size(active),
            lambda: tf.nest.map_structure(lambda tensor: tf.gather(tensor, going_on), cache),
            lambda: cache,
        )
        return (
            step + 1, tf.gather(active, going_on), tf.gather(next_ids, going_on), tf.gather(limits, going_on),
            tf.gather(history, going_on), log_prob, length, output, cache,
        )

    fewer = tf.TensorShape([None])
    _, _, _, _, _, log_prob, length, output, _ = tf.while_loop(
        not_done,
        extend,
        (
            tf.constant(0), tf.range(rows), tf.fill([rows], BOS_ID), tf.repeat(max_lengths, per_sentence),
            tf.zeros([rows, 0], tf.int32), tf.zeros([rows]), tf.zeros([rows], tf.int32),
            tf.TensorArray(tf.int32, size=0, dynamic_size=True), cache,
        ),
        shape_invariants=(None, fewer, fewer, fewer, tf.TensorShape([None, None]), None, None, None,
                          model.decoding_shape_invariants(cache)),
    )
    ids = tf.reshape(tf.transpose(output.stack()), [batch_size, per_sentence, -1])
    return ids, tf.reshape(log_prob / length_penalty(length, alpha, tnp), [batch_size, per_sentence])


def beam_search(
    model: Transformer, source_ids: tf.Tensor, max_lengths: tf.Tensor, beam_size: int, alpha: float = 0.0,
    num_best: int | tf.Tensor | None = None, prefix_ids: tf.Tensor | None = None, no_repeat_ngram_size: int = 0,
    constraint_ids: tf.Tensor | None = None, word_continuations: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The beam_size best hypotheses per sentence; ids (batch, beam_size, steps), scores (batch, beam_size).

    A sentence leaves the working batch once it is done (as in fairseq): its rows stop costing
    decoder steps while longer sentences of the batch go on. In a length-sorted batch about a third
    of the row-steps were spent on sentences already done.

    num_best (default beam_size): how many of the best hypotheses the caller needs. A sentence is
    also done as soon as its num_best best finished hypotheses can no longer be displaced: no alive
    hypothesis can score more than its log-probability so far (which only falls) over the length
    penalty of the sentence's longest output (Wu et al., 2016). The num_best first hypotheses are
    then those the whole search would return; the ones after them may be worse. With constraints,
    the whole search is the constrained one, whose beam is shared out between the banks.
    """
    num_best = beam_size if num_best is None else num_best
    batch_size = tf.shape(source_ids)[0]
    # Without constraints, their state is an empty structure: the graph is beam search's alone.
    constrained = constraint_ids is not None
    if constrained:
        constraint_lengths = tf.reduce_sum(tf.cast(tf.not_equal(constraint_ids, PAD_ID), tf.int32), axis=2)  # (batch, C)
    max_steps = tf.reduce_max(max_lengths) + 1
    cache = model.start_decoding(source_ids)
    output_kernel = model.output_kernel()  # once, not every step
    rank = tf.range(2 * beam_size)[tf.newaxis]  # (1, 2 * beam)

    # Loop state: `active` (A,) indexes the sentences still searched; the alive hypotheses, their
    # tokens, length limits, constraint progress and cache rows are theirs only. Finished
    # hypotheses cover every sentence.
    def not_done(step, active, tokens, limits, alive_ids, alive_scores, progress, finished_ids, finished_scores,
                 num_finished, cache):
        return tf.logical_and(step < max_steps, tf.size(active) > 0)

    def extend(step, active, tokens, limits, alive_ids, alive_scores, progress, finished_ids, finished_scores,
               num_finished, cache):
        logits, cache = model.decode_step(tokens, step, cache, output_kernel, hypotheses=beam_size)
        rows = tf.size(active) * beam_size
        history = tf.reshape(alive_ids, [rows, -1])[:, :step]
        sentences = tf.repeat(active, beam_size)
        log_probs = _log_probs(logits, step, sentences, history, prefix_ids, no_repeat_ngram_size)
        row_progress = tf.reshape(progress, [rows, -1]) if constrained else ()
        return select(step, active, candidates(log_probs, step, limits, row_progress, sentences),
                      limits, alive_ids, alive_scores, progress, finished_ids, finished_scores, num_finished, cache)

    def candidates(log_probs, step, limits, progress, sentences):
        """Each row's next tokens to weigh, (rows, K) log-probabilities and ids: its 2 * beam most
        likely, and with constraints the next token of each constraint it has not met (dead where
        already among them)."""
        if not constrained:
            return _best_next_tokens(log_probs, step, limits, 2 * beam_size)
        lengths = tf.gather(constraint_lengths, sentences)  # (rows, C)
        if word_continuations is not None:
            # A progress of exactly its length: the row's last token completed the constraint.
            completed = tf.reduce_any(tf.equal(progress, lengths) & (lengths > 0), axis=1)
            log_probs = tf.where(completed[:, tf.newaxis] & word_continuations[tf.newaxis], _NEG, log_probs)
        # EOS only once every constraint is met: at its length limit, a row that has not met them dies.
        met = tf.reduce_all(progress >= lengths, axis=1)[:, tf.newaxis]
        not_eos = tf.not_equal(tf.range(tf.shape(log_probs)[1]), EOS_ID)[tf.newaxis]
        best, ids = _best_next_tokens(tf.where(met | not_eos, log_probs, _NEG), step, limits, 2 * beam_size)
        needed = _next_constraint_tokens(tf.gather(constraint_ids, sentences), lengths, progress)  # (rows, C)
        num_constraints = tf.shape(needed)[1]
        earlier = tf.linalg.band_part(tf.ones([num_constraints, num_constraints], tf.bool), -1, 0) & ~tf.eye(num_constraints, dtype=tf.bool)
        repeated = tf.reduce_any(tf.equal(needed[:, :, tf.newaxis], ids[:, tf.newaxis]), axis=2) | tf.reduce_any(
            tf.equal(needed[:, :, tf.newaxis], needed[:, tf.newaxis]) & earlier[tf.newaxis], axis=2)
        dead = repeated | tf.equal(needed, PAD_ID) | (step >= limits)[:, tf.newaxis]
        needed_log_probs = tf.where(dead, _NEG, tf.gather(log_probs, needed, batch_dims=1))
        return tf.concat([best, needed_log_probs], axis=1), tf.concat([ids, needed], axis=1)

    def select(step, active, next_tokens, limits, alive_ids, alive_scores, progress, finished_ids, finished_scores,
               num_finished, cache):
        # The 2 * beam best continuations of a sentence are among its hypotheses' 2 * beam best
        # tokens each: a top-k over (A, beam x 2 * beam) candidates instead of (A, beam x vocab).
        row_log_probs, row_ids = next_tokens  # (A * beam, K): K = 2 * beam, and the constraints' tokens
        width = tf.shape(row_ids)[1] if constrained else 2 * beam_size
        candidates = alive_scores[:, :, tf.newaxis] + tf.reshape(row_log_probs, [-1, beam_size, width])
        candidates = tf.reshape(candidates, [tf.size(active), -1])
        if constrained:
            # Each candidate's constraint progress, its bank the constraint tokens it has met.
            sentence_constraints = tf.gather(constraint_ids, active)  # (A, C, L)
            lengths = tf.gather(constraint_lengths, active)
            ids = tf.reshape(row_ids, [tf.size(active), beam_size, width])
            # The constraints' next tokens are the candidates after each row's 2 * beam best.
            grown = _constraint_progress(sentence_constraints[:, :, 0], lengths, progress, ids, ids[:, :, 2 * beam_size:])
            grown = tf.reshape(grown, [tf.size(active), beam_size * width, -1])  # (A, beam x K, C)
            banks = tf.reduce_sum(tf.minimum(grown, lengths[:, tf.newaxis]), axis=2)
            indices = _by_banks(candidates, banks, 2 * beam_size)
            scores = tf.gather(candidates, indices, batch_dims=1)
        else:
            scores, indices = tf.math.top_k(candidates, k=2 * beam_size)
        beams = indices // width  # (A, 2 * beam)
        next_ids = tf.gather(tf.reshape(row_ids, [tf.size(active), -1]), indices, batch_dims=1)
        is_eos = tf.equal(next_ids, EOS_ID)
        extended = _write_column(tf.gather(alive_ids, beams, batch_dims=1), next_ids, step)

        # Hypotheses ending here: EOS candidates among the beam_size first.
        sentences = active[:, tf.newaxis]
        finishing = is_eos & (rank < beam_size) & (scores > DEAD)
        normalized = tf.where(finishing, scores / length_penalty(step + 1, alpha, tnp), _NEG)
        merged_scores = tf.concat([tf.gather(finished_scores, active), normalized], axis=1)
        best_scores, keep = tf.math.top_k(merged_scores, k=beam_size)
        best_ids = tf.gather(tf.concat([tf.gather(finished_ids, active), extended], axis=1), keep, batch_dims=1)
        finished_scores = tf.tensor_scatter_nd_update(finished_scores, sentences, best_scores)
        finished_ids = tf.tensor_scatter_nd_update(finished_ids, sentences, best_ids)
        counts = tf.gather(num_finished, active) + tf.reduce_sum(tf.cast(finishing, tf.int32), axis=1)
        num_finished = tf.tensor_scatter_nd_update(num_finished, sentences, counts)

        # The beam_size first candidates that did not end continue; at most beam_size of 2 * beam_size end.
        if constrained:
            # In the banks' order, which is not the scores'.
            _, keep = tf.math.top_k(tf.where(is_eos, -rank - 2 * beam_size, -rank), k=beam_size)
            alive_scores = tf.where(tf.gather(is_eos, keep, batch_dims=1), _NEG, tf.gather(scores, keep, batch_dims=1))
            progress = tf.gather(tf.gather(grown, indices, batch_dims=1), keep, batch_dims=1)  # (A, beam, C)
        else:
            alive_scores, keep = tf.math.top_k(tf.where(is_eos, _NEG, scores), k=beam_size)
            progress = ()
        alive_ids = tf.gather(extended, keep, batch_dims=1)
        parents = tf.gather(beams, keep, batch_dims=1)  # (A, beam): rows of this step's batch
        next_tokens = tf.gather(next_ids, keep, batch_dims=1)

        # Sentences with beam_size finished hypotheses are done, and those whose num_best best
        # finished ones no alive hypothesis can reach; the others go on.
        limits = tf.reshape(limits, [-1, beam_size])  # (A, beam): the sentence's limit in each row
        best_alive = tf.reduce_max(alive_scores, axis=1) if constrained else alive_scores[:, 0]  # banks' order, or the scores'
        reachable = best_alive / length_penalty(limits[:, 0] + 1, alpha, tnp)
        settled = best_scores[:, num_best - 1] >= reachable
        going_on = tf.cast(tf.where((counts < beam_size) & ~settled)[:, 0], tf.int32)  # (A',) positions among the active
        row_base = going_on[:, tf.newaxis] * beam_size
        rows = tf.reshape(row_base + tf.gather(parents, going_on), [-1])
        cache = _reorder(cache, rows)
        cache = tf.cond(tf.size(going_on) < tf.size(active), lambda: _keep_sentences(cache, going_on), lambda: cache)
        tokens = tf.reshape(tf.gather(next_tokens, going_on), [-1])
        limits = tf.reshape(tf.gather(limits, going_on), [-1])
        return (
            step + 1, tf.gather(active, going_on), tokens, limits, tf.gather(alive_ids, going_on),
            tf.gather(alive_scores, going_on), tf.gather(progress, going_on) if constrained else (), finished_ids, finished_scores,
            num_finished, cache,
        )

    # The first step decodes one row per sentence, whose beam_size rows would all be BOS on the
    # same cache; the sentence's rows then share its logits and cache (a 1/beam_size step).
    logits, cache = model.decode_step(tf.fill([batch_size], BOS_ID), tf.constant(0), cache, output_kernel)
    log_probs = _log_probs(logits, tf.constant(0), tf.range(batch_size), None, prefix_ids, 0)  # no history to repeat yet
    no_progress = tf.zeros(tf.shape(constraint_lengths), tf.int32) if constrained else ()
    first_tokens = tf.nest.map_structure(
        lambda tensor: tf.repeat(tensor, beam_size, axis=0),
        candidates(log_probs, tf.constant(0), max_lengths, no_progress, tf.range(batch_size)))
    # Each sentence's row becomes beam_size rows (sentence-major), which share its memory.
    cache = _reorder(cache, tf.repeat(tf.range(batch_size), beam_size))
    empty_ids = tf.fill([batch_size, beam_size, max_steps], PAD_ID)
    # Only the first row of each beam is live at the start, so the first step does not yield copies.
    first_scores = tf.tile(tf.concat([[0.0], tf.fill([beam_size - 1], _NEG)], axis=0)[tf.newaxis], [batch_size, 1])
    fewer = tf.TensorShape([None])
    _, _, _, _, _, _, _, finished_ids, finished_scores, _, _ = tf.while_loop(
        not_done,
        extend,
        select(
            tf.constant(0), tf.range(batch_size), first_tokens, tf.repeat(max_lengths, beam_size), empty_ids,
            first_scores, tf.repeat(no_progress[:, tf.newaxis], beam_size, axis=1) if constrained else (), empty_ids,
            tf.fill([batch_size, beam_size], _NEG), tf.zeros([batch_size], tf.int32), cache,
        ),
        shape_invariants=(
            None, fewer, fewer, fewer, tf.TensorShape([None, beam_size, None]), tf.TensorShape([None, beam_size]),
            tf.TensorShape([None, beam_size, None]) if constrained else (), None, None, None,
            model.decoding_shape_invariants(cache),
        ),
    )
    return finished_ids, finished_scores


def _log_probs(logits: tf.Tensor, step: tf.Tensor, sentences: tf.Tensor, history: tf.Tensor | None,
               prefix_ids: tf.Tensor | None, ngram: int) -> tf.Tensor:
    """next_token_log_probs of rows decoding `sentences` (indices into prefix_ids' rows) after the
    tokens of history (rows, step): with ngram > 0, the tokens that would repeat one of its
    n-grams dead; a row whose sentence's prefix has a token at this step keeps that token's alone."""
    log_probs = next_token_log_probs(logits)
    free = log_probs if not ngram else tf.cond(
        step >= ngram, lambda: _without_repeats(log_probs, history, step, ngram), lambda: log_probs)
    if prefix_ids is None:
        return free

    def follow_prefix():
        forced = tf.gather(prefix_ids[:, step], sentences)[:, tf.newaxis]  # (rows, 1); PAD: not forced
        chosen = tf.equal(tf.range(tf.shape(log_probs)[1])[tf.newaxis], forced)
        return tf.where(tf.equal(forced, PAD_ID), free, tf.where(chosen, log_probs, _NEG))

    # Past the longest prefix no row is forced: the (rows, vocab) pass is skipped.
    return tf.cond(step < tf.shape(prefix_ids)[1], follow_prefix, lambda: free)


def _next_constraint_tokens(constraints: tf.Tensor, lengths: tf.Tensor, progress: tf.Tensor) -> tf.Tensor:
    """(rows, C): the token that advances each of a row's constraints (rows, C, L), of lengths
    (rows, C), after progress (rows, C) of its tokens met (its first when none are); PAD where met."""
    position = tf.minimum(progress, tf.shape(constraints)[2] - 1)[:, :, tf.newaxis]
    return tf.where(progress >= lengths, PAD_ID, tf.gather(constraints, position, batch_dims=2)[:, :, 0])


def _constraint_progress(first_tokens: tf.Tensor, lengths: tf.Tensor, progress: tf.Tensor, tokens: tf.Tensor,
                         needed: tf.Tensor) -> tf.Tensor:
    """(A, beam, K, C): the tokens of each constraint (first tokens and lengths (A, C)) met once
    each hypothesis (progress (A, beam, C), the tokens that advance its constraints needed (A,
    beam, C): _next_constraint_tokens) goes on with each of its candidate tokens (A, beam, K). One
    whose next token comes advances, reaching its length with its last token; one already met
    stays met, at length + 1, so that the token that completed it is told from a later repeat of
    that token (the whole-word rule holds for the first only); any other starts over, at 1 if the
    token begins it."""
    needed = needed[:, :, tf.newaxis]  # (A, beam, 1, C)
    tokens = tokens[:, :, :, tf.newaxis]
    begins = tf.equal(tokens, first_tokens[:, tf.newaxis, tf.newaxis])
    before = progress[:, :, tf.newaxis]
    met = before >= lengths[:, tf.newaxis, tf.newaxis]
    return tf.where(met, lengths[:, tf.newaxis, tf.newaxis] + 1,
                    tf.where(tf.equal(tokens, needed), before + 1, tf.cast(begins, tf.int32)))


def _by_banks(scores: tf.Tensor, banks: tf.Tensor, k: int) -> tf.Tensor:
    """Positions (A, k) of the k candidates dynamic beam allocation keeps of (A, N) scored ones in
    banks (A, N): the best of every bank, the bank of most constraint tokens met first, then the
    second best of every bank, and so on; a bank with too few candidates leaves its turns to the
    others. Dead candidates come last."""
    ranked_scores, order = tf.math.top_k(scores, k=tf.shape(scores)[1])
    ranked_banks = tf.gather(banks, order, batch_dims=1)
    num_banks = tf.reduce_max(banks) + 1
    one_hot = tf.one_hot(ranked_banks, num_banks, dtype=tf.int32)
    place_in_bank = tf.reduce_sum(tf.cumsum(one_hot, axis=1, exclusive=True) * one_hot, axis=2)
    turn = place_in_bank * num_banks + (num_banks - 1 - ranked_banks)
    last = tf.size(scores) * num_banks  # beyond any live candidate's turn
    _, chosen = tf.math.top_k(-tf.where(ranked_scores > DEAD, turn, last), k=k)
    return tf.gather(order, chosen, batch_dims=1)

def _without_repeats(log_probs: tf.Tensor, history: tf.Tensor, step: tf.Tensor, n: int) -> tf.Tensor:
    """log_probs (rows, vocab) with each token dead that, after the tokens of history (rows, step),
    would repeat an n-gram of them: the token that followed each earlier occurrence of the last
    n - 1 tokens. Needs step >= n."""
    windows = step - n + 1  # earlier n-grams: positions j = 0 .. step - n
    matches = tf.ones(tf.shape(history[:, :windows]), tf.bool)
    for offset in range(n - 1):
        matches &= tf.equal(history[:, offset:offset + windows], history[:, step - n + 1 + offset][:, tf.newaxis])
    found = tf.where(matches)  # (repeats, 2): row, j
    followers = tf.gather_nd(history[:, n - 1:], found)
    banned = tf.scatter_nd(tf.stack([found[:, 0], tf.cast(followers, tf.int64)], axis=1), tf.ones_like(followers),
                           tf.shape(log_probs, out_type=tf.int64))
    return tf.where(banned > 0, _NEG, log_probs)


def _best_next_tokens(log_probs: tf.Tensor, step: tf.Tensor, max_lengths: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The k most likely next tokens of each row (of `_log_probs`): log-probabilities and ids,
    (rows, k) each, best first. A row at its length limit gets EOS, at its own log-probability
    (as fairseq prices it: an output cut there is not given its end for free, and its score is
    what `Translator.score` gives its text), and k - 1 dead entries."""
    best, ids = _top_k(log_probs, k)
    at_limit = (step >= max_lengths)[:, tf.newaxis]
    only_eos = tf.concat([log_probs[:, EOS_ID:EOS_ID + 1], tf.fill(tf.stack([tf.shape(log_probs)[0], k - 1]), _NEG)], axis=1)
    eos_first = tf.concat([[EOS_ID], tf.fill([k - 1], PAD_ID)], axis=0)[tf.newaxis]
    return tf.where(at_limit, only_eos, best), tf.where(at_limit, eos_first, ids)


def next_token_log_probs(logits: tf.Tensor) -> tf.Tensor:
    """float32 log-probabilities of (..., vocab) logits over the tokens a translation can hold:
    PAD and BOS excluded, as the searches exclude them."""
    # One pass adds the exclusions (a (vocab,) vector); the fused log-softmax beat
    # reduce_logsumexp's separate max, subtract and exp passes over the (rows, vocab) logits.
    excluded = tf.scatter_nd([[PAD_ID], [BOS_ID]], [_NEG, _NEG], tf.shape(logits)[-1:])
    return tf.nn.log_softmax(tf.cast(logits, tf.float32) + excluded)


def _top_k(values: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """tf.math.top_k(values, k) of (rows, width) values for a k far below the width, in a fraction
    of its time (a beam step's top-k over 8,000 columns took ~10% of decoding): the k largest of a
    row lie in the k chunks of _CHUNK columns with the largest maxima, because a chunk holding one
    of them has a maximum at least as large, and fewer than k chunks can hold a larger value. So
    one vectorised max per chunk, a top-k over the chunks' maxima and one over the k best chunks'
    columns replace a top-k over every column."""
    width = values.shape[-1]
    if width is None or width < 2 * k * _CHUNK:
        return tf.math.top_k(values, k=k)
    if width % _CHUNK:
        values = tf.pad(values, [[0, 0], [0, _CHUNK - width % _CHUNK]], constant_values=2 * _NEG)
    chunks = tf.reshape(values, [tf.shape(values)[0], -1, _CHUNK])
    _, best_chunks = tf.math.top_k(tf.reduce_max(chunks, axis=2), k=k)  # (rows, k)
    candidates = tf.reshape(tf.gather(chunks, best_chunks, batch_dims=1), [-1, k * _CHUNK])
    best, positions = tf.math.top_k(candidates, k=k)
    return best, tf.gather(best_chunks, positions // _CHUNK, batch_dims=1) * _CHUNK + positions % _CHUNK


def _write_column(ids: tf.Tensor, values: tf.Tensor, column: tf.Tensor) -> tf.Tensor:
    """ids (batch, n, steps) with values (batch, n) written at position column of the last axis."""
    one_hot = tf.one_hot(column, tf.shape(ids)[2], on_value=True, off_value=False, dtype=tf.bool)
    return tf.where(one_hot, values[:, :, tf.newaxis], ids)


def _reorder(cache: dict, rows: tf.Tensor) -> dict:
    """Moves the self-attention keys and values with their hypotheses (and drops those of rows not
    in `rows`); the encoder's, a row per sentence, stay put because hypotheses only move within
    their own sentence."""
    layers = [{**layer, "self": tf.nest.map_structure(lambda tensor: tf.gather(tensor, rows), layer["self"])} for layer in cache["layers"]]
    return {**cache, "layers": layers}


def _keep_sentences(cache: dict, sentences: tf.Tensor) -> dict:
    """Keeps the encoder's keys, values and mask of `sentences` only, those beam search still
    searches (the self-attention's follow their hypotheses in `_reorder`)."""
    def keep(layer: dict) -> dict:
        return {**layer, "memory": tf.nest.map_structure(lambda tensor: tf.gather(tensor, sentences), layer["memory"])}

    return {"memory_mask": tf.gather(cache["memory_mask"], sentences), "layers": [keep(layer) for layer in cache["layers"]]}
