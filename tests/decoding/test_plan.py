"""The decoders' shared plan: batches, length limits and the length penalty the same in numpy as in
a traced search, and none of it importing TensorFlow."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmt import config as config_lib
from nmt.decoding.plan import decoding_batches, length_limits, length_penalty


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 60), max_size=80), st.integers(1, 12), st.integers(1, 200), st.integers(1, 5),
       st.integers(1, 20))
def test_decoding_batches_hold_every_sentence_once_in_order_of_length_within_both_limits(
        lengths, batch_size, batch_tokens, beam_size, hypotheses):
    """Both limits count sentences; one of more hypotheses than the beam counts as several."""
    decode = config_lib.DecodeConfig(batch_size=batch_size, batch_tokens=batch_tokens, beam_size=beam_size)
    batches = decoding_batches(lengths, decode, hypotheses)
    weight = max(1, hypotheses / beam_size)
    assert sorted(position for batch in batches for position in batch) == list(range(len(lengths)))
    in_order = [lengths[position] for batch in batches for position in batch]
    assert in_order == sorted(lengths)
    for batch, following in zip(batches, batches[1:] + [None]):
        padded = len(batch) * max(lengths[position] for position in batch)
        assert len(batch) == 1 or (len(batch) * weight <= batch_size and padded * weight <= batch_tokens)
        if following is not None:
            # Cut only where the next sentence would break a limit: batches are as large as allowed.
            grown = (len(batch) + 1) * weight
            assert grown > batch_size or grown * lengths[following[0]] > batch_tokens


@pytest.mark.parametrize("ratio,offset", [(1.2, 10), (1.1, 3), (0.7, 0), (1.3, 1)])
def test_length_limits_are_the_same_in_numpy_and_in_a_traced_search(ratio, offset):
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    decode = config_lib.DecodeConfig(max_length_ratio=ratio, max_length_offset=offset)
    sources = np.arange(300, dtype=np.int32)
    prefixes = np.random.default_rng(0).integers(0, 300, size=300)
    traced = tf.function(lambda s, p: length_limits(s, decode, 256, p, tnp))
    for prefix_lengths in (None, prefixes):
        limits = length_limits(sources, decode, 256, prefix_lengths)
        prefix = tf.constant(prefixes, tf.int64) if prefix_lengths is not None else None
        graph = traced(tf.constant(sources), prefix).numpy() if prefix is not None else \
            tf.function(lambda s: length_limits(s, decode, 256, xp=tnp))(tf.constant(sources)).numpy()
        assert limits.dtype == np.int32 and graph.dtype == np.int32
        np.testing.assert_array_equal(limits, graph)
        # The formula, a sentence at a time: the float32 product rounded down, past the offset,
        # at least offset past the prefix, within the model's 255 outputs.
        for index, length in enumerate(sources):
            expected = int(np.float32(length) * np.float32(ratio)) + offset
            if prefix_lengths is not None:
                expected = max(expected, int(prefix_lengths[index]) + offset)
            assert limits[index] == min(expected, 255)


def test_the_length_penalty_is_gnmt_s_in_numpy_and_in_a_traced_search():
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    lengths = np.arange(1, 200)
    for alpha in (0.0, 0.6, 1.0):
        penalty = length_penalty(lengths, alpha)
        assert penalty.dtype == np.float32
        np.testing.assert_allclose(penalty, ((5 + lengths) / 6) ** alpha, rtol=1e-6)
        traced = tf.function(lambda lengths: length_penalty(lengths, alpha, tnp))(tf.constant(lengths, tf.int32))
        # The same formula; the two libraries' pow may differ in the last bit.
        np.testing.assert_allclose(penalty, traced.numpy(), rtol=1e-6)


def test_decoding_with_ctranslate2_imports_no_tensorflow():
    """What makes `nmt translate --ctranslate2` start in a fraction of a second."""
    found = subprocess.run(
        [sys.executable, "-c", "import sys, nmt.decoding.plan, nmt.decoding.ctranslate2_translator; "
                               "print(sorted(name for name in ('tensorflow', 'keras') if name in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
