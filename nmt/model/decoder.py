"""One Transformer decoder layer: causal self-attention, cross-attention over the encoder output,
and feed-forward, each in a residual block.

`call` runs a whole (teacher-forced) target sequence, for training; `step` runs one position
against a cache of the keys and values of the positions before it, for decoding. Keras's
MultiHeadAttention has no cache, so `step` calls its projections itself, on the same weights, and
computes the attention of its one query position with two batched matmuls over a cache kept
heads-first, (batch, heads, positions, key_dim). Keras's attention core takes keys positions-first
and its einsums transposed the whole cache on every step: a third of beam-4 decoding time.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from nmt.model.sublayers import Dropout, FeedForward, residual


class DecoderLayer(keras.layers.Layer):
    """Args: as EncoderLayer."""

    def __init__(self, hidden_dim, num_heads, intermediate_dim, dropout, attention_dropout, norm_first, **kwargs):
        super().__init__(**kwargs)
        self.norm_first = norm_first
        key_dim = hidden_dim // num_heads
        self.self_attention = keras.layers.MultiHeadAttention(
            num_heads, key_dim, dropout=attention_dropout, name="self_attention"
        )
        self.cross_attention = keras.layers.MultiHeadAttention(
            num_heads, key_dim, dropout=attention_dropout, name="cross_attention"
        )
        self.feed_forward = FeedForward(hidden_dim, intermediate_dim, dropout, name="feed_forward")
        self.self_attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="self_attention_norm")
        self.cross_attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="cross_attention_norm")
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="feed_forward_norm")
        self.dropout = Dropout(dropout)

    def call(
        self,
        x: tf.Tensor,
        memory: tf.Tensor,
        self_mask: tf.Tensor,
        memory_mask: tf.Tensor,
        training: bool = False,
    ) -> tf.Tensor:
        """x: (batch, tgt_len, hidden_dim); memory: (batch, src_len, hidden_dim) from the encoder;
        self_mask: (batch, tgt_len, tgt_len); memory_mask: (batch, tgt_len, src_len)."""
        x = residual(
            x,
            lambda h: self.self_attention(h, h, attention_mask=self_mask, training=training),
            self.self_attention_norm, self.dropout, self.norm_first, training,
        )
        x = residual(
            x,
            lambda h: self.cross_attention(h, memory, attention_mask=memory_mask, training=training),
            self.cross_attention_norm, self.dropout, self.norm_first, training,
        )
        return residual(
            x, lambda h: self.feed_forward(h, training=training),
            self.feed_forward_norm, self.dropout, self.norm_first, training,
        )

    def precompute_memory(self, memory: tf.Tensor) -> dict[str, tf.Tensor]:
        """Cross-attention keys and values of the encoder output: computed once per sentence.

        Returns {"memory_key", "memory_value"}, each (batch, num_heads, src_len, key_dim).
        """
        return {
            "memory_key": _heads_first(self.cross_attention.key_dense(memory)),
            "memory_value": _heads_first(self.cross_attention.value_dense(memory)),
        }

    def step(
        self, x: tf.Tensor, index: tf.Tensor, cache: dict[str, tf.Tensor], memory_mask: tf.Tensor
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Decodes the single position `index` (inference only, so no dropout).

        Args:
            x: (batch, 1, hidden_dim) input at position index.
            index: scalar int32 position.
            cache: "key"/"value" (batch, num_heads, index, key_dim) self-attention keys and values of
                the positions before index, plus this layer's precompute_memory output.
            memory_mask: (batch, 1, src_len) real source tokens.

        Returns:
            (batch, 1, hidden_dim) output and the cache with position index appended.
        """
        updated = dict(cache)

        def attend_to_prefix(h):
            attention = self.self_attention
            # The cache grows by one position: attention then spans only the positions decoded so
            # far, and needs no mask. (Writing into a preallocated max-length cache with
            # keras.ops.slice_update ran an XLA kernel per write on CPU and copied the whole cache.)
            updated["key"] = tf.concat([cache["key"], _one_position(attention.key_dense(h))], axis=2)
            updated["value"] = tf.concat([cache["value"], _one_position(attention.value_dense(h))], axis=2)
            return _attend_one_position(attention, h, updated["key"], updated["value"])

        def attend_to_memory(h):
            return _attend_one_position(
                self.cross_attention, h, cache["memory_key"], cache["memory_value"], memory_mask[:, tf.newaxis]
            )

        x = residual(x, attend_to_prefix, self.self_attention_norm, self.dropout, self.norm_first, False)
        x = residual(x, attend_to_memory, self.cross_attention_norm, self.dropout, self.norm_first, False)
        x = residual(x, self.feed_forward, self.feed_forward_norm, self.dropout, self.norm_first, False)
        return x, updated


def _heads_first(x: tf.Tensor) -> tf.Tensor:
    """(batch, len, heads, key_dim) -> (batch, heads, len, key_dim)."""
    return tf.transpose(x, [0, 2, 1, 3])


def _one_position(x: tf.Tensor) -> tf.Tensor:
    """(batch, 1, heads, key_dim) -> (batch, heads, 1, key_dim): with one position, a reshape
    (no copy) does what a transpose does."""
    return tf.reshape(x, [-1, x.shape[2], 1, x.shape[3]])


def _attend_one_position(
    attention: keras.layers.MultiHeadAttention, h: tf.Tensor, key: tf.Tensor, value: tf.Tensor,
    mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """Keras MultiHeadAttention (inference) of one query position h (batch, 1, hidden_dim) over
    heads-first keys and values (batch, heads, len, key_dim); mask (batch, 1, 1, len) marks the
    positions that may be attended to. Returns (batch, 1, hidden_dim)."""
    query = _one_position(attention.query_dense(h))
    query *= query.shape[-1] ** -0.5
    scores = tf.matmul(query, key, transpose_b=True)  # (batch, heads, 1, len)
    if mask is not None:
        scores = tf.where(mask, scores, tf.constant(-1e9, scores.dtype))
    output = tf.matmul(tf.nn.softmax(scores), value)  # (batch, heads, 1, key_dim)
    return attention.output_dense(tf.reshape(output, [-1, 1, output.shape[1], output.shape[3]]))
