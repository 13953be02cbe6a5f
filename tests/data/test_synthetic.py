import random

from nmt.data.synthetic import Grammar, generate_splits


def test_deterministic_and_disjoint():
    sizes = {"train": 500, "validation": 50, "test": 50}
    first, second = generate_splits(sizes=sizes), generate_splits(sizes=sizes)
    assert first == second
    assert {name: len(pairs) for name, pairs in first.items()} == sizes
    sources = {name: {source for source, _ in pairs} for name, pairs in first.items()}
    assert not sources["train"] & sources["test"] and not sources["train"] & sources["validation"]


def test_target_is_verb_final_with_agreement_and_tense():
    grammar = Grammar()
    rng = random.Random(0)
    checked = 0
    for _ in range(300):
        source, target = grammar.sentence(rng)
        assert source[0].isupper() and source.endswith(".") and target[0].isupper() and target.endswith(".")
        words = source.lower().rstrip(".").split()
        if "and" in words or "but" in words:
            continue
        verb = target.rstrip(".").split()[-1]
        stem = next(stem for stem in grammar.verbs.values() if verb.startswith(stem))
        assert verb[-1] in "sm" and verb[len(stem):-1] in ("", "ka")
        assert ("will" in words) == (grammar.future_particle in target.lower().split())
        checked += 1
    assert checked > 150


def test_the_large_config_streams_training_pairs_disjoint_from_the_held_out_splits():
    from nmt.data.synthetic import SyntheticTranslation, _split_of, stream_training_pairs

    first = list(stream_training_pairs(2000))
    assert first == list(stream_training_pairs(2000)) and len(first) == 2000
    held_out = generate_splits(sizes={"validation": 500, "test": 500})
    assert held_out == {name: pairs for name, pairs in generate_splits().items() if name != "train"}
    held_out_sources = {source for pairs in held_out.values() for source, _ in pairs}
    assert all(_split_of(source) == "train" and source not in held_out_sources for source, _ in first)
    assert [config.name for config in SyntheticTranslation.BUILDER_CONFIGS] == ["default", "5m"]
