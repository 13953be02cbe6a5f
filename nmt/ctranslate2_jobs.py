"""The jobs that decode with a run's CTranslate2 export: `nmt translate`, `nmt score`, `nmt serve`
and `nmt evaluate` with --ctranslate2, as nmt.jobs does them with our search.

Apart from nmt.jobs, which imports TensorFlow, because none of them needs it: the export holds
the model, SentencePiece cuts the text and nmt.decoding.plan the batches and limits. So they start
in a fraction of a second instead of TensorFlow's seconds. (Only a split to evaluate on brings
TensorFlow in, through TFDS; a test set of files does not.)
"""

from __future__ import annotations

import functools
import sys
from http.server import HTTPServer
from pathlib import Path
from typing import Callable, Sequence

from nmt import atomic, progress
from nmt import run_dir as run_dir_lib
from nmt import server as server_lib
from nmt.config import Config, SplitName
from nmt.decoding.ctranslate2_translator import CTranslate2Translator
from nmt.decoding.plan import Hypothesis, score_rows
from nmt.errors import NmtError
from nmt.evaluation import report as report_lib
from nmt.evaluation.evaluator import Evaluator
from nmt.run_dir import RunDir


def translator(run_dir: str | None, overrides: list[str], n_best: int = 1, with_attention: bool = False,
               ensemble: Sequence[str] = (), constrained: bool = False) -> tuple[Callable[..., list[list[Hypothesis]]], list[str]]:
    """nmt.jobs.translator's function and checkpoints, by the run's CTranslate2 export of its
    eval.checkpoint; it takes the same arguments so that a caller picks either module, and
    refuses what only our search does (ensembles, attention, constraints)."""
    if ensemble or with_attention or constrained:
        raise NmtError("--ctranslate2 translates with one run's model, without constraints or alignments: "
                       "leave out the other --run-dir, --constraint and --align")
    engine, _, checkpoint = _loaded(run_dir, overrides)

    def translate(sentences: Sequence[str], on_batch=None, start: int = 0, prefixes: Sequence[str] | None = None,
                  constraints: None = None) -> list[list[Hypothesis]]:
        engine.start_at(start)
        return engine.translate_n_best(sentences, n_best, on_batch, prefixes)

    return translate, [str(checkpoint.resolve())]


def scorer(run_dir: str | None, overrides: list[str],
           ensemble: Sequence[str] = ()) -> tuple[Callable[..., list[tuple[float, list[str], list[float]]]], list[str]]:
    """nmt.jobs.scorer's function and checkpoints, by the run's CTranslate2 export."""
    if ensemble:
        raise NmtError("--ctranslate2 scores with one run's model: leave out the other --run-dir")
    engine, _, checkpoint = _loaded(run_dir, overrides)
    return functools.partial(score_rows, engine), [str(checkpoint.resolve())]


def server(run_dir: str | None, overrides: list[str], host: str, port: int) -> tuple[HTTPServer, dict]:
    """nmt.jobs.server's server and what it serves, by the run's CTranslate2 export: it
    translates (prefixes and n-best lists included) and scores, and refuses constraints, which
    need the run's own search."""
    engine, run, checkpoint = _loaded(run_dir, overrides)
    about = server_lib.about(run.path, checkpoint, engine.config.decode, engine.description)

    def translate(sentences: list[str], n_best: int, prefixes: list[str] | None, start: int,
                  constraints: list[list[str]] | None) -> list[list[tuple[str, float]]]:
        if constraints is not None and any(text.strip() for texts in constraints for text in texts):
            raise NmtError("this server decodes with CTranslate2, which places no constraints; serve without --ctranslate2")
        engine.start_at(start)
        return [[(hypothesis.text, hypothesis.score) for hypothesis in hypotheses]
                for hypotheses in engine.translate_n_best(sentences, n_best, prefixes=prefixes)]

    def score(sources: list[str], targets: list[str], start: int) -> list[tuple[float, list[str], list[float]]]:
        return score_rows(engine, sources, targets, start=start)

    return server_lib.make_server(translate, host, port, about, score), about


def evaluate(run: RunDir, config: Config, split: SplitName, ensemble: Sequence[RunDir] = (),
             constraint_file: Path | None = None, files: tuple[Path, Path] | None = None) -> dict:
    """nmt.jobs.evaluate by the run's CTranslate2 export of its eval.checkpoint: the split (or the
    test set of files) translated, scored and reported in eval/<split>-ctranslate2/, the report
    naming the decoder. It refuses what only our search does (ensembles, constraints)."""
    if ensemble or constraint_file is not None:
        raise NmtError("--ctranslate2 evaluates one run's model without constraints: leave out the other --run-dir "
                       "and --constraint-file")
    checkpoint = run.checkpoint_path(config.eval.checkpoint)
    directory = report_lib.directory(run, Evaluator.name_of(split, files), ctranslate2=True)
    atomic.check_writable(directory, "the evaluation report to", directory=True, fix=run_dir_lib.READ_ONLY_RUN)
    evaluator = Evaluator.of(config.data, split, files)
    decoder = CTranslate2Translator.from_run_dir(run, config, checkpoint)
    total = len(evaluator.sources)
    print(f"Translating {total} sentences of {evaluator.title} with {decoder.description}", file=sys.stderr)
    with progress.bar(total, "Translating") as advance:
        evaluation = evaluator.run(decoder, on_batch=advance)
    report = report_lib.of_evaluation(config, evaluation, checkpoint, files, decoder=decoder.description)
    report_lib.write(directory, report, evaluation, config)
    return report


def _loaded(run_dir: str | None, overrides: list[str]) -> tuple[CTranslate2Translator, RunDir, Path]:
    """The run's export as a translator with the run's decode settings (with overrides), the run,
    and the checkpoint (eval.checkpoint) whose weights it must hold."""
    run, config = run_dir_lib.load(run_dir, overrides)
    checkpoint = run.checkpoint_path(config.eval.checkpoint)
    return CTranslate2Translator.from_run_dir(run, config, checkpoint), run, checkpoint
