"""The training loop: batches -> gradient steps, validation, checkpoints, stopping and resuming."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import keras
import tensorflow as tf

from nmt import averaging, checkpoints
from nmt.config import Config, TrainConfig
from nmt.data import pipeline, sources, tokenizer
from nmt.decoding.translator import Translator
from nmt.errors import NmtError
from nmt.evaluation.evaluator import SplitEvaluator
from nmt.model.transformer import Transformer, build_transformer
from nmt.run_dir import RunDir
from nmt.training.losses import label_smoothed_loss, real_target_logits, real_tokens
from nmt.training import distribute, precision
from nmt.training.schedule import InverseSqrtSchedule

log = logging.getLogger("nmt")

_BATCH_SPEC = {key: tf.TensorSpec([None, None], tf.int32) for key in ("source_ids", "target_in", "target_out")}


class TrainingInterrupted(NmtError):
    """Ctrl-C or SIGTERM during training; the state was saved first."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the training loop is, so it saves as on Ctrl-C."""


@contextlib.contextmanager
def _sigterm_saves() -> Iterator[None]:
    """Schedulers, `kill` and `timeout` stop a job with SIGTERM, whose default kills the process
    at once and loses the epoch in progress; inside this block it stops training like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def terminate(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


@dataclass
class Setup:
    """Everything a training step needs, built from the config: what `train` runs and what the
    speed benchmark times."""

    tokenizers: tokenizer.Tokenizers
    train_batches: tf.data.Dataset
    validation_batches: tf.data.Dataset
    model: Transformer
    optimizer: keras.optimizers.Optimizer
    # Takes a tuple of train.accumulate_steps batches; returns (loss sum, tokens, correct tokens).
    train_step: Callable[[tuple], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]
    validation_step: Callable[[dict], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]
    precision: str


def prepare(config: Config, run: RunDir) -> Setup:
    """Tokenizers (trained on first use), batches, model, optimizer and compiled step functions,
    under the train.distribute strategy."""
    # First: splitting the CPU into replicas must precede any other use of TF's devices.
    strategy = distribute.make_strategy(config.train)
    keras.utils.set_random_seed(config.train.seed)
    tokenizers = prepare_tokenizers(config, run)
    replicas = strategy.num_replicas_in_sync

    def replica_batches(context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        pairs = sources.load_split(config.data, "train")
        if context is not None and context.num_input_pipelines > 1:
            pairs = pairs.shard(context.num_input_pipelines, context.input_pipeline_id)
        return pipeline.make_batches(
            pairs, tokenizers, distribute.replica_batch_tokens(config.train, replicas), config.data.max_length,
            shuffle_buffer=config.train.shuffle_buffer, seed=config.train.seed,
        )

    if config.train.distribute == "none":
        train_batches = replica_batches()
    else:
        # Each replica gets whole bucketed batches of its own rather than slices of one batch.
        train_batches = strategy.distribute_datasets_from_function(replica_batches)
    validation_batches = pipeline.make_batches(
        sources.load_split(config.data, "validation"), tokenizers, config.train.batch_tokens, config.data.max_length
    )
    policy = precision.resolve(config.train.precision)
    with strategy.scope():
        with precision.policy_scope(policy):
            model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
        warmup = config.train.warmup_steps / distribute.batch_multiplier(config.train, replicas)
        optimizer = keras.optimizers.Adam(
            learning_rate=InverseSqrtSchedule(config.train.learning_rate, warmup),
            beta_1=config.train.adam_beta1, beta_2=config.train.adam_beta2, epsilon=config.train.adam_epsilon,
            global_clipnorm=config.train.clip_norm,
        )
        if policy == "mixed_float16":
            # float16 gradients underflow without scaling; bfloat16 has float32's range and needs none.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    train_step = _train_step(strategy, model, optimizer, config.train, train_batches.element_spec)
    validation_step = _validation_step(model)
    return Setup(tokenizers, train_batches, validation_batches, model, optimizer, train_step, validation_step, policy)


def train(config: Config, run: RunDir, progress: bool = True) -> TrainSummary:
    """Trains (or resumes training) in run; returns what happened.

    Raises:
        TrainingInterrupted: on Ctrl-C or SIGTERM, after saving the current state.
    """
    setup = prepare(config, run)
    model, optimizer = setup.model, setup.optimizer
    if setup.precision != "float32":
        log.info("training in %s", setup.precision)
    state = _State()
    latest = checkpoints.latest(run.last_checkpoints)
    if latest is not None:
        saved = checkpoints.restore(latest, model, optimizer)
        state = _State(**{key: saved[key] for key in asdict(state) if key in saved})
        log.info("resuming from %s (step %d, %d epochs done)", latest, int(optimizer.iterations.numpy()), state.epoch)

    bleu = None
    if config.train.validation_bleu:
        decode_model = model
        if setup.precision != "float32" or config.train.distribute != "none":
            # `nmt evaluate` decodes in float32 on one device; so must validation BLEU to equal it:
            # such a copy of the model gets the trained weights before each validation.
            decode_model = build_transformer(config.model, setup.tokenizers.source_vocab_size, setup.tokenizers.target_vocab_size)
        bleu = (SplitEvaluator(config.data, "validation"), Translator(validation_decode(config), decode_model, setup.tokenizers))
    loop = _Loop(config, run, model, optimizer, state, setup.train_step, setup.validation_step, bleu, progress)
    summary = loop.run(setup.train_batches, setup.validation_batches)
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


def _train_step(strategy: tf.distribute.Strategy, model: Transformer, optimizer: keras.optimizers.Optimizer,
                train: TrainConfig, batch_spec) -> Callable:
    """One update from a tuple of train.accumulate_steps batches (per replica): gradients are
    summed over the batches and the replicas, the loss being normalised by all their tokens, so
    an update equals one on the concatenated batch. Returns (loss sum, tokens, correct tokens)."""

    def replica_step(batches):
        local_tokens = tf.add_n([real_tokens(batch["target_out"]) for batch in batches])
        tokens = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local_tokens)
        gradients, loss_sum, correct = None, 0.0, 0.0
        for batch in batches:
            with tf.GradientTape() as tape:
                labels, logits = real_target_logits(model, batch, training=True, drop_padding=not train.jit_compile)
                batch_loss, _, batch_correct = label_smoothed_loss(labels, logits, train.label_smoothing)
                loss = batch_loss / tokens
                if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                    loss = optimizer.scale_loss(loss)
            batch_gradients = tape.gradient(loss, model.trainable_variables)
            gradients = batch_gradients if gradients is None else [
                tf.convert_to_tensor(total) + tf.convert_to_tensor(new) for total, new in zip(gradients, batch_gradients)
            ]
            loss_sum += batch_loss
            correct += batch_correct
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss_sum, local_tokens, correct

    # A fixed signature: bucketing yields many batch shapes, which must not each trigger a retrace
    # (XLA still compiles once per distinct shape).
    @tf.function(input_signature=[(batch_spec,) * train.accumulate_steps], jit_compile=train.jit_compile)
    def train_step(batches):
        results = strategy.run(replica_step, args=(batches,))
        return tuple(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in results)

    return train_step


def _validation_step(model: Transformer) -> Callable:
    @tf.function(input_signature=[_BATCH_SPEC])
    def validation_step(batch):
        labels, logits = real_target_logits(model, batch, training=False)
        # Validation loss is plain cross-entropy, comparable across label-smoothing settings.
        return label_smoothed_loss(labels, logits, 0.0)

    return validation_step


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
        # Batches waiting to fill an update of train.accumulate_steps batches (kept across epochs).
        self.pending: list = []
        self.train_metrics: dict = {}
        self.tokens_per_second = 0.0

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

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
            with _sigterm_saves():
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
        except KeyboardInterrupt as interrupt:
            path = self._save_last()
            terminated = isinstance(interrupt, _Terminated)
            raise TrainingInterrupted(
                f"training {'stopped by SIGTERM' if terminated else 'interrupted'} at step {self.step}; "
                f"state saved to {path}. Run the same nmt train command again to resume.",
                exit_code=128 + (signal.SIGTERM if terminated else signal.SIGINT),
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
            self.pending.append(batch)
            if len(self.pending) < self.config.train.accumulate_steps:
                continue
            group, self.pending = tuple(self.pending), []
            batch_loss, batch_tokens, batch_correct = self.train_step(group)
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
            if translator.model is not self.model:
                translator.model.set_weights(self.model.get_weights())
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
