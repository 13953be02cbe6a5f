"""Is system A better than system B? sacreBLEU's paired bootstrap resampling (Koehn, 2004) on
BLEU and chrF, with 95% confidence intervals; written as compare.json and compare.md."""

from __future__ import annotations

import json
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from nmt import atomic
from nmt.evaluation import report as report_lib

SAMPLES = 1000


def paired_bootstrap(
    baseline: tuple[str, list[str]], system: tuple[str, list[str]], references: list[str]
) -> dict:
    """Scores both (name, hypotheses) systems; p-values say how often the system's advantage over
    the baseline vanishes in resampled test sets (sacreBLEU's seed 12345, so reruns agree)."""
    test = PairedTest(
        [baseline, system], {"BLEU": BLEU(), "chrF": CHRF()}, [references], test_type="bs", n_samples=SAMPLES
    )
    signatures, results = test()
    # sacreBLEU counts resampled differences strictly above the observed one, so two identical
    # outputs get its smallest p-value, 1/(samples+1), which reads as significant: there is no
    # difference to test, hence p = 1.
    identical = baseline[1] == system[1]
    comparison = {"baseline": baseline[0], "system": system[0], "bootstrap_samples": SAMPLES, "metrics": {}}
    for metric, signature in signatures.items():
        base, ours = results[metric]
        comparison["metrics"][metric] = {
            "signature": str(signature),
            "baseline": _rounded(base),
            "system": _rounded(ours),
            "difference": round(float(ours.score - base.score), 2),
            "p_value": 1.0 if identical else round(float(ours.p_value), 4),
        }
    return comparison


def _rounded(result) -> dict:
    # sacreBLEU returns numpy floats, which json cannot write.
    return {"score": round(float(result.score), 2), "mean": round(float(result.mean), 2), "ci95": round(float(result.ci), 2)}


def write(directory: Path, comparison: dict) -> None:
    atomic.write_text(directory / "compare.json", json.dumps(comparison, indent=2) + "\n")
    lines = [
        f"# {comparison['system']} vs {comparison['baseline']}: {report_lib.scored_on(comparison)}",
        "",
        f"Paired bootstrap resampling, {comparison['bootstrap_samples']} samples of {comparison['num_sentences']} sentences.",
        "",
        "| metric | baseline | system | difference | p-value |",
        "| --- | --- | --- | --- | --- |",
    ]
    for metric, values in comparison["metrics"].items():
        base, ours = values["baseline"], values["system"]
        lines.append(
            f"| {metric} | {base['score']:.2f} ({base['mean']:.2f} ± {base['ci95']:.2f}) "
            f"| {ours['score']:.2f} ({ours['mean']:.2f} ± {ours['ci95']:.2f}) "
            f"| {values['difference']:+.2f} | {values['p_value']:.4f} |"
        )
    lines += ["", *(f"- {metric} signature: `{values['signature']}`" for metric, values in comparison["metrics"].items())]
    atomic.write_text(directory / "compare.md", "\n".join(lines) + "\n")
