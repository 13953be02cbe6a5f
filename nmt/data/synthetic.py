"""An offline parallel corpus: English-like sentences and their translation into a made-up language.

The two sides come from one synchronous grammar, so every source sentence has exactly one correct
translation, but getting it right takes what real translation takes:
- reordering: English SVO becomes SOV, prepositional phrases move to the front as postpositions,
  adjectives follow the noun in reverse order;
- agreement: articles and adjectives agree with the noun's gender and number, the verb with the
  subject's number and the tense;
- a vocabulary of a few hundred words, with a deterministic made-up lexicon on the target side.
Splits are disjoint by construction: each distinct source sentence goes to one split by its hash.

The `shifted` domain (builder config `synthetic/shifted`) is the same language pair in another
domain, for fine-tuning: the same grammar and lexicon, but half the nouns are of the sea, unseen in
the default corpus, and some noun phrases are personal names, copied into the translation as they
are and written with letters the default corpus never uses (Zoë, Øyvind, Ζωή).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Iterable, Iterator

import tensorflow_datasets as tfds

SOURCE_LANG = "en"
TARGET_LANG = "sy"
SPLIT_SIZES = {"train": 30000, "validation": 500, "test": 500}
DOMAINS = ("default", "shifted")
# In-domain data is usually scarce: the shifted domain has a sixth of the default's training pairs.
SHIFTED_TRAIN_SIZE = 5000

_NOUNS = (
    "dog cat bird horse cow goat duck fox bear lion tiger rabbit frog snake monkey teacher doctor "
    "farmer baker painter singer student girl boy king queen friend neighbor soldier sailor pilot "
    "driver writer ball book car house tree garden river road bridge table chair window door letter "
    "apple cake bottle box glass hat shoe boat train city village forest mountain lake flower song "
    "picture key lamp cup basket"
).split()
_ADJECTIVES = (
    "big small old young red blue green black white happy sad quiet loud tall short heavy light "
    "clean dirty new rich poor brave lazy clever angry hungry tired strong weak warm cold bright "
    "dark fast slow kind strange famous wild"
).split()
_VERBS = {  # base form: past form
    "see": "saw", "find": "found", "hold": "held", "want": "wanted", "need": "needed",
    "carry": "carried", "like": "liked", "love": "loved", "watch": "watched", "visit": "visited",
    "follow": "followed", "push": "pushed", "pull": "pulled", "help": "helped", "paint": "painted",
    "build": "built", "buy": "bought", "sell": "sold", "bring": "brought", "take": "took",
    "make": "made", "clean": "cleaned", "open": "opened", "close": "closed", "draw": "drew",
    "throw": "threw", "catch": "caught", "call": "called", "meet": "met", "remember": "remembered",
    "forget": "forgot", "read": "read", "write": "wrote", "break": "broke", "hide": "hid",
    "wash": "washed", "kick": "kicked", "touch": "touched", "chase": "chased", "guard": "guarded",
}
# The shifted domain's own nouns and names.
_SEA_NOUNS = (
    "ship harbor anchor sail captain wave island fisher net shell whale crab storm compass rope deck "
    "lighthouse oar pearl seal"
).split()
_NAMES = "Zoë Chloé Øyvind Åsa Łucja Šárka Þóra Ümit Çağla Ñuño Ζωή Νίκος Ελένη Γιώργος Σοφία Δημήτρης".split()
_ADVERBS = "quickly slowly carefully quietly happily often again suddenly gladly rarely".split()
_PREPOSITIONS = "in near behind under beside above without with".split()
_DETERMINERS = {"the": "the", "a": "some", "this": "these", "my": "my", "your": "your"}  # sg: pl
_CONJUNCTIONS = ("and", "but")
_ADJECTIVE_ENDINGS = {(0, False): "a", (0, True): "ai", (1, False): "o", (1, True): "ou"}
_NOUN_PLURAL = {0: "i", 1: "ur"}


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "x", "ch", "sh", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


@dataclass(frozen=True)
class _Phrase:
    source: list[str]
    target: list[str]


class Grammar:
    """Generates (source, target) sentence pairs; the same seed gives the same lexicon and pairs."""

    def __init__(self, seed: int = 2024, domain: str = "default"):
        if domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; one of {', '.join(DOMAINS)}")
        self.domain = domain
        rng = random.Random(seed)
        used: set[str] = set()

        def word(syllables: int) -> str:
            while True:
                candidate = "".join(
                    rng.choice("ptkbdgmnlrsvz") + rng.choice("aeiou") + rng.choice(["", "", "n", "r", "l"])
                    for _ in range(syllables)
                )
                if candidate not in used:
                    used.add(candidate)
                    return candidate

        self.nouns = {noun: (word(2), rng.randrange(2)) for noun in _NOUNS}  # stem, gender
        self.adjectives = {adjective: word(2) for adjective in _ADJECTIVES}
        self.verbs = {verb: word(2) for verb in _VERBS}
        self.adverbs = {adverb: word(3) for adverb in _ADVERBS}
        self.postpositions = {preposition: word(1) for preposition in _PREPOSITIONS}
        self.articles = {
            (determiner, gender, plural): word(1)
            for determiner in _DETERMINERS
            for gender in (0, 1)
            for plural in (False, True)
        }
        self.conjunctions = {conjunction: word(1) for conjunction in _CONJUNCTIONS}
        self.object_marker = word(1)
        self.future_particle = word(1)
        # Drawn after the default lexicon, which is therefore the same in both domains.
        self.nouns.update({noun: (word(2), rng.randrange(2)) for noun in _SEA_NOUNS})

    def noun_phrase(self, rng: random.Random) -> tuple[_Phrase, bool]:
        """Returns a noun phrase and whether it is plural."""
        if self.domain == "shifted":
            draw = rng.random()
            if draw < 0.2:
                name = rng.choice(_NAMES)
                return _Phrase([name], [name]), False
            determiner = rng.choice(list(_DETERMINERS))
            noun = rng.choice(_SEA_NOUNS if draw < 0.6 else _NOUNS)
        else:
            determiner = rng.choice(list(_DETERMINERS))
            noun = rng.choice(_NOUNS)
        plural = rng.random() < 0.4
        adjectives = rng.sample(_ADJECTIVES, k=rng.choice([0, 0, 1, 1, 2]))
        stem, gender = self.nouns[noun]
        source = [_DETERMINERS[determiner] if plural else determiner, *adjectives, _plural(noun) if plural else noun]
        ending = _ADJECTIVE_ENDINGS[(gender, plural)]
        target = [
            self.articles[(determiner, gender, plural)],
            stem + _NOUN_PLURAL[gender] if plural else stem,
            *(self.adjectives[adjective] + ending for adjective in reversed(adjectives)),
        ]
        return _Phrase(source, target), plural

    def clause(self, rng: random.Random) -> _Phrase:
        subject, plural_subject = self.noun_phrase(rng)
        obj, _ = self.noun_phrase(rng)
        verb = rng.choice(list(_VERBS))
        tense = rng.choice(["past", "present", "future"])
        if tense == "past":
            source_verb = [_VERBS[verb]]
        elif tense == "present":
            source_verb = [verb if plural_subject else _third_person(verb)]
        else:
            source_verb = ["will", verb]
        target_verb = self.verbs[verb] + ("ka" if tense == "past" else "") + ("m" if plural_subject else "s")
        source = [*subject.source, *source_verb, *obj.source]
        target = [*subject.target, *obj.target, self.object_marker]
        if rng.random() < 0.4:
            preposition = rng.choice(_PREPOSITIONS)
            place, _ = self.noun_phrase(rng)
            source += [preposition, *place.source]
            target = [*place.target, self.postpositions[preposition], *target]
        if rng.random() < 0.3:
            adverb = rng.choice(_ADVERBS)
            source.append(adverb)
            target.append(self.adverbs[adverb])
        target += [self.future_particle, target_verb] if tense == "future" else [target_verb]
        return _Phrase(source, target)

    def sentence(self, rng: random.Random) -> tuple[str, str]:
        phrase = self.clause(rng)
        if rng.random() < 0.25:
            conjunction = rng.choice(_CONJUNCTIONS)
            second = self.clause(rng)
            phrase = _Phrase(
                [*phrase.source, conjunction, *second.source],
                [*phrase.target, self.conjunctions[conjunction], *second.target],
            )
        return _render(phrase.source), _render(phrase.target)


def _render(words: list[str]) -> str:
    text = " ".join(words) + "."
    return text[0].upper() + text[1:]


def _split_of(source: str) -> str:
    bucket = int(hashlib.sha1(source.encode("utf-8")).hexdigest(), 16) % 100
    return "test" if bucket < 3 else "validation" if bucket < 6 else "train"


def generate_splits(seed: int = 2024, sizes: dict[str, int] = SPLIT_SIZES,
                    domain: str = "default") -> dict[str, list[tuple[str, str]]]:
    """Deterministic, disjoint splits of distinct sentence pairs (of the splits named in sizes)."""
    grammar = Grammar(seed, domain)
    rng = random.Random(seed + 1)
    splits: dict[str, list[tuple[str, str]]] = {name: [] for name in sizes}
    seen: set[str] = set()
    while any(len(splits[name]) < size for name, size in sizes.items()):
        source, target = grammar.sentence(rng)
        if source in seen:
            continue
        seen.add(source)
        name = _split_of(source)
        if name in sizes and len(splits[name]) < sizes[name]:
            splits[name].append((source, target))
    return splits


def stream_training_pairs(size: int, seed: int = 2024) -> Iterator[tuple[str, str]]:
    """size training pairs, generated one at a time (memory stays flat however many): disjoint
    from generate_splits' validation and test by construction, and, like a real corpus,
    repeating some."""
    grammar = Grammar(seed)
    rng = random.Random(seed + 2)
    count = 0
    while count < size:
        source, target = grammar.sentence(rng)
        if _split_of(source) == "train":
            count += 1
            yield source, target


class SyntheticConfig(tfds.core.BuilderConfig):
    def __init__(self, *, train_size: int, domain: str = "default", **kwargs):
        super().__init__(version=tfds.core.Version("1.0.0"), **kwargs)
        self.train_size = train_size
        self.domain = domain


class SyntheticTranslation(tfds.core.GeneratorBasedBuilder):
    """TFDS builder for the synthetic corpus: generated on this machine, no download.
    `synthetic` is the default config; `synthetic/5m` has 5 million training pairs (a corpus of
    WMT's size, for measuring; its generation takes minutes and ~1 GB of disk); `synthetic/shifted`
    is the shifted domain (5,000 training pairs), for fine-tuning a model of the default one."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        SyntheticConfig(name="default", train_size=SPLIT_SIZES["train"], description="30,000 training pairs"),
        SyntheticConfig(name="5m", train_size=5_000_000, description="5,000,000 training pairs, some repeated"),
        SyntheticConfig(name="shifted", train_size=SHIFTED_TRAIN_SIZE, domain="shifted",
                        description="another domain of the same language pair: sea nouns, names in other scripts"),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.Translation(languages=(SOURCE_LANG, TARGET_LANG)),
            supervised_keys=(SOURCE_LANG, TARGET_LANG),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if config.train_size <= SPLIT_SIZES["train"]:
            sizes = {**SPLIT_SIZES, "train": config.train_size}
            return {name: self._generate_examples(pairs) for name, pairs in generate_splits(sizes=sizes, domain=config.domain).items()}
        held_out = generate_splits(sizes={name: SPLIT_SIZES[name] for name in ("validation", "test")})
        return {"train": self._generate_examples(stream_training_pairs(config.train_size)),
                **{name: self._generate_examples(pairs) for name, pairs in held_out.items()}}

    def _generate_examples(self, pairs: Iterable[tuple[str, str]]):
        for index, (source, target) in enumerate(pairs):
            yield index, {SOURCE_LANG: source, TARGET_LANG: target}
