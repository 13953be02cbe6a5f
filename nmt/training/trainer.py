"""The training loop: batches -> gradient steps, validation, checkpoints, stopping and resuming."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import tensorflow as tf

from nmt import averaging, checkpoints
from nmt.config import Config
from nmt.data import pipeline, sources, tokenizer
from nmt.decoding.translator import Translator
from nmt.errors import NmtError
from nmt.evaluation.evaluator import SplitEvaluator
from nmt.model.transformer import Transformer, build_transformer
from nmt.run_dir import RunDir
from nmt.training.losses import correct_tokens, label_smoothed_loss
from nmt.training.schedule import InverseSqrtSchedule

log = logging.getLogger("nmt")

_BATCH_SPEC = {key: tf.TensorSpec([None, None], tf.int32) for key in ("source_ids", "target_in", "target_out")}


class TrainingInterrupted(NmtError):
    """Ctrl-C during training; the state was saved first."""

    exit_code = 130


@dataclass
class TrainSummary:
    steps: int
    epochs_completed: int
    minutes: float
    stopped_by: str
    # The last validation's metrics (validation_loss, validation_bleu, ...), None if none ran.
    last_validation: dict | None
    best_validation: dict | None
    target_tokens_per_second: float
    parameters: int


@dataclass
class _State:
    """Progress beyond weights and optimizer that resuming needs; saved in each checkpoint."""

    epoch: int = 0
    train_seconds: float = 0.0
    # Best value so far of train.best_metric, and the validation record that reached it.
    best_score: float | None = None
    best_validation: dict | None = None
    validations_without_improvement: int = 0

    def improves(self, value: float, metric: str) -> bool:
        if self.best_score is None:
            return True
        return value > self.best_score if metric == "bleu" else value < self.best_score


def prepare_tokenizers(config: Config, run: RunDir) -> tokenizer.Tokenizers:
    """Loads the run's SentencePiece model(s), training them on the training split the first time."""
    if not tokenizer.exists(run.tokenizer_dir, config.tokenizer.joint):
        log.info("training SentencePiece (%s, %d pieces) on the training split", config.tokenizer.model_type, config.tokenizer.vocab_size)
        source_texts, target_texts = sources.read_pairs(config.data, "train", limit=config.tokenizer.max_sentences)
        tokenizer.train(config.tokenizer, source_texts, target_texts, run.tokenizer_dir)
    return tokenizer.load(run.tokenizer_dir, config.tokenizer.joint)


def train(config: Config, run: RunDir, progress: bool = True) -> TrainSummary:
    """Trains (or resumes training) in run; returns what happened.

    Raises:
        TrainingInterrupted: on Ctrl-C, after saving the current state.
    """
    keras.utils.set_random_seed(config.train.seed)
    tokenizers = prepare_tokenizers(config, run)
    train_batches = pipeline.make_batches(
        sources.load_split(config.data, "train"), tokenizers, config.train.batch_tokens,
        config.data.max_length, shuffle_buffer=config.train.shuffle_buffer, seed=config.train.seed,
    )
    validation_batches = pipeline.make_batches(
        sources.load_split(config.data, "validation"), tokenizers, config.train.batch_tokens, config.data.max_length
    )
    model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    optimizer = keras.optimizers.Adam(
        learning_rate=InverseSqrtSchedule(config.train.learning_rate, config.train.warmup_steps),
        beta_1=config.train.adam_beta1, beta_2=config.train.adam_beta2, epsilon=config.train.adam_epsilon,
        global_clipnorm=config.train.clip_norm,
    )
    optimizer.build(model.trainable_variables)
    state = _State()
    latest = checkpoints.latest(run.last_checkpoints)
    if latest is not None:
        saved = checkpoints.restore(latest, model, optimizer)
        state = _State(**{key: saved[key] for key in asdict(state) if key in saved})
        log.info("resuming from %s (step %d, %d epochs done)", latest, int(optimizer.iterations), state.epoch)

    train_step, validation_step = _step_functions(model, optimizer, config.train.label_smoothing)
    bleu = None
    if config.train.validation_bleu:
        bleu = (SplitEvaluator(config.data, "validation"), Translator(validation_decode(config), model, tokenizers))
    loop = _Loop(config, run, model, optimizer, state, train_step, validation_step, bleu, progress)
    summary = loop.run(train_batches, validation_batches)
    if config.train.average_last:
        path = averaging.average(run, model, averaging.last_checkpoints(run, config.train.average_last))
        log.info("averaged the last %d checkpoints into %s", config.train.average_last, path)
    return summary


def validation_decode(config: Config) -> Config:
    """The config validation BLEU decodes with: config.decode with train.validation_beam_size.
    `nmt evaluate --split validation` with these settings reproduces the logged BLEU."""
    return dataclasses.replace(
        config, decode=dataclasses.replace(config.decode, beam_size=config.train.validation_beam_size)
    )


def _step_functions(model: Transformer, optimizer: keras.optimizers.Optimizer, smoothing: float):
    # A fixed signature: bucketing yields many batch shapes, which must not each trigger a retrace.
    @tf.function(input_signature=[_BATCH_SPEC])
    def train_step(batch):
        with tf.GradientTape() as tape:
            logits = model(batch, training=True)
            loss_sum, tokens = label_smoothed_loss(batch["target_out"], logits, smoothing)
            loss = loss_sum / tokens
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss_sum, tokens, correct_tokens(batch["target_out"], logits)

    @tf.function(input_signature=[_BATCH_SPEC])
    def validation_step(batch):
        logits = model(batch, training=False)
        # Validation loss is plain cross-entropy, comparable across label-smoothing settings.
        loss_sum, tokens = label_smoothed_loss(batch["target_out"], logits, 0.0)
        return loss_sum, tokens, correct_tokens(batch["target_out"], logits)

    return train_step, validation_step


class _Loop:
    """One invocation of training: steps until a stopping condition holds, validating and
    checkpointing every train.eval_every epochs (or train.eval_every_steps steps) and at the end."""

    def __init__(self, config, run, model, optimizer, state, train_step, validation_step, bleu, progress):
        self.config, self.run_dir, self.model, self.optimizer, self.state = config, run, model, optimizer, state
        self.train_step, self.validation_step = train_step, validation_step
        self.bleu = bleu
        self.progress = progress
        self.validation: dict | None = None
        self.validated_step: int | None = None
        self.train_metrics: dict = {}
        self.tokens_per_second = 0.0

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations)

    def _stop_reason(self) -> str | None:
        train = self.config.train
        if train.max_steps is not None and self.step >= train.max_steps:
            return "max_steps"
        if train.max_minutes is not None and self.state.train_seconds >= train.max_minutes * 60:
            return "max_minutes"
        if self.state.epoch >= train.epochs:
            return "epochs"
        patience = train.early_stopping_patience
        if patience is not None and self.state.validations_without_improvement >= patience:
            return "early_stopping"
        return None

    def run(self, train_batches: tf.data.Dataset, validation_batches: tf.data.Dataset) -> TrainSummary:
        stopped_by = self._stop_reason()
        first_step = self.step
        steps_per_epoch = None
        try:
            while stopped_by is None:
                epoch_steps, stopped_by = self._epoch(train_batches, validation_batches, steps_per_epoch)
                if stopped_by is None:
                    self.state.epoch += 1
                    steps_per_epoch = epoch_steps
                    if not self.config.train.eval_every_steps and self.state.epoch % self.config.train.eval_every == 0:
                        self._validate_and_save(validation_batches)
                    stopped_by = self._stop_reason()
            # Where training stopped is validated and saved, unless it just was (or nothing ran).
            if self.step != first_step and self.validated_step != self.step:
                self._validate_and_save(validation_batches)
        except KeyboardInterrupt:
            path = self._save_last()
            raise TrainingInterrupted(
                f"training interrupted at step {self.step}; state saved to {path}. "
                f"Run the same nmt train command again to resume."
            ) from None
        return TrainSummary(
            steps=self.step,
            epochs_completed=self.state.epoch,
            minutes=self.state.train_seconds / 60,
            stopped_by=stopped_by,
            last_validation=self.validation,
            best_validation=self.state.best_validation,
            target_tokens_per_second=self.tokens_per_second,
            parameters=self.model.count_params(),
        )

    def _epoch(
        self, batches: tf.data.Dataset, validation_batches: tf.data.Dataset, steps_per_epoch: int | None
    ) -> tuple[int, str | None]:
        """Trains until the data ends (returns None) or a budget runs out (returns its name)."""
        epoch = self.state.epoch + 1
        if self.progress:
            print(f"Epoch {epoch}/{self.config.train.epochs}")
        # A live bar on terminals only; logs get the one summary line printed at the end of the epoch.
        bar = keras.utils.Progbar(
            steps_per_epoch, stateful_metrics=["loss", "acc", "tok/s", "lr"],
            verbose=1 if self.progress and sys.stdout.isatty() else 0,
        )
        eval_every_steps = self.config.train.eval_every_steps
        loss_sum = tokens = correct = seconds = 0.0
        started = clock = time.monotonic()
        steps = 0
        for batch in batches:
            batch_loss, batch_tokens, batch_correct = self.train_step(batch)
            loss_sum += float(batch_loss)
            tokens += float(batch_tokens)
            correct += float(batch_correct)
            steps += 1
            now = time.monotonic()
            self.state.train_seconds += now - clock
            seconds += now - clock
            self.tokens_per_second = tokens / max(seconds, 1e-9)
            self.train_metrics = {"train_loss": loss_sum / tokens, "train_accuracy": correct / tokens}
            bar.update(steps, [
                ("loss", loss_sum / tokens), ("acc", correct / tokens),
                ("tok/s", self.tokens_per_second), ("lr", float(self.optimizer.learning_rate)),
            ])
            if eval_every_steps and self.step % eval_every_steps == 0:
                self._validate_and_save(validation_batches)
            clock = time.monotonic()
            reason = self._stop_reason()
            if reason in ("max_steps", "max_minutes", "early_stopping"):
                self._end_epoch(bar, steps, time.monotonic() - started)
                return steps, reason
        # Reaching the end of the data takes time too (tf.data flushes its buckets): it counts.
        self.state.train_seconds += time.monotonic() - clock
        self._end_epoch(bar, steps, time.monotonic() - started)
        return steps, None

    def _end_epoch(self, bar: keras.utils.Progbar, steps: int, seconds: float) -> None:
        bar.update(steps, finalize=True)
        if self.progress and self.train_metrics:
            print(
                f"  {steps} steps in {seconds:.0f} s: loss {self.train_metrics['train_loss']:.3f}, "
                f"accuracy {self.train_metrics['train_accuracy']:.3f}, {self.tokens_per_second:,.0f} target tokens/s "
                f"(step {self.step}, {self.state.train_seconds / 60:.1f} min in all)"
            )

    def _save_last(self) -> Path:
        return checkpoints.save(
            self.run_dir.last_checkpoints, self.step, self.model, self.optimizer, asdict(self.state),
            keep=self.config.train.keep_checkpoints,
        )

    def _validate_and_save(self, batches: tf.data.Dataset) -> None:
        """Validation loss (and BLEU), the best and last checkpoints, and a line in metrics.jsonl."""
        started = time.monotonic()
        loss_sum = tokens = correct = 0.0
        for batch in batches:
            batch_loss, batch_tokens, batch_correct = self.validation_step(batch)
            loss_sum += float(batch_loss)
            tokens += float(batch_tokens)
            correct += float(batch_correct)
        loss = loss_sum / max(tokens, 1.0)
        self.validation = {
            "validation_loss": loss,
            "validation_accuracy": correct / max(tokens, 1.0),
            "validation_perplexity": math.exp(min(loss, 50.0)),
        }
        if self.bleu is not None:
            evaluator, translator = self.bleu
            evaluation = evaluator.run(translator)
            self.validation.update(
                validation_bleu=evaluation.scores["bleu"], validation_chrf=evaluation.scores["chrf"],
                validation_decode_seconds=round(evaluation.seconds, 2),
            )
        self.state.train_seconds += time.monotonic() - started
        metric = self.config.train.best_metric
        value = self.validation["validation_bleu" if metric == "bleu" else "validation_loss"]
        improved = self.state.improves(value, metric)
        record = {
            "epoch": self.state.epoch,
            "step": self.step,
            **self.train_metrics,
            **self.validation,
            "best": improved,
            "learning_rate": float(self.optimizer.learning_rate),
            "target_tokens_per_second": self.tokens_per_second,
            "elapsed_minutes": self.state.train_seconds / 60,
        }
        if improved:
            self.state.best_score, self.state.best_validation = value, record
            self.state.validations_without_improvement = 0
            checkpoints.save(self.run_dir.best_checkpoints, self.step, self.model, None, asdict(self.state), keep=1)
        else:
            self.state.validations_without_improvement += 1
        self._save_last()
        self.validated_step = self.step
        with self.run_dir.metrics_file.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        if self.progress:
            bleu = (
                f", BLEU {self.validation['validation_bleu']:.2f} (beam {self.config.train.validation_beam_size})"
                if "validation_bleu" in self.validation else ""
            )
            print(
                f"  validation loss {loss:.3f}, accuracy {self.validation['validation_accuracy']:.3f}, "
                f"perplexity {self.validation['validation_perplexity']:.2f}{bleu}{'  (best)' if improved else ''}",
            )
