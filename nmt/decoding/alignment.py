"""Word alignment from cross-attention: each output word to the source word it attends to most.

Words are rebuilt from SentencePiece pieces: a piece that starts with "▁" starts a word, the
others continue the word before them, so words are what whitespace separates in the text.
"""

from __future__ import annotations

import numpy as np

from nmt.decoding.plan import SentenceAttention

WORD_START = "▁"
END = "</s>"


def word_index(pieces: list[str]) -> list[int]:
    """The word each piece belongs to (0-based), "</s>" excluded (it belongs to no word)."""
    words, current = [], -1
    for piece in pieces:
        if piece == END:
            break
        if piece.startswith(WORD_START) or current < 0:
            current += 1
        words.append(current)
    return words


def word_alignment(attention: SentenceAttention) -> list[tuple[int, int]]:
    """(source word, target word) pairs, one per target word, by the last decoder layer's
    cross-attention averaged over heads: a target word's rows are averaged over its pieces, a
    source word's columns summed over its pieces."""
    weights = attention.maps["cross"][-1].mean(axis=0)  # (target pieces, source pieces)
    source_words, target_words = word_index(attention.source_pieces), word_index(attention.target_pieces)
    if not source_words or not target_words:
        return []
    by_source = np.zeros((weights.shape[0], source_words[-1] + 1))
    np.add.at(by_source.T, source_words, weights[:, : len(source_words)].T)
    pairs = []
    for target_word in range(target_words[-1] + 1):
        rows = [row for row, word in enumerate(target_words) if word == target_word]
        pairs.append((int(np.argmax(by_source[rows].mean(axis=0))), target_word))
    return pairs


def pharaoh(pairs: list[tuple[int, int]]) -> str:
    """The "i-j" format of alignment tools (source word i, target word j), space-separated."""
    return " ".join(f"{source}-{target}" for source, target in pairs)
