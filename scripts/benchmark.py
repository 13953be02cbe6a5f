"""Benchmarks that measure the product as a user runs it, writing JSON and a Markdown table.

  scripts/benchmark.py quality --config configs/multi30k_en_de.yaml --minutes 40
      trains the config for a wall-clock budget, then evaluates the test split with greedy search
      and with beam 4; adds an entry (keyed by config file) to benchmarks/quality.json and
      rewrites benchmarks/quality.md from all entries.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from nmt import atomic, jobs
from nmt.training.trainer import train

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def main() -> None:
    """Benchmarks of nmt as a user runs it; each writes JSON and a Markdown table."""


def machine() -> dict:
    """CPU model, core count and accelerator, so that numbers are read against their hardware."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "gpu": ", ".join(gpus) or None,
            "tensorflow": tf.__version__}


@app.command()
def quality(
    config: Annotated[Path, typer.Option(help="Training config.")] = Path("configs/multi30k_en_de.yaml"),
    minutes: Annotated[float, typer.Option(help="Wall-clock training budget, validation included.")] = 40.0,
    run_dir: Annotated[Optional[str], typer.Option(help="Run directory (default: runs/benchmark_<config name>).")] = None,
    out: Annotated[Path, typer.Option(help="JSON file collecting the entries.")] = Path("benchmarks/quality.json"),
    fresh: Annotated[bool, typer.Option(help="Delete the run directory first instead of resuming it.")] = True,
) -> None:
    """Train for a time budget, then score the test split with greedy search and beam 4."""
    run_dir = run_dir or f"runs/benchmark_{config.stem}"
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    resolved, run = jobs.open_training_run(config, run_dir, [f"train.max_minutes={minutes}"])
    started = time.monotonic()
    summary = train(resolved, run)
    train_wall_minutes = (time.monotonic() - started) / 60
    decodes = {}
    for name, beam in (("greedy", 1), ("beam4", 4)):
        _, decode_config = jobs.load_run(str(run.path), [f"decode.beam_size={beam}"])
        decodes[name] = jobs.evaluate(run, decode_config, "test")
    data = resolved.data
    entry = {
        "config": str(config),
        "pair": f"{data.source_lang}-{data.target_lang}",
        "dataset": data.dataset,
        "test_split": data.test_split,
        "minutes_budget": minutes,
        "train_minutes": round(summary.minutes, 2),
        "train_wall_minutes": round(train_wall_minutes, 2),
        "steps": summary.steps,
        "epochs": summary.epochs_completed,
        "stopped_by": summary.stopped_by,
        "parameters": summary.parameters,
        "target_tokens_per_second": round(summary.target_tokens_per_second),
        "best_validation": summary.best_validation,
        "checkpoint": resolved.eval.checkpoint,
        "length_penalty": resolved.decode.length_penalty,
        **{f"{name}_{key}": report[key] for name, report in decodes.items()
           for key in ("bleu", "chrf", "length_ratio", "sentences_per_second")},
        "signature": decodes["beam4"]["signature"],
        "chrf_signature": decodes["beam4"]["chrf_signature"],
        "beam4_over_greedy_time": round(decodes["greedy"]["sentences_per_second"] / decodes["beam4"]["sentences_per_second"], 2),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    entries = json.loads(out.read_text()) if out.is_file() else {}
    entries[str(config)] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, json.dumps(entries, indent=2) + "\n")
    atomic.write_text(out.with_suffix(".md"), quality_table(entries))
    typer.echo(quality_table({str(config): entry}))


def quality_table(entries: dict) -> str:
    lines = [
        "| config | pair | test | minutes | steps | epochs | greedy BLEU | beam-4 BLEU | beam-4 chrF | "
        "greedy sent/s | beam-4 sent/s | machine |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in entries.values():
        hardware = entry["machine"]
        where = f"{hardware['cpu']} ({hardware['cores']} cores)" + (f", {hardware['gpu']}" if hardware["gpu"] else "")
        lines.append(
            f"| {entry['config']} | {entry['pair']} | {entry['test_split']} | {entry['train_minutes']:.1f} | "
            f"{entry['steps']} | {entry['epochs']} | {entry['greedy_bleu']:.2f} | {entry['beam4_bleu']:.2f} | "
            f"{entry['beam4_chrf']:.2f} | {entry['greedy_sentences_per_second']:.1f} | "
            f"{entry['beam4_sentences_per_second']:.1f} | {where} |"
        )
    signatures = sorted({entry["signature"] for entry in entries.values()})
    return "\n".join([*lines, "", *(f"BLEU signature: `{signature}`" for signature in signatures)]) + "\n"


if __name__ == "__main__":
    sys.exit(app())
