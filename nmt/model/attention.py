"""Attention, the project's own: every step of its history as one layer with one interface.

| variant         | heads (query / key-value) | score                          | projections   |
| --------------- | ------------------------- | ------------------------------ | ------------- |
| `additive`      | 1 / 1                     | w · tanh(q + k) (Bahdanau)     | optional      |
| `dot`           | 1 / 1                     | q · k                          | optional      |
| `scaled_dot`    | 1 / 1                     | q · k / sqrt(d)                | optional      |
| `multi_head`    | num_heads / num_heads     | q · k / sqrt(d), per head      | always        |
| `multi_query`   | num_heads / 1             | as multi_head, one K/V head    | always        |
| `grouped_query` | num_heads / num_kv_heads  | as multi_head, K/V per group   | always        |

With projections, queries, keys and values are learned projections of the inputs (Q = x Wq,
K = m Wk, V = m Wv) and the heads' outputs are projected back (Wo). Without them the layer attends
over the inputs themselves and returns the weighted sum of the memory as it is; `additive` keeps
its query and key layers, which are the small feed-forward net that defines its score.

One interface serves training, decoding and attention maps:
- `call(query, value, attention_mask)`: full sequences (optionally with logits and weights);
- `project_memory(memory)`: keys and values of an encoder output, computed once per sentence;
- `attend(query, keys_values, attention_mask)`: queries over keys and values already projected;
- `step(x, cache)`: one decoder position of self-attention, appending its key and value to the cache.

Keys and values are kept heads-first, (batch, kv_heads, positions, dim): the incremental step then
reads the cache with two batched matmuls and never transposes it (Keras's MultiHeadAttention takes
keys positions-first and its einsums transposed the whole cache on every step: a third of beam-4
decoding time). `keras.ops.dot_product_attention` (it has grouped heads) returns no weights and
applies no dropout to them, and `keras.layers.AdditiveAttention` has no heads, cache or 2-D masks,
so neither fits this interface. The multi_head variant's sublayers, names and shapes are those of
keras.layers.MultiHeadAttention, so checkpoints written with it load unchanged.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from nmt.model.sublayers import Dropout

VARIANTS = ("additive", "dot", "scaled_dot", "multi_head", "multi_query", "grouped_query")
SINGLE_HEAD = ("additive", "dot", "scaled_dot")


class Attention(keras.layers.Layer):
    """Attention of one of VARIANTS (see the module docstring).

    Args:
        hidden_dim: width of the inputs and of the output.
        num_heads: query heads of the multi-head variants (single-head variants use one).
        variant: one of VARIANTS.
        num_kv_heads: key/value heads of `grouped_query` (divides num_heads); None otherwise.
        projections: project queries, keys, values and output (always, for multi-head variants).
        dropout: rate of dropout on the attention weights.

    Example:
        attention = Attention(hidden_dim=64, num_heads=4, variant="multi_query", num_kv_heads=None,
                              projections=True, dropout=0.0)
        output = attention(x, memory, attention_mask=mask)  # (batch, tgt_len, 64)
    """

    def __init__(self, hidden_dim: int, num_heads: int, variant: str, num_kv_heads: int | None,
                 projections: bool, dropout: float, **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"unknown attention variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if not projections and variant not in SINGLE_HEAD:
            raise ValueError(f"{variant} attention projects its inputs into heads; it needs projections=True")
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.variant = variant
        self.num_kv_heads = num_kv_heads
        self.projections = projections
        self.dropout = dropout

        self.query_heads = 1 if variant in SINGLE_HEAD else num_heads
        self.kv_heads = {"multi_head": num_heads, "grouped_query": num_kv_heads}.get(variant, 1)
        if self.kv_heads is None or self.query_heads % self.kv_heads:
            raise ValueError(f"num_kv_heads ({num_kv_heads}) must divide num_heads ({num_heads})")
        self.key_dim = hidden_dim // self.query_heads
        # Attribute names, layer names and shapes as keras.layers.MultiHeadAttention's (module docstring).
        scores_need_projection = projections or variant == "additive"
        self.query_dense = self._heads_dense(self.query_heads, "query") if scores_need_projection else None
        self.key_dense = self._heads_dense(self.kv_heads, "key") if scores_need_projection else None
        self.value_dense = self._heads_dense(self.kv_heads, "value") if projections else None
        self.output_dense = (
            ProjectionDense("abcd,cde->abe", output_shape=(None, hidden_dim), bias_axes="e", name="attention_output")
            if projections else None
        )
        self.weights_dropout = Dropout(dropout)

    def _heads_dense(self, heads: int, name: str) -> ProjectionDense:
        """(batch, len, hidden_dim) -> (batch, len, heads, key_dim)."""
        return ProjectionDense(
            "abc,cde->abde", output_shape=(None, heads, self.key_dim), bias_axes="de", name=name
        )

    def build(self, input_shape=None):
        if self.variant == "additive":
            # Bahdanau's v: the output layer of the feed-forward net that scores a (query, key) pair.
            self.score_vector = self.add_weight(
                name="score_vector", shape=(self.key_dim,), initializer="glorot_uniform"
            )
        self.built = True

    def call(self, query: tf.Tensor, value: tf.Tensor, attention_mask: tf.Tensor | None = None,
             training: bool = False, return_attention: bool = False):
        """query: (batch, tgt_len, hidden_dim); value: (batch, src_len, hidden_dim), the sequence
        attended to (query itself for self-attention); attention_mask: (batch, tgt_len, src_len), or
        broadcastable to it, True where a query may attend to a key.

        Returns (batch, tgt_len, hidden_dim), and with return_attention also a dict with "logits"
        (the scores before the softmax, masked positions included) and "weights", each
        (batch, num_query_heads, tgt_len, src_len).
        """
        return self.attend(query, self.project_memory(value), attention_mask, training, return_attention)

    def project_memory(self, memory: tf.Tensor) -> dict[str, tf.Tensor]:
        """Keys and values of (batch, len, hidden_dim) inputs: {"key", "value"}, each
        (batch, kv_heads, len, dim), computed once per sentence for cross-attention."""
        return {"key": self._keys(memory), "value": self._values(memory)}

    def empty_cache(self, batch_size: tf.Tensor, dtype: tf.DType) -> dict[str, tf.Tensor]:
        """A self-attention cache of no positions; `step` grows every tensor in it along axis 2."""
        key_dim = self.score_dim
        value_dim = self.key_dim if self.value_dense is not None else self.hidden_dim
        return {
            "key": tf.zeros([batch_size, self.kv_heads, 0, key_dim], dtype),
            "value": tf.zeros([batch_size, self.kv_heads, 0, value_dim], dtype),
        }

    def step(self, x: tf.Tensor, cache: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Self-attention of one new position x (batch, 1, hidden_dim) over itself and the cached
        positions before it (inference: no dropout). Returns (batch, 1, hidden_dim) and the cache
        with x's key and value appended."""
        # The cache grows by one position, so attention spans only the positions decoded so far and
        # needs no mask. (Writing into a preallocated max-length cache with keras.ops.slice_update
        # ran an XLA kernel per write on CPU and copied the whole cache.)
        new = self.project_memory(x)
        cache = {name: tf.concat([cache[name], new[name]], axis=2) for name in ("key", "value")}
        return self.attend(x, cache), cache

    def attend(self, query: tf.Tensor, keys_values: dict[str, tf.Tensor], attention_mask: tf.Tensor | None = None,
               training: bool = False, return_attention: bool = False):
        """Queries (batch, tgt_len, hidden_dim) over keys and values from `project_memory`; mask
        and returns as in `call`."""
        key, value = keys_values["key"], keys_values["value"]
        queries = self._queries(query)  # (batch, query_heads, tgt_len, key_dim)
        logits = self._logits(queries, key)  # (batch, query_heads, tgt_len, src_len)
        if attention_mask is not None:
            logits = tf.where(attention_mask[:, tf.newaxis], logits, _large_negative(logits.dtype))
        weights = tf.nn.softmax(logits)
        output = self._grouped(tf.matmul, self.weights_dropout(weights, training=training), value)
        output = _positions_first(output, query.shape[1])  # (batch, tgt_len, query_heads, value_dim)
        if self.output_dense is not None:
            output = self.output_dense(output)
        else:
            output = tf.reshape(output, tf.shape(query))
        if return_attention:
            return output, {"logits": logits, "weights": weights}
        return output

    def _queries(self, x: tf.Tensor) -> tf.Tensor:
        queries = x[:, tf.newaxis] if self.query_dense is None else _heads_first(self.query_dense(x), x.shape[1])
        if self.variant not in ("dot", "additive"):
            # Scaling the queries costs (len x dim) multiplies instead of (len x len).
            queries *= tf.cast(queries.shape[-1] ** -0.5, queries.dtype)
        return queries

    def _keys(self, memory: tf.Tensor) -> tf.Tensor:
        return memory[:, tf.newaxis] if self.key_dense is None else _heads_first(self.key_dense(memory), memory.shape[1])

    def _values(self, memory: tf.Tensor) -> tf.Tensor:
        return memory[:, tf.newaxis] if self.value_dense is None else _heads_first(self.value_dense(memory), memory.shape[1])

    def _logits(self, queries: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
        if self.variant == "additive":
            # (batch, 1, tgt_len, 1, d) + (batch, 1, 1, src_len, d): every pair through tanh, then v.
            hidden = tf.tanh(queries[:, :, :, tf.newaxis] + keys[:, :, tf.newaxis])
            return tf.reduce_sum(hidden * tf.cast(self.score_vector, hidden.dtype), axis=-1)
        # One query position (a decoding step) takes its scores as a multiply and a sum over each
        # key's dimensions: as batched matmuls of one row, greedy search ran 1.05-1.07x slower on CPUs
        # (same outputs). The weights' mix with the values (in `attend`) stays a matmul: as a sum
        # over positions (vectorised along a middle axis, in an order that can depend on the
        # batch's padding) a sentence once got another translation alone than in its batch.
        if queries.shape[2] == 1:
            return self._grouped(_one_position_scores, queries, keys)
        return self._grouped(lambda q, k: tf.matmul(q, k, transpose_b=True), queries, keys)

    def _grouped(self, product, per_query_head: tf.Tensor, per_kv_head: tf.Tensor) -> tf.Tensor:
        """product(a, b) of (batch, query_heads, tgt_len, n) with (batch, kv_heads, m, k), where the
        query heads of a group share their key/value head: the group's heads become rows of one
        batched matmul (a reshape, not a copy of the keys per head)."""
        if self.kv_heads == self.query_heads:
            return product(per_query_head, per_kv_head)
        batch, _, length, width = _dims(per_query_head)
        rows = tf.reshape(per_query_head, [batch, self.kv_heads, -1, width])
        result = product(rows, per_kv_head)  # (batch, kv_heads, group x tgt_len, k)
        return tf.reshape(result, [batch, self.query_heads, length, _dims(result)[3]])

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "variant": self.variant,
            "num_kv_heads": self.num_kv_heads,
            "projections": self.projections,
            "dropout": self.dropout,
        }

    @property
    def score_dim(self) -> int:
        """The width of the queries and keys whose dot products (or additive scores) are taken."""
        return self.key_dim if self.query_dense is not None else self.hidden_dim

    @property
    def logit_scale(self) -> float:
        """The factor on the dot products: 1 / sqrt(score_dim) where scaled, else 1."""
        return 1.0 if self.variant in ("dot", "additive") else self.score_dim**-0.5

    def score_kernels(self) -> list[tf.Variable]:
        """The kernels of the query and key layers, through which the scores are learned (empty
        for dot products over unprojected inputs)."""
        return [dense.kernel for dense in (self.query_dense, self.key_dense) if dense is not None]

    def dense_weights(self) -> dict[str, tuple]:
        """The projections as plain matrices, for converters to other engines: {"query", "key",
        "value": (kernel (hidden_dim, heads x dim), bias), "output": (kernel (heads x dim,
        hidden_dim), bias)}, numpy arrays; the projections this variant has."""
        found = {}
        for name, dense in (("query", self.query_dense), ("key", self.key_dense), ("value", self.value_dense)):
            if dense is not None:
                kernel = dense.kernel.numpy()
                found[name] = (kernel.reshape(kernel.shape[0], -1), dense.bias.numpy().reshape(-1))
        if self.output_dense is not None:
            kernel = self.output_dense.kernel.numpy()
            found["output"] = (kernel.reshape(-1, kernel.shape[-1]), self.output_dense.bias.numpy())
        return found


class ProjectionDense(keras.layers.EinsumDense):
    """keras.layers.EinsumDense for the attention's projections, which contract the trailing
    dimensions of (batch, len, ...) inputs with the leading ones of the kernel ("abc,cde->abde"
    into heads, "abcd,cde->abe" out of them), computed as one 2-D matmul of reshaped operands.

    The weights, their names and the config are EinsumDense's (checkpoints load either way). On
    CPUs TensorFlow's einsum ran these contractions and their gradients at half the speed of the
    same product as a matmul, and one position (a decoding step) with gradients 20x slower.
    """

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        contracted = len(inputs.shape) - 2
        kernel, bias = tf.convert_to_tensor(self.kernel), self.bias
        rows, columns = math.prod(kernel.shape[:contracted]), math.prod(kernel.shape[contracted:])
        output = tf.matmul(tf.reshape(inputs, [-1, rows]), tf.reshape(kernel, [rows, columns]))
        if bias is not None:
            output = tf.nn.bias_add(output, tf.reshape(tf.convert_to_tensor(bias), [columns]))
        return tf.reshape(output, [*_dims(inputs)[:2], *kernel.shape[contracted:]])


def as_sublayer(attention: Attention, memory: tf.Tensor | None, mask: tf.Tensor, training: bool,
                maps: dict | None, name: str):
    """h -> attention(h, memory), or attention(h, h) when memory is None: the function a residual
    block wraps. With maps (a dict), it also stores the logits and weights in maps[name]."""
    def attend(h: tf.Tensor) -> tf.Tensor:
        value = h if memory is None else memory
        if maps is None:
            return attention(h, value, attention_mask=mask, training=training)
        output, maps[name] = attention(h, value, attention_mask=mask, training=training, return_attention=True)
        return output

    return attend


def _one_position_scores(queries: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
    """tf.matmul(queries, keys, transpose_b=True) for (batch, heads, n, dim) queries of few rows n
    (one position, or a group's heads of it) and (batch, heads, len, dim) keys."""
    return tf.reduce_sum(queries[:, :, :, tf.newaxis] * keys[:, :, tf.newaxis], axis=-1)


def _heads_first(x: tf.Tensor, length: int | None) -> tf.Tensor:
    """(batch, len, heads, dim) -> (batch, heads, len, dim); for one position (a decoding step) a
    reshape, which copies nothing. length: len as known statically (when the projection's output
    shape does not say it)."""
    if length == 1:
        return tf.reshape(x, [-1, x.shape[2], 1, x.shape[3]])
    return tf.transpose(x, [0, 2, 1, 3])


def _positions_first(x: tf.Tensor, length: int | None) -> tf.Tensor:
    """(batch, heads, len, dim) -> (batch, len, heads, dim); for one position a reshape."""
    if length == 1:
        return tf.reshape(x, [-1, 1, x.shape[1], x.shape[3]])
    return tf.transpose(x, [0, 2, 1, 3])


def _dims(x: tf.Tensor) -> list:
    """x's dimensions, static where known (a reshape to them keeps the static shape)."""
    dynamic = tf.shape(x)
    return [size if size is not None else dynamic[axis] for axis, size in enumerate(x.shape)]


def _large_negative(dtype: tf.DType) -> tf.Tensor:
    """A masked logit: far below any real one, yet finite in the dtype (float16 tops out at 65504)."""
    return tf.constant(-3e4 if dtype == tf.float16 else -1e9, dtype)
