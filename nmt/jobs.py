"""The jobs behind the CLI commands, each composing data, training, decoding and evaluation."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import json
import logging
import re
import shutil
import sys
import tempfile
from http.server import HTTPServer
from pathlib import Path
from typing import Callable, Iterator, Sequence

import keras
import numpy as np

from nmt import atomic, averaging, checkpoints, export_manifest, plots
from nmt import config as config_lib
from nmt import export as export_lib
from nmt import run_dir as run_dir_lib
from nmt import server as server_lib
from nmt.config import Config, DataConfig, SplitName
from nmt.data import check as data_check_lib
from nmt.data import sources, tokenizer
from nmt.decoding.plan import Hypothesis, check_sentences, score_rows
from nmt.decoding.translator import Translator, decoding_model, decoding_policy
from nmt.errors import NmtError, RunDirError
from nmt.evaluation import report as report_lib
from nmt.evaluation import significance
from nmt.evaluation.evaluator import Evaluator
from nmt.evaluation.scoring import constraints_held
from nmt.model.transformer import build_transformer
from nmt.run_dir import RunDir
from nmt.text_io import read_constraints
from nmt.training import autotune, distribute, finetune, sinks, trainer
from nmt.training.trainer import TrainSummary, ValidationScores, Validate

log = logging.getLogger("nmt")
# Pairs per split the data check at a run's first start reads (`nmt data check` reads all).
DATA_CHECK_AT_START = 100_000
# Validation sentences whose translations each validation shows (TensorBoard's text tab).
VALIDATION_SAMPLES = 4


@contextlib.contextmanager
def training_run(config_path: Path, run_dir: str | None, overrides: list[str]) -> Iterator[tuple[Config, RunDir]]:
    """Loads the config and creates (or reopens, for resuming) its run directory, which it holds
    as the run's one writer until the block ends."""
    config = config_lib.load(config_path, overrides)
    path = _run_path(config_path, run_dir, config)
    worker = distribute.worker_index(config.train)
    if worker:
        # Workers compute the same updates; only the first writes the run directory itself.
        path = path / f"worker-{worker}"
    run = RunDir(path)
    with run_dir_lib.writer_lock(run):
        if run.config_file.is_file():
            saved = config_lib.load(run.config_file)
            _check_resumable(run, saved, config)
            # A resumed run trains with what its first start decided for 'auto' settings.
            config = autotune.as_decided(config, saved)
        if config.train.init_from is not None and not checkpoints.all_checkpoints(run.last_checkpoints):
            finetune.Base.open(config)  # a base that does not fit is refused before the run records this config
        run.save_config(config)
        if not worker:
            run_dir_lib.mark_latest(run)
        yield config, run


def _run_path(config_path: Path, run_dir: str | None, config: Config) -> Path:
    """The run directory `nmt train --config config_path [--run-dir run_dir]` trains in."""
    return Path(run_dir or config.train.run_dir or Path("runs") / Path(config_path).stem)


def _has_matching_tokenizer(run: RunDir, config: Config) -> bool:
    """Whether run holds a tokenizer trained for config's data and tokenizer settings."""
    if not (run.config_file.is_file() and tokenizer.exists(run.tokenizer_dir, config.tokenizer.joint)):
        return False
    saved = config_lib.load(run.config_file)
    return (saved.data, saved.tokenizer) == (config.data, config.tokenizer)


def _check_resumable(run: RunDir, saved_config: Config, config: Config) -> None:
    saved, new = saved_config.to_dict(), config.to_dict()
    for section in run_dir_lib.FROZEN_SECTIONS:
        for key, value in new[section].items():
            if saved[section][key] != value:
                raise RunDirError(
                    f"{run.path} was trained with {section}.{key}={saved[section][key]!r}, this config says {value!r}; "
                    "use a new --run-dir, or the run's settings to resume it"
                )


def train(config: Config, run: RunDir, progress: bool = True) -> TrainSummary:
    """Trains (or resumes) the run, validating with translation scores when
    train.validation_bleu, reporting to the console (when progress), metrics.jsonl and
    TensorBoard (when train.tensorboard), and averaging the last train.average_last checkpoints
    at the end."""
    config = _decide(config, run)
    run.save_config(config)
    reports: list[sinks.Sink] = [sinks.Console(config.train.validation_beam_size)] if progress else []
    reports.append(sinks.MetricsFile(run.metrics_file))
    if config.train.tensorboard:
        reports.append(sinks.TensorBoard(run.tensorboard_dir))
    check = (lambda tokenizers: _check_at_start(config, run, tokenizers)) if config.train.data_check else None
    summary = trainer.train(config, run, _validator(config, run) if config.train.validation_bleu else None, reports,
                            check_data=check)
    found = checkpoints.all_checkpoints(run.last_checkpoints)
    if config.train.average_last and found:
        # A run stopped early by a budget may hold fewer: it averages what it has.
        chosen = found[-config.train.average_last:]
        if len(chosen) < config.train.average_last:
            log.info("averaging the %d checkpoints the run holds (train.average_last=%d)", len(chosen), config.train.average_last)
        path = averaging.average(run, _build_model(config, run), chosen)
        log.info("averaged the last %d checkpoints into %s", len(chosen), path)
    return summary


def _decide(config: Config, run: RunDir) -> Config:
    """config with its 'auto' settings decided (autotune), each decision logged with its reason."""
    config, decisions = autotune.decide(config, run)
    for decision in decisions:
        value = f"{decision.value:,}" if isinstance(decision.value, int) else decision.value
        log.info("%s: %s (%s)", decision.key, value, decision.reason)
    return config


def data_check(config_path: Path, run_dir: str | None, overrides: list[str], output: Path | None,
               write_clean: Path | None, max_pairs: int | None = None) -> tuple[dict, Path]:
    """Checks the config's data (every pair of every split, or max_pairs of each: see _read_splits);
    writes data_check.json and .md into output (default: the run directory) and, with
    write_clean, the cleaned corpus in the `local` layout. Returns the report and the directory
    it is in."""
    config = config_lib.load(config_path, overrides)
    run = RunDir(_run_path(config_path, run_dir, config))
    if write_clean is not None and max_pairs is not None:
        raise NmtError("--write-clean writes the whole corpus and --max-pairs checks part of it; drop --max-pairs")
    if write_clean is not None:
        for role in ("train", "validation", "test"):
            # The cleaned corpus names its files by split: <lang>.<split>.txt.
            name = sources.split_name(config.data, role)
            if not re.fullmatch(r"[\w-]+", name):
                raise NmtError(f"--write-clean writes whole splits; set data.{role}_split to a split's name (it is '{name}')")
    if write_clean is not None and write_clean.exists() and (not write_clean.is_dir() or any(write_clean.iterdir())):
        raise NmtError(f"{write_clean} is not empty; choose a new directory for --write-clean")
    splits = _read_splits(config, limit=max_pairs)
    with tempfile.TemporaryDirectory() as scratch:
        result = data_check_lib.check(splits, _check_tokenizers(config, run, Path(scratch)),
                                      config.data.max_length, data_check_lib.identify_languages(config.data.source_lang, config.data.target_lang))
    report = result.report()
    destination = output or run.path
    _write_data_check(report, destination, config)
    if write_clean is not None:
        train, held_out = splits[0], [split for split in splits if split.held_out]
        kept = result.kept_training_pairs()
        corpus = {sources.split_name(config.data, "train"): ([train.sources[i] for i in kept], [train.targets[i] for i in kept])}
        for role, split in zip(("validation", "test"), held_out):
            corpus[sources.split_name(config.data, role)] = (list(split.sources), list(split.targets))
        sources.write_local(write_clean, config.data.source_lang, config.data.target_lang, corpus)
        report["cleaned"] = {"directory": str(write_clean), "train_pairs": len(kept), "dropped": len(train) - len(kept)}
    return report, destination


def _read_splits(config: Config, limit: int | None) -> list[data_check_lib.Split]:
    """Every pair of each split and further training corpus (data.extra_train, after the held-out
    splits), or at most limit: the first ones, or where the pairs are in their
    files' order (local text, often one domain or source after another) every k-th one, so that
    the check sees the whole of the files rather than their beginning."""
    def read(name: str, data: DataConfig, role: SplitName) -> data_check_lib.Split:
        spread = limit is not None and sources.keeps_file_order(data)
        return data_check_lib.Split(name, *sources.read_pairs(data, role, limit=limit, spread=spread),
                                    step=sources.spread_step(data, role, limit) if spread else 1, held_out=role != "train")

    extra = [read(corpus.key.removeprefix("data."), corpus.data, "train") for corpus in sources.training_corpora(config.data)[1:]]
    return [read(role, config.data, role) for role in ("train", "validation", "test")] + extra


def _check_tokenizers(config: Config, run: RunDir, scratch: Path) -> tokenizer.Tokenizers:
    """The run's tokenizer when it was trained for this data and these settings; otherwise the one
    `nmt train` would make (trained, or a base run's with train.init_from), in scratch, for the
    check alone."""
    if _has_matching_tokenizer(run, config):
        return tokenizer.load(run.tokenizer_dir, config.tokenizer.joint)
    return finetune.prepare_tokenizers(config, scratch / "tokenizer")


def _check_at_start(config: Config, run: RunDir, tokenizers: tokenizer.Tokenizers) -> None:
    """The data check at a run's first start: a few lines of warnings, the report in the run."""
    if run.data_check_file.is_file():
        return
    splits = _read_splits(config, limit=DATA_CHECK_AT_START)
    languages = data_check_lib.identify_languages(config.data.source_lang, config.data.target_lang)
    report = data_check_lib.check(splits, tokenizers, config.data.max_length, languages).report()
    _write_data_check(report, run.path, config)
    problems = data_check_lib.warnings(report)
    where = run.path / "data_check.md"
    if problems:
        log.warning("data check: %s\n  %s\n  (examples: %s; nmt data check --write-clean DIR writes a cleaned corpus)",
                    f"{len(problems)} kinds of problem found", "\n  ".join(problems), where)
    else:
        log.info("data check: no problems found (%s)", where)


def _write_data_check(report: dict, directory: Path, config: Config) -> None:
    title = f"{config.data.dataset} {config.data.source_lang}-{config.data.target_lang}"
    try:
        atomic.write_text(directory / "data_check.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        atomic.write_text(directory / "data_check.md", data_check_lib.markdown(report, title) + "\n")
    except OSError as error:
        raise NmtError(f"cannot write the data check to {directory}: {error.strerror or error}") from None


def dry_run(config_path: Path, run_dir: str | None, overrides: list[str]) -> tuple[dict, Path]:
    """trainer.plan for the config, in a scratch directory: the run directory is neither created
    nor changed (its tokenizer is used when it was trained for this data and these settings).
    Returns the plan and the run directory training would use."""
    config = config_lib.load(config_path, overrides)
    path = _run_path(config_path, run_dir, config)
    run = RunDir(path)
    with tempfile.TemporaryDirectory() as scratch:
        scratch_run = RunDir(Path(scratch))
        if _has_matching_tokenizer(run, config):
            shutil.copytree(run.tokenizer_dir, scratch_run.tokenizer_dir)
        if run.config_file.is_file():
            config = autotune.as_decided(config, config_lib.load(run.config_file))
        return trainer.plan(_decide(config, scratch_run), scratch_run), path


def train_and_evaluate(config: Config, run: RunDir) -> tuple[TrainSummary, dict]:
    summary = train(config, run)
    return summary, evaluate(run, config, config.eval.split)


def validation_decode(config: Config) -> Config:
    """The config validation BLEU decodes with: config.decode with train.validation_beam_size, and
    search rather than sampling. `nmt evaluate --split validation` with these settings reproduces
    the logged BLEU."""
    return dataclasses.replace(
        config, decode=dataclasses.replace(config.decode, beam_size=config.train.validation_beam_size, sampling="none")
    )


def _validator(config: Config, run: RunDir) -> Validate:
    """BLEU and chrF of the validation split, as `nmt evaluate` computes them. Built on first use:
    the trainer must set up TensorFlow's devices before anything reads data."""
    translator: Translator | None = None
    evaluator: Evaluator | None = None

    def validate(model: keras.Model) -> ValidationScores:
        nonlocal translator, evaluator
        if translator is None:
            evaluator = Evaluator.of_split(config.data, "validation")
            tokenizers = tokenizer.load(run.tokenizer_dir, config.tokenizer.joint)
            decode_config = validation_decode(config)
            decode_model = model
            if model.dtype_policy.name != decoding_policy(decode_config.decode) or config.train.distribute != "none":
                # `nmt evaluate` decodes in decode.precision on one device; so must validation to
                # equal it: such a copy of the model gets the trained weights before each validation.
                decode_model = decoding_model(decode_config, tokenizers)
            translator = Translator(decode_config, decode_model, tokenizers)
        if translator.model is not model:
            translator.model.set_weights(model.get_weights())
        evaluation = evaluator.run(translator)
        samples = zip(evaluation.sources, evaluation.references, evaluation.hypotheses)
        return ValidationScores(
            {"validation_bleu": evaluation.scores["bleu"], "validation_chrf": evaluation.scores["chrf"],
             "validation_decode_seconds": round(evaluation.seconds, 2)},
            tuple(sinks.Sample(*sample) for _, sample in zip(range(VALIDATION_SAMPLES), samples)),
        )

    return validate


def _build_model(config: Config, run: RunDir) -> keras.Model:
    tokenizers = tokenizer.load(run.tokenizer_dir, config.tokenizer.joint)
    return build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)


def evaluate(run: RunDir, config: Config, split: SplitName, ensemble: Sequence[RunDir] = (),
             constraint_file: Path | None = None, files: tuple[Path, Path] | None = None) -> dict:
    """Translates a split, scores it with sacreBLEU and writes eval/<split>/report.{json,md}; or
    instead of the split, files: a file of sources and one of references, line for line, whose
    report goes to eval/<source file's name>/. With ensemble (other runs), the runs decode as one
    ensemble and the report goes to eval/<split>-ensemble/. With constraint_file (a line per
    sentence of the split, its texts separated by tabs), each translation must contain its line's
    texts (lexically constrained decoding); the report, which counts the texts the translations
    hold, goes to eval/<split>-constrained/ (or <split>-ensemble-constrained/).
    (nmt.ctranslate2_jobs.evaluate: the same by the run's CTranslate2 export.)"""
    runs, found = _members(run, config, [member.path for member in ensemble])
    directory = report_lib.directory(run, Evaluator.name_of(split, files), bool(ensemble), constraint_file is not None)
    atomic.check_writable(directory, "the evaluation report to", directory=True, fix=run_dir_lib.READ_ONLY_RUN)
    evaluator = Evaluator.of(config.data, split, files)
    constraints = None
    if constraint_file is not None:
        constraints = read_constraints(constraint_file, "--constraint-file", len(evaluator.sources), evaluator.title)
    evaluation = _evaluate_with(_loaded(runs, found, config), evaluator, " + ".join(str(member.path) for member in runs),
                                constraints)
    report = report_lib.of_evaluation(
        config, evaluation, found[0], files,
        **({"ensemble": [str(member.path) for member in (run, *ensemble)]} if ensemble else {}),
        **({"constraints": {"file": str(constraint_file), "given": sum(map(len, constraints)),
                            "in_translations": constraints_held(constraints, evaluation.hypotheses)}}
           if constraints is not None else {}),
    )
    report_lib.write(directory, report, evaluation, config)
    return report


def compare(run: RunDir, config: Config, other_dir: str, overrides: list[str], split: SplitName,
            files: tuple[Path, Path] | None = None) -> dict:
    """Scores run and another run on run's split (or the test set of files, as evaluate's) and
    tests the difference with sacreBLEU's paired bootstrap; writes eval/<split>/compare.{json,md}
    (eval/<source file's name>/) in run. The same overrides apply to both. The
    other run may have been trained on other data (a base model against its fine-tuned copy, on
    the new domain's test set), but not for other languages."""
    other = run_dir_lib.resolve(other_dir)
    other_config = other.load_config(overrides)
    for key in ("source_lang", "target_lang"):
        if getattr(config.data, key) != getattr(other_config.data, key):
            raise RunDirError(
                f"cannot compare {run.path} and {other.path}: data.{key} differs "
                f"({getattr(config.data, key)!r} vs {getattr(other_config.data, key)!r}); both must translate the same languages"
            )
    directory = run.eval_dir(Evaluator.name_of(split, files))
    atomic.check_writable(directory, "the comparison to", directory=True, fix=run_dir_lib.READ_ONLY_RUN)
    evaluator = Evaluator.of(config.data, split, files)
    ours = _evaluate_run(run, config, evaluator)
    theirs = _evaluate_run(other, other_config, evaluator)
    comparison = significance.paired_bootstrap(
        baseline=(str(other.path), theirs.hypotheses), system=(str(run.path), ours.hypotheses),
        references=evaluator.references,
    )
    comparison.update(split=evaluator.name, **report_lib.origin(config.data, files), num_sentences=len(evaluator.sources))
    significance.write(directory, comparison)
    return comparison


def _evaluate_run(run: RunDir, config: Config, evaluator: Evaluator, checkpoint: Path | None = None):
    return _evaluate_with(Translator.from_run_dir(run, config, checkpoint), evaluator, str(run.path))


def _evaluate_with(translator: Translator, evaluator: Evaluator, name: str,
                   constraints: Sequence[Sequence[str]] | None = None):
    total = len(evaluator.sources)
    print(f"Translating {total} sentences of {evaluator.title} with {name}", file=sys.stderr)
    return evaluator.run(translator, on_batch=progress_bar(total), constraints=constraints)


def average(run_dir: str | None, last: int | None, paths: list[Path]) -> Path:
    """Averages the run's last N checkpoints, or the given ones, into checkpoints/averaged."""
    run, config = run_dir_lib.load(run_dir, [])
    if (last is None) == (not paths):
        raise RunDirError("pass either --last N (the run's newest N checkpoints) or --checkpoint PATH (repeatable)")
    chosen = averaging.last_checkpoints(run, last) if last is not None else [Path(path) for path in paths]
    return averaging.average(run, _build_model(config, run), chosen)


def translator(run_dir: str | None, overrides: list[str], n_best: int = 1, with_attention: bool = False,
               ensemble: Sequence[str] = (), constrained: bool = False) -> tuple[Callable[..., list[list[Hypothesis]]], list[str]]:
    """A function from sentences (and optionally on_batch(sentences done), a progress callback,
    start, the number of the first in the whole input: see Translator.start_at, prefixes, one
    per sentence, and when constrained, constraints, a list per sentence) to their n_best
    translations each, best first (the best with its attention weights when with_attention), by
    the run's eval.checkpoint with its decode settings, or by the runs of ensemble (other run
    directories) and the run as one; and the checkpoints it translates with.
    (nmt.ctranslate2_jobs.translator: the same by the run's CTranslate2 export.)"""
    run, config = run_dir_lib.load(run_dir, overrides)
    if ensemble and with_attention:
        raise NmtError("attention and alignments come from one model: pass one --run-dir")
    runs, found = _members(run, config, ensemble)
    used = [str(path.resolve()) for path in found]
    if not ensemble and n_best == 1 and not with_attention and not constrained:
        # An export of these weights with these decode settings already holds the traced search:
        # loading it skips building the model and tracing, most of a short command's time.
        exported = export_lib.load_matching(run.export_dir, found[0], config)
        if exported is not None:
            def translate_exported(sentences: Sequence[str], on_batch=None, start: int = 0,
                                   prefixes: Sequence[str] | None = None, constraints: None = None) -> list[list[Hypothesis]]:
                # constraints: always None here (a constrained translator does not take the export).
                check_sentences(sentences, prefixes)
                return [[Hypothesis(text, score)] for text, score in exported(sentences, on_batch, prefixes, start)]

            return translate_exported, used
    model = _loaded(runs, found, config)

    def translate(sentences: Sequence[str], on_batch=None, start: int = 0, prefixes: Sequence[str] | None = None,
                  constraints: Sequence[Sequence[str]] | None = None) -> list[list[Hypothesis]]:
        model.start_at(start)
        return model.translate_n_best(sentences, n_best, on_batch, with_attention, prefixes, constraints)

    return translate, used


def scorer(run_dir: str | None, overrides: list[str],
           ensemble: Sequence[str] = ()) -> tuple[Callable[..., list[tuple[float, list[str], list[float]]]], list[str]]:
    """A function from sources and targets (and optionally on_batch, a progress callback, and
    start, the number of the first pair in the whole input: see Translator.start_at) to the
    model's (score, pieces, log-probabilities) of each target (Translator.score), by the run's
    eval.checkpoint with its decode settings (the length penalty), or by the runs of ensemble
    (other run directories) and the run as one; and the checkpoints it scores with.
    (nmt.ctranslate2_jobs.scorer: the same by the run's CTranslate2 export.)"""
    run, config = run_dir_lib.load(run_dir, overrides)
    runs, found = _members(run, config, ensemble)
    return functools.partial(score_rows, _loaded(runs, found, config)), [str(path.resolve()) for path in found]


def _members(run: RunDir, config: Config, ensemble: Sequence[str | Path]) -> tuple[list[RunDir], list[Path]]:
    """The run and those of ensemble (other run directories), and the checkpoint
    config.eval.checkpoint names in each, found once: finding one checks its files."""
    runs = [run, *(run_dir_lib.resolve(other) for other in ensemble)]
    return runs, [member.checkpoint_path(config.eval.checkpoint) for member in runs]


def _loaded(runs: Sequence[RunDir], found: Sequence[Path], config: Config) -> Translator:
    """The Translator of _members' runs and checkpoints: one model, or an ensemble of several."""
    if len(runs) > 1:
        return Translator.ensemble(runs, config, found)
    return Translator.from_run_dir(runs[0], config, found[0])


def progress_bar(total: int) -> Callable[[int], None]:
    """A progress bar of total sentences on stderr when it is a terminal; returns what to call with
    the number of sentences each step completes."""
    bar = keras.utils.Progbar(total, verbose=1 if sys.stderr.isatty() else 0, unit_name="sentence")
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        bar.update(done)

    return advance


def server(run_dir: str | None, overrides: list[str], host: str, port: int) -> tuple[HTTPServer, dict]:
    """An HTTP server (bound, not yet serving) translating with the run's model (eval.checkpoint,
    decode settings with overrides), and what it serves. The search is traced before it returns,
    so the first request waits no longer than the others, those following prefixes and placing
    constraints included. (nmt.ctranslate2_jobs.server: the same by the run's CTranslate2 export.)"""
    run, config = run_dir_lib.load(run_dir, overrides)
    checkpoint = run.checkpoint_path(config.eval.checkpoint)
    translator = Translator.from_run_dir(run, config, checkpoint)
    translator.warm_up()

    def translate(sentences: list[str], n_best: int, prefixes: list[str] | None, start: int,
                  constraints: list[list[str]] | None) -> list[list[tuple[str, float]]]:
        translator.start_at(start)
        return [[(hypothesis.text, hypothesis.score) for hypothesis in hypotheses]
                for hypotheses in translator.translate_n_best(sentences, n_best, prefixes=prefixes, constraints=constraints)]

    def score(sources: list[str], targets: list[str], start: int) -> list[tuple[float, list[str], list[float]]]:
        return score_rows(translator, sources, targets, start=start)

    about = server_lib.about(run.path, checkpoint, config.decode)
    return server_lib.make_server(translate, host, port, about, score), about


def export(run_dir: str | None, overrides: list[str], output: Path | None, force: bool, constraints: bool = False,
           export_format: str = export_manifest.SAVEDMODEL, quantization: str | None = None) -> tuple[Path, dict]:
    """Writes the run's model (eval.checkpoint weights) as a SavedModel with its decode settings
    (with overrides) into output (default: <run dir>/export), with the signature that places
    constraints where asked, or as a CTranslate2 model with its weights in quantization (default:
    float32) into output (default: <run dir>/ctranslate2); returns it and what it holds."""
    ctranslate2 = export_format == export_manifest.CTRANSLATE2
    if ctranslate2 and constraints:
        raise NmtError("--constraints adds a signature to a SavedModel; a CTranslate2 model places no constraints")
    if quantization is not None and not ctranslate2:
        raise NmtError("--quantization is for --format ctranslate2; a SavedModel decodes in decode.precision "
                       "(e.g. --set decode.precision=bfloat16)")
    if ctranslate2 and importlib.util.find_spec("ctranslate2") is None:
        raise NmtError("--format ctranslate2 needs the ctranslate2 package: pip install 'nmt[ctranslate2]'")
    run, config = run_dir_lib.load(run_dir, overrides)
    if ctranslate2:
        from nmt import export_ctranslate2

        quantization = quantization or "float32"
        export_ctranslate2.check(config.model.attention, quantization)
        # The weights go in whole, stored as quantization says: not rounded as decode.precision
        # would round them for our own decoding.
        config = dataclasses.replace(config, decode=dataclasses.replace(config.decode, precision="float32"))
    output = output or (run.ctranslate2_dir if ctranslate2 else run.export_dir)
    checkpoint = run.checkpoint_path(config.eval.checkpoint)  # before any work: a run without one is refused
    atomic.check_writable(output, "the export to", directory=True)
    translator = Translator.from_run_dir(run, config, checkpoint)
    found = {"checkpoint": str(checkpoint), "format": export_format, "beam_size": config.decode.beam_size,
             "max_length": config.model.max_length}
    if ctranslate2:
        files = tokenizer.model_files(run.tokenizer_dir, config.tokenizer.joint)
        path = export_ctranslate2.export(config, translator.model, files, checkpoint, output, force, quantization)
        found["quantization"] = quantization
    else:
        path = export_lib.export(config, translator.model, translator.tokenizers, checkpoint, output, force, constraints)
    return path, {**found, "megabytes": round(run_dir_lib.disk_bytes(path) / 1e6, 1)}


def draw_attention(run_dir: str | None, overrides: list[str], sentence: str, output: Path, include_self: bool,
                   softmax_demo: bool, prefix: str | None = None) -> tuple[str, dict]:
    """Translates one sentence (its translation beginning with prefix, where given) and draws its
    attention (or, with softmax_demo, the softmax of one of its cross-attention rows unscaled and
    scaled) into the PNG output; returns the translation and what plots drew."""
    if not sentence.strip():
        raise NmtError('empty sentence: pass text to translate and look at, e.g. nmt attention "A dog runs."')
    if output.suffix.lower() != ".png" or output.is_dir():
        raise NmtError(f"--output must name a .png file; got {output}")
    run, config = run_dir_lib.load(run_dir, overrides)
    translator = Translator.from_run_dir(run, config)
    best = translator.translate_n_best([sentence], 1, with_attention=True, prefixes=[prefix] if prefix else None)[0][0]
    try:
        return best.text, _draw(translator, best, output, include_self, softmax_demo)
    except OSError as error:
        raise NmtError(f"cannot write {output}: {error.strerror}") from None


def _draw(translator: Translator, best: Hypothesis, output: Path, include_self: bool, softmax_demo: bool) -> dict:
    if not softmax_demo:
        return plots.attention_figure(best.attention, output, include_self)
    layer = translator.model.decoder_layers[-1].cross_attention
    if layer.variant == "additive":
        raise NmtError("--softmax-demo shows dot-product logits; this run's attention is additive (a feed-forward score)")
    raw = best.attention.logits["cross"][-1] / layer.logit_scale  # (heads, target, source): q·k unscaled
    deviations = raw.std(axis=-1)
    # The row of typical spread: the median deviation over heads and output steps.
    head, row = np.unravel_index(np.argsort(deviations, axis=None)[deviations.size // 2], deviations.shape)
    return plots.softmax_demo_figure(raw[head, row], best.attention.source_pieces, layer.score_dim,
                                     best.attention.target_pieces[row], output)
