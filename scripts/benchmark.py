"""Benchmarks that measure the product as a user runs it, writing JSON and a Markdown table.

  scripts/benchmark.py quality --config configs/multi30k_en_de.yaml --minutes 40
      trains the config for a wall-clock budget, then evaluates the test split with greedy search
      and with beam 4; adds an entry (keyed by config file) to benchmarks/quality.json and
      rewrites benchmarks/quality.md from all entries. With --patience N it trains until
      validation BLEU has not improved for N evaluations instead (full training; run again, it
      resumes), keyed "<config> (full training)".

  scripts/benchmark.py speed --config configs/reference_base.yaml --out benchmarks/speed.json
      times training steps (tokens/s, padding, model FLOP utilisation against a matmul peak measured
      in the same run), greedy and beam-4 decoding of the test split, and peak memory; each --lever
      is a variant of the config whose training speed is measured in the same run and reported as a
      ratio to the config's: the variants, all held in memory at once, take turns, --rounds times,
      so that the machine's drift falls on all of them alike. With --reference-python, the reference
      toolkit (OpenNMT-tf, scripts/reference_opennmt.py) trains the same model on the same segmented
      data in each round, after ours, a fresh process each time, and the config's speed is reported
      as a ratio to it too; with --decode-run-dir, the reference also decodes the test split,
      trained for as many steps as that run's model, so decoding is compared on models of like
      training. With --ctranslate2, the model that decodes is also converted to CTranslate2 (a C++
      inference engine, nmt/export_ctranslate2.py) and decodes the test split in the same run.

  scripts/benchmark.py decoding --run-dir runs/X [--rounds 3] [--passes 3] [--set key.path=value ...]
      decoding against CTranslate2, each decoder alone on the machine: ours in float32 and
      bfloat16 and the run's model converted to CTranslate2 in float32 and int8, greedy and beam 4,
      each in a fresh process, taking turns over the rounds; sentences/s, BLEU and each one's ratio
      to CTranslate2 float32 with its spread over rounds. Writes benchmarks/decoding.json and .md.

  scripts/benchmark.py attention [--corpus synthetic|multi30k] [--variant NAME]
      trains each step of attention's history (scripts/attention_ablation.py) for the same minutes
      on the synthetic corpus and on Multi30k en->de, and writes benchmarks/attention.json, .md
      and .png; resumes where it stopped.

  scripts/benchmark.py latency --run-dir runs/multi30k_en_de [--baseline-checkout DIR]
      start-up as users meet it: `nmt translate "one sentence"` in a fresh process (and the same
      command from another checkout of nmt, interleaved, for a before/after; and on an exported
      copy of the run, which `nmt translate` then loads), `import tensorflow` alone, and the
      export's size, load time, first-call and steady-state latency in a process that imports
      only tensorflow and tensorflow_text; and `nmt translate --server` asking an `nmt serve`
      of the run.
      Writes benchmarks/latency.json and .md.

  scripts/benchmark.py constraints --run-dir runs/X [--words 1 --words 2] [--beam-size 4 --beam-size 8]
      lexically constrained decoding: the test split translated with k words of each reference
      that the translation without constraints lacks as constraints: BLEU, chrF, constraints
      met and speed against no constraints. Writes benchmarks/constraints.json and .md.

  scripts/benchmark.py search --run-dir runs/X --baseline-checkout DIR
      a change to the greedy and beam searches, before and after: the baseline checkout's
      nmt/decoding/search.py and this checkout's translate the test split in one process with the
      same model, taking turns batch by batch, and their translations are compared. Writes
      benchmarks/search.json and .md.

  scripts/benchmark.py decode-settings --run-dir runs/X --baseline-set decode.batch_size=64 [--set ...]
      two decode settings of one run (batch sizes, precision, ...): each translates the whole test
      split in turn, in one process, pass after pass, and their translations are compared. Writes
      benchmarks/decode_settings.json and .md.

  scripts/benchmark.py corpus [--dataset synthetic/5m] [--data-dir DIR]
      a corpus of WMT's size (5 million pairs): preparing it with TFDS, training SentencePiece on
      its tokenizer.max_sentences sample, then, each in a fresh process, time to the first
      training step, steady-state target tokens/s and resident memory as the first million pairs
      of an epoch are read, with the training split cached in memory (as before) and streamed
      (now); and Multi30k's steady-state tokens/s with the same model in the same run. Writes
      benchmarks/corpus.json and .md.

  scripts/benchmark.py local-corpus [--pairs 3000000]
      your own text files (data.dataset local) at scale: writes a corpus of that many pairs in
      the local layout (the synthetic corpus's training pairs, numbered, repeated), then, each in
      a fresh process, reads its training split through tfds.TranslateFolder (TFDS's own reader of
      such files, which nmt used before), through nmt's builder the first time (preparing it), again
      (prepared), and mixed, as training reads local text larger than its shuffle buffer: seconds
      until the split can be read and to its first pairs, resident memory while reading it, peak
      memory, pairs read per second, and how many tenths of the split the first 1% of the pairs
      read come from. Writes benchmarks/local_corpus.json and .md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import itertools
import json
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional, Sequence

import nmt  # noqa: F401  (before TensorFlow: it sets TensorFlow's environment, as the CLI does)

import keras
import typer

from nmt import atomic, checkpoints, export_manifest, jobs
from nmt import config as config_lib
from nmt import run_dir as run_dir_lib
from nmt.config import Config, DataConfig, ModelConfig
from nmt.data import sources, tokenizer
from nmt.data.tokenizer import PAD_ID
from nmt.decoding.plan import decoding_batches, length_limits
from nmt.decoding.translator import Translator, decoding_model
from nmt.errors import NmtError
from nmt.evaluation.evaluator import Evaluator
from nmt.evaluation.scoring import constraints_held, score
from nmt.model.transformer import build_transformer
from nmt.run_dir import RunDir
from nmt.training import precision, trainer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def main() -> None:
    """Benchmarks of nmt as a user runs it; each writes JSON and a Markdown table."""


def machine() -> dict:
    """CPU model, core count, vector units and accelerator, so that numbers are read against
    their hardware (CPUs sold under one name differ in AVX-512 and bfloat16 support). Virtual
    machines may name the CPU vaguely ("AMD EPYC"), so its family, model and stepping and its
    caches are recorded too: two machines of one name can then be told apart."""
    import tensorflow as tf

    info = precision.cpuinfo()
    cpu = info.get("model name") or platform.processor() or platform.machine()
    flags = precision.cpu_flags()
    vector = [name for name in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if name in flags]
    gpus = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]
    identity = ", ".join(f"{field} {info[field]}" for field in ("cpu family", "model", "stepping", "microcode") if field in info)
    return {"cpu": cpu, "cpu_id": identity or None, "cpu_caches": cpu_caches(), "cores": len(os.sched_getaffinity(0)),
            "cpu_vector_units": vector, "gpu": ", ".join(gpus) or None, "tensorflow": tf.__version__}


def cpu_caches(directory: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> str | None:
    """The first CPU's caches as Linux lists them, e.g. "L1d 32K, L1i 32K, L2 1024K, L3 32768K";
    None where unknown."""
    kinds = {"Data": "d", "Instruction": "i", "Unified": ""}
    caches = []
    for index in sorted(directory.glob("index*")):
        try:
            level, kind, size = ((index / name).read_text().strip() for name in ("level", "type", "size"))
        except OSError:
            continue
        caches.append(f"L{level}{kinds.get(kind, '')} {size}")
    return ", ".join(caches) or None


def code_version(root: Path = Path(__file__).resolve().parent.parent) -> str:
    """The commit measured (with "+changes" when the working tree differs from it), so that a
    result can be traced to the code behind it; "unknown" outside a git checkout. root: the
    checkout (this one by default)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("+changes" if changed.stdout.strip() else "")


@app.command()
def quality(
    config: Annotated[Path, typer.Option(help="Training config.")] = Path("configs/multi30k_en_de.yaml"),
    minutes: Annotated[float, typer.Option(help="Wall-clock training budget, validation included.")] = 40.0,
    patience: Annotated[Optional[int], typer.Option(
        help="Train until validation BLEU has not improved for this many evaluations (full training), "
             "with no time budget; --minutes is then ignored.")] = None,
    run_dir: Annotated[Optional[str], typer.Option(
        help="Run directory (default: runs/benchmark_<config name>, with _full after it for --patience).")] = None,
    out: Annotated[Path, typer.Option(help="JSON file collecting the entries.")] = Path("benchmarks/quality.json"),
    fresh: Annotated[Optional[bool], typer.Option(
        help="Delete the run directory first instead of resuming it (default: yes for a time budget, "
             "which must start from scratch; no with --patience, so that a full training resumes).")] = None,
) -> None:
    """Train for a time budget (or until validation BLEU stops improving), then score the test
    split with greedy search and beam 4."""
    full = patience is not None
    key = f"{config} (full training)" if full else str(config)  # both kinds of entry, side by side
    run_dir = run_dir or f"runs/benchmark_{config.stem}" + ("_full" if full else "")
    if (not full) if fresh is None else fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    budget = [f"train.early_stopping_patience={patience}"] if full else [f"train.max_minutes={minutes}"]
    started = time.monotonic()
    try:
        with jobs.training_run(config, run_dir, budget) as (resolved, run):
            summary = jobs.train(resolved, run)
    except trainer.TrainingInterrupted as interrupted:
        typer.echo("interrupted, state saved: " + ("run the same command again to resume" if full else
                   "a time-budget benchmark starts afresh when run again"), err=True)
        raise typer.Exit(interrupted.exit_code) from None
    train_wall_minutes = (time.monotonic() - started) / 60
    decodes = {}
    for name, beam in (("greedy", 1), ("beam4", 4)):
        _, decode_config = run_dir_lib.load(str(run.path), [f"decode.beam_size={beam}"])
        decodes[name] = jobs.evaluate(run, decode_config, "test")
    data = resolved.data
    entry = {
        "config": str(config),
        "pair": f"{data.source_lang}-{data.target_lang}",
        "dataset": data.dataset,
        "test_split": data.test_split,
        "minutes_budget": None if full else minutes,
        "early_stopping_patience": patience,
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
        "code": code_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    entries = json.loads(out.read_text()) if out.is_file() else {}
    entries[key] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, json.dumps(entries, indent=2) + "\n")
    atomic.write_text(out.with_suffix(".md"), quality_table(entries))
    typer.echo(quality_table({key: entry}))


def quality_table(entries: dict) -> str:
    lines = [
        "| config | pair | test | trained until | minutes | steps | epochs | greedy BLEU | beam-4 BLEU | "
        "beam-4 chrF | greedy sent/s | beam-4 sent/s | machine | code |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in entries.values():
        hardware = entry["machine"]
        where = (f"{hardware['cpu']} ({hardware['cores']} cores"
                 + (f", {hardware['cpu_vector_units'][0]}" if hardware.get("cpu_vector_units") else "") + ")"
                 + (f", {hardware['gpu']}" if hardware["gpu"] else ""))
        until = (f"{entry['minutes_budget']:g}-minute budget" if entry.get("minutes_budget")
                 else f"no validation gain in {entry['early_stopping_patience']} evaluations")
        lines.append(
            f"| {entry['config']} | {entry['pair']} | {entry['test_split']} | {until} | {entry['train_minutes']:.1f} | "
            f"{entry['steps']} | {entry['epochs']} | {entry['greedy_bleu']:.2f} | {entry['beam4_bleu']:.2f} | "
            f"{entry['beam4_chrf']:.2f} | {entry['greedy_sentences_per_second']:.1f} | "
            f"{entry['beam4_sentences_per_second']:.1f} | {where} | {entry.get('code', 'unknown')} |"
        )
    signatures = sorted({entry["signature"] for entry in entries.values()})
    return "\n".join([*lines, "", *(f"BLEU signature: `{signature}`" for signature in signatures)]) + "\n"


def as_run_here(config: Config) -> Config:
    """The config as this machine trains it: train.precision resolved, a precision the device
    cannot run fast having fallen back to float32 (a bf16 lever on a CPU without bf16 units)."""
    return dataclasses.replace(config, train=dataclasses.replace(
        config.train, precision=precision.resolve(config.train.precision)))


def matmul_peak(policy: str, size: int = 4096, repeats: int = 5) -> float:
    """The machine's dense matmul rate in GFLOP/s in the compute dtype of the Keras `policy` (best
    of `repeats`), the denominator of model FLOP utilisation."""
    import tensorflow as tf

    dtype = {"mixed_bfloat16": tf.bfloat16, "mixed_float16": tf.float16}.get(policy, tf.float32)
    a = tf.random.normal([size, size], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def training_flops(model: ModelConfig, vocab_size: int, source_len: int, target_len: int,
                   source_tokens: int, target_tokens: int) -> float:
    """Model FLOPs of one training step (forward + backward = 3 x forward) on the real tokens of a
    batch: matmuls only (2 FLOPs per multiply-add), attention over the batch's padded lengths."""
    d, f = model.hidden_dim, model.intermediate_dim
    encoder_per_token = model.num_encoder_layers * (2 * 4 * d * d + 2 * 2 * d * f + 2 * 2 * source_len * d)
    # Decoder: self-attention projections, cross-attention query/output, FFN, attention over
    # target and source positions; the cross-attention keys/values are per source token.
    decoder_per_token = model.num_decoder_layers * (
        2 * 4 * d * d + 2 * 2 * d * d + 2 * 2 * d * f + 2 * 2 * target_len * d + 2 * 2 * source_len * d
    ) + 2 * d * vocab_size
    cross_kv_per_source_token = model.num_decoder_layers * 2 * 2 * d * d
    forward = source_tokens * (encoder_per_token + cross_kv_per_source_token) + target_tokens * decoder_per_token
    return 3.0 * forward


class TrainingTimer:
    """One variant's training, timed a number of steps at a time so that variants can take turns.

    Built, it makes one pass over the data (reading and tokenizing it into tf.data's cache, as the
    first epoch of training does), times the input pipeline alone, then, under XLA, runs one step
    on a batch of each shape of that pass (each compiles; timed as compile_seconds). `warm_up(steps)`
    runs untimed steps; `time(steps)` runs and times steps as the trainer runs them (one host sync
    per step): the steady state of epochs 2 and later."""

    def __init__(self, config: Config, run: RunDir):
        self.config = config
        # Each variant's own trainer: its batches are the same sequence as every other variant's
        # of equal batch shapes (one seed), so taking turns gives each the same batches.
        self.setup = setup = trainer.prepare(config, run)
        self.vocab_size = setup.tokenizers.target_vocab_size
        self.accumulate = config.train.accumulate_steps
        shapes = {}
        started = time.perf_counter()
        for batch in setup.train_batches(1):
            shapes.setdefault((tuple(batch["source_ids"].shape), tuple(batch["target_in"].shape)), batch)
        self.first_pass_seconds = time.perf_counter() - started
        # The input pipeline alone, as later epochs read it (cached, shuffled, bucketed): what
        # training would wait for if prefetching did not overlap it with the steps.
        started, input_batches = time.perf_counter(), 0
        for _ in setup.train_batches(2):
            input_batches += 1
        self.input_seconds_per_batch = (time.perf_counter() - started) / input_batches
        self.batch_shapes = len(shapes)
        self.compile_seconds = None
        if config.train.jit_compile:
            started = time.perf_counter()
            for batch in shapes.values():
                float(setup.train_step((batch,) * self.accumulate)[0])
            self.compile_seconds = round(time.perf_counter() - started, 1)
        self.batches = itertools.chain.from_iterable(setup.train_batches(epoch) for epoch in itertools.count(1))
        self.warmup = 0
        self.warmup_seconds = 0.0
        self.steps = self.source_tokens = self.target_tokens = self.padded_tokens = 0
        self.flops = self.seconds = 0.0

    def warm_up(self, steps: int) -> None:
        started = time.perf_counter()
        for _ in range(steps):
            float(self.setup.train_step(self._group())[0])
        self.warmup += steps
        self.warmup_seconds += time.perf_counter() - started

    @property
    def model(self) -> keras.Model:
        return self.setup.model

    @property
    def trained_steps(self) -> int:
        compiling = self.batch_shapes if self.compile_seconds is not None else 0
        return compiling + self.warmup + self.steps

    def _group(self) -> tuple:
        return tuple(next(self.batches) for _ in range(self.accumulate))

    def time(self, steps: int) -> float:
        """Runs `steps` more steps; returns their target tokens/s."""
        target_tokens = 0
        started = time.perf_counter()
        for _ in range(steps):
            group = self._group()
            float(self.setup.train_step(group)[0])
            for batch in group:
                source, target = batch["source_ids"].numpy(), batch["target_out"].numpy()
                batch_source, batch_target = int((source != PAD_ID).sum()), int((target != PAD_ID).sum())
                self.source_tokens += batch_source
                target_tokens += batch_target
                self.padded_tokens += source.size + target.size
                self.flops += training_flops(self.config.model, self.vocab_size, source.shape[1], target.shape[1],
                                             batch_source, batch_target)
        seconds = time.perf_counter() - started
        self.steps += steps
        self.seconds += seconds
        self.target_tokens += target_tokens
        return target_tokens / seconds

    def result(self) -> dict:
        return {
            "precision": self.setup.precision,
            "jit_compile": self.config.train.jit_compile,
            "steps": self.steps,
            "warmup_steps": self.warmup,
            "seconds": round(self.seconds, 2),
            "train_tokens_per_s": round((self.source_tokens + self.target_tokens) / self.seconds),
            "train_target_tokens_per_s": round(self.target_tokens / self.seconds),
            "padding_fraction": round(1 - (self.source_tokens + self.target_tokens) / self.padded_tokens, 4),
            "model_gflops_per_s": round(self.flops / self.seconds / 1e9, 1),
            "data_first_pass_seconds": round(self.first_pass_seconds, 1),
            # The input pipeline's time per batch against a training step's (batches per step: accumulate).
            "input_ms_per_batch": round(self.input_seconds_per_batch * 1000, 1),
            "input_share_of_step": round(self.input_seconds_per_batch * self.accumulate * self.steps / self.seconds, 3),
            # Distinct batch shapes of an epoch: under XLA, each is a compilation.
            "batch_shapes": self.batch_shapes,
            "compile_seconds": self.compile_seconds,
            "warmup_seconds": round(self.warmup_seconds, 1),
        }


def take_turns_training(timers: dict, steps: int, rounds: int,
                        between: Optional[Callable[[int], None]] = None) -> dict[str, list[float]]:
    """The variants train `steps` steps each in `rounds` rounds, in turn, who goes first
    alternating (forwards, then backwards), so that the machine's drift (10-25% within a day here)
    falls on all alike; between(steps of the round) runs after each round. Returns each variant's
    target tokens/s in each round."""
    sizes = [steps // rounds + (index < steps % rounds) for index in range(rounds)]
    rates = {name: [] for name in timers}
    for index, size in enumerate(sizes):
        for name in (list(timers) if index % 2 == 0 else reversed(timers)):
            rates[name].append(timers[name].time(size))
        if between:
            between(size)
    return rates


class Reference:
    """The reference toolkit on a config's model, batching and training data, segmented by the same
    SentencePiece model (scripts/reference_opennmt.py, run by the reference's own Python in a fresh
    process each time, in a scratch directory written once, which close() removes)."""

    def __init__(self, reference_python: Path, config: Config, tokenizer_dir: Path, test: Evaluator):
        import sentencepiece as spm

        model = config.model
        if not (config.tokenizer.joint and model.share_embeddings and model.tie_output
                and model.num_encoder_layers == model.num_decoder_layers):
            raise typer.BadParameter("--reference-python needs a joint vocabulary, shared and tied embeddings and "
                                     "as many encoder as decoder layers (the reference's Transformer)")
        self.python, self.config, self.test = reference_python, config, test
        self.segmenter = spm.SentencePieceProcessor(model_file=str(tokenizer.model_files(tokenizer_dir, joint=True)["source"]))
        self._scratch = tempfile.TemporaryDirectory()
        self.work = Path(self._scratch.name)
        self.runs = 0
        for side, texts in zip(("source", "target"), sources.read_pairs(config.data, "train")):
            self._write_segmented(f"train.{side}", texts)
        self._write_segmented("test.source", test.sources)
        # OpenNMT-tf's own special tokens first; it adds one for unknown pieces at the end, so
        # the vocabulary has as many entries as ours (whose pad/unk/bos/eos are ids 0-3).
        vocabulary = ["<blank>", "<s>", "</s>"] + [self.segmenter.id_to_piece(i) for i in range(4, self.segmenter.get_piece_size())]
        (self.work / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")

    def close(self) -> None:
        self._scratch.cleanup()

    def _write_segmented(self, name: str, texts: list[str]) -> None:
        pieces = self.segmenter.encode(texts, out_type=str)
        (self.work / name).write_text("".join(" ".join(line) + "\n" for line in pieces), encoding="utf-8")

    def run(self, steps: int, warmup: int, decode_steps: Optional[int] = None) -> dict:
        """Training throughput over `steps` steps after `warmup` of a model trained from scratch
        and, given decode_steps, greedy and beam-4 decoding of the test split with the config's
        decoding settings by its model after that many training steps."""
        config, model = self.config, self.config.model
        beam_sizes = (1, 4) if decode_steps else ()
        self.runs += 1
        job = {
            "directory": str(self.work), "model_dir": str(self.work / f"model{self.runs}"), "steps": steps, "warmup": warmup,
            "train_steps": max(steps + warmup, decode_steps or 0),
            "model": {"num_layers": model.num_encoder_layers, "hidden_dim": model.hidden_dim, "num_heads": model.num_heads,
                      "intermediate_dim": model.intermediate_dim, "dropout": model.dropout,
                      "attention_dropout": model.attention_dropout},
            "batch_tokens": config.train.batch_tokens, "max_length": config.data.max_length,
            "learning_rate": config.train.learning_rate, "warmup_steps": config.train.warmup_steps,
            "adam_beta1": config.train.adam_beta1, "adam_beta2": config.train.adam_beta2,
            "adam_epsilon": config.train.adam_epsilon,
            "label_smoothing": config.train.label_smoothing,
            "decode": {"source_file": str(self.work / "test.source"), "beam_sizes": beam_sizes,
                       "batch_size": config.decode.batch_size, "length_penalty": config.decode.length_penalty,
                       "max_length": model.max_length - 1},
        }
        (self.work / "job.json").write_text(json.dumps(job), encoding="utf-8")
        script = Path(__file__).with_name("reference_opennmt.py")
        done = subprocess.run([str(self.python), str(script), str(self.work / "job.json")], capture_output=True, text=True)
        shutil.rmtree(job["model_dir"], ignore_errors=True)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise typer.BadParameter(f"the reference toolkit failed under {self.python} "
                                     f"(make benchmark-speed-reference installs it): {tail}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        for beam_size, name in zip(beam_sizes, ("greedy", "beam4")):
            pieces = [line.split() for line in (self.work / f"test.beam{beam_size}").read_text(encoding="utf-8").splitlines()]
            hypotheses = [self.segmenter.decode_pieces(line) for line in pieces]
            seconds = result["decode_seconds"][str(beam_size)]
            result.update(other_decoder_scores(name, pieces, hypotheses, seconds, self.test))
        return result


def other_decoder_scores(name: str, pieces: list[list[str]], hypotheses: list[str], seconds: float,
                         test: Evaluator) -> dict:
    """Another decoder's sentences/s, output subwords/s and BLEU on the test split, keyed
    decode_<name>_*; pieces are its output subwords, hypotheses the detokenized translations."""
    return {
        f"decode_{name}_sentences_per_s": round(len(hypotheses) / seconds, 2),
        f"decode_{name}_target_tokens_per_s": round(sum(map(len, pieces)) / seconds),
        f"decode_{name}_bleu": score(hypotheses, test.references)["bleu"],
    }


def measure_decoding(config: Config, model, tokenizers, test: Evaluator, beam_size: int) -> tuple[dict, list[str]]:
    """Sentences/s and output subwords/s translating the test split (the evaluation path), and the
    translations."""
    decode_config = dataclasses.replace(config, decode=dataclasses.replace(config.decode, beam_size=beam_size))
    translator = Translator(decode_config, model, tokenizers)
    translator.translate(test.sources[:decode_config.decode.batch_size])  # traces the search
    evaluation = test.run(translator)
    tokens = int(tokenizers.target.tokenize(evaluation.hypotheses).row_lengths().numpy().sum())
    return {
        "sentences_per_s": round(evaluation.sentences_per_second, 2),
        "target_tokens_per_s": round(tokens / evaluation.seconds),
        "bleu": evaluation.scores["bleu"],
    }, evaluation.hypotheses


def measure_ctranslate2(config: Config, model, tokenizer_dir: Path, test: Evaluator,
                        greedy_hypotheses: list[str], compute_type: str = "float32") -> dict:
    """The same model converted to CTranslate2 (nmt/export_ctranslate2.py), a C++ inference
    engine, decoding the test split greedy and with beam 4 as `ctranslate2_decoder` drives it: the
    ceiling the issue sets for decoding. "greedy_agreement": the share of greedy translations equal
    to ours, which checks the conversion."""
    import ctranslate2

    from nmt import export_ctranslate2

    files = tokenizer.model_files(tokenizer_dir, config.tokenizer.joint)
    with tempfile.TemporaryDirectory() as directory:
        converted = export_ctranslate2.convert(model, export_ctranslate2.vocabulary(files["source"]),
                                               export_ctranslate2.vocabulary(files["target"]), Path(directory))
        engine, translate = ctranslate2_decoder(converted, tokenizer_dir, config, model.max_length, compute_type)
        result = {"engine": engine}
        for beam_size, name in ((1, "greedy"), (4, "beam4")):
            translate(test.sources[:config.decode.batch_size], beam_size)  # warms up, as ours does
            started = time.perf_counter()
            pieces, hypotheses = translate(test.sources, beam_size)
            seconds = time.perf_counter() - started
            result.update(other_decoder_scores(name, pieces, hypotheses, seconds, test))
            if name == "greedy":
                same = sum(ours == theirs for ours, theirs in zip(greedy_hypotheses, hypotheses))
                result["greedy_agreement"] = round(same / len(hypotheses), 3)
    return result


def ctranslate2_decoder(converted: Path, tokenizer_dir: Path, config: Config, max_length: int,
                        compute_type: str) -> tuple[str, Callable[[list[str], int], tuple[list[list[str]], list[str]]]]:
    """A converted model's CTranslate2 engine (on the GPU if there is one, else every core), named,
    and translate(sentences, beam_size) -> (output subwords, translations). It gets our batches
    (`decoding_batches`) and length penalty weight; its length penalty is length ** alpha (ours
    GNMT's), and its length limit is one per batch, so each batch gets the largest of our
    per-sentence limits (which spares it the calls that `nmt translate --ctranslate2` makes with
    beam search to keep each sentence's own limit)."""
    import ctranslate2
    import sentencepiece as spm

    files = tokenizer.model_files(tokenizer_dir, config.tokenizer.joint)
    segmenters = {side: spm.SentencePieceProcessor(model_file=str(path)) for side, path in files.items()}
    device = "cuda" if ctranslate2.get_cuda_device_count() else "cpu"
    threads = os.cpu_count() or 1
    engine = ctranslate2.Translator(str(converted), device=device, compute_type=compute_type, intra_threads=threads)

    def translate(sentences: list[str], beam_size: int) -> tuple[list[list[str]], list[str]]:
        source = [line[:max_length] for line in segmenters["source"].encode(sentences, out_type=str)]
        outputs = [None] * len(source)
        for batch in decoding_batches([len(line) for line in source], config.decode):
            limits = length_limits([len(source[index]) for index in batch], config.decode, max_length)
            results = engine.translate_batch(
                [source[index] for index in batch], beam_size=beam_size,
                length_penalty=config.decode.length_penalty, max_decoding_length=int(limits.max()))
            for index, result in zip(batch, results):
                outputs[index] = result.hypotheses[0]
        return outputs, [segmenters["target"].decode_pieces(line) for line in outputs]

    name = f"CTranslate2 {ctranslate2.__version__}, {compute_type}, {device}" + (f", {threads} threads" if device == "cpu" else "")
    return name, translate


@app.command()
def speed(
    config: Annotated[Path, typer.Option(help="Training config.")] = Path("configs/reference_base.yaml"),
    steps: Annotated[int, typer.Option(help="Timed training steps.")] = 150,
    warmup: Annotated[int, typer.Option(help="Untimed training steps first.")] = 30,
    rounds: Annotated[Optional[int], typer.Option(help="The config and its levers take turns training, the timed "
                                                       "steps split into this many rounds (default: 5, at most --steps).")] = None,
    overrides: Annotated[list[str], typer.Option("--set", help="key.path=value on top of the config.")] = [],
    lever: Annotated[list[str], typer.Option(help="NAME:key=value[,key=value...]: a variant of the config "
                                                  "whose training speed is measured too.")] = [],
    decode_run_dir: Annotated[Optional[str], typer.Option(help="Trained run whose eval.checkpoint decodes "
                                                               "(default: the model after the timed steps).")] = None,
    reference_python: Annotated[Optional[Path], typer.Option(
        help="Python of an environment with OpenNMT-tf 2.32 (make benchmark-speed-reference makes "
             ".venv-reference): the reference trains the same model on the same data in this run, as many "
             "steps as the model that decodes, and decodes the test split too.")] = None,
    ctranslate2: Annotated[bool, typer.Option(
        "--ctranslate2", help="Also decode the test split with the same model converted to CTranslate2 "
                              "(pip install -e '.[ctranslate2]').")] = False,
    decode: Annotated[bool, typer.Option(help="Also time decoding of the test split (--no-decode: training "
                                              "speed only, as when comparing training levers).")] = True,
    out: Annotated[Path, typer.Option(help="JSON output; a Markdown table goes beside it.")] = Path("benchmarks/speed.json"),
) -> None:
    """Training and decoding throughput, model FLOP utilisation and peak memory of a config."""
    resolved = _load_config(config, overrides, "--set")
    if not decode and (ctranslate2 or decode_run_dir):
        raise typer.BadParameter("--ctranslate2 and --decode-run-dir compare decoding: leave out --no-decode")
    if ctranslate2 and importlib.util.find_spec("ctranslate2") is None:
        raise typer.BadParameter("--ctranslate2 needs the ctranslate2 package: pip install -e '.[ctranslate2]' "
                                 "(make install installs it, with the tests' packages)")
    if ctranslate2:
        from nmt.export_ctranslate2 import CONVERTIBLE

        if resolved.model.attention not in CONVERTIBLE:
            raise typer.BadParameter(f"--ctranslate2 converts {', '.join(CONVERTIBLE)} attention; this config has "
                                     f"{resolved.model.attention}")
    if resolved.train.distribute != "none":
        raise typer.BadParameter("the speed benchmark times one device; leave train.distribute at none")
    if rounds is None:
        rounds = min(5, steps)
    if not 1 <= rounds <= steps:
        raise typer.BadParameter(f"--rounds {rounds}: give between 1 and --steps ({steps}) rounds")
    variants = {"config": resolved}
    for spec in lever:
        name, colon, settings = spec.partition(":")
        if not (name and colon and settings):
            raise typer.BadParameter(f"--lever {spec!r}: give NAME:key=value[,key=value...], e.g. bf16:train.precision=mixed_bfloat16")
        if name in variants:
            raise typer.BadParameter(f"--lever {name}: that name is taken ('config' is the config's); give each lever its own")
        variant = _load_config(config, [*overrides, *settings.split(",")], f"--lever {name}")
        if as_run_here(variant) == as_run_here(resolved):
            typer.echo(f"lever {name}: this machine would train it exactly as the config; not measured", err=True)
            continue
        variants[name] = variant
    scratch = tempfile.TemporaryDirectory()
    # One scratch run directory: SentencePiece is trained once for all variants (and the reference).
    scratch_run = RunDir(Path(scratch.name))
    timers = {}
    for name, variant in variants.items():
        typer.echo(f"training speed: {name}, preparing ...", err=True)
        timers[name] = TrainingTimer(variant, scratch_run)
    typer.echo(f"training speed: {', '.join(timers)} taking turns over {rounds} rounds ...", err=True)
    # Warmed up in turn, just before the rounds: the first steps after the others' preparation
    # ran at half speed when they were timed.
    test = Evaluator.of_split(resolved.data, "test")
    for timer in timers.values():
        timer.warm_up(warmup)
    reference, reference_rounds = None, []
    if reference_python:
        # The reference trains in every round, after ours, in a fresh process of its own (its warm-up
        # each time untimed), so that the machine's drift falls on both alike.
        reference = Reference(reference_python, resolved, scratch_run.tokenizer_dir, test)

        def reference_round(size: int) -> None:
            typer.echo(f"  the reference toolkit: {size} steps after {warmup} ...", err=True)
            reference_rounds.append(reference.run(size, warmup))

    rates = take_turns_training(timers, steps, rounds, reference_round if reference_python else None)
    trained = timers["config"]  # decodes below, unless --decode-run-dir
    results, peaks = {}, {}
    for name, timer in timers.items():
        result = results[name] = {**timer.result(), "round_target_tokens_per_s": [round(rate) for rate in rates[name]]}
        typer.echo(f"  {name}: {result['train_target_tokens_per_s']:,} target tokens/s (warm-up "
                   f"{result['warmup_seconds']} s, timed {result['seconds']} s)", err=True)
        policy = result["precision"]
        if policy not in peaks:
            peaks[policy] = matmul_peak(policy)
        result["matmul_peak_gflops_per_s"] = round(peaks[policy], 1)
        result["mfu"] = round(result["model_gflops_per_s"] / peaks[policy], 3)
    base = results["config"]
    for name, result in results.items():
        result["speedup"] = round(result["train_target_tokens_per_s"] / base["train_target_tokens_per_s"], 2)
        # The spread over single rounds tells a lever's effect from the noise of one round.
        ratios = [ours / theirs for ours, theirs in zip(rates[name], rates["config"])]
        result["round_speedups"] = [round(min(ratios), 3), round(max(ratios), 3)]
    tokenizers = tokenizer.load(scratch_run.tokenizer_dir, resolved.tokenizer.joint)
    if decode_run_dir:
        decode_run = RunDir(Path(decode_run_dir))
        translator = Translator.from_run_dir(decode_run)
        model, tokenizers = translator.model, translator.tokenizers
        decode_steps = checkpoints.step_of(checkpoints.latest(decode_run.last_checkpoints))
        decode_source = f"{decode_run_dir}, {translator.config.eval.checkpoint} checkpoint, {decode_steps} training steps"
    else:
        # Users decode in float32 whatever the training precision: a float32 copy of the weights.
        model = build_transformer(resolved.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
        model.set_weights(trained.model.get_weights())
        decode_steps = trained.trained_steps
        decode_source = f"the model after {decode_steps} training steps of this benchmark"
    reference_result = None
    if reference_python:
        seconds = sum(result["seconds"] for result in reference_rounds)
        reference_result = {
            "toolkit": reference_rounds[0]["toolkit"], "timed_steps": sum(result["timed_steps"] for result in reference_rounds),
            "seconds": round(seconds, 2),
            **{key: round(sum(result[key] * result["seconds"] for result in reference_rounds) / seconds)
               for key in ("train_tokens_per_s", "train_target_tokens_per_s")},
            "round_target_tokens_per_s": [result["train_target_tokens_per_s"] for result in reference_rounds],
        }
        ratios = [ours / result["train_target_tokens_per_s"] for ours, result in zip(rates["config"], reference_rounds)]
        reference_result["config_speedup"] = round(base["train_target_tokens_per_s"] / reference_result["train_target_tokens_per_s"], 2)
        reference_result["round_config_speedups"] = [round(min(ratios), 3), round(max(ratios), 3)]
        typer.echo(f"  the reference: {reference_result['train_target_tokens_per_s']:,} target tokens/s: the config trains "
                   f"{reference_result['config_speedup']}x as fast", err=True)
        if decode_run_dir:
            # Only a trained model is worth comparing decoding on: a briefly trained one runs on to the
            # length limit, ours's (1.5 x source + 10) far below the reference's single one (255).
            typer.echo(f"the reference toolkit: decoding after {decode_steps} steps ...", err=True)
            decoded = reference.run(steps, warmup, decode_steps)
            reference_result.update({key: value for key, value in decoded.items() if key.startswith("decode")})
    decoding, engine, engine_int8 = {}, None, None
    if decode:
        typer.echo("decoding speed: greedy, beam 4", err=True)
        greedy, greedy_hypotheses = measure_decoding(resolved, model, tokenizers, test, 1)
        beam, _ = measure_decoding(resolved, model, tokenizers, test, 4)
        decoding = {**_decoder_scores(greedy, beam), "decode_model": decode_source}
        if precision.unsupported_reason("mixed_bfloat16") is None:
            typer.echo("decoding speed with decode.precision=bfloat16: greedy, beam 4", err=True)
            bf16 = dataclasses.replace(resolved, decode=dataclasses.replace(resolved.decode, precision="bfloat16"))
            bf16_model = decoding_model(bf16, tokenizers)
            bf16_model.set_weights(model.get_weights())
            decoding["decode_bfloat16"] = _decoder_scores(measure_decoding(bf16, bf16_model, tokenizers, test, 1)[0],
                                                          measure_decoding(bf16, bf16_model, tokenizers, test, 4)[0])
    if ctranslate2:
        typer.echo("decoding speed of the same model in CTranslate2, float32 and int8: greedy, beam 4", err=True)
        tokenizer_dir = decode_run.tokenizer_dir if decode_run_dir else scratch_run.tokenizer_dir
        engine = measure_ctranslate2(resolved, model, tokenizer_dir, test, greedy_hypotheses)
        engine_int8 = measure_ctranslate2(resolved, model, tokenizer_dir, test, greedy_hypotheses, "int8")
    scratch.cleanup()
    if reference:
        reference.close()
    for other in (decoder for decoder in (reference_result, engine) if decoder and "decode_beam4_bleu" in decoder):
        for name, ours in (("greedy", greedy), ("beam4", beam)):
            other[f"config_decode_{name}_speedup"] = round(
                ours["sentences_per_s"] / other[f"decode_{name}_sentences_per_s"], 2)
    entry = {
        "config": str(config),
        "overrides": overrides,
        **{key: value for key, value in base.items() if key not in ("speedup", "round_speedups")},
        "rounds": rounds,
        **decoding,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "levers": {name: result for name, result in results.items() if name != "config"},
        # The reference toolkit measured in this run; "config_speedup": the config's target tokens/s over its.
        "reference": reference_result,
        # The same model decoded by CTranslate2 in this run; "config_decode_*_speedup": ours over its.
        "ctranslate2": engine,
        # ... and by CTranslate2 with int8 weights.
        "ctranslate2_int8": engine_int8,
        "machine": machine(),
        "code": code_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, json.dumps(entry, indent=2) + "\n")
    atomic.write_text(out.with_suffix(".md"), speed_table(entry))
    typer.echo(speed_table(entry))


def _load_config(path: Path, overrides: list[str], what: str) -> Config:
    try:
        return config_lib.load(path, overrides)
    except NmtError as error:
        raise typer.BadParameter(f"{what}: {error}") from None


def speed_table(entry: dict) -> str:
    hardware = entry["machine"]
    where = f"{hardware['cpu']} ({hardware['cores']} cores)" + (f", {hardware['gpu']}" if hardware["gpu"] else "")
    lines = [
        f"Speed of `{entry['config']}` {' '.join(f'--set {o}' for o in entry['overrides'])} on {where}, "
        f"{entry['date']}, code {entry.get('code', 'unknown')}; training timed over {entry['steps']} steps after one pass over the data and "
        f"{entry['warmup_steps']} warm-up steps"
        + (f", the variants taking turns in {entry['rounds']} rounds "
           f"(speed-up: over all rounds, and the lowest and highest of single rounds)." if entry.get("rounds")
           else ", the variants one after another."),
        "",
        "| variant | precision | XLA | target tok/s | src+tgt tok/s | speedup | single rounds | vs reference | padding | model GFLOP/s | MFU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    reference = entry.get("reference")

    def versus_reference(result: dict) -> float:
        return result["train_target_tokens_per_s"] / reference["train_target_tokens_per_s"]

    def versus_cell(result: dict) -> str:
        """The ratio to the reference, and its lowest and highest over single rounds where the
        reference trained in the rounds."""
        if not reference:
            return ""
        cell = f"{versus_reference(result):.2f}x"
        theirs, ours = reference.get("round_target_tokens_per_s"), result.get("round_target_tokens_per_s")
        if theirs and ours and len(theirs) == len(ours):
            ratios = [mine / other for mine, other in zip(ours, theirs)]
            cell += f" ({min(ratios):.2f}–{max(ratios):.2f}x)"
        return cell

    for name, result in {"config": {**entry, "speedup": 1.0}, **entry["levers"]}.items():
        versus = versus_cell(result)
        low, high = result.get("round_speedups") or (None, None)
        spread = f"{low:.3f}–{high:.3f}x" if low is not None else ""
        lines.append(
            f"| {name} | {result['precision']} | {_xla_cell(result)} | "
            f"{result['train_target_tokens_per_s']:,} | {result['train_tokens_per_s']:,} | {result['speedup']:.2f}x | "
            f"{spread} | {versus} | {result['padding_fraction']:.1%} | {result['model_gflops_per_s']} | {result['mfu']:.1%} |"
        )
    if reference:
        lines.append(
            f"| reference: {reference['toolkit']} | float32 | no | {reference['train_target_tokens_per_s']:,} | "
            f"{reference['train_tokens_per_s']:,} | {1 / reference['config_speedup']:.2f}x | | 1.00x | | | |"
        )
        fastest = max(entry["levers"].items(), key=lambda item: item[1]["train_target_tokens_per_s"], default=None)
        lines += ["", f"The config trains **{reference['config_speedup']:.2f}x** as fast as the reference toolkit "
                      f"(target tokens/s, measured in this run on the same model, data and batch size"
                      + (f"; it trained in each round after ours, a fresh process each time: single rounds "
                         f"{reference['round_config_speedups'][0]:.2f}–{reference['round_config_speedups'][1]:.2f}x)"
                         if reference.get("round_config_speedups") else ", its own process after ours: not taking turns)")
                  + (f"; with its fastest lever, {fastest[0]}, **{versus_reference(fastest[1]):.2f}x**."
                     if fastest and fastest[1]["speedup"] > 1 else ".")]
    nmt_rows = [_decoding_row("nmt", entry)] if "decode_model" in entry else []
    if entry.get("decode_bfloat16"):
        nmt_rows.append(_decoding_row("nmt, decode.precision=bfloat16", entry["decode_bfloat16"]))
    if "decode_model" in entry:
        lines += [
            "",
            f"Decoding the test split ({entry['decode_model']}; decode.batch_size and batch_tokens, length penalty and length limit "
            f"of the config; tracing excluded):",
            "",
            "| decoder | greedy sent/s | greedy tok/s | greedy BLEU | beam-4 sent/s | beam-4 tok/s | beam-4 BLEU |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *nmt_rows,
        ]
    if reference and "decode_steps" in reference:
        lines += [
            _decoding_row(f"reference, its model after {reference['decode_steps']} steps", reference),
            "",
            f"Beam 4 decodes **{reference['config_decode_beam4_speedup']:.2f}x** as many sentences/s as the reference "
            f"(greedy {reference['config_decode_greedy_speedup']:.2f}x).",
        ]
    engine = entry.get("ctranslate2")
    if engine:
        lines += [
            "",
            f"The same model in {engine['engine']} (our batches, length penalty weight and limits, the limit one "
            f"per batch, its length penalty length^alpha; {engine['greedy_agreement']:.1%} of its greedy "
            f"translations equal ours):",
            "",
            "| decoder | greedy sent/s | greedy tok/s | greedy BLEU | beam-4 sent/s | beam-4 tok/s | beam-4 BLEU |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *nmt_rows,
            _decoding_row("CTranslate2", engine),
            *([_decoding_row("CTranslate2, int8", entry["ctranslate2_int8"])] if entry.get("ctranslate2_int8") else []),
            "",
            f"nmt decodes **{engine['config_decode_beam4_speedup']:.2f}x** CTranslate2's sentences/s with beam 4 "
            f"(greedy {engine['config_decode_greedy_speedup']:.2f}x).",
        ]
    if "input_ms_per_batch" in entry:
        lines += ["", f"The input pipeline alone (cached, shuffled, bucketed) yields a batch in {entry['input_ms_per_batch']} ms, "
                      f"{entry['input_share_of_step']:.1%} of the config's training step; prefetching overlaps it with the steps."]
    lines += ["", f"Peak resident memory {entry['peak_rss_mb']:,} MB."]
    return "\n".join(lines) + "\n"


def _decoder_scores(greedy: dict, beam: dict) -> dict:
    """measure_decoding's greedy and beam-4 results as decode_* keys (those of other_decoder_scores)."""
    return {
        "decode_greedy_sentences_per_s": greedy["sentences_per_s"],
        "decode_greedy_target_tokens_per_s": greedy["target_tokens_per_s"],
        "decode_beam4_sentences_per_s": beam["sentences_per_s"],
        "decode_beam4_target_tokens_per_s": beam["target_tokens_per_s"],
        "decode_greedy_bleu": greedy["bleu"],
        "decode_beam4_bleu": beam["bleu"],
    }


def _xla_cell(result: dict) -> str:
    if not result["jit_compile"]:
        return "no"
    if result.get("compile_seconds") is None:
        return "yes"
    return f"yes: {result['batch_shapes']} shapes compiled in {result['compile_seconds']} s"


def _decoding_row(name: str, result: dict) -> str:
    return (f"| {name} | {result['decode_greedy_sentences_per_s']} | {result['decode_greedy_target_tokens_per_s']:,} | "
            f"{result['decode_greedy_bleu']} | {result['decode_beam4_sentences_per_s']} | "
            f"{result['decode_beam4_target_tokens_per_s']:,} | {result['decode_beam4_bleu']} |")


@app.command()
def decoding(
    run_dir: Annotated[Path, typer.Option(help="A trained run; its eval.checkpoint decodes the test split.")],
    rounds: Annotated[int, typer.Option(help="Rounds: in each, every decoder decodes in a fresh process of its own.")] = 3,
    passes: Annotated[int, typer.Option(help="Timed passes over the test split in each process.")] = 3,
    overrides: Annotated[list[str], typer.Option("--set", help="key.path=value on top of the run's settings, for every "
                                                               "decoder (e.g. decode.batch_tokens=16384).")] = [],
    out: Annotated[Path, typer.Option(help="JSON results; Markdown goes beside it.")] = Path("benchmarks/decoding.json"),
) -> None:
    """Decoding speed against CTranslate2, each decoder alone on the machine: ours in float32 and
    bfloat16, and the same model converted to CTranslate2 in float32 and int8, greedy and with beam
    4, each in a fresh process (two engines' thread pools in one process slowed both by ~12%),
    taking turns over the rounds (the order reversed every other round), so that the machine's
    drift (10-25% over minutes) falls on all alike. A process decodes one batch untimed (tracing),
    then the test split --passes times."""
    if importlib.util.find_spec("ctranslate2") is None:
        raise typer.BadParameter("decoding compares with CTranslate2: pip install -e '.[ctranslate2]'")
    from nmt import export_ctranslate2

    if rounds < 1 or passes < 1:
        raise typer.BadParameter("give at least one round and one pass")
    run = RunDir(run_dir)
    try:  # a bad setting fails here, not in every process
        config = run.load_config(overrides)
    except NmtError as error:
        raise typer.BadParameter(str(error)) from None
    loaded = Translator.from_run_dir(run, config)  # CTranslate2 converts the checkpoint that ours decodes
    if config.model.attention not in export_ctranslate2.CONVERTIBLE:
        raise typer.BadParameter(f"CTranslate2 converts {', '.join(export_ctranslate2.CONVERTIBLE)} attention; this run has "
                                 f"{config.model.attention}")
    decoders = {"nmt": ["--set", "decode.precision=float32"]}
    if precision.unsupported_reason("mixed_bfloat16") is None:
        decoders["nmt, decode.precision=bfloat16"] = ["--set", "decode.precision=bfloat16"]
    results: dict = {}
    with tempfile.TemporaryDirectory() as directory:
        files = tokenizer.model_files(run.tokenizer_dir, config.tokenizer.joint)
        export_ctranslate2.convert(loaded.model, export_ctranslate2.vocabulary(files["source"]),
                                   export_ctranslate2.vocabulary(files["target"]), Path(directory))
        for compute_type in ("float32", "int8"):
            decoders[f"CTranslate2 {compute_type}"] = ["--ctranslate2-dir", directory, "--compute-type", compute_type]
        processes = [(name, beam) for beam in (4, 1) for name in decoders]
        for round_ in range(rounds):
            for name, beam in (processes if round_ % 2 == 0 else processes[::-1]):
                typer.echo(f"round {round_ + 1}: {name}, beam {beam} ...", err=True)
                finished = subprocess.run(
                    [sys.executable, __file__, "decode-pass", "--run-dir", str(run_dir), "--beam-size", str(beam),
                     "--passes", str(passes), *[arg for setting in overrides for arg in ("--set", setting)], *decoders[name]],
                    capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
                if finished.returncode != 0:
                    raise SystemExit(f"{name}, beam {beam} failed:\n{finished.stderr[-3000:]}")
                measured = json.loads(finished.stdout.strip().splitlines()[-1])
                result = results.setdefault(name, {}).setdefault(f"beam{beam}", {"bleu": measured["bleu"], "round_seconds": []})
                result["round_seconds"].append(round(sum(measured["seconds"]), 3))
                sentences = measured["sentences"]
                typer.echo(f"  {measured}", err=True)
    for per_beam in results.values():
        for search, result in per_beam.items():
            result["sentences_per_s"] = round(rounds * passes * sentences / sum(result["round_seconds"]), 2)
            ctranslate2_seconds = results["CTranslate2 float32"][search]["round_seconds"]
            ratios = [theirs / ours for ours, theirs in zip(result["round_seconds"], ctranslate2_seconds)]
            result["versus_ctranslate2_float32"] = round(sum(ctranslate2_seconds) / sum(result["round_seconds"]), 3)
            result["round_versus_ctranslate2_float32"] = [round(min(ratios), 3), round(max(ratios), 3)]
    entry = {"run_dir": str(run_dir), "checkpoint": config.eval.checkpoint, "code": code_version(),
             "date": time.strftime("%Y-%m-%d"), "machine": machine(), "rounds": rounds, "passes": passes,
             "sentences": sentences, "set": overrides, "results": results}
    atomic.write_text(out, json.dumps(entry, indent=2) + "\n")
    atomic.write_text(out.with_suffix(".md"), decoding_table(entry))
    typer.echo(decoding_table(entry))


@app.command("decode-pass", hidden=True)
def decode_pass(
    run_dir: Annotated[Path, typer.Option()],
    beam_size: Annotated[int, typer.Option()],
    passes: Annotated[int, typer.Option()],
    overrides: Annotated[list[str], typer.Option("--set")] = [],
    ctranslate2_dir: Annotated[Optional[Path], typer.Option(help="A converted model: CTranslate2 decodes.")] = None,
    compute_type: Annotated[str, typer.Option()] = "float32",
) -> None:
    """One process of `decoding`: the run's model (or its CTranslate2 conversion) decodes one batch
    untimed, then the test split `passes` times; prints the seconds of each pass, BLEU and the
    number of sentences as JSON."""
    run = RunDir(run_dir)
    config = run.load_config([*overrides, f"decode.beam_size={beam_size}"])
    test = Evaluator.of_split(config.data, "test")
    if ctranslate2_dir:
        _, translate_pieces = ctranslate2_decoder(ctranslate2_dir, run.tokenizer_dir, config, config.model.max_length, compute_type)

        def translate(sentences: list[str]) -> list[str]:
            return translate_pieces(sentences, beam_size)[1]
    else:
        translate = Translator.from_run_dir(run, config).translate
    translate(test.sources[:config.decode.batch_size])
    seconds = []
    for _ in range(passes):
        started = time.perf_counter()
        hypotheses = translate(test.sources)
        seconds.append(time.perf_counter() - started)
    print(json.dumps({"seconds": seconds, "bleu": score(hypotheses, test.references)["bleu"], "sentences": len(hypotheses)}))


def decoding_table(entry: dict) -> str:
    results, machine_ = entry["results"], entry["machine"]

    def cells(result: dict) -> str:
        low, high = result["round_versus_ctranslate2_float32"]
        return (f"{result['sentences_per_s']:,} | {result['bleu']} | **{result['versus_ctranslate2_float32']:.2f}x** "
                f"({low:.2f}–{high:.2f}x)")

    return "\n".join([
        "# Decoding against CTranslate2, each decoder in a fresh process", "",
        f"Machine: {machine_['cpu']}, {machine_['cores']} cores, TensorFlow {machine_['tensorflow']}; code {entry['code']}, "
        f"{entry['date']}. Run `{entry['run_dir']}` ({entry['checkpoint']} checkpoint"
        f"{''.join(f', `{setting}`' for setting in entry.get('set', []))}), the test split ({entry['sentences']:,} "
        f"sentences); {entry['rounds']} rounds, in each every decoder in a fresh process of its own (the order reversed every "
        f"other round), {entry['passes']} timed passes after one untimed batch. Against CTranslate2 float32: over all rounds "
        f"(the lowest and highest of single rounds).", "",
        "| decoder | beam-4 sent/s | beam-4 BLEU | beam 4 against CTranslate2 float32 | greedy sent/s | greedy BLEU | greedy against CTranslate2 float32 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {name} | {cells(per_beam['beam4'])} | {cells(per_beam['beam1'])} |" for name, per_beam in results.items()],
    ]) + "\n"


@app.command()
def attention(
    corpus: Annotated[Optional[list[str]], typer.Option(
        help="synthetic (configs/quickstart.yaml's model) or multi30k (configs/multi30k_en_de.yaml's); repeatable "
             "(default: both).")] = None,
    variant: Annotated[Optional[list[str]], typer.Option(help="Variants of the ladder to run (default: all).")] = None,
    minutes_synthetic: Annotated[float, typer.Option(help="Training minutes per variant on the synthetic corpus.")] = 5.0,
    minutes_multi30k: Annotated[float, typer.Option(help="Training minutes per variant on Multi30k.")] = 10.0,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="A setting for every variant of every corpus: key.path=value (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="JSON results; Markdown and PNG go beside it.")] = Path("benchmarks/attention.json"),
    fresh: Annotated[bool, typer.Option(help="Re-run variants already in the results (default: resume, skipping them).")] = False,
) -> None:
    """Each step of attention's history (additive, dot, scaled dot, projections, heads, shared
    key/value heads) trained for the same minutes, one change at a time, then measured on the
    validation split. Results are written after each variant: run it again to continue."""
    import attention_ablation

    # The synthetic corpus keeps the settings it was measured with, the quickstart's before it
    # was tuned for a short demo (dropout 0.1, a gentler learning rate).
    plans = {
        "synthetic": (Path("configs/quickstart.yaml"), minutes_synthetic, 300, 100, ["model.dropout=0.1", "train.learning_rate=0.002"]),
        "multi30k": (Path("configs/multi30k_en_de.yaml"), minutes_multi30k, 200, 100, []),
    }
    unknown = [name for name in (corpus or []) if name not in plans] + [name for name in (variant or []) if name not in attention_ablation.LADDER]
    if unknown:
        raise typer.BadParameter(f"unknown corpus or variant {unknown[0]!r}; corpora: {', '.join(plans)}; "
                                 f"variants: {', '.join(attention_ablation.LADDER)}")
    entries = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    for name in corpus or list(plans):
        config, minutes, equal_steps, eval_every, pinned = plans[name]
        settings = {"config": str(config), "minutes": minutes, "equal_steps": equal_steps, "overrides": set_ or []}
        entry = entries.get(name)
        # Variants are compared within one entry only: the same settings on the same machine.
        settings["machine"] = machine()
        if fresh or entry is None or any(entry[key] != value for key, value in settings.items()):
            if entry is not None and not fresh:
                typer.echo(f"{name}: the settings or the machine differ from the results' ({out}); starting afresh", err=True)
            entry = entries[name] = {**settings, "code": code_version(), "variants": {}}
        for chosen in variant or list(attention_ablation.LADDER):
            if chosen in entry["variants"]:
                typer.echo(f"{name} {chosen}: measured already (--fresh to re-run)")
                continue
            typer.echo(f"{name} {chosen}: training {minutes} minutes", err=True)
            result = attention_ablation.run_variant(config, chosen, minutes, equal_steps, eval_every, [*pinned, *(set_ or [])],
                                                    Path("runs/attention") / name / chosen.replace("+", "_"))
            entry["variants"][chosen] = result
            atomic.write_text(out, json.dumps(entries, indent=2) + "\n")
            atomic.write_text(out.with_suffix(".md"), attention_ablation.markdown(entries))
            attention_ablation.plot(entries, out.with_suffix(".png"))
            typer.echo(f"{name} {attention_ablation.summary_line(result)}")


_SERVE = """
import json, statistics, sys, time
started = time.perf_counter()
import tensorflow as tf
import tensorflow_text  # noqa: F401
imported = time.perf_counter()
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
loaded = time.perf_counter()
text = tf.constant([sys.argv[2]])
result = serve(text=text)
first = time.perf_counter()
calls = []
for _ in range(20):
    call = time.perf_counter()
    serve(text=text)["translation"].numpy()
    calls.append(time.perf_counter() - call)
print(json.dumps({"import_seconds": imported - started, "load_seconds": loaded - imported,
                  "first_call_seconds": first - loaded, "steady_call_seconds": statistics.median(calls),
                  "translation": result["translation"].numpy()[0].decode(), "nmt_imported": "nmt" in sys.modules}))
"""


EXPORTED = "this checkout, the run exported"
CTRANSLATE2 = "this checkout, `--ctranslate2`"
SERVED = "this checkout, asking `nmt serve`"


@contextlib.contextmanager
def _serving(run_dir: Path, root: Path, env: dict, flags: Sequence[str] = ()) -> Iterator[tuple[float, str]]:
    """`nmt serve` of run_dir, ready: yields the seconds until it said so (its model loaded, its
    search traced) and its address; stopped with SIGINT (Ctrl-C) on leaving."""
    started = time.perf_counter()
    # SIGINT's default restored: a benchmark started in the background of a shell ignores it, and
    # so would the server it starts.
    server = subprocess.Popen([sys.executable, "-m", "nmt.cli", "serve", "--run-dir", str(run_dir), "--port", "0", *flags],
                              cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        ready = server.stdout.readline()
        seconds = time.perf_counter() - started
        if " at http" not in ready:
            raise typer.BadParameter(f"nmt serve failed: {server.stderr.read()[-500:]}")
        yield seconds, ready.split(" at ")[1].strip()
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)


def _timed(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise typer.BadParameter(f"{' '.join(command[:4])} ... failed: {result.stderr.strip()[-500:]}")
    return seconds, result


@app.command()
def latency(
    run_dir: Annotated[Path, typer.Option(help="A trained run to translate with and export.")],
    sentence: Annotated[str, typer.Option(help="The sentence translated.")] = "A man in an orange hat starring at something.",
    repeats: Annotated[int, typer.Option(help="Fresh processes per measurement; the median is reported.")] = 3,
    baseline_checkout: Annotated[Optional[Path], typer.Option(
        help="Another nmt checkout whose `nmt translate` is timed too, interleaved with this one's.")] = None,
    out: Annotated[Path, typer.Option(help="JSON results; Markdown goes beside it.")] = Path("benchmarks/latency.json"),
) -> None:
    """How long a user waits: one sentence through `nmt translate` in a fresh process, through
    the exported SavedModel, and through the CTranslate2 export (`--ctranslate2`, where the
    ctranslate2 package is installed)."""
    import statistics

    root = Path(__file__).resolve().parent.parent
    checkouts = {"this checkout": root} | ({"baseline checkout": baseline_checkout.resolve()} if baseline_checkout else {})
    quiet_env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    times: dict[str, list[float]] = {name: [] for name in checkouts}
    outputs: dict[str, str] = {}
    noise: dict[str, int] = {}
    import_seconds = []
    for _ in range(repeats):
        import_seconds.append(_timed([sys.executable, "-c", "import tensorflow"], root)[0])
        for name, checkout in checkouts.items():
            # Each checkout's own package: its directory comes first on the module path.
            seconds, result = _timed([sys.executable, "-m", "nmt.cli", "translate", "--run-dir", str(run_dir.resolve()), sentence],
                                     checkout, {**quiet_env, "PYTHONPATH": str(checkout)})
            times[name].append(seconds)
            outputs[name] = result.stdout.strip()
            noise[name] = len(result.stderr.strip().splitlines())
    with tempfile.TemporaryDirectory() as directory:
        # A copy of the run, exported: `nmt translate` then loads the export (the run itself is
        # left as it is).
        copy = Path(directory) / "run"
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export", "ctranslate2", "tensorboard"))
        export_dir, found = jobs.export(str(copy), [], None, force=True)
        env = {**quiet_env, "PYTHONPATH": str(root)}
        exports = {EXPORTED: []}
        serve_startup = {}
        if importlib.util.find_spec("ctranslate2") is not None:
            jobs.export(str(copy), [], None, force=True, export_format=export_manifest.CTRANSLATE2)
            exports[CTRANSLATE2] = ["--ctranslate2"]
            with _serving(copy, root, env, ["--ctranslate2"]) as (seconds, _):
                serve_startup[CTRANSLATE2] = seconds
        for name, flags in exports.items():
            times[name] = []
            for _ in range(repeats):
                seconds, result = _timed([sys.executable, "-m", "nmt.cli", "translate", "--run-dir", str(copy), *flags, sentence],
                                         root, env)
                times[name].append(seconds)
                outputs[name] = result.stdout.strip()
                noise[name] = len(result.stderr.strip().splitlines())
        serves = [json.loads(_timed([sys.executable, "-c", _SERVE, str(export_dir), sentence], Path(directory))[1].stdout)
                  for _ in range(repeats)]
    with _serving(run_dir.resolve(), root, env) as (serve_startup[SERVED], url):
        times[SERVED] = []
        for _ in range(repeats):
            seconds, result = _timed([sys.executable, "-m", "nmt.cli", "translate", "--server", url, sentence], root, env)
            times[SERVED].append(seconds)
            outputs[SERVED] = result.stdout.strip()
            noise[SERVED] = len(result.stderr.strip().splitlines())
    entry = {
        "machine": machine(),
        "code": code_version(),
        "run_dir": str(run_dir),
        "sentence": sentence,
        "repeats": repeats,
        "import_tensorflow_seconds": round(statistics.median(import_seconds), 2),
        # From `nmt serve` starting to its first line: the model loaded and its search traced
        # (with --ctranslate2, the export loaded).
        "serve_startup_seconds": {name: round(seconds, 2) for name, seconds in serve_startup.items()},
        "translate_seconds": {name: round(statistics.median(values), 2) for name, values in times.items()},
        "translate_seconds_all": {name: [round(value, 2) for value in values] for name, values in times.items()},
        "translations": outputs,
        # Lines on stderr of a successful `nmt translate` (TensorFlow's start-up noise).
        "stderr_lines": noise,
        "export": {
            "megabytes": found["megabytes"],
            "beam_size": found["beam_size"],
            **{key: round(statistics.median(serve[key] for serve in serves), 3)
               for key in ("import_seconds", "load_seconds", "first_call_seconds", "steady_call_seconds")},
            "translation": serves[0]["translation"],
            "nmt_imported": serves[0]["nmt_imported"],
        },
    }
    atomic.write_text(out, json.dumps(entry, indent=2) + "\n")
    atomic.write_text(out.with_suffix(".md"), latency_table(entry))
    typer.echo(latency_table(entry))


def latency_table(entry: dict) -> str:
    machine_line = entry["machine"]
    export = entry["export"]
    rows = [f"| `nmt translate` ({name}; {entry['stderr_lines'][name]} lines on stderr) | {seconds:.2f} s |"
            for name, seconds in entry["translate_seconds"].items()]
    return "\n".join([
        f"# Latency: one sentence, fresh processes ({entry['repeats']} each, median)",
        "",
        f"Machine: {machine_line['cpu']}, {machine_line['cores']} cores ({', '.join(machine_line['cpu_vector_units'])}), "
        f"GPU: {machine_line['gpu'] or 'none'}, TensorFlow {machine_line['tensorflow']}; code {entry['code']}; run `{entry['run_dir']}`.",
        "",
        "| what | wall time |",
        "| --- | --- |",
        *rows,
        f"| `import tensorflow` alone | {entry['import_tensorflow_seconds']:.2f} s |",
        *[f"| `nmt serve{' --ctranslate2' if name == CTRANSLATE2 else ''}`: start until ready (once) | {seconds:.2f} s |"
          for name, seconds in entry["serve_startup_seconds"].items()],
        f"| export: import tensorflow + tensorflow_text | {export['import_seconds']:.2f} s |",
        f"| export: load the SavedModel ({export['megabytes']:.1f} MB) | {export['load_seconds']:.2f} s |",
        f"| export: first call (beam {export['beam_size']}) | {export['first_call_seconds']:.2f} s |",
        f"| export: steady-state call | {export['steady_call_seconds'] * 1000:.0f} ms |",
        "",
        f"Sentence: \"{entry['sentence']}\" → \"{export['translation']}\"",
        "",
    ])



@app.command()
def search(
    run_dir: Annotated[Path, typer.Option(help="A trained run; its eval.checkpoint decodes the test split.")],
    baseline_checkout: Annotated[Path, typer.Option(help="Another nmt checkout, whose nmt/decoding/search.py is the baseline.")],
    passes: Annotated[int, typer.Option(help="Passes over the test split.")] = 3,
    beam_size: Annotated[list[int], typer.Option(help="Beam sizes compared (1: greedy search).")] = [4, 1],
    sampling: Annotated[bool, typer.Option(help="Compare top-k sampling too (what `nmt translate` draws for one "
                                                  "translation: two samples a sentence, one seed for both sides).")] = False,
    out: Annotated[Path, typer.Option(help="JSON results; Markdown goes beside it.")] = Path("benchmarks/search.json"),
) -> None:
    """A change to the searches, before and after: the baseline checkout's nmt/decoding/search.py
    and this checkout's translate the test split in one process with the same model, taking turns
    batch by batch (who goes first alternates), so that the drift between runs (up to 35% in
    decoding) cancels out; their translations are compared too."""
    from unittest import mock

    import tensorflow as tf

    from nmt.decoding import search as this_search

    spec = importlib.util.spec_from_file_location("baseline_search", baseline_checkout / "nmt" / "decoding" / "search.py")
    baseline_search = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline_search)
    loaded = Translator.from_run_dir(RunDir(run_dir))
    sources = Evaluator.of_split(loaded.config.data, "test").sources
    lengths = loaded.tokenizers.source.tokenize(tf.constant(sources)).row_lengths().numpy()
    batches = [[sources[index] for index in batch]
               for batch in decoding_batches([min(length, loaded.model.max_length) for length in lengths], loaded.config.decode)]
    searches = {f"beam {beam}" if beam > 1 else "greedy": {"beam_size": beam} for beam in beam_size}
    if sampling:
        searches["sampling (top-k)"] = {"sampling": "top_k", "seed": 1}
    results = {}
    for name, settings in searches.items():
        config = dataclasses.replace(loaded.config, decode=dataclasses.replace(loaded.config.decode, **settings))
        translators = {}
        for side, module in (("baseline", baseline_search), ("this checkout", this_search)):
            with mock.patch.multiple("nmt.decoding.translator", beam_search=_accepting(module.beam_search),
                                     greedy_search=_accepting(module.greedy_search), sample=_accepting(module.sample)):
                translators[side] = Translator(config, loaded.model, loaded.tokenizers)
            translators[side].translate(batches[0])  # traces the search
        seconds, differing = _take_turns(translators, [batches] * passes)
        results[name] = {
            "baseline_seconds": round(sum(seconds["baseline"]), 2), "seconds": round(sum(seconds["this checkout"]), 2),
            **_speedups(seconds["baseline"], seconds["this checkout"]), "differing_translations": differing,
        }
        typer.echo(f"{name}: {results[name]}")
    entry = {"run_dir": str(run_dir), "baseline_checkout": str(baseline_checkout), "baseline_code": code_version(baseline_checkout),
             "code": code_version(), "date": time.strftime("%Y-%m-%d"), "machine": machine(), "passes": passes,
             "sentences": len(sources), "batches": len(batches), "results": results}
    atomic.write_text(out, json.dumps(entry, indent=2) + "\n")
    atomic.write_text(out.with_suffix(".md"), search_table(entry))
    typer.echo(search_table(entry))


@app.command("decode-settings")
def decode_settings(
    run_dir: Annotated[Path, typer.Option(help="A trained run; its eval.checkpoint decodes the test split.")],
    baseline_set: Annotated[list[str], typer.Option(help="key.path=value of the baseline's settings (repeatable).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="key.path=value of the settings compared with it.")] = None,
    passes: Annotated[int, typer.Option(help="Passes over the test split.")] = 3,
    beam_size: Annotated[list[int], typer.Option(help="Beam sizes compared (1: greedy search).")] = [4, 1],
    out: Annotated[Path, typer.Option(help="JSON results; Markdown goes beside it.")] = Path("benchmarks/decode_settings.json"),
) -> None:
    """Two decode settings of one run, before and after: each translates the whole test split in
    turn (who goes first alternates), in one process, so that the drift between runs cancels out;
    whole passes, since settings such as the batch sizes cut the split into different batches.
    Their translations are compared too."""
    run = RunDir(run_dir)
    settings = {"baseline": baseline_set, "compared": set_ or []}
    sources = Evaluator.of_split(run.load_config().data, "test").sources
    # One model per setting (a decode.precision builds its own), loaded once for all beam sizes.
    loaded = {}
    for name, overrides in settings.items():
        config = run.load_config(overrides)
        loaded[name] = Translator.from_run_dir(run, config, run.checkpoint_path(config.eval.checkpoint))
    results = {}
    for beam in beam_size:
        translators = {}
        for name, translator in loaded.items():
            config = dataclasses.replace(translator.config, decode=dataclasses.replace(translator.config.decode, beam_size=beam))
            translators[name] = Translator(config, translator.model, translator.tokenizers)
            translators[name].translate(sources[:config.decode.batch_size])  # traces the search
        seconds, differing = _take_turns(translators, [[sources]] * passes)
        name = f"beam {beam}" if beam > 1 else "greedy"
        results[name] = {
            "baseline_sentences_per_s": round(passes * len(sources) / sum(seconds["baseline"]), 2),
            "sentences_per_s": round(passes * len(sources) / sum(seconds["compared"]), 2),
            **_speedups(seconds["baseline"], seconds["compared"]), "differing_translations": differing,
        }
        typer.echo(f"{name}: {results[name]}")
    entry = {"run_dir": str(run_dir), "baseline_set": settings["baseline"], "set": settings["compared"], "code": code_version(),
             "date": time.strftime("%Y-%m-%d"), "machine": machine(), "passes": passes, "sentences": len(sources),
             "results": results}
    atomic.write_text(out, json.dumps(entry, indent=2) + "\n")
    atomic.write_text(out.with_suffix(".md"), decode_settings_table(entry))
    typer.echo(decode_settings_table(entry))


def decode_settings_table(entry: dict) -> str:
    def described(overrides: list[str]) -> str:
        return ", ".join(f"`{override}`" for override in overrides) or "the run's settings"

    return _turns_table(
        f"Decode settings compared: {described(entry['baseline_set'])} against {described(entry['set'])}",
        f"Machine: {entry['machine']['cpu']}, {entry['machine']['cores']} cores, {entry['date']}, code {entry['code']}. "
        f"Run `{entry['run_dir']}`; {entry['passes']} passes over the test split ({entry['sentences']} sentences), "
        "the two settings translating it in turn in one process.",
        ["baseline sent/s", "compared sent/s"],
        {name: (f"{result['baseline_sentences_per_s']:.2f}", f"{result['sentences_per_s']:.2f}", result)
         for name, result in entry["results"].items()},
    )


@app.command()
def prefix(
    run_dir: Annotated[Path, typer.Option(help="A trained run; its eval.checkpoint decodes the test split.")],
    words: Annotated[list[int], typer.Option(help="Reference words given as the prefix (0: none; repeatable).")] = [0, 1, 2, 3],
    passes: Annotated[int, typer.Option(help="Passes over the test split per prefix length, in alternating order.")] = 2,
    out: Annotated[Path, typer.Option(help="JSON results; Markdown goes beside it.")] = Path("benchmarks/prefix.json"),
) -> None:
    """Translation that goes on from what a translator typed: each test sentence's translation made
    to begin with the first k words of its reference. Scores what the model adds after them (BLEU
    and chrF against the rest of the reference, and how often its next word is the reference's)
    against the same words of its translation without a prefix, and the speed against no prefix,
    all in one process."""
    words = sorted({0, *words})  # no prefix: the baseline of every row
    run = RunDir(run_dir)
    config = run.load_config()
    translator = Translator.from_run_dir(run, config)
    test = Evaluator.of_split(config.data, "test")
    reference_words = [reference.split() for reference in test.references]
    prefixes = {k: [" ".join(reference[:k]) for reference in reference_words] for k in words}
    for k in words:  # traces both searches (with and without prefixes)
        translator.translate(test.sources[:8], prefixes=prefixes[k][:8] if k else None)
    seconds = {k: 0.0 for k in words}
    outputs = {}
    for index in range(passes):
        for k in (words if index % 2 == 0 else reversed(words)):
            started = time.perf_counter()
            outputs[k] = translator.translate(test.sources, prefixes=prefixes[k] if k else None)
            seconds[k] += time.perf_counter() - started
    def after(k: int, hypotheses: list[list[str]]) -> dict:
        """What hypotheses say after their first k words, against the rest of the references."""
        continued = [i for i, reference in enumerate(reference_words) if len(reference) > k]
        scores = score([" ".join(hypothesis[k:]) for hypothesis in hypotheses], [" ".join(reference[k:]) for reference in reference_words])
        right = sum(len(hypotheses[i]) > k and hypotheses[i][k] == reference_words[i][k] for i in continued)
        return {"bleu": scores["bleu"], "chrf": scores["chrf"], "next_word_correct": round(right / max(len(continued), 1), 4)}

    unprompted = [output.split() for output in outputs[0]]
    results = {}
    for k in words:
        prompted = after(k, [output.split() for output in outputs[k]])
        without = after(k, unprompted)
        results[k] = {
            "sentences_per_s": round(passes * len(test.sources) / seconds[k], 2),
            "speed_against_no_prefix": round(seconds[0] / seconds[k], 3),
            "bleu_after_prefix": prompted["bleu"], "chrf_after_prefix": prompted["chrf"],
            "next_word_correct": prompted["next_word_correct"],
            "bleu_after_without_prefix": without["bleu"], "chrf_after_without_prefix": without["chrf"],
            "next_word_correct_without_prefix": without["next_word_correct"],
            "bleu_whole": score(outputs[k], test.references)["bleu"],
            "outputs_beginning_with_prefix": sum(output.startswith(given) for output, given in zip(outputs[k], prefixes[k])),
        }
        typer.echo(f"{k} words: {results[k]}")
    entry = {"run_dir": str(run_dir), "code": code_version(), "date": time.strftime("%Y-%m-%d"), "machine": machine(),
             "beam_size": config.decode.beam_size, "passes": passes, "sentences": len(test.sources), "results": results}
    atomic.write_text(out, json.dumps(entry, indent=2) + "\n")
    atomic.write_text(out.with_suffix(".md"), prefix_table(entry))
    typer.echo(prefix_table(entry))


def prefix_table(entry: dict) -> str:
    rows = [f"| {k} | {result['bleu_after_prefix']:.2f} | {result['bleu_after_without_prefix']:.2f} | "
            f"{result['chrf_after_prefix']:.2f} | {result['chrf_after_without_prefix']:.2f} | "
            f"{100 * result['next_word_correct']:.1f}% | {100 * result['next_word_correct_without_prefix']:.1f}% | "
            f"{result['bleu_whole']:.2f} | {result['sentences_per_s']:.2f} | {result['speed_against_no_prefix']:.3f}x |"
            for k, result in entry["results"].items()]
    return "\n".join([
        "# Translations that begin with the reference's first words", "",
        f"Machine: {entry['machine']['cpu']}, {entry['machine']['cores']} cores, {entry['date']}, code {entry['code']}. "
        f"Run `{entry['run_dir']}`, beam {entry['beam_size']}, the test split ({entry['sentences']} sentences), "
        f"{entry['passes']} passes per prefix length in one process. Each row gives a translation the reference's first k "
        "words as its prefix and scores the words after them against the rest of the reference, beside the same words "
        "of the translation made without a prefix; the next word is the first of them.", "",
        "| k words given | BLEU after them | without the prefix | chrF after them | without | next word right | without | "
        "BLEU of the whole output | sent/s | speed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows, "",
    ])


@app.command()
def constraints(
    run_dir: Annotated[Path, typer.Option(help="A trained run; its eval.checkpoint decodes the test split.")],
    words: Annotated[list[int], typer.Option(help="Reference words given as constraints per sentence (repeatable).")] = [1, 2],
    beam_size: Annotated[list[int], typer.Option(help="Beam sizes (repeatable).")] = [4, 8],
    seed: Annotated[int, typer.Option(help="Picks the reference words.")] = 1,
    out: Annotated[Path, typer.Option(help="JSON results; Markdown goes beside it.")] = Path("benchmarks/constraints.json"),
) -> None:
    """Lexically constrained decoding, measured as its papers do (Post & Vilar, 2018; Hu et al.,
    2019): each test sentence is given k words of its reference that its translation without
    constraints lacks (drawn at random, seeded; a sentence without such words gets none), as a
    glossary gives a translator the terms to use. Per beam size: BLEU and chrF of the test split
    without and with the constraints, how many constraints the translations contain, and the
    speed against no constraints, all in one process."""
    run = RunDir(run_dir)
    config = run.load_config()
    test = Evaluator.of_split(config.data, "test")
    results = {}
    for beam in beam_size:
        translator = Translator.from_run_dir(run, dataclasses.replace(
            config, decode=dataclasses.replace(config.decode, beam_size=beam)))
        translator.translate(test.sources[:8])  # traces the search, which the constrained one's time leaves out too
        started = time.perf_counter()
        free = translator.translate(test.sources)
        free_seconds = time.perf_counter() - started
        free_scores = score(free, test.references)
        row = {"bleu": free_scores["bleu"], "chrf": free_scores["chrf"], "sentences_per_s": round(len(free) / free_seconds, 2)}

        def words_of(text: str) -> set[str]:
            return {word.strip(".,;:!?\"'()") for word in text.split()} - {""}

        for k in words:
            picker = random.Random(f"{seed}:{k}")
            given = []
            for output, reference in zip(free, test.references):
                missing = sorted(words_of(reference) - words_of(output))
                given.append(picker.sample(missing, min(k, len(missing))))
            translator.translate(test.sources[:8], constraints=given[:8])  # traces the constrained search
            started = time.perf_counter()
            constrained = translator.translate(test.sources, constraints=given)
            seconds = time.perf_counter() - started
            scores = score(constrained, test.references)
            total = sum(map(len, given))
            row[f"{k} words"] = {
                "bleu": scores["bleu"], "chrf": scores["chrf"], "constraints": total,
                "constraints_in_output": constraints_held(given, constrained),
                "constraints_as_words": sum(word in words_of(output) for output, texts in zip(constrained, given) for word in texts),
                "sentences_per_s": round(len(constrained) / seconds, 2), "speed_against_none": round(free_seconds / seconds, 3),
            }
            typer.echo(f"beam {beam}, {k} words: {row[f'{k} words']}")
        results[f"beam {beam}"] = row
    entry = {"run_dir": str(run_dir), "code": code_version(), "date": time.strftime("%Y-%m-%d"), "machine": machine(),
             "sentences": len(test.sources), "seed": seed, "results": results}
    atomic.write_text(out, json.dumps(entry, indent=2) + "\n")
    atomic.write_text(out.with_suffix(".md"), constraints_table(entry))
    typer.echo(constraints_table(entry))


def constraints_table(entry: dict) -> str:
    rows = []
    for beam, row in entry["results"].items():
        rows.append(f"| {beam} | none | {row['bleu']:.2f} | {row['chrf']:.2f} | | | {row['sentences_per_s']:.2f} | |")
        for name, result in row.items():
            if isinstance(result, dict):
                rows.append(f"| {beam} | {name} | {result['bleu']:.2f} | {result['chrf']:.2f} | "
                            f"{result['constraints_in_output']} of {result['constraints']} | {result['constraints_as_words']} | "
                            f"{result['sentences_per_s']:.2f} | "
                            f"{result['speed_against_none']:.3f}x |")
    return "\n".join([
        "# Translations that must contain given words", "",
        f"Machine: {entry['machine']['cpu']}, {entry['machine']['cores']} cores, {entry['date']}, code {entry['code']}. "
        f"Run `{entry['run_dir']}`, the test split ({entry['sentences']} sentences). Each sentence is given k words of its "
        "reference that its translation without constraints lacks (at random, seed "
        f"{entry['seed']}); BLEU and chrF of the whole split against the references; a constraint is in the output as "
        "text, and as a whole word where the model did not go on with its last word; the speed is one pass each, "
        "against no constraints at the same beam.", "",
        "| beam | constraints per sentence | BLEU | chrF | constraints in the output | as whole words | sent/s | speed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows, "",
    ])

def _take_turns(translators: dict[str, Translator], passes: list[list[list[str]]]) -> tuple[dict[str, list[float]], int]:
    """The two translators translate each item of each pass in turn, who goes first alternating,
    so that the machine's drift (up to 35% between runs when decoding) falls on both alike. Returns
    the seconds each took in each pass and how many of their translations differ."""
    seconds = {name: [0.0] * len(passes) for name in translators}
    differing = turn = 0
    for index, work in enumerate(passes):
        for sentences in work:
            outputs = {}
            for name in (list(translators) if turn % 2 == 0 else reversed(translators)):
                started = time.perf_counter()
                outputs[name] = translators[name].translate(sentences)
                seconds[name][index] += time.perf_counter() - started
            first, second = (outputs[name] for name in translators)
            differing += sum(a != b for a, b in zip(first, second))
            turn += 1
    return seconds, differing


def _speedups(baseline: list[float], compared: list[float]) -> dict:
    """The speed-up over all passes, and the lowest and highest of single passes: the spread that
    tells a change from the noise of one process (an A/A run, the same thing against itself, has
    come out ~5% off)."""
    ratios = [before / after for before, after in zip(baseline, compared)]
    return {"speedup": round(sum(baseline) / sum(compared), 3), "pass_speedups": [round(min(ratios), 3), round(max(ratios), 3)]}


def _turns_table(title: str, about: str, measures: list[str], rows: dict[str, tuple]) -> str:
    """A Markdown table of _take_turns results: per search, its two measures (formatted), the
    speed-up, its range over single passes and the differing translations of the result."""
    def spread(result: dict) -> str:
        low, high = result.get("pass_speedups") or (None, None)
        return "" if low is None else f"{low:.3f}–{high:.3f}x"

    lines = [f"| {name} | {baseline} | {compared} | {result['speedup']:.3f}x | {spread(result)} | {result['differing_translations']} |"
             for name, (baseline, compared, result) in rows.items()]
    return "\n".join([
        f"# {title}", "", about, "",
        f"| search | {measures[0]} | {measures[1]} | speed-up | single passes | translations that differ (all passes) |",
        "| --- | --- | --- | --- | --- | --- |",
        *lines,
        "",
    ])


def _accepting(function):
    """function, called without the keyword arguments its signature lacks: a baseline's search
    may predate arguments that the translator now passes."""
    parameters = inspect.signature(function).parameters
    return lambda *args, **kwargs: function(*args, **{name: value for name, value in kwargs.items() if name in parameters})


def search_table(entry: dict) -> str:
    machine_line = entry["machine"]
    return _turns_table(
        f"Searches before and after: code {entry['baseline_code']} against {entry['code']}",
        f"Machine: {machine_line['cpu']}, {machine_line['cores']} cores, {entry['date']}. Run `{entry['run_dir']}`; "
        f"{entry['passes']} passes over the test split ({entry['sentences']} sentences in {entry['batches']} batches), "
        "the two searches taking turns batch by batch in one process.",
        ["baseline", "this checkout"],
        {name: (f"{result['baseline_seconds']:.2f} s", f"{result['seconds']:.2f} s", result)
         for name, result in entry["results"].items()},
    )


CORPUS_PROBES = ("prepare", "tokenizer", "memory", "stream", "multi30k")


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def _corpus_config(dataset: str, data_dir: str) -> Config:
    """configs/multi30k_en_de.yaml's tokenizer, model and batches, on the dataset."""
    config = config_lib.load(Path("configs/multi30k_en_de.yaml"))
    data = dataclasses.replace(config.data, dataset=dataset, data_dir=data_dir,
                               **({} if dataset == "multi30k" else {"source_lang": "en", "target_lang": "sy", "manual_dir": None}))
    data = dataclasses.replace(data, manual_dir=str(Path("../shared/data/multi30k").resolve())) if dataset == "multi30k" else data
    return dataclasses.replace(config, data=data, train=dataclasses.replace(config.train, tensorboard=False, data_check=False))


@app.command("corpus-probe", hidden=True)
def corpus_probe(probe: str, dataset: str, data_dir: str, work: Path, steps: int = 100, read_pairs: int = 1_000_000) -> None:
    """One measurement in a fresh process; prints a JSON line."""
    from nmt.data import pipeline

    started = time.perf_counter()
    config = _corpus_config("multi30k" if probe == "multi30k" else dataset, data_dir)
    run = RunDir(work / probe)
    result: dict = {}
    if probe == "prepare":
        result["pairs"] = sources.split_size(config.data, "train")
    elif probe == "tokenizer":
        tokenizer.prepare(config.tokenizer, config.data, work / "tokenizer")
        result["sentencepiece_sentences_per_side"] = min(config.tokenizer.max_sentences, sources.split_size(config.data, "train"))
    else:
        run.path.mkdir(parents=True, exist_ok=True)
        if probe != "multi30k":
            shutil.copytree(work / "tokenizer", run.tokenizer_dir, dirs_exist_ok=True)
            cache = probe == "memory"
            pipeline.cache_in_memory = lambda pairs: cache
        setup = trainer.prepare(config, run)
        batches = iter(setup.train_batches(1))
        float(setup.train_step((next(batches),))[0])
        result["seconds_to_first_step"] = round(time.perf_counter() - started, 1)
        for _ in range(10):
            setup.train_step((next(batches),))
        tokens, clock = 0, time.perf_counter()
        for _ in range(steps):
            batch = next(batches)
            float(setup.train_step((batch,))[0])
            tokens += int((batch["target_out"].numpy() != PAD_ID).sum())
        result["target_tokens_per_s"] = round(tokens / (time.perf_counter() - clock))
        if probe != "multi30k":
            # Reading the epoch on, without training: what the cache holds grows with what was read.
            read, marks, rss = 0, [read_pairs // 4, read_pairs // 2, read_pairs], {}
            clock = time.perf_counter()
            for batch in batches:
                read += int(batch["source_ids"].shape[0])
                if marks and read >= marks[0]:
                    rss[f"{marks.pop(0):,} pairs"] = round(_rss_mib())
                    if not marks:
                        break
            result["rss_mib_as_the_epoch_is_read"] = rss
            result["read_pairs_per_s"] = round(read / (time.perf_counter() - clock))
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


@app.command()
def corpus(
    dataset: Annotated[str, typer.Option(help="The large corpus (a synthetic config).")] = "synthetic/5m",
    data_dir: Annotated[Path, typer.Option(help="TFDS data directory for it (generated once, ~1 GB).")] = Path("/tmp/nmt_corpus_tfds"),
    steps: Annotated[int, typer.Option(help="Training steps timed for tokens/s.")] = 100,
    out: Annotated[Path, typer.Option(help="JSON file; the Markdown table goes beside it.")] = Path("benchmarks/corpus.json"),
) -> None:
    """Time, memory and speed on a corpus of millions of pairs, cached in memory against streamed."""
    work = Path(tempfile.mkdtemp(prefix="nmt_corpus_"))
    entry: dict = {"machine": machine(), "code": code_version(), "dataset": dataset, "steps": steps, "probes": {}}
    if out.is_file():
        previous = json.loads(out.read_text())
        if previous.get("code") == entry["code"]:
            entry["probes"] = previous.get("probes", {})
    for probe in CORPUS_PROBES:
        if probe in entry["probes"]:
            continue
        command = [sys.executable, __file__, "corpus-probe", probe, dataset, str(data_dir), str(work), "--steps", str(steps)]
        print(f"corpus: {probe} ...", flush=True)
        finished = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if finished.returncode != 0:
            raise SystemExit(f"probe {probe} failed:\n{finished.stderr[-3000:]}")
        entry["probes"][probe] = json.loads(finished.stdout.strip().splitlines()[-1])
        atomic.write_text(out, json.dumps(entry, indent=2) + "\n")
        print(f"  {entry['probes'][probe]}", flush=True)
    atomic.write_text(out.with_suffix(".md"), corpus_table(entry) + "\n")
    shutil.rmtree(work, ignore_errors=True)


def corpus_table(entry: dict) -> str:
    probes, machine_ = entry["probes"], entry["machine"]
    memory, stream, multi30k = probes["memory"], probes["stream"], probes["multi30k"]
    lines = [
        f"# A corpus of {probes['prepare']['pairs']:,} training pairs ({entry['dataset']})", "",
        f"Machine: {machine_['cpu']}, {machine_['cores']} cores ({', '.join(machine_['cpu_vector_units'])}), "
        f"TensorFlow {machine_['tensorflow']}; code {entry['code']}. Model, tokenizer and batches of "
        "configs/multi30k_en_de.yaml. Each column is a fresh process.", "",
        f"- TFDS preparation (generating and writing the corpus, once): {probes['prepare']['seconds']:.0f} s, "
        f"peak RSS {probes['prepare']['peak_rss_mib']:,} MiB",
        f"- SentencePiece on {probes['tokenizer']['sentencepiece_sentences_per_side']:,} pairs spread over the corpus "
        f"(tokenizer.max_sentences): {probes['tokenizer']['seconds']:.0f} s, peak RSS {probes['tokenizer']['peak_rss_mib']:,} MiB", "",
        "| | cached in memory (before) | streamed (now) | Multi30k (cached) |", "| --- | ---: | ---: | ---: |",
        f"| seconds to the first training step | {memory['seconds_to_first_step']} | {stream['seconds_to_first_step']} | {multi30k['seconds_to_first_step']} |",
        f"| steady-state target tokens/s ({entry['steps']} steps) | {memory['target_tokens_per_s']:,} | {stream['target_tokens_per_s']:,} | {multi30k['target_tokens_per_s']:,} |",
    ]
    for mark in memory["rss_mib_as_the_epoch_is_read"]:
        cells = [probe["rss_mib_as_the_epoch_is_read"].get(mark) for probe in (memory, stream)]
        lines.append(f"| RSS after reading {mark} of the epoch (MiB) | "
                     + " | ".join("–" if cell is None else f"{cell:,}" for cell in cells) + " | |")
    lines.append(f"| pairs read per second (tokenizing, batching; no training) | {memory['read_pairs_per_s']:,} | {stream['read_pairs_per_s']:,} | |")
    return "\n".join(lines)


LOCAL_CORPUS_PROBES = ("translate_folder", "first_time", "prepared", "mixed")
# Pairs whose line numbers the probes keep (the first 1% of 3 million, and more).
LOCAL_CORPUS_HEAD = 40_000


@app.command("local-corpus-probe", hidden=True)
def local_corpus_probe(probe: str, work: Path) -> None:
    """One reading of the local corpus's training split in a fresh process; prints a JSON line."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    result: dict = {"rss_mib_at_start": round(_rss_mib())}
    started = time.perf_counter()
    if probe == "translate_folder":
        dataset = tfds.TranslateFolder(root_dir=str(work / "corpus")).as_dataset(split="train")
    else:
        config = DataConfig(dataset="local", source_lang="en", target_lang="sy", manual_dir=str(work / "corpus"),
                            data_dir=str(work / "tfds"))
        dataset = sources.load_split(config, "train", mix_seed=1 if probe == "mixed" else None)
    result["seconds_until_readable"] = round(time.perf_counter() - started, 1)
    pairs, highest, clock, numbers = 0, 0.0, time.perf_counter(), []
    for batch in dataset.batch(4096):
        if not pairs:
            result["seconds_to_first_pairs"] = round(time.perf_counter() - started, 1)
        texts = batch["en"] if isinstance(batch, dict) else batch[0]
        if len(numbers) < LOCAL_CORPUS_HEAD:
            numbers += [int(text.rsplit(b" ", 1)[1]) for text in texts.numpy()]
        pairs += int(tf.shape(texts)[0])
        highest = max(highest, _rss_mib())
    # Each pair ends in its line's number: which tenths of the split the first 1% read come from.
    result["tenths_in_first_percent"] = len({number * 10 // pairs for number in numbers[:pairs // 100]})
    result["pairs"] = pairs
    result["read_pairs_per_s"] = round(pairs / (time.perf_counter() - clock))
    result["rss_mib_while_reading"] = round(highest)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


@app.command("local-corpus")
def local_corpus(
    pairs: Annotated[int, typer.Option(help="Training pairs of the corpus written.")] = 3_000_000,
    out: Annotated[Path, typer.Option(help="JSON file; the Markdown table goes beside it.")] = Path("benchmarks/local_corpus.json"),
) -> None:
    """Reading a large corpus of text files (data.dataset local): TFDS's TranslateFolder against nmt's builder."""
    work = Path(tempfile.mkdtemp(prefix="nmt_local_corpus_"))
    try:
        synthetic = DataConfig(data_dir=str(work / "tfds"))
        (work / "corpus").mkdir()
        for split in ("validation", "test"):
            for lang, texts in zip(("en", "sy"), sources.read_pairs(synthetic, split)):
                (work / "corpus" / f"{lang}.{split}.txt").write_text("".join(f"{text}\n" for text in texts), encoding="utf-8")
        train = sources.read_pairs(synthetic, "train")
        for lang, texts in zip(("en", "sy"), train):
            with open(work / "corpus" / f"{lang}.train.txt", "w", encoding="utf-8") as file:
                file.writelines(f"{texts[index % len(texts)]} {index}\n" for index in range(pairs))
        entry: dict = {"machine": machine(), "code": code_version(), "date": time.strftime("%Y-%m-%d"), "pairs": pairs,
                       "text_bytes": sum(path.stat().st_size for path in (work / "corpus").glob("*.train.txt")), "probes": {}}
        for probe in LOCAL_CORPUS_PROBES:
            print(f"local-corpus: {probe} ...", flush=True)
            finished = subprocess.run([sys.executable, __file__, "local-corpus-probe", probe, str(work)], capture_output=True,
                                      text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            if finished.returncode != 0:
                raise SystemExit(f"probe {probe} failed:\n{finished.stderr[-3000:]}")
            entry["probes"][probe] = json.loads(finished.stdout.strip().splitlines()[-1])
            print(f"  {entry['probes'][probe]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    atomic.write_text(out, json.dumps(entry, indent=2) + "\n")
    atomic.write_text(out.with_suffix(".md"), local_corpus_table(entry) + "\n")
    typer.echo(local_corpus_table(entry))


def local_corpus_table(entry: dict) -> str:
    probes, machine_ = entry["probes"], entry["machine"]
    columns = [probes[name] for name in LOCAL_CORPUS_PROBES]
    rows = [("seconds until the split can be read", "seconds_until_readable"),
            ("seconds to its first 4,096 pairs", "seconds_to_first_pairs"),
            ("resident memory while reading it (MiB)", "rss_mib_while_reading"),
            ("peak resident memory (MiB)", "peak_rss_mib"),
            ("pairs read per second", "read_pairs_per_s"),
            ("tenths of the split the first 1% of pairs read come from", "tenths_in_first_percent")]
    return "\n".join([
        f"# Reading a local corpus of {entry['pairs']:,} training pairs ({entry['text_bytes'] / 1e6:,.0f} MB of text)", "",
        f"Machine: {machine_['cpu']}, {machine_['cores']} cores, TensorFlow {machine_['tensorflow']}; code {entry['code']}, "
        f"{entry['date']}. Each column is a fresh process, which holds {columns[0]['rss_mib_at_start']:,} MiB before reading.", "",
        "| | tfds.TranslateFolder (before) | nmt's builder, first time (preparing) | nmt's builder, prepared | prepared, read mixed |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[f"| {label} | " + " | ".join(f"{column[key]:,}" for column in columns) + " |" for label, key in rows],
    ])


if __name__ == "__main__":
    sys.exit(app())
