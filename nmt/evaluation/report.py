"""Evaluation reports: report.json for machines, report.md for people, hypotheses.txt for sacreBLEU."""

from __future__ import annotations

import json
from pathlib import Path

from nmt import atomic
from nmt.config import Config, DataConfig
from nmt.evaluation.evaluator import Evaluation
from nmt.info import config_summary
from nmt.run_dir import RunDir


def directory(run: RunDir, test_set: str, ensemble: bool = False, constrained: bool = False,
              ctranslate2: bool = False) -> Path:
    """Where the report of test_set (a split, or Evaluator.name_of files) goes in run: eval/<test_set>/,
    with -ensemble, -constrained and -ctranslate2 after the name for those evaluations."""
    return run.eval_dir(test_set + ("-ensemble" if ensemble else "") + ("-constrained" if constrained else "")
                        + ("-ctranslate2" if ctranslate2 else ""))


def origin(data: DataConfig, files: tuple[Path, Path] | None) -> dict:
    """Where a report's or a comparison's test set came from: the dataset, or the two files."""
    if files is None:
        return {"dataset": data.dataset}
    return {"source_file": str(files[0].resolve()), "reference_file": str(files[1].resolve())}


def of_evaluation(config: Config, evaluation: Evaluation, checkpoint: Path, files: tuple[Path, Path] | None,
                  **extra) -> dict:
    """report.json's fields: the scores, the speed, the decoding settings, the test set and the
    checkpoint; then extra (the ensemble, the decoder, the constraints)."""
    return {
        **evaluation.scores,
        "num_sentences": len(evaluation.sources),
        "seconds": round(evaluation.seconds, 2),
        "sentences_per_second": round(evaluation.sentences_per_second, 2),
        "decode": {"method": "greedy" if config.decode.beam_size == 1 else "beam", **config.to_dict()["decode"]},
        "split": evaluation.split,
        **origin(config.data, files),
        "source_lang": config.data.source_lang,
        "target_lang": config.data.target_lang,
        "checkpoint": str(checkpoint),
        **extra,
    }


def write(directory: Path, report: dict, evaluation: Evaluation, config: Config) -> None:
    """Writes the three files of report (of_evaluation's, of evaluation) atomically into directory;
    report.md shows config's summary and config.eval.num_samples sample translations."""
    atomic.write_text(directory / "report.json", json.dumps(report, indent=2) + "\n")
    atomic.write_text(directory / "hypotheses.txt", "".join(line + "\n" for line in evaluation.hypotheses))
    atomic.write_text(directory / "report.md", _markdown(report, evaluation.sources, evaluation.references,
                                                        evaluation.hypotheses, config_summary(config),
                                                        config.eval.num_samples))


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
