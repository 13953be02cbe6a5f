"""The `nmt` command line: train, data check, translate, serve, attention, evaluate, average, export, info. A thin shell over nmt.jobs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional, Sequence

import typer

from nmt.errors import NmtError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train, run and evaluate Transformer translation models from a YAML config.",
)

RunDirOption = Annotated[
    Optional[str], typer.Option("--run-dir", help="Run directory (default: the latest training run, runs/latest).")
]
RunDirsOption = Annotated[
    Optional[list[str]], typer.Option(
        "--run-dir", help="Run directory (default: the latest training run, runs/latest); repeat it to decode with an "
                          "ensemble of runs (the mean of their log-probabilities at each step).")
]
SetOption = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override a config value: key.path=value (repeatable).")
]


class ExportFormat(str, Enum):
    """What nmt export writes: export_manifest's SAVEDMODEL and CTRANSLATE2, written out here so
    that parsing the command line imports nothing of the package's own."""

    savedmodel = "savedmodel"
    ctranslate2 = "ctranslate2"


CTranslate2Option = Annotated[bool, typer.Option(
    "--ctranslate2", help="Decode with the run's CTranslate2 export (nmt export --format ctranslate2) instead of the "
                          "model's own search: the same weights, CTranslate2's beam search (its length penalty and scores "
                          "differ from ours).")]
ServerOption = Annotated[
    Optional[str], typer.Option("--server", envvar="NMT_SERVER", help="Ask the server at this URL (started with nmt "
                                "serve) instead of loading the model here: no start-up time.")
]


_verbose = False


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", help="Show TensorFlow's start-up lines and library logs.")] = False,
) -> None:
    global _verbose
    _verbose = verbose


@contextlib.contextmanager
def _user_errors(tensorflow: bool = True, run_dirs: Sequence[str | None] = (),
                 outputs: Sequence[tuple[str, Path | None, bool]] = ()) -> Iterator[None]:
    """Turns the errors users can fix into one red line on stderr and a non-zero exit.
    tensorflow: the command needs TensorFlow, which is then imported first, quietly.
    run_dirs: the run directories the command reads (None: the latest run), found before that
    import (~5 s), so that a mistyped one fails at once.
    outputs: (option, path or None, whether it names a directory) the command will write, checked
    before that import too: a translation of hours must not end in a path it cannot write."""
    try:
        if run_dirs:
            from nmt import run_dir as run_dir_lib

            for run_dir in run_dirs:
                run_dir_lib.resolve(run_dir)
        if outputs:
            from nmt import atomic

            for option, path, directory in outputs:
                if path is not None:
                    atomic.check_writable(path, option, directory)
        _quiet_libraries(tensorflow)
        yield
    except NmtError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.RED, err=True)
        raise typer.Exit(130) from None


def _quiet_libraries(tensorflow: bool) -> None:
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING)
    logging.getLogger("nmt").setLevel(logging.INFO)
    if _verbose:
        return
    logging.getLogger("absl").setLevel(logging.ERROR)
    if not sys.stderr.isatty():
        # TFDS's progress bars (preparing a dataset) would fill a log with carriage-return lines;
        # ours (Keras's) print nothing there either. tqdm reads this when it is imported.
        os.environ.setdefault("TQDM_DISABLE", "1")
    # 3 hides TensorFlow's C++ errors too: on a machine without a GPU it logs a failed cuInit as an
    # error. Ours are Python exceptions and logs, which still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if tensorflow and "tensorflow" not in sys.modules:
        # Loading its libraries prints "Could not find cuda drivers" and absl's warning about
        # logging before InitializeLog straight to file descriptor 2, whatever the log level.
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file.")],
    run_dir: Annotated[Optional[str], typer.Option(
        "--run-dir", help="Run directory to create or resume (default: train.run_dir, else runs/<config name>).")] = None,
    set_: SetOption = None,
    init_from: Annotated[Optional[str], typer.Option(
        "--init-from", help="Start from this run's weights and tokenizer (or one of its checkpoints): fine-tuning on "
                            "the config's data (train.init_from). Add tokenizer.update_vocab=true for new characters.")] = None,
    resume_optimizer: Annotated[bool, typer.Option(
        "--resume-optimizer", help="With --init-from: continue the base run's optimizer state, step and "
                                   "learning-rate schedule instead of starting them afresh.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan (data, batches, precision, steps per epoch, time per step, per epoch and in all) "
                          "from a few timed steps, without training or writing the run.")] = False,
) -> None:
    """Train a model (or resume the run), then evaluate it on the eval split."""
    # Quoted: a path is a string whatever it looks like to YAML (1990, on, a: b).
    overrides = [*(set_ or []), *([f"train.init_from={json.dumps(init_from)}"] if init_from else []),
                 *(["train.resume_optimizer=true"] if resume_optimizer else [])]
    with _user_errors():
        from nmt import jobs

        if dry_run:
            plan, path = jobs.dry_run(config, run_dir, overrides)
            _print_plan(plan, path)
            return

        with jobs.training_run(config, run_dir, overrides) as (resolved, run):
            typer.echo(f"Run directory: {run.path}")
            summary, report = jobs.train_and_evaluate(resolved, run)
        typer.echo(
            f"Trained {summary.steps} steps ({summary.epochs_completed} epochs, {summary.minutes:.1f} min, "
            f"stopped by {summary.stopped_by}), {summary.parameters:,} parameters, "
            f"{summary.target_tokens_per_second:,.0f} target tokens/s"
        )
        best = summary.best_validation
        if best is not None:
            bleu = f"BLEU {best['validation_bleu']:.2f}, " if "validation_bleu" in best else ""
            typer.echo(f"Best validation: {bleu}loss {best['validation_loss']:.3f} at step {best['step']} (epoch {best['epoch']})")
        _print_scores(report, run.eval_dir(report["split"]))


@app.command()
def translate(
    sentences: Annotated[Optional[list[str]], typer.Argument(help="Sentences to translate.")] = None,
    run_dir: RunDirsOption = None,
    input_file: Annotated[Optional[Path], typer.Option("--input", "-i", help="File with one sentence per line.")] = None,
    output_file: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write translations here (default: stdout); run "
                                                                   "again, an interrupted translation goes on where it stopped.")] = None,
    n_best: Annotated[
        int, typer.Option("--n-best", min=1, help="Print the N best translations per sentence as 'LINE ||| TEXT ||| SCORE' (N <= decode.beam_size).")
    ] = 1,
    align: Annotated[
        bool, typer.Option("--align", help="Print 'LINE ||| TEXT ||| ALIGNMENT': for each output word j, 'i-j' with i the source "
                           "word it attends to most (last layer's cross-attention, mean of heads).")
    ] = False,
    prefix: Annotated[Optional[str], typer.Option("--prefix", help="Begin every translation with this text; the search "
                                                  "goes on from it.")] = None,
    prefix_file: Annotated[Optional[Path], typer.Option("--prefix-file", help="File of prefixes, one per input line (an "
                                                        "empty line: none): each translation begins with its own.")] = None,
    constraint: Annotated[Optional[list[str]], typer.Option("--constraint", help="Text every translation must contain, "
                                                            "e.g. a term (repeatable).")] = None,
    constraint_file: Annotated[Optional[Path], typer.Option("--constraint-file", help="File of constraints, one line per input "
                                                            "line, its texts separated by tabs (an empty line: none).")] = None,
    server: ServerOption = None,
    ctranslate2: CTranslate2Option = False,
    set_: SetOption = None,
) -> None:
    """Translate sentences given as arguments, in a file, or on stdin (one per line).

    At a terminal without any of them, it translates sentences as you type them."""
    with _user_errors(tensorflow=server is None and not ctranslate2, run_dirs=(run_dir or [None]) if server is None else (),
                      outputs=[("--output", output_file, False)]):
        from nmt.text_io import decode_lines, fingerprint, interactive, read_lines, write_in_chunks

        if align and n_best != 1:
            raise NmtError("--align aligns the best translation only; leave out --n-best")
        if server is not None and (align or set_ or run_dir or ctranslate2):
            raise NmtError("--align, --set, --run-dir and --ctranslate2 apply to a model loaded here; with --server the "
                           "server's run and settings apply")
        first_run, *ensemble = run_dir or [None]
        if align and ensemble:
            raise NmtError("--align shows one model's attention: pass one --run-dir")

        if sentences:
            if not all(sentence.strip() for sentence in sentences):
                raise NmtError("empty sentence argument; pass text to translate, e.g. nmt translate \"A dog runs.\"")
            lines = list(sentences)
        elif input_file is not None:
            lines = read_lines(input_file, "--input")
        elif not sys.stdin.isatty():
            lines = decode_lines(sys.stdin.buffer.read(), "stdin")
        elif output_file is not None:
            raise NmtError("nothing to translate into --output: pass sentences, --input FILE, or text on stdin")
        else:
            lines = None  # a terminal: sentences as they are typed
        prefixes = _prefixes(prefix, prefix_file, lines)
        constraints = _constraints(constraint, constraint_file, lines)
        # What a resumed --output must have been written with: the same checkpoints or server and settings.
        settings = {"set": set_ or [], "n_best": n_best, "align": align, "server": server}
        if ctranslate2:  # only then: a translation begun before the option existed still resumes
            settings["ctranslate2"] = True
        if lines is not None and (prefix or prefix_file):
            settings["prefixes"] = fingerprint(prefixes(len(lines), 0))
        if lines is not None and (constraint or constraint_file):
            settings["constraints"] = fingerprint(["\t".join(texts) for texts in constraints(len(lines), 0)])
        # What the progress bar, once started (`with progress as advance` below), is advanced with.
        advance, progress = None, contextlib.nullcontext()
        if server is not None:
            from nmt import server as server_lib

            if output_file is not None:
                settings["served"] = server_lib.health(server)
            if lines is not None and not sentences:
                progress = _progress(len(lines), "Translating", tensorflow=False)

            def render(chunk: Sequence[str], start: int) -> str:
                return _rendered(server_lib.request(server, list(chunk), n_best, prefixes=prefixes(len(chunk), start),
                                                    on_part=advance, start=start, constraints=constraints(len(chunk), start)),
                                 start, n_best)
        else:
            jobs = _decoding_jobs(ctranslate2)
            if lines is None:
                typer.echo("Loading the model...", err=True)
            translate_lines, settings["checkpoints"] = jobs.translator(first_run, set_ or [], n_best, align, ensemble,
                                                                       constrained=bool(constraint or constraint_file))
            if lines is None:
                # Traces the search now, so that the first sentence typed is not slow.
                translate_lines(["warm up"], prefixes=prefixes(1, 0), constraints=constraints(1, 0))
            elif not sentences:
                progress = _progress(len(lines), "Translating", not ctranslate2)

            def render(chunk: Sequence[str], start: int) -> str:
                translations = translate_lines(chunk, advance, start, prefixes(len(chunk), start), constraints(len(chunk), start))
                if align:
                    return _aligned(translations, start)
                return _rendered([[(hypothesis.text, hypothesis.score) for hypothesis in hypotheses]
                                  for hypotheses in translations], start, n_best)

        if lines is None:
            interactive(render)
        else:
            with progress as advance:
                write_in_chunks(lines, render, output_file, settings, resumed=advance)


def _decoding_jobs(ctranslate2: bool):
    """The module whose translator, scorer, server and evaluate decode: nmt.jobs with our search,
    or with ctranslate2 nmt.ctranslate2_jobs, which imports no TensorFlow."""
    if ctranslate2:
        from nmt import ctranslate2_jobs

        return ctranslate2_jobs
    from nmt import jobs

    return jobs


def _progress(total: int, label: str, tensorflow: bool) -> contextlib.AbstractContextManager[Callable[[int], None] | None]:
    """A progress bar of total sentences on stderr when it is a terminal: with tensorflow Keras's
    (jobs.progress_bar, as training and evaluation show), else nmt.progress's, for work that spares
    TensorFlow's import (a server's, CTranslate2's). Entered, it gives what to call with each
    part's number of sentences (None where stderr is not a terminal)."""
    if tensorflow:
        from nmt import jobs

        return contextlib.nullcontext(jobs.progress_bar(total))
    from nmt import progress

    return progress.bar(total, label)


def _prefixes(prefix: str | None, prefix_file: Path | None, lines: list[str] | None) -> Callable[[int, int], list[str] | None]:
    """What `translate` begins translations with: a function of (number of lines, the first's
    number in the input) to their prefixes, None for none.

    Raises:
        NmtError: both options, or a prefix file that is unreadable, not line for line with the
            input, or given at a terminal (where sentences are typed one by one).
    """
    from nmt.text_io import read_lines

    if prefix is not None and prefix_file is not None:
        raise NmtError("--prefix gives every sentence one prefix and --prefix-file one each; pass one of them")
    if prefix_file is None:
        return lambda count, start: [prefix] * count if prefix else None
    if lines is None:
        raise NmtError("--prefix-file gives one prefix per input line: pass sentences, --input FILE or text on stdin "
                       "(or --prefix TEXT for every sentence typed)")
    prefix_lines = read_lines(prefix_file, "--prefix-file")
    if len(prefix_lines) != len(lines):
        raise NmtError(f"--prefix-file has {len(prefix_lines)} lines but the input has {len(lines)}; give one prefix per input line")
    return lambda count, start: prefix_lines[start:start + count]


def _constraints(constraint: list[str] | None, constraint_file: Path | None,
                 lines: list[str] | None) -> Callable[[int, int], list[list[str]] | None]:
    """What `translate` makes translations contain: a function of (number of lines, the first's
    number in the input) to their lists of constraints, None for none.

    Raises:
        NmtError: both options, a blank --constraint, or a constraint file that is unreadable,
            not line for line with the input, or given at a terminal.
    """
    from nmt.text_io import read_constraints

    if constraint and constraint_file is not None:
        raise NmtError("--constraint gives every sentence the same constraints and --constraint-file each its own; pass one of them")
    if constraint_file is None:
        if constraint and not all(text.strip() for text in constraint):
            raise NmtError("empty --constraint; pass the text every translation must contain, e.g. --constraint \"Fahrrad\"")
        return lambda count, start: [list(constraint)] * count if constraint else None
    if lines is None:
        raise NmtError("--constraint-file gives constraints per input line: pass sentences, --input FILE or text on stdin "
                       "(or --constraint TEXT for every sentence typed)")
    constraint_lines = read_constraints(constraint_file, "--constraint-file", len(lines), "the input")
    return lambda count, start: constraint_lines[start:start + count]


@app.command()
def score(
    source: Annotated[Path, typer.Option("--source", "-s", help="File of source sentences, one per line.")],
    target: Annotated[Path, typer.Option("--target", "-t", help="File of their translations, line for line.")],
    run_dir: RunDirsOption = None,
    output_file: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the scores here (default: stdout); run "
                                                                   "again, an interrupted scoring goes on where it stopped.")] = None,
    tokens: Annotated[bool, typer.Option("--tokens", help="Print 'SCORE ||| PIECE:LOGPROB ...': each target subword (and "
                                         "</s>) with its log-probability given the source and the subwords before it.")] = False,
    server: ServerOption = None,
    ctranslate2: CTranslate2Option = False,
    set_: SetOption = None,
) -> None:
    """Score given translations, line by line, as translate --n-best scores its own.

    Each score is the model's log-probability of the --target line (and EOS) as the translation of
    the --source line, over the length penalty (--set decode.length_penalty=0: the log-probability
    itself)."""
    with _user_errors(tensorflow=server is None and not ctranslate2, run_dirs=(run_dir or [None]) if server is None else (),
                      outputs=[("--output", output_file, False)]):
        from nmt.text_io import fingerprint, read_lines, write_in_chunks

        if server is not None and (set_ or run_dir or ctranslate2):
            raise NmtError("--set, --run-dir and --ctranslate2 apply to a model loaded here; with --server the server's run "
                           "and settings apply")
        sources, targets = read_lines(source, "--source"), read_lines(target, "--target")
        if len(sources) != len(targets):
            raise NmtError(f"--source {source} has {len(sources)} lines but --target {target} has {len(targets)}; "
                           "give one translation per source line")
        # What a resumed --output must have been written with (the sources are in the key already).
        settings = {"target": fingerprint(targets), "set": set_ or [],
                    "tokens": tokens, "server": server}
        if ctranslate2:  # only then: a scoring begun before the option existed still resumes
            settings["ctranslate2"] = True
        if server is not None:
            from nmt import server as server_lib

            if output_file is not None:
                settings["served"] = server_lib.health(server)
            progress = _progress(len(sources), "Scoring", tensorflow=False)

            def score_chunk(chunk: Sequence[str], start: int) -> list:
                return server_lib.score(server, chunk, targets[start:start + len(chunk)], on_part=advance, start=start)
        else:
            first_run, *ensemble = run_dir or [None]
            score_pairs, settings["checkpoints"] = _decoding_jobs(ctranslate2).scorer(first_run, set_ or [], ensemble)
            progress = _progress(len(sources), "Scoring", not ctranslate2)

            def score_chunk(chunk: Sequence[str], start: int) -> list:
                return score_pairs(chunk, targets[start:start + len(chunk)], advance, start)

        def render(chunk: Sequence[str], start: int) -> str:
            found = score_chunk(chunk, start)
            if not tokens:
                return "".join(f"{value:.4f}\n" for value, _, _ in found)
            return "".join(f"{value:.4f} ||| " + " ".join(f"{piece}:{log_prob:.4f}" for piece, log_prob in zip(pieces, log_probs))
                           + "\n" for value, pieces, log_probs in found)

        with progress as advance:
            write_in_chunks(sources, render, output_file, settings, resumed=advance)


def _rendered(translations: list[list[tuple[str, float]]], start: int, n_best: int) -> str:
    """Lines of output: the best translation of each sentence, or with n_best > 1 'LINE ||| TEXT
    ||| SCORE' for each of its n_best (LINE counting from 0 over the whole input, start the first)."""
    if n_best == 1:
        return "".join(best[0][0] + "\n" for best in translations)
    return "".join(f"{start + index} ||| {hypothesis} ||| {score:.4f}\n"
                   for index, hypotheses in enumerate(translations) for hypothesis, score in hypotheses)


def _aligned(translations: list, start: int) -> str:
    from nmt.decoding.alignment import pharaoh, word_alignment

    return "".join(
        f"{start + index} ||| {best.text} ||| {pharaoh(word_alignment(best.attention)) if best.attention else ''}\n"
        for index, (best, *_) in enumerate(translations)
    )


@app.command()
def serve(
    run_dir: RunDirOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: a free one, printed).")] = 8080,
    ctranslate2: CTranslate2Option = False,
    set_: SetOption = None,
) -> None:
    """Keep the run's model loaded and translate over HTTP until Ctrl-C.

    POST /translate {"text": \\[sentences], "n_best": 1} and POST /score {"source": \\[...], "target": \\[...]};
    `nmt translate --server URL` and `nmt score --server URL` ask it."""
    with _user_errors(tensorflow=not ctranslate2, run_dirs=[run_dir]):
        http, about = _decoding_jobs(ctranslate2).server(run_dir, set_ or [], host, port)
        url = f"http://{http.server_address[0]}:{http.server_address[1]}"
        decoder = f", by {about['decoder']}" if "decoder" in about else ""
        typer.echo(f"Serving {about['checkpoint']} (beam {about['decode']['beam_size']}{decoder}) at {url}")
        typer.echo(f'  nmt translate --server {url} "A sentence."   (Ctrl-C stops the server)')
        sys.stdout.flush()
        try:
            http.serve_forever()
        except KeyboardInterrupt:
            typer.echo("stopped")
        finally:
            http.server_close()


@app.command()
def attention(
    sentence: Annotated[str, typer.Argument(help="Sentence to translate and look at.")],
    run_dir: RunDirOption = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("attention.png"),
    include_self: Annotated[bool, typer.Option("--self", help="Also draw the encoder's and decoder's self-attention.")] = False,
    softmax_demo: Annotated[
        bool, typer.Option("--softmax-demo", help="Instead, draw the softmax of one of the model's own cross-attention rows, "
                           "its dot products unscaled (std ~ sqrt(d)) and scaled to unit deviation.")
    ] = False,
    prefix: Annotated[Optional[str], typer.Option("--prefix", help="Make the translation begin with this text (as translate "
                                                  "--prefix), to see how the model attends on a path it would not take.")] = None,
    set_: SetOption = None,
) -> None:
    """Translate a sentence and draw its attention: every layer and head of the cross-attention
    (source subwords across, output subwords down) and the last layer's mean over heads."""
    with _user_errors(run_dirs=[run_dir], outputs=[("--output", output, False)]):
        from nmt import jobs

        translation, drawn = jobs.draw_attention(run_dir, set_ or [], sentence, output, include_self, softmax_demo, prefix)
        typer.echo(translation)
        if softmax_demo:
            unscaled, scaled = drawn["unscaled"], drawn["scaled to unit deviation"]
            typer.echo(
                f"softmax of one query's logits: std {unscaled['logit_std']:.2f} -> max weight {unscaled['max_weight']:.2f}; "
                f"scaled to std 1 -> max weight {scaled['max_weight']:.2f}"
            )
        else:
            typer.echo(f"{drawn['panels']} heatmaps, {drawn['width']}x{drawn['height']} pixels")
        typer.echo(f"  picture: {output}")


@app.command()
def evaluate(
    run_dir: RunDirsOption = None,
    split: Annotated[Optional[str], typer.Option("--split", help="train, validation or test (default: eval.split).")] = None,
    compare: Annotated[
        Optional[str],
        typer.Option("--compare", help="Another run directory (same languages, any data: e.g. the base of a fine-tuned run): "
                                       "both translate this run's split; scores and the difference's significance (paired bootstrap)."),
    ] = None,
    constraint_file: Annotated[Optional[Path], typer.Option("--constraint-file", help="File of constraints, one line per "
                                                            "sentence of the split (or --source), its texts separated by tabs: each "
                                                            "translation must contain them (eval/<split>-constrained/).")] = None,
    source: Annotated[Optional[Path], typer.Option("--source", help="Instead of a split, a test set of your own: a file of "
                                                   "sentences, one per line, scored against --reference (report in "
                                                   "eval/<its file name>/).")] = None,
    reference: Annotated[Optional[Path], typer.Option("--reference", help="The reference translations of --source, line for "
                                                      "line.")] = None,
    ctranslate2: CTranslate2Option = False,
    set_: SetOption = None,
) -> None:
    """Translate a split (or --source) and score it with sacreBLEU (BLEU, chrF, TER); writes eval/<split>/report.{json,md}
    (with --compare, eval/<split>/compare.{json,md}; with several --run-dir, the ensemble's eval/<split>-ensemble/;
    with --constraint-file, eval/<split>-constrained/; with --ctranslate2, eval/<split>-ctranslate2/)."""
    # CTranslate2 scores a test set of files without TensorFlow; a split comes through TFDS, which needs it.
    with _user_errors(tensorflow=not ctranslate2 or source is None, run_dirs=run_dir or [None]):
        from nmt import run_dir as run_dir_lib
        from nmt.evaluation import report as report_lib

        if split is not None and split not in ("train", "validation", "test"):
            raise NmtError(f"--split must be train, validation or test; got {split!r}")
        if (source is None) != (reference is None):
            raise NmtError("--source and --reference go together: give the file of sentences and the file of their references")
        if source is not None and split is not None:
            raise NmtError("--split scores a split of the run's data and --source a test set of your own: pass one of them")
        files = None if source is None else (source, reference)
        first_run, *others = run_dir or [None]
        run, config = run_dir_lib.load(first_run, set_ or [])
        split = split or config.eval.split
        if compare is not None:
            if others:
                raise NmtError("--compare compares two single runs: pass one --run-dir")
            if constraint_file is not None or ctranslate2:
                raise NmtError("--compare compares the runs' own searches without constraints: leave out --constraint-file "
                               "and --ctranslate2")
            from nmt import jobs

            comparison = jobs.compare(run, config, compare, set_ or [], split, files)
            _print_comparison(comparison, run.eval_dir(comparison["split"]))
            return
        ensemble = [run_dir_lib.resolve(other) for other in others]
        report = _decoding_jobs(ctranslate2).evaluate(run, config, split, ensemble, constraint_file, files)
        _print_scores(report, report_lib.directory(run, report["split"], bool(ensemble), constraint_file is not None,
                                                    ctranslate2))


@app.command()
def average(
    run_dir: RunDirOption = None,
    last: Annotated[Optional[int], typer.Option("--last", help="Average the run's newest N checkpoints.")] = None,
    checkpoint: Annotated[
        Optional[list[Path]], typer.Option("--checkpoint", help="A checkpoint directory to average (repeatable).")
    ] = None,
) -> None:
    """Average checkpoints into checkpoints/averaged (use it with --set eval.checkpoint=averaged)."""
    with _user_errors():
        from nmt import jobs

        path = jobs.average(run_dir, last, checkpoint or [])
        typer.echo(f"Averaged checkpoint: {path}")
        typer.echo("  use it: nmt evaluate --set eval.checkpoint=averaged (or translate with the same --set)")


@app.command()
def export(
    run_dir: RunDirOption = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="SavedModel directory (default: <run dir>/export).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing non-empty --output.")] = False,
    constraints: Annotated[bool, typer.Option(
        "--constraints", help="Add a signature that places constraints, for a server: the export loads slower, and nmt "
                              "translate passes over it.")] = False,
    export_format: Annotated[ExportFormat, typer.Option(
        "--format", help="savedmodel: TensorFlow, the search inside (default output <run dir>/export); ctranslate2: a "
                         "CTranslate2 model with its SentencePiece models (default output <run dir>/ctranslate2; "
                         "pip install 'nmt[ctranslate2]').")] = ExportFormat.savedmodel,
    quantization: Annotated[Optional[str], typer.Option(
        "--quantization", help="With --format ctranslate2: how its weights are stored, e.g. int8, float16, bfloat16 "
                               "(default float32).")] = None,
    set_: SetOption = None,
) -> None:
    """Export the run as a TensorFlow SavedModel that translates raw strings (tokenization, beam
    search and detokenization inside; it loads with tensorflow and tensorflow_text alone), or as a
    CTranslate2 model."""
    with _user_errors(run_dirs=[run_dir], outputs=[("--output", output, True)]):
        from nmt import jobs
        from nmt.export import CONSTRAINTS_SIGNATURE, LENGTHS_SIGNATURE, PREFIX_SIGNATURE, SIGNATURE

        path, found = jobs.export(run_dir, set_ or [], output, force, constraints, export_format.value, quantization)
        if export_format is ExportFormat.ctranslate2:
            typer.echo(f"Exported {found['checkpoint']} to {path} as a CTranslate2 model ({found['quantization']} weights, "
                       f"{found['megabytes']:.1f} MB)")
            typer.echo(f"  cut sentences into pieces with SentencePiece's {path / 'source.model'}, translate them with "
                       f"ctranslate2.Translator('{path}').translate_batch(pieces, beam_size={found['beam_size']}, "
                       f"max_input_length={found['max_length']}, max_decoding_length={found['max_length'] - 1}), "
                       f"join the output's pieces with {path / 'target.model'}")
            return
        typer.echo(f"Exported {found['checkpoint']} (beam {found['beam_size']}) to {path} ({found['megabytes']:.1f} MB)")
        typer.echo(f"  signature '{SIGNATURE}': input 'text' (string [batch]) -> 'translation' (string), 'score' (float32)")
        typer.echo(f"  signature '{LENGTHS_SIGNATURE}': input 'text' (string [batch]) -> 'length' (int32, tokens), to batch by")
        typer.echo(f"  signature '{PREFIX_SIGNATURE}': inputs 'text' and 'prefix' (string [batch]) -> as '{SIGNATURE}', "
                   "each translation beginning with its prefix")
        if constraints:
            typer.echo(f"  signature '{CONSTRAINTS_SIGNATURE}': inputs 'text', 'prefix' and 'constraints' (string [batch], "
                       f"a sentence's texts separated by tabs) -> as '{PREFIX_SIGNATURE}', each translation containing its "
                       "constraints, and 'placed', 'writable', 'constraint_tokens'")


@app.command()
def info(
    run_dir: RunDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
    set_: SetOption = None,
) -> None:
    """Describe a run: config, parameters, training progress, best validation, checkpoints and
    their sizes, evaluation scores with their signatures, and whether nmt translate (with the
    same --set) takes its export."""
    with _user_errors(tensorflow=False):
        import json

        from nmt import info as info_lib
        from nmt import run_dir as run_dir_lib

        found = info_lib.describe(run_dir_lib.resolve(run_dir), set_ or [])
        typer.echo(json.dumps(found, indent=2, ensure_ascii=False) if as_json else info_lib.text(found))


data_app = typer.Typer(no_args_is_help=True, help="Look at a config's parallel data before training on it.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file.")],
    run_dir: Annotated[Optional[str], typer.Option(
        "--run-dir", help="Run directory the report goes to (default: train.run_dir, else runs/<config name>).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write data_check.json/.md here instead.")] = None,
    write_clean: Annotated[Optional[Path], typer.Option(
        "--write-clean", help="Write the corpus without the training pairs found bad (and those leaking into validation "
                              "or test) to this new directory, as data.dataset=local reads it.")] = None,
    max_pairs: Annotated[Optional[int], typer.Option(
        "--max-pairs", min=1, help="Check only N pairs of each split (a quick look at a large corpus): the first N, or "
                                   "of local text, kept in its files' order, N spread over each file.")] = None,
    set_: SetOption = None,
) -> None:
    """Check every split for empty, duplicate, untranslated, misaligned, over-long, wrong-language and unknown-character
    pairs, and held-out sentences that occur in training."""
    with _user_errors(outputs=[("--output", output, True), ("--write-clean", write_clean, True)]):
        from nmt import jobs
        from nmt.data import check

        report, directory = jobs.data_check(config, run_dir, set_ or [], output, write_clean, max_pairs)
        for name, split in report["splits"].items():
            typer.echo(f"{name}: {split['pairs']:,} pairs" + (f" (one in {split['every']:,} of the split's)" if split["every"] > 1 else ""))
        problems = check.warnings(report)
        for line in problems or ["no problems found"]:
            typer.echo(f"  {line}")
        if report["language_identification"] != "py3langid":
            typer.echo(f"  {report['language_identification']}")
        typer.echo(f"Report: {directory / 'data_check.md'} (with examples), {directory / 'data_check.json'}")
        if "cleaned" in report:
            cleaned = report["cleaned"]
            typer.echo(f"Cleaned corpus: {cleaned['directory']} ({cleaned['train_pairs']:,} training pairs, "
                       f"{cleaned['dropped']:,} dropped); train on it with --set data.dataset=local "
                       f"--set data.manual_dir={cleaned['directory']}")


def _print_plan(plan: dict, path: Path) -> None:
    from nmt.training.sinks import duration

    pairs = f"{plan['training_pairs']:,}" if plan["training_pairs"] is not None else "an unknown number of"
    counted = "" if plan["steps_per_epoch_counted"] else " (estimated from the first batches)"
    typer.echo(f"Plan for {path} (nothing written):")
    typer.echo(f"  data: {pairs} training pairs an epoch")
    typer.echo(f"  batches: {plan['batch_tokens']:,} tokens, {plan['replicas']} replica(s), {plan['accumulate_steps']} batch(es) "
               f"per step, precision {plan['precision']}; {plan['parameters']:,} parameters")
    typer.echo(f"  steps per epoch: {plan['steps_per_epoch']:,}{counted}")
    typer.echo(f"  time per step: {plan['seconds_per_step']:.3f} s ({plan['timed_steps']} steps timed after 2 that compile)")
    typer.echo(f"  time per epoch: ~{duration(plan['epoch_seconds'])} of training steps (validations add to it)")
    typer.echo(f"  in all: {plan['steps']:,} steps, ~{duration(plan['seconds'])} (ended by train.{plan['ended_by']})")


def _print_scores(report: dict, directory: Path) -> None:
    typer.echo(
        f"{report['split']}: BLEU {report['bleu']:.2f}  chrF {report['chrf']:.2f}  TER {report['ter']:.2f}  "
        f"({report['num_sentences']} sentences, {report['sentences_per_second']:.1f} sentences/s)"
    )
    typer.echo(f"  {report['signature']}")
    if "constraints" in report:
        typer.echo(f"  constraints: {report['constraints']['in_translations']} of {report['constraints']['given']} in the translations")
    typer.echo(f"  report: {directory / 'report.md'}")


def _print_comparison(comparison: dict, directory: Path) -> None:
    typer.echo(f"{comparison['split']}: {comparison['system']} vs {comparison['baseline']} (baseline)")
    for metric, values in comparison["metrics"].items():
        base, ours = values["baseline"], values["system"]
        typer.echo(
            f"  {metric}: {ours['score']:.2f} ± {ours['ci95']:.2f} vs {base['score']:.2f} ± {base['ci95']:.2f}  "
            f"difference {values['difference']:+.2f}, p = {values['p_value']:.4f}"
        )
    typer.echo(f"  report: {directory / 'compare.md'}")


if __name__ == "__main__":
    app()
