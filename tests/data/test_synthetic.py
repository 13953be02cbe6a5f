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
    assert [config.name for config in SyntheticTranslation.BUILDER_CONFIGS] == ["default", "5m", "shifted"]


def test_the_shifted_domain_keeps_the_lexicon_and_adds_sea_nouns_and_names_copied_as_they_are():
    default, shifted = Grammar(), Grammar(domain="shifted")
    assert all(shifted.nouns[noun] == stem for noun, stem in default.nouns.items())
    assert (shifted.verbs, shifted.articles) == (default.verbs, default.articles)
    pairs = generate_splits(sizes={"train": 2000}, domain="shifted")["train"]
    default_words = {word for source, _ in generate_splits(sizes={"train": 2000})["train"] for word in source.split()}
    names = [word for source, _ in pairs for word in source.rstrip(".").split() if not word.isascii()]
    assert len(names) > 500 and all(name in target for source, target in pairs for name in source.rstrip(".").split()
                                    if not name.isascii())
    seen = {character for word in default_words for character in word}
    assert all(set(name) - seen for name in names)
    sea = {"ship", "ships", "whale", "whales", "captain", "captains"}
    assert sea & {word.lower() for source, _ in pairs for word in source.rstrip(".").split()} and not sea & default_words
