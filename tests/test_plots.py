import struct

import numpy as np

from nmt.decoding.plan import SentenceAttention
from nmt.plots import attention_figure, softmax_demo_figure


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def attention(layers=2, heads=3, source=4, target=5, seed=0):
    rng = np.random.default_rng(seed)

    def weights(queries, keys):
        values = rng.random((layers, heads, queries, keys))
        return values / values.sum(-1, keepdims=True)

    return SentenceAttention(
        [f"▁s{i}" for i in range(source)], [f"▁t{i}" for i in range(target - 1)] + ["</s>"],
        {"cross": weights(target, source), "encoder": weights(source, source), "decoder_self": weights(target, target)},
        logits={},
    )


def test_one_panel_per_layer_and_head_plus_the_average(tmp_path):
    drawn = attention_figure(attention(), tmp_path / "a.png")
    assert drawn["panels"] == 2 * 3 + 1
    assert png_size(tmp_path / "a.png") == (drawn["width"], drawn["height"])
    with_self = attention_figure(attention(), tmp_path / "b.png", include_self=True)
    assert with_self["panels"] == 3 * 2 * 3 + 1
    assert png_size(tmp_path / "b.png") == (with_self["width"], with_self["height"])
    # Rows: 2 cross layers + the average; with self-attention 2 more layers of each kind.
    assert abs(with_self["height"] / drawn["height"] - 7 / 3) < 0.02 and with_self["width"] == drawn["width"]


def test_softmax_demo_scaling_to_unit_deviation_spreads_the_weights(tmp_path):
    logits = np.random.default_rng(1).normal(0.0, 8.0, size=12)  # std ~ sqrt(64)
    found = softmax_demo_figure(logits, [f"▁k{i}" for i in range(12)], 64, "▁q", tmp_path / "demo.png")
    assert found["scaled to unit deviation"]["logit_std"] == 1.0
    assert found["unscaled"]["max_weight"] > found["scaled to unit deviation"]["max_weight"]
    assert png_size(tmp_path / "demo.png")[0] > 0
