"""Evaluation reports: report.json for machines, report.md for people, hypotheses.txt for sacreBLEU."""

from __future__ import annotations

import json
from pathlib import Path

from nmt import atomic


def write(directory: Path, report: dict, sources: list[str], references: list[str], hypotheses: list[str],
          config_summary: dict, num_samples: int) -> None:
    """Writes the three files atomically into directory."""
    atomic.write_text(directory / "report.json", json.dumps(report, indent=2) + "\n")
    atomic.write_text(directory / "hypotheses.txt", "".join(line + "\n" for line in hypotheses))
    atomic.write_text(directory / "report.md", _markdown(report, sources, references, hypotheses, config_summary, num_samples))


def _markdown(report, sources, references, hypotheses, config_summary, num_samples) -> str:
    lines = [
        f"# Evaluation: {scored_on(report)} ({report['source_lang']}→{report['target_lang']})",
        "",
        "| metric | score |",
        "| --- | --- |",
        f"| BLEU | {report['bleu']:.2f} |",
        f"| chrF | {report['chrf']:.2f} |",
        f"| TER (lower is better) | {report['ter']:.2f} |",
        f"| length ratio (hyp/ref) | {report['length_ratio']:.3f} |",
        "",
        f"- BLEU signature: `{report['signature']}`",
        f"- chrF signature: `{report['chrf_signature']}`",
        f"- TER signature: `{report['ter_signature']}`",
        f"- {report['bleu_details']}",
        f"- {report['num_sentences']} sentences translated in {report['seconds']:.1f} s "
        f"({report['sentences_per_second']:.1f} sentences/s), decoding: {report['decode']}",
        f"- checkpoint: `{report['checkpoint']}`" + (f", decoded by {report['decoder']}" if "decoder" in report else ""),
        *([f"- constraints (`{report['constraints']['file']}`): {report['constraints']['in_translations']} of "
           f"{report['constraints']['given']} in the translations"] if "constraints" in report else []),
        "",
        "## Configuration",
        "",
        "| key | value |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in config_summary.items()),
        "",
        "## Sample translations",
        "",
    ]
    step = max(1, len(sources) // max(num_samples, 1))
    for index in list(range(0, len(sources), step))[:num_samples]:
        lines += [
            f"**{index + 1}.**",
            f"- source: {sources[index]}",
            f"- reference: {references[index]}",
            f"- translation: {hypotheses[index]}",
            "",
        ]
    return "\n".join(lines)


def scored_on(report: dict) -> str:
    """The test set a report or comparison (significance.write) scored on: a split of the dataset,
    or a file of sources against one of references."""
    if "source_file" in report:
        return f"`{report['source_file']}` against `{report['reference_file']}`"
    return f"{report['split']} split of {report['dataset']}"
