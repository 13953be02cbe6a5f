"""Several trained models decoding as one: at each step, the mean of their log-probabilities.

An Ensemble offers what the searches use of a Transformer (start_decoding, decode_step,
output_kernel, decoding_shape_invariants, max_length), so greedy search, beam search and
sampling run on it unchanged, each member with its own cached decoder; and its call on a whole
target (teacher-forced), which scoring given translations uses. Its cache has a
Transformer's layout, the members' decoder layers one after the other, so that the searches'
reordering of hypotheses moves every member's keys and values alike.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from nmt.model.transformer import Transformer


class Ensemble:
    def __init__(self, members: Sequence[Transformer]):
        self.members = list(members)
        self.max_length = min(member.max_length for member in self.members)
        self._layer_counts = [len(member.decoder_layers) for member in self.members]

    decoding_shape_invariants = staticmethod(Transformer.decoding_shape_invariants)

    def start_decoding(self, source_ids: tf.Tensor) -> dict:
        caches = [member.start_decoding(source_ids) for member in self.members]
        # The padding mask depends on the source ids alone: the members' are the same.
        return {"memory_mask": caches[0]["memory_mask"], "layers": [layer for cache in caches for layer in cache["layers"]]}

    def __call__(self, inputs: dict) -> tf.Tensor:
        """A Transformer's call on {"source_ids", "target_in"}: (batch, target, vocab) mean
        log-probabilities at every position, what decode_step gives one step at a time."""
        return tf.add_n([tf.nn.log_softmax(member(inputs)) for member in self.members]) / len(self.members)

    def output_kernel(self) -> list:
        return [member.output_kernel() for member in self.members]

    def decode_step(self, token_ids: tf.Tensor, index: tf.Tensor, cache: dict, output_kernel: list | None = None,
                    hypotheses: int = 1) -> tuple[tf.Tensor, dict]:
        """(rows,) ids -> (rows, vocab) mean log-probabilities of the next token (logits whose
        softmax is the members' renormalised geometric mean), and the extended cache; hypotheses
        as a Transformer's."""
        kernels = output_kernel if output_kernel is not None else [None] * len(self.members)
        log_probs, layers, start = [], [], 0
        for member, count, kernel in zip(self.members, self._layer_counts, kernels):
            member_cache = {"memory_mask": cache["memory_mask"], "layers": cache["layers"][start : start + count]}
            logits, member_cache = member.decode_step(token_ids, index, member_cache, kernel, hypotheses)
            log_probs.append(tf.nn.log_softmax(logits))
            layers += member_cache["layers"]
            start += count
        return tf.add_n(log_probs) / len(log_probs), {"memory_mask": cache["memory_mask"], "layers": layers}
