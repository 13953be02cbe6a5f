import numpy as np

from nmt.decoding.alignment import pharaoh, word_alignment, word_index
from nmt.decoding.plan import SentenceAttention


def test_pieces_group_into_words_at_word_starts():
    assert word_index(["▁The", "▁do", "g", "s", "▁run", ".", "</s>"]) == [0, 1, 1, 1, 2, 2]
    assert word_index(["ab", "▁c"]) == [0, 1]
    assert word_index(["</s>"]) == []


def test_each_target_word_goes_to_the_source_word_with_most_attention():
    source = ["▁a", "▁bi", "g", "▁dog"]  # words: a, big, dog
    target = ["▁ein", "▁Hu", "nd", "</s>"]  # words: ein, Hund
    cross = np.array([
        [0.7, 0.1, 0.1, 0.1],  # ein -> a
        [0.1, 0.3, 0.2, 0.4],  # Hu: big 0.5 (two pieces) vs dog 0.4 ...
        [0.0, 0.1, 0.1, 0.8],  # nd: dog; averaged over Hund's pieces: big 0.35, dog 0.6
        [0.2, 0.2, 0.2, 0.4],  # </s> aligns nothing
    ])
    # Two layers, two heads: the last layer's mean over heads is what counts.
    maps = {"cross": np.stack([np.stack([cross[:, ::-1], cross[:, ::-1]]), np.stack([cross + 0.1, cross - 0.1])])}
    attention = SentenceAttention(source, target, maps, logits={})
    pairs = word_alignment(attention)
    assert pairs == [(0, 0), (2, 1)]
    assert pharaoh(pairs) == "0-0 2-1"
