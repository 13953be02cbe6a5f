"""What a run directory holds: its config, model size, training progress, best validation,
checkpoints, evaluations and export, read from its files (without loading TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

from nmt import checkpoints, export_manifest
from nmt.config import Config, ModelConfig
from nmt.data.corpus import corpora_of
from nmt.errors import RunDirError
from nmt.run_dir import RunDir, disk_bytes

CHECKPOINT_KINDS = ("last", "best", "averaged")


def describe(run: RunDir, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Everything `nmt info` shows, as JSON-ready data, of the run's config with overrides.

    Raises:
        RunDirError: run is not a training run.
        ConfigError: an override is invalid or touches what the trained model fixes.
    """
    config = run.load_config(overrides)
    found = {kind: checkpoints.all_checkpoints(getattr(run, f"{kind}_checkpoints")) for kind in CHECKPOINT_KINDS}
    newest = found["last"][-1] if found["last"] else None
    state = _state(newest) if newest is not None else {}
    train = config.train
    step, epoch, seconds = state.get("step", 0), state.get("epoch", 0), state.get("train_seconds", 0.0)
    progress = {
        "step": step,
        "epochs": epoch,
        "minutes": round(seconds / 60, 2),
        "stopped_by": train.stop_reason(step, epoch, seconds, state.get("validations_without_improvement", 0)) if newest else None,
    }
    best = state.get("best_validation")
    return {
        "run_dir": str(run.path),
        "config": {
            "dataset": config.data.dataset,
            "source_lang": config.data.source_lang,
            "target_lang": config.data.target_lang,
            "summary": config_summary(config),
            "model": {key: getattr(config.model, key) for key in (
                "num_encoder_layers", "num_decoder_layers", "hidden_dim", "num_heads", "intermediate_dim", "attention",
                "num_kv_heads")},
            "budget": {"epochs": train.epochs, "max_steps": train.max_steps, "max_minutes": train.max_minutes,
                       "early_stopping_patience": train.early_stopping_patience},
            "precision": train.precision,
            "ema_decay": train.ema_decay,
            "init_from": train.init_from,
            "update_vocab": config.tokenizer.update_vocab,
        },
        "parameters": state.get("parameters"),
        "progress": progress,
        "best_validation": None if best is None else {
            key: best[key] for key in ("step", "epoch", "validation_loss", "validation_bleu", "validation_chrf") if key in best
        },
        "checkpoints": {
            kind: [{"path": str(path), "step": checkpoints.step_of(path), "megabytes": round(disk_bytes(path) / 1e6, 2)}
                   for path in paths]
            for kind, paths in found.items()
        },
        "evaluations": _evaluations(run),
        "export": _export(run, config, run.export_dir),
        "ctranslate2": _export(run, config, run.ctranslate2_dir),
    }


def _export(run: RunDir, config: Config, directory: Path) -> dict | None:
    """The export in directory, if any: what it holds, whether it holds the weights the run
    translates with, and whether `nmt translate` takes it (or why not)."""
    manifest = export_manifest.read(directory)
    if manifest is None and not (directory / "saved_model.pb").is_file():
        return None
    found = {"path": str(directory), "megabytes": round(disk_bytes(directory) / 1e6, 2),
             "format": export_manifest.SAVEDMODEL if manifest is None else manifest.get("format", export_manifest.SAVEDMODEL),
             "checkpoint": None if manifest is None else manifest.get("checkpoint"),
             "constraints": bool(manifest and manifest.get("constraints")),
             "quantization": None if manifest is None else manifest.get("quantization")}
    if manifest is None:
        return {**found, "out_of_date": None, "used_by_translate": False,
                "passed_over_because": "it records no manifest (an export of an older version)"}
    try:
        # Checked against its checksums, as nmt translate checks it: a damaged newest is passed over there too.
        translated_with = run.checkpoint_path(config.eval.checkpoint)
    except RunDirError as error:
        return {**found, "out_of_date": str(error), "used_by_translate": False, "passed_over_because": str(error)}
    why = export_manifest.mismatch(manifest, translated_with, config)
    return {**found, "out_of_date": export_manifest.other_checkpoint(manifest, translated_with),
            "used_by_translate": why is None, "passed_over_because": why}


def _state(checkpoint: Path) -> dict:
    try:
        return json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunDirError(f"cannot read {checkpoint / 'state.json'}: {error}") from None


def _evaluations(run: RunDir) -> dict:
    """The latest evaluation of each split, by its report's directory: eval/<split>, and
    eval/<split>-ensemble for the run's ensemble's (the same split, not the run's own scores)."""
    found = {}
    for report in sorted(run.path.glob("eval/*/report.json")):
        data = json.loads(report.read_text(encoding="utf-8"))
        scores = found[report.parent.name] = {key: data.get(key) for key in (
            "bleu", "chrf", "ter", "signature", "chrf_signature", "ter_signature", "num_sentences", "checkpoint")}
        scores["beam_size"] = data["decode"]["beam_size"]
        # Reports written before the setting existed decoded without it.
        scores["no_repeat_ngram_size"] = data["decode"].get("no_repeat_ngram_size", 0)
        scores["decoder"] = data.get("decoder")  # set where the run's CTranslate2 export decoded
    return found


def config_summary(config: Config) -> dict:
    """One line each for the dataset, tokenizer, model, training and checkpoint (reports and
    `nmt info` show them)."""
    model = config.model
    languages = f"{config.data.source_lang}→{config.data.target_lang}"
    return {
        "dataset": f"{config.data.dataset} ({languages})" if not config.data.extra_train
        else f"{languages}: " + "; ".join(corpus.describe() for corpus in corpora_of(config.data)),
        "tokenizer": f"SentencePiece {config.tokenizer.model_type}, {config.tokenizer.vocab_size} pieces, "
        + ("joint" if config.tokenizer.joint else "separate"),
        "model": f"{model.num_encoder_layers}+{model.num_decoder_layers} layers, hidden {model.hidden_dim}, "
        f"{_attention_summary(model)}, FFN {model.intermediate_dim}, dropout {model.dropout}, {model.norm}-norm",
        "training": f"{config.train.batch_tokens}-token batches, peak lr {config.train.learning_rate}, "
        f"warmup {config.train.warmup_steps}, label smoothing {config.train.label_smoothing}"
        + (f", weights averaged (train.ema_decay {config.train.ema_decay})" if config.train.ema_decay else "")
        + (f", fine-tuned from {config.train.init_from}" if config.train.init_from else "")
        + (" (its vocabulary updated)" if config.tokenizer.update_vocab else ""),
        "checkpoint": config.eval.checkpoint,
    }


def _export_text(export: dict | None) -> str:
    if export is None:
        return "none"
    held = "" if export["checkpoint"] is None else f"{checkpoints.named(Path(export['checkpoint']))}, "
    if export["format"] == export_manifest.CTRANSLATE2:
        stale = f"; {export['out_of_date']}" if export["out_of_date"] else ""
        return f"{export['path']} ({held}{export['quantization']} weights, {export['megabytes']:.1f} MB){stale}"
    constraints = ", places constraints" if export["constraints"] else ""
    used = "nmt translate uses it" if export["used_by_translate"] else f"nmt translate passes over it: {export['passed_over_because']}"
    return f"{export['path']} ({held}{export['megabytes']:.1f} MB{constraints}); {used}"


def _attention_summary(model: ModelConfig) -> str:
    if model.attention == "multi_head":
        return f"{model.num_heads} heads"
    if model.attention == "multi_query":
        return f"{model.num_heads} heads sharing 1 key/value head"
    if model.attention == "grouped_query":
        return f"{model.num_heads} heads in {model.num_kv_heads} key/value groups"
    return f"{model.attention.replace('_', '-')} attention" + ("" if model.attention_projections else " over unprojected inputs")


def text(info: dict) -> str:
    """The human-readable form."""
    summary, progress, best = info["config"]["summary"], info["progress"], info["best_validation"]
    lines = [
        ("Run", info["run_dir"]),
        ("Data", f"{summary['dataset']}, {summary['tokenizer']}"),
        ("Model", summary["model"] + (f"; {info['parameters']:,} parameters" if info["parameters"] is not None else "")),
    ]
    if info["config"]["init_from"]:
        updated = " (its vocabulary updated)" if info["config"]["update_vocab"] else ""
        lines.append(("Fine-tuned", f"from {info['config']['init_from']}{updated}"))
    if not progress["step"]:
        lines.append(("Training", "not started (no checkpoint)"))
    else:
        stopped = f"stopped by {progress['stopped_by']}" if progress["stopped_by"] else "not finished (interrupted or running)"
        lines.append(("Training", f"step {progress['step']}, {progress['epochs']} epochs, {progress['minutes']:.1f} min; {stopped}"))
    if best is not None:
        bleu = f"BLEU {best['validation_bleu']:.2f}, " if "validation_bleu" in best else ""
        averaged = f", the weights' moving average (train.ema_decay {info['config']['ema_decay']})" if info["config"]["ema_decay"] else ""
        lines.append(("Best validation", f"{bleu}loss {best['validation_loss']:.3f} at step {best['step']} (epoch {best['epoch']}){averaged}"))
    for kind, saved in info["checkpoints"].items():
        if saved:
            listed = ", ".join(f"ckpt-{c['step']} ({c['megabytes']:.1f} MB)" for c in saved)
            lines.append((f"Checkpoints {kind}", listed))
    for split, scores in info["evaluations"].items():
        ter = f", TER {scores['ter']:.2f}" if scores.get("ter") is not None else ""  # reports before TER lack it
        repeats = f", no repeated {scores['no_repeat_ngram_size']}-grams" if scores["no_repeat_ngram_size"] else ""
        decoder = f", by {scores['decoder']}" if scores.get("decoder") else ""
        lines.append((f"Evaluation {split}", f"BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f}{ter} "
                                            f"(beam {scores['beam_size']}{repeats}, {scores['num_sentences']} sentences{decoder}) "
                                            f"{scores['signature']}"))
    lines.append(("Export", _export_text(info["export"])))
    if info["ctranslate2"] is not None:
        lines.append(("CTranslate2", _export_text(info["ctranslate2"])))
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in lines)
