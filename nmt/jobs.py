"""The jobs behind the CLI commands, each composing data, training, decoding and evaluation."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import keras

from nmt import config as config_lib
from nmt import run_dir as run_dir_lib
from nmt.config import Config, SplitName
from nmt.data import sources
from nmt.decoding.translator import Translator
from nmt.errors import RunDirError
from nmt.evaluation import report as report_lib
from nmt.evaluation.scoring import score
from nmt.run_dir import RunDir
from nmt.training.trainer import TrainSummary, train


def open_training_run(config_path: Path, run_dir: str | None, overrides: list[str]) -> tuple[Config, RunDir]:
    """Loads the config and creates (or reopens, for resuming) its run directory."""
    config = config_lib.load(config_path, overrides)
    path = Path(run_dir or config.train.run_dir or Path("runs") / Path(config_path).stem)
    run = RunDir(path)
    if run.config_file.is_file():
        _check_resumable(run, config)
    path.mkdir(parents=True, exist_ok=True)
    run.save_config(config)
    run_dir_lib.mark_latest(run)
    return config, run


def _check_resumable(run: RunDir, config: Config) -> None:
    saved = config_lib.load(run.config_file).to_dict()
    new = config.to_dict()
    for section in run_dir_lib.FROZEN_SECTIONS:
        for key, value in new[section].items():
            if saved[section][key] != value:
                raise RunDirError(
                    f"{run.path} was trained with {section}.{key}={saved[section][key]!r}, this config says {value!r}; "
                    "use a new --run-dir, or the run's settings to resume it"
                )


def train_and_evaluate(config: Config, run: RunDir) -> tuple[TrainSummary, dict]:
    summary = train(config, run)
    return summary, evaluate(run, config, config.eval.split)


def load_run(run_dir: str | None, overrides: list[str]) -> tuple[RunDir, Config]:
    run = run_dir_lib.resolve(run_dir)
    return run, run.load_config(overrides)


def evaluate(run: RunDir, config: Config, split: SplitName) -> dict:
    """Translates a split, scores it with sacreBLEU and writes eval/<split>/report.{json,md}."""
    translator = Translator.from_run_dir(run, config)
    source_texts, references = sources.read_pairs(config.data, split)
    print(f"Translating {len(source_texts)} sentences of the {split} split", file=sys.stderr)
    bar = keras.utils.Progbar(len(source_texts), verbose=1 if sys.stderr.isatty() else 0, unit_name="sentence")
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        bar.update(done)

    started = time.monotonic()
    hypotheses = translator.translate(source_texts, on_batch=advance)
    seconds = time.monotonic() - started
    report = {
        **score(hypotheses, references),
        "num_sentences": len(source_texts),
        "seconds": round(seconds, 2),
        "sentences_per_second": round(len(source_texts) / max(seconds, 1e-9), 2),
        "decode": {"method": "greedy", **config.to_dict()["decode"]},
        "split": split,
        "dataset": config.data.dataset,
        "source_lang": config.data.source_lang,
        "target_lang": config.data.target_lang,
        "checkpoint": str(run.checkpoint_path(config.eval.checkpoint)),
    }
    report_lib.write(
        run.eval_dir(split), report, source_texts, references, hypotheses,
        _config_summary(config), config.eval.num_samples,
    )
    return report


def _config_summary(config: Config) -> dict:
    model = config.model
    return {
        "dataset": f"{config.data.dataset} ({config.data.source_lang}→{config.data.target_lang})",
        "tokenizer": f"SentencePiece {config.tokenizer.model_type}, {config.tokenizer.vocab_size} pieces, "
        + ("joint" if config.tokenizer.joint else "separate"),
        "model": f"{model.num_encoder_layers}+{model.num_decoder_layers} layers, hidden {model.hidden_dim}, "
        f"{model.num_heads} heads, FFN {model.intermediate_dim}, dropout {model.dropout}, {model.norm}-norm",
        "training": f"{config.train.batch_tokens}-token batches, peak lr {config.train.learning_rate}, "
        f"warmup {config.train.warmup_steps}, label smoothing {config.train.label_smoothing}",
        "checkpoint": config.eval.checkpoint,
    }


def translate(run_dir: str | None, overrides: list[str], sentences: list[str]) -> list[str]:
    run, config = load_run(run_dir, overrides)
    return Translator.from_run_dir(run, config).translate(sentences)
