"""Pictures of attention: heatmaps of a translation's attention, and the softmax's saturation.

matplotlib draws off-screen (Agg) into PNG files; it is imported only when a picture is drawn.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from nmt import atomic
from nmt.decoding.plan import SentenceAttention

DPI = 100
_TITLES = {"cross": "cross-attention", "encoder": "encoder self-attention", "decoder_self": "decoder self-attention"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> tuple[int, int]:
    """Written whole or not at all: rendered to memory, then atomically into place. Returns the
    PNG's width and height in pixels (from its header)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    atomic.write_bytes(path, buffer.getvalue())
    return struct.unpack(">II", buffer.getvalue()[16:24])


def attention_figure(attention: SentenceAttention, path: Path, include_self: bool = False) -> dict:
    """Draws each layer and head of the cross-attention (target pieces down, source pieces across),
    with include_self also of the encoder's and decoder's self-attention, then the last layer's
    cross-attention averaged over heads, with one colour bar; writes a PNG to path.

    Returns {"panels": how many heatmaps, "width" and "height": the PNG's size in pixels}.
    """
    plt = _pyplot()
    kinds = ["cross", "encoder", "decoder_self"] if include_self else ["cross"]
    labels = {"cross": (attention.target_pieces, attention.source_pieces),
              "encoder": (attention.source_pieces, attention.source_pieces),
              "decoder_self": (attention.target_pieces, attention.target_pieces)}
    heads = max(attention.maps[kind].shape[1] for kind in kinds)
    rows = sum(attention.maps[kind].shape[0] for kind in kinds) + 1
    longest = max(len(attention.source_pieces), len(attention.target_pieces))
    side = max(2.4, 0.22 * longest + 1.0)  # inches per panel: room for one label per piece
    figure, axes = plt.subplots(rows, heads, figsize=(heads * side + 0.8, rows * side), squeeze=False)
    panels, image, row = 0, None, 0

    def draw(axis, weights, queries, keys, title):
        axis.set_title(title, fontsize=8)
        axis.set_xticks(range(len(keys)), keys, rotation=90, fontsize=6)
        axis.set_yticks(range(len(queries)), queries, fontsize=6)
        return axis.imshow(weights, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")

    for kind in kinds:
        queries, keys = labels[kind]
        for layer, layer_weights in enumerate(attention.maps[kind]):
            for head in range(heads):
                axis = axes[row, head]
                if head < len(layer_weights):
                    image = draw(axis, layer_weights[head], queries, keys, f"{_TITLES[kind]} L{layer + 1} H{head + 1}")
                    panels += 1
                else:
                    axis.axis("off")
            row += 1
    queries, keys = labels["cross"]
    draw(axes[row, 0], attention.maps["cross"][-1].mean(axis=0), queries, keys, "cross-attention, last layer, mean of heads")
    panels += 1
    for axis in axes[row, 1:]:
        axis.axis("off")
    figure.tight_layout(rect=(0, 0, 1 - 0.6 / figure.get_figwidth(), 1))
    figure.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label="attention weight")
    width, height = _save(figure, path)
    plt.close(figure)
    return {"panels": panels, "width": width, "height": height}


def softmax_demo_figure(raw_logits: np.ndarray, keys: list[str], dimension: int, query: str, path: Path) -> dict:
    """The softmax of one query's unscaled dot products q·k (standard deviation near sqrt(d) for
    unit-variance q and k) beside the softmax of the same logits scaled to unit deviation; writes
    a PNG to path. Returns the deviation and the largest weight of each."""
    plt = _pyplot()
    deviation = float(np.std(raw_logits))
    found = {}
    figure, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.5 * len(keys) + 4), 3.8), sharey=True)
    for axis, (name, logits) in zip(axes, (("unscaled", raw_logits), ("scaled to unit deviation", raw_logits / deviation))):
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        found[name] = {"logit_std": round(float(np.std(logits)), 3), "max_weight": round(float(weights.max()), 4)}
        axis.bar(range(len(keys)), weights, color="tab:blue")
        axis.set_xticks(range(len(keys)), keys, rotation=90, fontsize=7)
        axis.set_title(f"{name}: logit std {np.std(logits):.2f}, max weight {weights.max():.2f}", fontsize=9)
        axis.set_ylim(0, 1)
    axes[0].set_ylabel("softmax weight")
    figure.suptitle(f"query {query!r}: dot products of d = {dimension} (sqrt(d) = {dimension ** 0.5:.1f})", fontsize=10)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)
    return found
