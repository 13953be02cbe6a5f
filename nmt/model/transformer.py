"""The encoder-decoder Transformer (Vaswani et al., 2017) as one Keras model."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from nmt.config import ModelConfig
from nmt.model import masks
from nmt.model.decoder import DecoderLayer
from nmt.model.embedding import PositionalEmbedding
from nmt.model.encoder import EncoderLayer
from nmt.model.sublayers import BuiltByFirstCall


class Transformer(BuiltByFirstCall, keras.Model):
    """Maps source ids and shifted target ids to next-token logits.

    `encode` and `decode` are public so that decoding can run the encoder once per sentence.

    Args:
        source_vocab_size, target_vocab_size: vocabulary sizes (equal when embeddings are shared).
        num_encoder_layers, num_decoder_layers, hidden_dim, num_heads, intermediate_dim: sizes.
        dropout, attention_dropout: rates.
        norm: 'pre' or 'post' layer normalisation.
        share_embeddings: one embedding matrix for both sides.
        tie_output: output projection = transposed target embedding matrix.
        max_length: number of positions.
        attention, num_kv_heads, attention_projections: the attention variant (nmt.model.attention).

    The sizes, rates and variants have no defaults here: ModelConfig holds them (build_transformer).

    Example:
        model = Transformer(8000, 8000, **dataclasses.asdict(ModelConfig()))
        logits = model({"source_ids": source, "target_in": target_in})  # (batch, tgt_len, 8000)
    """

    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        *,
        num_encoder_layers: int,
        num_decoder_layers: int,
        hidden_dim: int,
        num_heads: int,
        intermediate_dim: int,
        dropout: float,
        attention_dropout: float,
        norm: str,
        share_embeddings: bool,
        tie_output: bool,
        max_length: int,
        attention: str,
        num_kv_heads: int | None,
        attention_projections: bool,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if share_embeddings and source_vocab_size != target_vocab_size:
            raise ValueError(
                f"shared embeddings need equal vocabularies; got {source_vocab_size} and {target_vocab_size}"
            )
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout_rate = dropout
        self.attention_dropout = attention_dropout
        self.norm = norm
        self.share_embeddings = share_embeddings
        self.tie_output = tie_output
        self.max_length = max_length
        self.attention = attention
        self.num_kv_heads = num_kv_heads
        self.attention_projections = attention_projections

        # Embeddings start small so that sqrt(hidden_dim) scaling gives unit-variance inputs.
        initializer = keras.initializers.RandomNormal(stddev=hidden_dim**-0.5)
        source_table = keras.layers.Embedding(source_vocab_size, hidden_dim, embeddings_initializer=initializer, name="source_table")
        target_table = (
            source_table
            if share_embeddings
            else keras.layers.Embedding(target_vocab_size, hidden_dim, embeddings_initializer=initializer, name="target_table")
        )
        self.source_embedding = PositionalEmbedding(source_table, max_length, dropout, name="source_embedding")
        self.target_embedding = PositionalEmbedding(target_table, max_length, dropout, name="target_embedding")
        layer_args = dict(
            hidden_dim=hidden_dim, num_heads=num_heads, intermediate_dim=intermediate_dim,
            dropout=dropout, attention_dropout=attention_dropout, norm_first=norm == "pre",
            attention=attention, num_kv_heads=num_kv_heads, attention_projections=attention_projections,
        )
        self.encoder_layers = [EncoderLayer(**layer_args, name=f"encoder_{i}") for i in range(num_encoder_layers)]
        self.decoder_layers = [DecoderLayer(**layer_args, name=f"decoder_{i}") for i in range(num_decoder_layers)]
        # Pre-norm leaves the residual stream unnormalised, so each stack ends with a layer norm.
        self.encoder_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="encoder_norm") if norm == "pre" else None
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="decoder_norm") if norm == "pre" else None
        self.output_projection = None if tie_output else keras.layers.Dense(target_vocab_size, name="output_projection")

    def encode(self, source_ids: tf.Tensor, training: bool = False, attention_maps: list | None = None) -> tf.Tensor:
        """(batch, src_len) ids -> (batch, src_len, hidden_dim) memory; attention_maps, if given,
        receives each layer's self-attention logits and weights."""
        mask = masks.padding_mask(source_ids)
        x = self.source_embedding(source_ids, training=training)
        for layer in self.encoder_layers:
            if attention_maps is None:
                x = layer(x, attention_mask=mask, training=training)
            else:
                x, maps = layer(x, attention_mask=mask, training=training, return_attention=True)
                attention_maps.append(maps["self"])
        return self.encoder_norm(x) if self.encoder_norm is not None else x

    def decode(
        self, target_in: tf.Tensor, memory: tf.Tensor, source_ids: tf.Tensor, training: bool = False
    ) -> tf.Tensor:
        """(batch, tgt_len) shifted target ids + memory -> (batch, tgt_len, target_vocab_size) logits."""
        return self.logits(self.decoder_states(target_in, memory, source_ids, training=training))

    def decoder_states(
        self, target_in: tf.Tensor, memory: tf.Tensor, source_ids: tf.Tensor, training: bool = False,
        attention_maps: dict[str, list] | None = None,
    ) -> tf.Tensor:
        """(batch, tgt_len) shifted target ids + memory -> (batch, tgt_len, hidden_dim) final decoder
        states, which `logits` projects onto the vocabulary. Training projects only the states of
        real (non-padding) positions. attention_maps, if given, is {"self": list, "cross": list}
        and receives each layer's attention logits and weights."""
        self_mask = masks.decoder_self_mask(target_in)
        memory_mask = masks.cross_mask(target_in, source_ids)
        x = self.target_embedding(target_in, training=training)
        for layer in self.decoder_layers:
            if attention_maps is None:
                x = layer(x, memory, self_mask=self_mask, memory_mask=memory_mask, training=training)
            else:
                x, maps = layer(x, memory, self_mask=self_mask, memory_mask=memory_mask, training=training, return_attention=True)
                for kind, found in maps.items():
                    attention_maps[kind].append(found)
        return self._final_norm(x)

    def attention_maps(self, source_ids: tf.Tensor, target_in: tf.Tensor) -> dict[str, list[dict[str, tf.Tensor]]]:
        """Every attention layer's logits and weights, (batch, heads, queries, keys) each, on one
        teacher-forced pass (inference mode): {"encoder", "decoder_self", "cross"}, a
        {"logits", "weights"} dict per layer, first layer first."""
        maps = {"encoder": [], "decoder_self": [], "cross": []}
        memory = self.encode(source_ids, attention_maps=maps["encoder"])
        self.decoder_states(target_in, memory, source_ids, attention_maps={"self": maps["decoder_self"], "cross": maps["cross"]})
        return maps

    def start_decoding(self, source_ids: tf.Tensor) -> dict:
        """Encodes the source once and starts the decoder's cache, empty of target positions.

        The cache holds "memory_mask" and, per decoder layer, "self" (the self-attention's keys and
        values of the positions decoded so far, each tensor (rows, ..., positions, ...) growing
        along axis 2) and "memory" (the cross-attention's keys and values of the encoder output);
        `decode_step` reads and extends it. Rows are sentences: tile or reorder them with tf.gather
        on axis 0, or tile the "self" parts alone for several hypotheses per sentence (see
        `decode_step`). A loop that carries it declares `decoding_shape_invariants(cache)`.
        """
        memory = self.encode(source_ids, training=False)
        return {
            "memory_mask": masks.padding_mask(source_ids),
            "layers": [layer.start_cache(memory) for layer in self.decoder_layers],
        }

    @staticmethod
    def decoding_shape_invariants(cache: dict) -> dict:
        """tf.while_loop shape invariants of a decoding cache: the self-attention keys and values
        grow by a position each step, and a search may drop rows (sentences it is done with)."""
        def rows_vary(tensor: tf.Tensor) -> tf.TensorShape:
            return tf.TensorShape([None, *tensor.shape[1:]])

        def grows(tensor: tf.Tensor) -> tf.TensorShape:
            return tf.TensorShape([None, tensor.shape[1], None, *tensor.shape[3:]])

        return {
            "memory_mask": rows_vary(cache["memory_mask"]),
            "layers": [
                {"self": tf.nest.map_structure(grows, layer["self"]), "memory": tf.nest.map_structure(rows_vary, layer["memory"])}
                for layer in cache["layers"]
            ],
        }

    def decode_step(
        self, token_ids: tf.Tensor, index: tf.Tensor, cache: dict, output_kernel: tf.Tensor | None = None,
        hypotheses: int = 1,
    ) -> tuple[tf.Tensor, dict]:
        """(rows,) ids at position index -> (rows, target_vocab_size) logits of the next token.

        Equal to decode(...)[:, index] on the whole prefix, at the cost of one position.
        output_kernel: `output_kernel()`, which a decoding loop computes once for all its steps.
        hypotheses: rows per sentence, sentence-major, where the cache's "self" parts hold a row
        each and its memory and memory mask a row per sentence (a beam's hypotheses share them).
        """
        x = self.target_embedding(token_ids[:, tf.newaxis], start=index)
        layers = []
        for layer, layer_cache in zip(self.decoder_layers, cache["layers"]):
            x, layer_cache = layer.step(x, layer_cache, cache["memory_mask"], hypotheses)
            layers.append(layer_cache)
        # Searches add up log-probabilities over many steps: float32 whatever the compute dtype.
        logits = tf.cast(self.logits(self._final_norm(x)[:, 0], output_kernel), tf.float32)
        return logits, {"memory_mask": cache["memory_mask"], "layers": layers}

    def _final_norm(self, x: tf.Tensor) -> tf.Tensor:
        return self.decoder_norm(x) if self.decoder_norm is not None else x

    def output_kernel(self) -> tf.Tensor | None:
        """The tied output projection's weights as (hidden_dim, target_vocab_size), the layout of a
        plain matmul: the embedding table lies (vocab, hidden_dim), and on CPU a matmul reading it
        transposed ran at ~80% of the speed of one on a transposed copy at decoding batch sizes.
        None for an untied output layer, whose kernel lies that way already. In the compute dtype:
        a mixed-precision model then casts it once, not at every step."""
        if self.output_projection is not None:
            return None
        return tf.cast(tf.transpose(self.target_embedding.token_embedding.embeddings), self.compute_dtype)

    def logits(self, states: tf.Tensor, output_kernel: tf.Tensor | None = None) -> tf.Tensor:
        """(..., hidden_dim) decoder states -> (..., target_vocab_size) logits; output_kernel as
        `output_kernel()` returns it, if the caller has it."""
        # One 2-D matmul over the flattened states: tf.matmul of 3-D states with the 2-D table
        # would broadcast the table over the batch, and its gradient then sums a (batch, vocab,
        # hidden_dim) tensor (training steps ~2x slower).
        flat = tf.reshape(states, [-1, self.hidden_dim])
        if self.output_projection is not None:
            logits = self.output_projection(flat)
        elif output_kernel is not None:
            logits = tf.matmul(flat, tf.cast(output_kernel, flat.dtype))
        else:
            # Training: reading the table transposed beats copying it once per step.
            table = self.target_embedding.token_embedding.embeddings
            logits = tf.matmul(flat, tf.cast(table, flat.dtype), transpose_b=True)
        return tf.reshape(logits, tf.concat([tf.shape(states)[:-1], [self.target_vocab_size]], axis=0))

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        memory = self.encode(inputs["source_ids"], training=training)
        return self.decode(inputs["target_in"], memory, inputs["source_ids"], training=training)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "num_encoder_layers": self.num_encoder_layers,
            "num_decoder_layers": self.num_decoder_layers,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "norm": self.norm,
            "share_embeddings": self.share_embeddings,
            "tie_output": self.tie_output,
            "max_length": self.max_length,
            "attention": self.attention,
            "num_kv_heads": self.num_kv_heads,
            "attention_projections": self.attention_projections,
        }


def build_transformer(config: ModelConfig, source_vocab_size: int, target_vocab_size: int) -> Transformer:
    """Creates the model and its weights (by running it once on a dummy batch)."""
    model = Transformer(source_vocab_size, target_vocab_size, **dataclasses.asdict(config), name="transformer")
    dummy = tf.ones((1, 2), dtype=tf.int32)
    model({"source_ids": dummy, "target_in": dummy})
    return model
