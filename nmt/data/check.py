"""Data health check: what is wrong with a parallel corpus, found before hours are spent training
on it. Each check counts the pairs of a split that have a problem and keeps a few examples:

  empty            a side is empty or only whitespace
  duplicate        the pair occurs earlier in the split, exactly
  near_duplicate   the pair equals an earlier one once case, punctuation, digits and spacing are
                   ignored (and is not an exact duplicate)
  copy             the target is the source, untranslated
  length_ratio     the target/source length ratio, in characters or in subwords, is more than
                   RATIO_LIMIT times above or below the split's median ratio
  too_long         more than data.max_length subwords on a side: training leaves the pair out
  wrong_language   the language identifier (py3langid, whose model ships inside the package)
                   gives a side's configured language a probability below
                   WRONG_LANGUAGE_PROBABILITY
  unknown_pieces   a side has characters the tokenizer cannot represent (unknown pieces)

and, for the validation and test splits, leakage: pairs, sources and targets that also occur in
training (the training split or a further training corpus, spaces trimmed), which flatter every
score measured on them.
"""

from __future__ import annotations

import collections
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Callable, Sequence

import tensorflow as tf

from nmt.data.tokenizer import UNK_ID, Tokenizers

# A pair whose length ratio is this many times above or below its split's median is an outlier.
RATIO_LIMIT = 3.0
# Short sentences are ambiguous between related languages (py3langid reads "Ein Hund." as
# Faroese), so a side is flagged only when its configured language is all but ruled out.
WRONG_LANGUAGE_PROBABILITY = 0.01
EXAMPLES = 5
# The cleaned corpus (--write-clean) leaves out training pairs with these problems, and those
# that leak into validation or test. Near-duplicates are often honest variants, and long pairs or
# unknown characters are the tokenizer's and the model's business: those stay. Validation and
# test splits are written unchanged, so that scores on them stay comparable.
CLEANED = ("empty", "duplicate", "copy", "length_ratio", "wrong_language")
_TOKENIZE_CHUNK = 4096


@dataclass(frozen=True)
class Split:
    name: str
    sources: Sequence[str]
    targets: Sequence[str]
    # The pairs are every step-th of the split's (a sample spread over it), from its first.
    step: int = 1
    # Validation or test: checked for sentences that also occur in the training ones.
    held_out: bool = False

    def __len__(self) -> int:
        return len(self.sources)

    def line(self, index: int) -> int:
        """The split's line (from 1) of the pair at index."""
        return index * self.step + 1


@dataclass
class Finding:
    """The pairs (0-based indices) of a split that have one problem, with a few examples."""

    indices: list[int] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)

    def add(self, split: Split, index: int, detail: str | None = None) -> None:
        self.indices.append(index)
        if len(self.examples) < EXAMPLES:
            example = {"line": split.line(index), "source": split.sources[index], "target": split.targets[index]}
            self.examples.append({**example, "detail": detail} if detail else example)

    def summary(self, pairs: int) -> dict:
        return {"count": len(self.indices), "share": len(self.indices) / pairs if pairs else 0.0, "examples": self.examples}


@dataclass(frozen=True)
class Languages:
    """The configured languages and, when the identifier knows both, a function giving a
    language's probability for each of some sentences; otherwise why the check is skipped."""

    source: str
    target: str
    probability: Callable[[str, Sequence[str]], list[float]] | None
    skipped: str | None = None


def identify_languages(source: str, target: str) -> Languages:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    unknown = [code for code in (source, target) if code not in identifier.labels]
    if unknown:
        return Languages(source, target, None, skipped=(
            f"language identification skipped: py3langid does not know {' or '.join(repr(code) for code in unknown)} "
            "(it knows ISO 639-1 codes such as en, de, fr, cs)"))

    def probability(language: str, sentences: Sequence[str]) -> list[float]:
        # An empty side is the 'empty' check's business.
        return [dict(identifier.rank(sentence))[language] if sentence.strip() else 1.0 for sentence in sentences]

    return Languages(source, target, probability)


@dataclass
class Result:
    # The training split first; held-out splits and further training corpora after it.
    splits: list[Split]
    # Per split: check name -> Finding.
    findings: dict[str, dict[str, Finding]]
    # Per held-out split: 'pair', 'source', 'target' -> Finding (indices into that split).
    leakage: dict[str, dict[str, Finding]]
    # Per split and side: unknown character -> occurrences.
    unknown_characters: dict[str, dict[str, dict[str, int]]]
    # Per split and side: the share of subword pieces that are the unknown piece.
    unknown_piece_rate: dict[str, dict[str, float]]
    languages: Languages
    tokenizer_checks: bool

    def report(self) -> dict:
        """JSON-ready: per split its pairs and each check's count, share and examples; leakage."""
        return {
            "language_identification": self.languages.skipped or "py3langid",
            "subword_checks": self.tokenizer_checks,
            "splits": {
                split.name: {
                    "pairs": len(split),
                    "every": split.step,
                    "checks": {name: finding.summary(len(split)) for name, finding in self.findings[split.name].items()},
                    "unknown_characters": self.unknown_characters[split.name],
                    "unknown_piece_rate": self.unknown_piece_rate[split.name],
                }
                for split in self.splits
            },
            "leakage": {
                split.name: {kind: finding.summary(len(split)) for kind, finding in self.leakage[split.name].items()}
                for split in self.splits if split.held_out
            },
        }

    def kept_training_pairs(self) -> list[int]:
        """Indices of the training pairs a cleaned corpus keeps (see CLEANED)."""
        train = self.splits[0]
        dropped = {index for name in CLEANED for index in self.findings[train.name].get(name, Finding()).indices}
        held_sources = {text.strip() for split in self.splits if split.held_out for text in split.sources}
        held_targets = {text.strip() for split in self.splits if split.held_out for text in split.targets}
        return [index for index in range(len(train)) if index not in dropped
                and train.sources[index].strip() not in held_sources and train.targets[index].strip() not in held_targets]


def check(splits: Sequence[Split], tokenizers: Tokenizers | None, max_length: int, languages: Languages) -> Result:
    """Runs every check on splits (the training split first); the subword checks need tokenizers."""
    findings, unknown, rates = {}, {}, {}
    for split in splits:
        findings[split.name], unknown[split.name], rates[split.name] = _check_split(split, tokenizers, max_length, languages)
    training = [split for split in splits if not split.held_out]
    leakage = {split.name: _leakage(training, split) for split in splits if split.held_out}
    return Result(list(splits), findings, leakage, unknown, rates, languages, tokenizers is not None)


def _check_split(split: Split, tokenizers: Tokenizers | None, max_length: int,
                 languages: Languages) -> tuple[dict[str, Finding], dict[str, dict[str, int]], dict[str, float]]:
    found = {name: Finding() for name in ("empty", "duplicate", "near_duplicate", "copy", "length_ratio")}
    unknown_rate: dict[str, float] = {}
    first_pairs: dict[tuple[str, str], int] = {}
    first_normalized: dict[tuple[str, str], int] = {}
    for index, (source, target) in enumerate(zip(split.sources, split.targets)):
        if not source.strip() or not target.strip():
            found["empty"].add(split, index, "empty source" if not source.strip() else "empty target")
            continue
        pair = (source.strip(), target.strip())
        normalized = (_normalize(source), _normalize(target))
        if pair in first_pairs:
            found["duplicate"].add(split, index, f"as line {split.line(first_pairs[pair])}")
        elif normalized in first_normalized:
            found["near_duplicate"].add(split, index, f"like line {split.line(first_normalized[normalized])}")
        first_pairs.setdefault(pair, index)
        first_normalized.setdefault(normalized, index)
        if pair[0] == pair[1]:
            found["copy"].add(split, index)
    ratio_details = _ratio_outliers(split, [len(text.strip()) for text in split.sources],
                                    [len(text.strip()) for text in split.targets], "characters")
    unknown_characters: dict[str, dict[str, int]] = {}
    if tokenizers is not None:
        source_ids = _token_ids(tokenizers.source, split.sources)
        target_ids = _token_ids(tokenizers.target, split.targets)
        subword_details = _ratio_outliers(split, [len(ids) for ids in source_ids], [len(ids) for ids in target_ids], "subwords")
        for index, detail in subword_details.items():
            ratio_details.setdefault(index, detail)
        found["too_long"] = Finding()
        found["unknown_pieces"] = Finding()
        for index, (source, target) in enumerate(zip(source_ids, target_ids)):
            if max(len(source), len(target)) > max_length:
                found["too_long"].add(split, index, f"{len(source)} source and {len(target)} target subwords (data.max_length {max_length})")
            unknown_sides = [side for side, ids in (("source", source), ("target", target)) if UNK_ID in ids]
            if unknown_sides:
                found["unknown_pieces"].add(split, index, f"unknown pieces in the {' and '.join(unknown_sides)}")
        unknown_characters = {
            "source": _unknown_characters(tokenizers.source, split.sources, found["unknown_pieces"].indices),
            "target": _unknown_characters(tokenizers.target, split.targets, found["unknown_pieces"].indices),
        }
        unknown_rate = {side: sum(row.count(UNK_ID) for row in ids) / max(1, sum(map(len, ids)))
                        for side, ids in (("source", source_ids), ("target", target_ids))}
    for index in sorted(ratio_details):
        found["length_ratio"].add(split, index, ratio_details[index])
    if languages.probability is not None:
        found["wrong_language"] = Finding()
        source_p = languages.probability(languages.source, split.sources)
        target_p = languages.probability(languages.target, split.targets)
        for index, (p_source, p_target) in enumerate(zip(source_p, target_p)):
            wrong = [f"{side} is not {code} (p={p:.4f})" for side, code, p in
                     (("source", languages.source, p_source), ("target", languages.target, p_target))
                     if p < WRONG_LANGUAGE_PROBABILITY]
            if wrong:
                found["wrong_language"].add(split, index, "; ".join(wrong))
    return found, unknown_characters, unknown_rate


def _normalize(text: str) -> str:
    """Case, punctuation, digits and spacing ignored."""
    return " ".join(re.sub(r"[\W_]+", " ", re.sub(r"\d", "0", text.casefold())).split())


def _ratio_outliers(split: Split, source_lengths: list[int], target_lengths: list[int], unit: str) -> dict[int, str]:
    """Pairs whose target/source length ratio is RATIO_LIMIT times off the split's median."""
    logs = {index: math.log(target / source)
            for index, (source, target) in enumerate(zip(source_lengths, target_lengths)) if source and target}
    if not logs:
        return {}
    median = statistics.median(logs.values())
    limit = math.log(RATIO_LIMIT)
    return {index: f"{target_lengths[index]}/{source_lengths[index]} {unit}, ratio {math.exp(value):.2f} "
                   f"(median {math.exp(median):.2f})"
            for index, value in logs.items() if abs(value - median) > limit}


def _token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    ids: list[list[int]] = []
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        ids += tokenizer.tokenize(tf.constant(list(texts[start:start + _TOKENIZE_CHUNK]), tf.string)).to_list()
    return ids


def _unknown_characters(tokenizer, texts: Sequence[str], indices: list[int]) -> dict[str, int]:
    """The characters of these sentences that the tokenizer maps to the unknown piece, most
    frequent first."""
    counts = collections.Counter(char for index in indices for char in texts[index] if not char.isspace())
    if not counts:
        return {}
    chars = list(counts)
    unknown = {char for char, ids in zip(chars, _token_ids(tokenizer, chars)) if UNK_ID in ids}
    return {char: count for char, count in counts.most_common() if char in unknown}


def _leakage(training: Sequence[Split], split: Split) -> dict[str, Finding]:
    """Held-out pairs, sources and targets found in the training splits, each with its first
    training line (and, with several training splits, which)."""
    pairs: dict[tuple[str, str], str] = {}
    sources: dict[str, str] = {}
    targets: dict[str, str] = {}
    for train in training:
        where = "training" if len(training) == 1 else train.name
        for index, (source, target) in enumerate(zip(train.sources, train.targets)):
            source, target = source.strip(), target.strip()
            line = f"{where} line {train.line(index)}"
            pairs.setdefault((source, target), line)
            sources.setdefault(source, line)
            targets.setdefault(target, line)
    found = {"pair": Finding(), "source": Finding(), "target": Finding()}
    for index, (source, target) in enumerate(zip(split.sources, split.targets)):
        source, target = source.strip(), target.strip()
        for kind, table, key in (("pair", pairs, (source, target)), ("source", sources, source), ("target", targets, target)):
            if key in table and (kind == "pair" or key):
                found[kind].add(split, index, table[key])
    return found


DESCRIPTIONS = {
    "empty": "a side is empty",
    "duplicate": "exact duplicates of an earlier pair",
    "near_duplicate": "near-duplicates (case, punctuation, digits, spacing aside)",
    "copy": "untranslated copies (target = source)",
    "length_ratio": f"length-ratio outliers (over {RATIO_LIMIT:g}x off the median, characters or subwords)",
    "too_long": "longer than data.max_length subwords (left out of training)",
    "wrong_language": "a side not in its configured language",
    "unknown_pieces": "characters the tokenizer cannot represent",
}


def warnings(report: dict) -> list[str]:
    """One line per problem found."""
    lines = []
    for name, split in report["splits"].items():
        for check_name, found in split["checks"].items():
            if found["count"]:
                lines.append(f"{name}: {_pairs(found['count'])} ({found['share']:.2%}): {DESCRIPTIONS[check_name]}")
    for name, kinds in report["leakage"].items():
        if kinds["source"]["count"] or kinds["target"]["count"]:
            lines.append(f"{name}: {_pairs(kinds['pair']['count'])}, {kinds['source']['count']:,} of its sources and "
                         f"{kinds['target']['count']:,} of its targets also occur in training")
    return lines


def _pairs(count: int) -> str:
    return f"{count:,} pair{'' if count == 1 else 's'}"


def markdown(report: dict, title: str) -> str:
    splits = report["splits"]
    names = list(splits)
    lines = [f"# Data check: {title}", "",
             f"| check | {' | '.join(names)} |", f"| --- |{' ---: |' * len(names)}",
             "| pairs | " + " | ".join(f"{splits[name]['pairs']:,}" for name in names) + " |"]
    for check_name, description in DESCRIPTIONS.items():
        lines.append(f"| {description} | {' | '.join(_cell(splits[name]['checks'].get(check_name)) for name in names)} |")
    lines.append("")
    for name in names:
        if splits[name].get("every", 1) > 1:
            lines += [f"Note: {name} is a sample, one pair in {splits[name]['every']:,} of the split (its lines 1, "
                      f"{splits[name]['every'] + 1:,}, ...): examples name the split's lines.", ""]
    if report["language_identification"] != "py3langid":
        lines += [f"Note: {report['language_identification']}.", ""]
    if not report["subword_checks"]:
        lines += ["Note: subword checks skipped (no tokenizer).", ""]
    if report["leakage"]:
        lines += ["## Leakage: held-out sentences that also occur in training", "",
                  "| split | pairs | sources | targets |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {name} | {' | '.join(_cell(kinds[kind]) for kind in ('pair', 'source', 'target'))} |"
                  for name, kinds in report["leakage"].items()]
        lines.append("")
    if report["subword_checks"]:
        lines += ["Unknown pieces among all subword pieces: " + "; ".join(
            f"{name} {side} {rate:.3%}" for name in names for side, rate in splits[name]["unknown_piece_rate"].items()), ""]
    for name in names:
        for side, counts in splits[name]["unknown_characters"].items():
            if counts:
                shown = ", ".join(f"`{char}` ({count:,})" for char, count in list(counts.items())[:20])
                lines += [f"Unknown characters, {name} {side}: {shown}", ""]
    sections = [(f"{name}: {DESCRIPTIONS[check_name]}", found["examples"])
                for name in names for check_name, found in splits[name]["checks"].items()]
    sections += [(f"{name}: {kind}s also in training", kinds[kind]["examples"])
                 for name, kinds in report["leakage"].items() for kind in ("pair", "source", "target")]
    if any(examples for _, examples in sections):
        lines += ["## Examples", "",
                  "Lines count a split's pairs in the order the dataset serves them: for `local`, the lines of its "
                  "files; TFDS may have shuffled other datasets' pairs as it prepared them (Multi30k's, the catalog's).", ""]
    for heading, examples in sections:
        if examples:
            lines += [f"### {heading}", "", "| line | source | target | why |", "| ---: | --- | --- | --- |"]
            lines += [_example_row(example) for example in examples]
            lines.append("")
    return "\n".join(lines)


def _cell(found: dict | None) -> str:
    if found is None:
        return "–"
    return f"{found['count']:,} ({found['share']:.2%})" if found["count"] else "0"


def _example_row(example: dict) -> str:
    def escape(text: str) -> str:
        return " ".join(text.replace("|", "\\|").split()) or " "

    return f"| {example['line']} | {escape(example['source'])} | {escape(example['target'])} | {escape(example.get('detail', ''))} |"
