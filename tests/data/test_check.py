"""The data check on small English-German corpora made to contain each problem at a known line:
each problem is found where it was put, and the clean pairs around it are not flagged."""

import itertools
import json

import pytest

from nmt.config import TokenizerConfig
from nmt.data import check, sources, tokenizer
from nmt.data.check import Split

SUBJECTS = [("A man", "Ein Mann"), ("A woman", "Eine Frau"), ("The child", "Das Kind"), ("An old man", "Ein alter Mann"),
            ("The young woman", "Die junge Frau"), ("A boy", "Ein Junge"), ("The girl", "Das Mädchen"), ("A worker", "Ein Arbeiter")]
VERBS = [("is riding", "fährt"), ("is painting", "malt"), ("is cleaning", "putzt"), ("is looking at", "betrachtet"),
         ("is carrying", "trägt"), ("is repairing", "repariert")]
OBJECTS = [("a red bicycle", "ein rotes Fahrrad"), ("the old window", "das alte Fenster"), ("a small boat", "ein kleines Boot"),
           ("the wooden fence", "den Holzzaun"), ("a large painting", "ein großes Gemälde"), ("the blue car", "das blaue Auto")]
PLACES = [("in the park.", "im Park."), ("near the river.", "in der Nähe des Flusses."), ("on a sunny day.", "an einem sonnigen Tag."),
          ("in the city.", "in der Stadt.")]


def clean_pairs() -> list[tuple[str, str]]:
    return [(f"{s[0]} {v[0]} {o[0]} {p[0]}", f"{s[1]} {v[1]} {o[1]} {p[1]}")
            for s, v, o, p in itertools.product(SUBJECTS, VERBS, OBJECTS, PLACES)]


# Problems, each put at a known training line (1-based) after 40 clean pairs.
PROBLEMS = {
    "empty": ("A dog is running in the park.", "   "),
    "copy": ("A man is riding a red bicycle in the city today.", "A man is riding a red bicycle in the city today."),
    "length_ratio": ("Hello.", "Ein Mann fährt ein rotes Fahrrad im Park, und eine Frau malt das alte Fenster in der Stadt."),
    "wrong_language": ("A woman is painting a small boat near the river.", "Une femme peint un petit bateau près de la rivière."),
    "unknown_pieces": ("The child is looking at the 富士山 mountain.", "Das Kind betrachtet den Berg 富士山."),
}


@pytest.fixture(scope="module")
def corpus():
    pairs = clean_pairs()
    train = pairs[:40]
    lines = {}
    for name, pair in PROBLEMS.items():
        lines[name] = len(train) + 1
        train.append(pair)
        train += pairs[len(train):len(train) + 5]
    lines["duplicate"] = len(train) + 1
    train.append(train[3])
    lines["near_duplicate"] = len(train) + 1
    train.append((train[4][0].lower().rstrip("."), train[4][1].upper()))
    train += pairs[len(train):400]
    validation = [train[10], (train[11][0], "Etwas ganz anderes."), *pairs[500:510]]
    test = pairs[510:530]
    return [Split("train", *map(list, zip(*train))), Split("validation", *map(list, zip(*validation)), held_out=True),
            Split("test", *map(list, zip(*test)), held_out=True)], lines


@pytest.fixture(scope="module")
def tokenizers(corpus, tmp_path_factory):
    """Trained without the line holding unknown characters, as if they were too rare to keep."""
    (train, *_), lines = corpus
    keep = [i for i in range(len(train)) if i != lines["unknown_pieces"] - 1]
    directory = tmp_path_factory.mktemp("tokenizer")
    tokenizer.train(TokenizerConfig(vocab_size=200), [train.sources[i] for i in keep], [train.targets[i] for i in keep], directory)
    return tokenizer.load(directory, joint=True)


@pytest.fixture(scope="module")
def result(corpus, tokenizers):
    splits, _ = corpus
    return check.check(splits, tokenizers, max_length=100, languages=check.identify_languages("en", "de"))


def flagged(result, split, name):
    return [index + 1 for index in result.findings[split][name].indices]


def test_each_problem_is_found_where_it_was_put_and_nowhere_else(result, corpus):
    _, lines = corpus
    for name in ("empty", "copy", "unknown_pieces", "duplicate", "near_duplicate"):
        assert flagged(result, "train", name) == [lines[name]], name
    # The untranslated copy's target is English too.
    assert flagged(result, "train", "wrong_language") == [lines["copy"], lines["wrong_language"]]
    # The short source against a long target is off in characters; nothing else is.
    assert flagged(result, "train", "length_ratio") == [lines["length_ratio"]]
    assert flagged(result, "train", "too_long") == []
    for name in ("empty", "duplicate", "near_duplicate", "copy", "length_ratio", "wrong_language", "unknown_pieces"):
        assert flagged(result, "test", name) == [], name
    assert result.findings["train"]["duplicate"].examples[0]["detail"] == "as line 4"
    assert result.findings["train"]["near_duplicate"].examples[0]["detail"] == "like line 5"


def test_leakage_counts_held_out_pairs_and_sentences_found_in_training(result):
    assert flagged_leak(result, "validation", "pair") == [1]
    assert flagged_leak(result, "validation", "source") == [1, 2]
    assert flagged_leak(result, "validation", "target") == [1]
    assert result.leakage["validation"]["source"].examples[1]["detail"] == "training line 12"
    assert all(flagged_leak(result, "test", kind) == [] for kind in ("pair", "source", "target"))


def test_leakage_is_also_from_further_training_corpora_which_are_checked_as_the_training_split(corpus):
    (train, validation, test), _ = corpus
    extra = Split("extra_train[0]", ["A back-translated source.", "A back-translated source.", test.sources[3]],
                  ["Ein Satz.", "Ein Satz.", "Eine andere Übersetzung."])
    result = check.check([train, validation, test, extra], None, 100, check.identify_languages("en", "de"))
    assert flagged(result, "extra_train[0]", "duplicate") == [2] and "extra_train[0]" not in result.leakage
    assert flagged_leak(result, "test", "source") == [4]
    assert result.leakage["test"]["source"].examples[0]["detail"] == "extra_train[0] line 3"
    assert result.leakage["validation"]["source"].examples[1]["detail"] == "train line 12"


def flagged_leak(result, split, kind):
    return [index + 1 for index in result.leakage[split][kind].indices]


def test_the_report_has_counts_shares_examples_and_unknown_characters(result, corpus):
    _, lines = corpus
    report = json.loads(json.dumps(result.report()))
    train = report["splits"]["train"]
    assert train["pairs"] == 400 and report["language_identification"] == "py3langid"
    wrong = train["checks"]["wrong_language"]
    assert wrong["count"] == 2 and wrong["share"] == pytest.approx(2 / 400)
    example = wrong["examples"][1]
    assert example["line"] == lines["wrong_language"] and example["target"].startswith("Une femme")
    assert example["detail"].startswith("target is not de")
    assert set(train["unknown_characters"]["source"]) == set("富士山")
    # Three unknown pieces at most (a run of unknown characters may be one piece) among the split's thousands.
    assert 0 < train["unknown_piece_rate"]["source"] < 0.001 and report["splits"]["test"]["unknown_piece_rate"]["source"] == 0
    assert report["leakage"]["validation"]["pair"]["count"] == 1
    text = check.markdown(report, "test corpus")
    assert "| untranslated copies (target = source) | 1 (0.25%) | 0 | 0 |" in text
    assert "`富` (1)" in text and "### train: a side not in its configured language" in text
    assert any("wrong_language" not in line and "configured language" in line for line in check.warnings(report))


def test_too_long_flags_exactly_the_pairs_max_length_drops(corpus, tokenizers):
    splits, _ = corpus
    train = splits[0]
    result = check.check(splits, tokenizers, max_length=20, languages=check.identify_languages("en", "de"))
    lengths = [max(int(tokenizers.source.tokenize(source).shape[0]), int(tokenizers.target.tokenize(target).shape[0]))
               for source, target in zip(train.sources, train.targets)]
    expected = [line for line, length in enumerate(lengths, start=1) if length > 20]
    assert 0 < len(expected) < len(train) and flagged(result, "train", "too_long") == expected


def test_an_unknown_language_code_skips_language_identification_and_says_so(corpus):
    splits, _ = corpus
    languages = check.identify_languages("en", "sy")
    assert languages.probability is None and "py3langid does not know 'sy'" in languages.skipped
    report = check.check(splits, None, 30, languages).report()
    assert "wrong_language" not in report["splits"]["train"]["checks"]
    assert report["language_identification"] == languages.skipped and not report["subword_checks"]


def test_the_cleaned_corpus_drops_bad_and_leaking_training_pairs_and_reads_back(result, corpus, tmp_path):
    splits, lines = corpus
    kept = result.kept_training_pairs()
    dropped = {line for line in range(1, 401)} - {index + 1 for index in kept}
    # The duplicate's first occurrence (line 4) stays; line 11's pair and line 12's source are held out.
    assert dropped == {lines[name] for name in ("empty", "copy", "length_ratio", "wrong_language", "duplicate")} | {11, 12}
    train = splits[0]
    directory = tmp_path / "clean"
    sources.write_local(directory, "en", "de", {
        "train": ([train.sources[i] for i in kept], [train.targets[i] for i in kept]),
        "validation": (list(splits[1].sources), list(splits[1].targets)),
        "test": (list(splits[2].sources), list(splits[2].targets)),
    })
    from nmt.config import DataConfig

    config = DataConfig(dataset="local", source_lang="en", target_lang="de", manual_dir=str(directory), data_dir=str(tmp_path / "tfds"))
    read = sources.read_pairs(config, "train")
    assert read == ([train.sources[i] for i in kept], [train.targets[i] for i in kept])
    with pytest.raises(Exception, match="is not empty; choose a new directory"):
        sources.write_local(directory, "en", "de", {"train": ([], [])})


def test_a_sample_spread_over_a_split_names_the_splits_lines():
    """What the check at a run's first start reads of local text: every step-th pair."""
    pairs = clean_pairs()[:6]
    sample = Split("train", *map(list, zip(*(pairs[:3] + [pairs[1]]))), step=3)  # lines 1, 4, 7, 10 of the split
    held_out = Split("validation", [pairs[2][0]], ["Etwas."], held_out=True)
    found = check.check([sample, held_out], None, max_length=100, languages=check.identify_languages("en", "xx"))
    report = found.report()
    duplicate = report["splits"]["train"]["checks"]["duplicate"]["examples"]
    assert [(example["line"], example["detail"]) for example in duplicate] == [(10, "as line 4")]
    assert report["leakage"]["validation"]["source"]["examples"][0]["detail"] == "training line 7"
    assert report["splits"]["train"]["every"] == 3 and report["splits"]["validation"]["every"] == 1
    assert "Note: train is a sample, one pair in 3 of the split (its lines 1, 4, ...)" in check.markdown(report, "x")
