"""Every attention variant: masks, weights, the decoding cache, config round trips, checkpoints of
Keras's MultiHeadAttention, and learning on the synthetic corpus."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import keras
import tensorflow as tf

from nmt.config import ModelConfig
from nmt.data.synthetic import generate_splits
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding.search import greedy_search
from nmt.model import masks
from nmt.model.attention import Attention, ProjectionDense
from nmt.model.transformer import build_transformer
from nmt.training.losses import label_smoothed_loss

FIXTURES = Path(__file__).parent / "fixtures"
HIDDEN, HEADS = 16, 4
# (variant, projections, num_kv_heads): every step of the ladder, with and without projections
# where the variant allows both.
CASES = [
    ("additive", False, None), ("additive", True, None),
    ("dot", False, None), ("dot", True, None),
    ("scaled_dot", False, None), ("scaled_dot", True, None),
    ("multi_head", True, None), ("multi_query", True, None), ("grouped_query", True, 2),
]
IDS = [f"{variant}{'' if projections else '-unprojected'}" for variant, projections, _ in CASES]


def layer(variant, projections, num_kv_heads, seed=0):
    tf.keras.utils.set_random_seed(seed)
    return Attention(hidden_dim=HIDDEN, num_heads=HEADS, variant=variant, num_kv_heads=num_kv_heads,
                     projections=projections, dropout=0.0)


def inputs(length, seed=1, batch=2):
    return tf.random.stateless_normal([batch, length, HIDDEN], seed=[seed, 0])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cached_steps_equal_full_causal_self_attention(case):
    attention, x = layer(*case), inputs(6)
    full = attention(x, x, attention_mask=masks.causal_mask(6)).numpy()
    cache = attention.empty_cache(2, tf.float32)
    for position in range(6):
        output, cache = attention.step(x[:, position : position + 1], cache)
        np.testing.assert_allclose(output.numpy()[:, 0], full[:, position], atol=1e-5)
    assert cache["key"].shape[2] == 6


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_future_position_changes_no_earlier_output(case):
    attention, x = layer(*case), inputs(6)
    changed = tf.concat([x[:, :3], inputs(3, seed=9)], axis=1)
    before = attention(x, x, attention_mask=masks.causal_mask(6)).numpy()
    after = attention(changed, changed, attention_mask=masks.causal_mask(6)).numpy()
    np.testing.assert_allclose(before[:, :3], after[:, :3], atol=1e-6)
    assert np.abs(before[:, 3:] - after[:, 3:]).max() > 1e-3


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_padding_gets_no_weight_and_weights_are_distributions(case):
    attention, x, memory = layer(*case), inputs(3), inputs(5, seed=2)
    token_ids = tf.constant([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    mask = masks.padding_mask(token_ids)
    output, maps = attention(x, memory, attention_mask=mask, return_attention=True)
    weights = maps["weights"].numpy()
    assert weights.shape == (2, attention.query_heads, 3, 5)
    assert weights.min() >= 0
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert weights[0, :, :, 3:].max() == 0.0
    # What lies under the padding cannot change the output.
    noisy = tf.concat([memory[:, :3], 100.0 * inputs(2, seed=3)], axis=1)
    other = attention(x, tf.where(tf.equal(token_ids, 0)[:, :, tf.newaxis], noisy, memory), attention_mask=mask)
    np.testing.assert_allclose(output[0].numpy(), other[0].numpy(), atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_get_config_round_trip(case):
    attention = layer(*case)
    x = inputs(4)
    attention(x, x)
    clone = Attention.from_config(attention.get_config())
    clone(x, x)
    assert clone.get_config() == attention.get_config()
    assert [w.shape for w in clone.weights] == [w.shape for w in attention.weights]
    clone.set_weights(attention.get_weights())
    np.testing.assert_allclose(clone(x, x).numpy(), attention(x, x).numpy(), atol=1e-6)


@pytest.mark.parametrize("variant, num_kv_heads, factor", [("multi_query", None, HEADS), ("grouped_query", 2, HEADS // 2)])
def test_shared_key_value_heads_shrink_the_decoding_cache(variant, num_kv_heads, factor):
    config = ModelConfig(num_encoder_layers=1, num_decoder_layers=2, hidden_dim=HIDDEN, num_heads=HEADS,
                         intermediate_dim=32, dropout=0.0, attention_dropout=0.0, max_length=16)

    def cache_bytes(model_config):
        model = build_transformer(model_config, 20, 20)
        cache = model.start_decoding(tf.constant([[5, 6, 7, 8]]))
        for index in range(3):
            _, cache = model.decode_step(tf.constant([BOS_ID]), tf.constant(index), cache)
        return sum(tensor.numpy().nbytes for tensor in tf.nest.flatten(cache["layers"]))

    baseline = cache_bytes(config)
    shared = cache_bytes(dataclasses.replace(config, attention=variant, num_kv_heads=num_kv_heads))
    assert baseline == factor * shared


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cached_decoding_of_a_transformer_equals_full_decoding(case):
    variant, projections, num_kv_heads = case
    config = ModelConfig(num_encoder_layers=2, num_decoder_layers=2, hidden_dim=HIDDEN, num_heads=HEADS,
                         intermediate_dim=32, dropout=0.0, attention_dropout=0.0, max_length=16, attention=variant,
                         num_kv_heads=num_kv_heads, attention_projections=projections)
    tf.keras.utils.set_random_seed(0)
    model = build_transformer(config, 20, 20)
    source = tf.constant([[5, 6, 7, 8, 9], [4, 10, 0, 0, 0]])
    target_in = tf.constant([[BOS_ID, 5, 9, 3, 7], [BOS_ID, 4, 4, 8, 6]])
    expected = model.decode(target_in, model.encode(source), source).numpy()
    cache = model.start_decoding(source)
    for index in range(5):
        logits, cache = model.decode_step(target_in[:, index], tf.constant(index), cache)
        np.testing.assert_allclose(logits.numpy(), expected[:, index], atol=1e-4)


@pytest.mark.parametrize("equation, output_shape, bias_axes, input_shape", [
    ("abc,cde->abde", (None, 4, 8), "de", (3, 5, 16)),  # into heads
    ("abcd,cde->abe", (None, 16), "e", (3, 5, 4, 8)),  # out of them
    ("abc,cde->abde", (None, 4, 8), "de", (3, 1, 16)),  # one position: a decoding step
])
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_projections_compute_what_einsum_dense_computes(equation, output_shape, bias_axes, input_shape, dtype):
    einsum = keras.layers.EinsumDense(equation, output_shape=output_shape, bias_axes=bias_axes, dtype=dtype)
    projection = ProjectionDense(equation, output_shape=output_shape, bias_axes=bias_axes, dtype=dtype)
    x = tf.random.stateless_normal(input_shape, seed=(1, 2))
    einsum.build(x.shape)
    projection.build(x.shape)
    rng = np.random.default_rng(0)
    projection.set_weights([rng.normal(size=weight.shape) for weight in einsum.get_weights()])  # a bias of 0 would hide one
    einsum.set_weights(projection.get_weights())
    outputs, gradients = [], []
    for layer in (einsum, projection):
        with tf.GradientTape() as tape:
            tape.watch(x)
            output = layer(x)
            loss = tf.reduce_sum(tf.cast(output, tf.float32) ** 2)
        outputs.append(output)
        gradients.append(tape.gradient(loss, [x, *layer.trainable_variables]))
    assert outputs[1].dtype == outputs[0].dtype and outputs[1].shape == outputs[0].shape
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(tf.cast(outputs[1], tf.float32), tf.cast(outputs[0], tf.float32), rtol=tolerance, atol=tolerance)
    for expected, got in zip(*gradients):
        np.testing.assert_allclose(tf.cast(got, tf.float32), tf.cast(expected, tf.float32), rtol=tolerance, atol=tolerance * 10)


def test_checkpoints_of_keras_multi_head_attention_load_unchanged():
    """The fixture was saved by the model built on keras.layers.MultiHeadAttention (code before
    nmt.model.attention), with the logits it gave on these inputs."""
    config = ModelConfig(num_encoder_layers=1, num_decoder_layers=1, hidden_dim=16, num_heads=2,
                         intermediate_dim=32, dropout=0.1, attention_dropout=0.1, max_length=16)
    model = build_transformer(config, 24, 24)
    model.load_weights(FIXTURES / "multi_head_v1.weights.h5")
    source = tf.constant([[5, 6, 7, 8, 0], [9, 10, 11, 0, 0]])
    target_in = tf.constant([[2, 12, 13, 14], [2, 15, 16, 0]])
    logits = model({"source_ids": source, "target_in": target_in}).numpy()
    np.testing.assert_allclose(logits, np.load(FIXTURES / "multi_head_v1.logits.npy"), atol=1e-5)


def test_attention_maps_cover_every_layer_and_head():
    config = ModelConfig(num_encoder_layers=2, num_decoder_layers=3, hidden_dim=HIDDEN, num_heads=HEADS,
                         intermediate_dim=32, dropout=0.0, attention_dropout=0.0, max_length=16)
    model = build_transformer(config, 20, 20)
    maps = model.attention_maps(tf.constant([[5, 6, 7, 0]]), tf.constant([[BOS_ID, 8, 9]]))
    assert [len(maps[kind]) for kind in ("encoder", "decoder_self", "cross")] == [2, 3, 3]
    assert maps["encoder"][0]["weights"].shape == (1, HEADS, 4, 4)
    assert maps["decoder_self"][0]["weights"].shape == (1, HEADS, 3, 3)
    assert maps["cross"][2]["logits"].shape == (1, HEADS, 3, 4)


# Learning: a tiny model of each variant on the synthetic corpus's short sentences, words as tokens.
@pytest.fixture(scope="module")
def corpus():
    splits = generate_splits(seed=7, sizes={"train": 20000, "validation": 400, "test": 0})
    short = {name: [pair for pair in pairs if len(pair[0].split()) <= 6] for name, pairs in splits.items()}
    words = sorted({word for pair in short["train"] + short["validation"] for text in pair for word in text.split()})
    vocabulary = {word: index + 4 for index, word in enumerate(words)}

    def encode(texts, prefix=(), suffix=()):
        rows = [[*prefix, *(vocabulary[word] for word in text.split()), *suffix] for text in texts]
        width = max(map(len, rows))
        return np.array([row + [PAD_ID] * (width - len(row)) for row in rows], dtype=np.int32)

    return short["train"], short["validation"][:60], vocabulary, encode


def train_and_score(model_config, corpus, steps, learning_rate) -> float:
    """Greedy BLEU on held-out sentences of a tiny model trained for `steps` batches of 64."""
    train, held_out, vocabulary, encode = corpus
    tf.keras.utils.set_random_seed(0)
    model = build_transformer(model_config, len(vocabulary) + 4, len(vocabulary) + 4)
    optimizer = tf.keras.optimizers.Adam(learning_rate)
    sources, targets = zip(*train)
    source_ids = encode(sources)
    target_in, target_out = encode(targets, prefix=[BOS_ID]), encode(targets, suffix=[EOS_ID])

    @tf.function
    def step(source, target_in, target_out):
        with tf.GradientTape() as tape:
            logits = model({"source_ids": source, "target_in": target_in}, training=True)
            loss, tokens, _ = label_smoothed_loss(target_out, logits, 0.0)
            loss = loss / tokens
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    rng = np.random.default_rng(0)
    for _ in range(steps):
        rows = rng.choice(len(source_ids), 64, replace=False)
        step(source_ids[rows], target_in[rows], target_out[rows])
    held_out_sources, references = zip(*held_out)
    ids, _ = greedy_search(model, tf.constant(encode(held_out_sources)), tf.fill([len(held_out)], 12))
    inverse = {index: word for word, index in vocabulary.items()}
    hypotheses = [" ".join(inverse[token] for token in row if token not in (PAD_ID, EOS_ID)) for row in ids[:, 0].numpy()]
    return sacrebleu.corpus_bleu(hypotheses, [list(references)]).score


@pytest.mark.parametrize("variant, num_kv_heads", [
    ("additive", None), ("dot", None), ("scaled_dot", None), ("multi_head", None), ("multi_query", None),
    ("grouped_query", 2),
])
def test_a_tiny_model_of_each_variant_learns_the_synthetic_corpus(variant, num_kv_heads, corpus):
    """A decoder that sees the future (a causal mask of ones) scored 0.0 BLEU here against 79.4 for
    multi_head. (Source padding is guarded by the weight and Transformer tests: a model trained on
    padded batches learns to ignore padding, so this test would not notice it.) Unscaled dot products grow with training until the softmax saturates (the problem scaled_dot
    solved): at the others' learning rate dot reached 3.6 BLEU, so it trains slower and longer."""
    config = ModelConfig(num_encoder_layers=1, num_decoder_layers=1, hidden_dim=64, num_heads=HEADS, intermediate_dim=128,
                         dropout=0.0, attention_dropout=0.0, max_length=32, attention=variant, num_kv_heads=num_kv_heads)
    steps, learning_rate = (700, 1e-3) if variant == "dot" else (300, 3e-3)
    assert train_and_score(config, corpus, steps, learning_rate) > 25.0
