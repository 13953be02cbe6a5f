"""The training loop: batches -> gradient steps, validation, checkpoints, stopping and resuming.

It reports what happens as records to the sinks it is given (nmt/training/sinks.py), and scores
translations only through the `validate` callable it is given: training imports neither decoding
nor evaluation."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from nmt import checkpoints
from nmt.config import Config, TrainConfig
from nmt.data import pipeline, sources, tokenizer
from nmt.data.corpus import Corpus
from nmt.errors import NmtError
from nmt.model.transformer import Transformer, build_transformer
from nmt.run_dir import RunDir
from nmt.training.losses import label_smoothed_loss, real_target_logits, real_tokens
from nmt.training import distribute, finetune, precision
from nmt.training.moving_average import MovingAverage
from nmt.training.schedule import make_optimizer
from nmt.training.sinks import EpochEnd, EpochStart, Sample, Sink, StepRecord, ValidationRecord

log = logging.getLogger("nmt")

_BATCH_SPEC = {key: tf.TensorSpec([None, None], tf.int32) for key in ("source_ids", "target_in", "target_out")}


class TrainingInterrupted(NmtError):
    """Ctrl-C or SIGTERM during training; the state was saved first."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteTraining(NmtError):
    """The loss or the gradient became NaN or infinite (train.on_nonfinite); nothing was saved
    from that step."""


class OutOfMemory(NmtError):
    """A training or validation step exhausted the device's memory."""


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
    # Where the data stands: the first batch whose update is not applied yet, as (epoch from 1,
    # index in that epoch's batches). Resuming reads on from there, as an uninterrupted run would.
    # (0, 0) in checkpoints written before positions were kept: the next epoch starts afresh.
    data_epoch: int = 0
    data_batch: int = 0

    def improves(self, value: float, metric: str) -> bool:
        if self.best_score is None:
            return True
        return value > self.best_score if metric == "bleu" else value < self.best_score


@dataclass(frozen=True)
class ValidationScores:
    """What `validate(model)` returns: translation metrics (e.g. validation_bleu, validation_chrf,
    validation_decode_seconds), which join the validation record, and a few sample translations."""

    metrics: dict[str, float]
    samples: tuple[Sample, ...] = ()


Validate = Callable[[keras.Model], ValidationScores]


@dataclass
class Setup:
    """Everything a training step needs, built from the config: what `train` runs and what the
    speed benchmark times."""

    tokenizers: tokenizer.Tokenizers
    # Epoch (from 1) -> its batches: the same batches in the same order whenever it is called.
    train_batches: Callable[[int], Iterable]
    validation_batches: tf.data.Dataset
    model: Transformer
    optimizer: keras.optimizers.Optimizer
    # Takes a tuple of train.accumulate_steps batches; returns (loss sum, tokens, correct tokens,
    # gradient norm, 1.0 if the step was dropped as non-finite).
    train_step: Callable[[tuple], tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]]
    validation_step: Callable[[dict], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]
    precision: str
    # The moving average of the weights that train_step updates (train.ema_decay), or None.
    average: MovingAverage | None = None


def prepare(config: Config, run: RunDir, check_data: Callable[[tokenizer.Tokenizers], None] | None = None) -> Setup:
    """Tokenizers (trained on first use), batches, model, optimizer and compiled step functions,
    under the train.distribute strategy. check_data, if given, looks at the data once the
    tokenizers exist."""
    if config.train.batch_tokens == "auto":
        raise NmtError("train.batch_tokens=auto is decided before training: by nmt train, or nmt.training.autotune.decide")
    # First: splitting the CPU into replicas must precede any other use of TF's devices.
    strategy = distribute.make_strategy(config.train)
    keras.utils.set_random_seed(config.train.seed)
    tokenizers = finetune.prepare_tokenizers(config, run.tokenizer_dir)
    if check_data is not None:
        check_data(tokenizers)
    # Preparing a dataset (on its first use) or a tokenizer draws from Python's and NumPy's global
    # generators, which Keras seeds initializers from: the model's initial weights must not depend
    # on whether they did. (Not keras.utils.set_random_seed again: reseeding TensorFlow clears its
    # kernel caches, and with them the tokenizers' SentencePiece resources.)
    random.seed(config.train.seed)
    np.random.seed(config.train.seed)
    replicas = strategy.num_replicas_in_sync

    budget = distribute.replica_batch_tokens(config.train, replicas)
    corpora = sources.training_corpora(config.data)
    tag_ids = [None if corpus.tag is None else _tag_id(tokenizers, corpus) for corpus in corpora]
    sizes = [sources.split_size(corpus.data, "train") for corpus in corpora]
    cache = pipeline.cache_in_memory(None if None in sizes else sum(sizes))
    if not cache:
        log.info("the training %s large (or of unknown size): %s, tokenized anew each epoch",
                 "split is" if len(corpora) == 1 else "corpora are", "it streams" if len(corpora) == 1 else "they stream")
    if len(corpora) > 1:
        log.info("training corpora (passes per epoch): %s", "; ".join(
            corpus.describe(size) for corpus, size in zip(corpora, sizes)))
    # Pairs in their files' order (local text, often one domain or source after another) that the
    # shuffle buffer cannot hold whole would train on one region of the files at a time: they
    # are read mixed (sources.load_split), once for the cache, or anew each epoch as they stream.
    mixed = [sources.keeps_file_order(corpus.data) and (size is None or size > config.train.shuffle_buffer)
             for corpus, size in zip(corpora, sizes)]

    samplers = tokenizer.samplers(run.tokenizer_dir, config.tokenizer)
    if samplers:
        log.info("subword regularization: each epoch segments the training sentences anew (among their %d best "
                 "segmentations, alpha %g)", config.tokenizer.sample_nbest, config.tokenizer.sample_alpha)

    def replica_pairs(index: int, context: tf.distribute.InputContext | None = None, epoch: int = 0) -> tf.data.Dataset:
        seed = pipeline.epoch_seed(config.train.seed, epoch) if mixed[index] else None
        pairs = sources.load_split(corpora[index].data, "train", seed)
        if context is not None and context.num_input_pipelines > 1:
            pairs = pairs.shard(context.num_input_pipelines, context.input_pipeline_id)
        return pairs

    def epoch_batches(examples: tf.data.Dataset, epoch: int) -> tf.data.Dataset:
        return pipeline.batch_examples(examples, budget, config.data.max_length,
                                       pipeline.epoch_seed(config.train.seed, epoch), config.train.shuffle_buffer,
                                       fixed_shapes=config.train.jit_compile)

    # What is cached is read once (mixed by epoch 0's seed, whichever epoch a process starts at)
    # and shared by the epochs, one per corpus and input pipeline: the examples, or with subword
    # sampling the pairs, segmented anew each epoch; streamed pairs are read anew each epoch. Under
    # a strategy, each replica gets whole bucketed batches of its own rather than slices of one batch.
    cached: dict[tuple[int, int], tf.data.Dataset] = {}

    def segmented(pairs: tf.data.Dataset, epoch: int, index: int) -> tf.data.Dataset:
        # Each corpus draws its segmentations from a seed of its own.
        seed = pipeline.epoch_seed(config.train.seed, epoch) * len(corpora) + index
        return pipeline.make_examples(pairs, tokenizers, config.data.max_length, cache=False, samplers=samplers,
                                      seed=seed, tag_id=tag_ids[index])

    def corpus_examples(index: int, epoch: int, context: tf.distribute.InputContext | None) -> tf.data.Dataset:
        if not cache:
            return segmented(replica_pairs(index, context, epoch), epoch, index)
        key = (0 if context is None else context.input_pipeline_id, index)
        if key not in cached:
            pairs = replica_pairs(index, context)
            cached[key] = pairs.cache() if samplers else pipeline.make_examples(pairs, tokenizers, config.data.max_length,
                                                                                 tag_id=tag_ids[index])
        return segmented(cached[key], epoch, index) if samplers else cached[key]

    def examples_of(epoch: int, context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        return pipeline.mix([corpus_examples(index, epoch, context) for index in range(len(corpora))], sizes,
                            [corpus.weight for corpus in corpora], pipeline.epoch_seed(config.train.seed, epoch))

    if config.train.distribute == "none":
        def train_batches(epoch: int):
            return epoch_batches(examples_of(epoch), epoch)
    else:
        def train_batches(epoch: int):
            return strategy.distribute_datasets_from_function(
                lambda context: epoch_batches(examples_of(epoch, context), epoch))

    validation_batches = pipeline.make_batches(
        sources.load_split(config.data, "validation"), tokenizers, config.train.batch_tokens, config.data.max_length
    )
    policy = precision.resolve(config.train.precision)
    with strategy.scope():
        with precision.policy_scope(policy):
            model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
        warmup = config.train.warmup_steps / distribute.batch_multiplier(config.train, replicas)
        optimizer = make_optimizer(config.train, policy, warmup)
        optimizer.build(model.trainable_variables)
        average = MovingAverage(model.trainable_variables, config.train.ema_decay) if config.train.ema_decay else None
    train_step = _train_step(strategy, model, optimizer, config.train, train_batches(1).element_spec, average)
    validation_step = _validation_step(model)
    return Setup(tokenizers, train_batches, validation_batches, model, optimizer, train_step, validation_step, policy,
                 average)


def _tag_id(tokenizers: tokenizer.Tokenizers, corpus: Corpus) -> int:
    """The source vocabulary's id of a corpus's tag, which the tokenizer reserved when trained."""
    found = tokenizer.piece_id(tokenizers.source, corpus.tag)
    if found is None:
        raise NmtError(f"{corpus.key}.tag {corpus.tag!r} is not in the run's tokenizer, which was made without it: train "
                       "in a new run directory (--set train.run_dir=DIR), whose tokenizer reserves the tag (starting from "
                       "another run, with tokenizer.update_vocab=true, which adds it)")
    return found


def train(config: Config, run: RunDir, validate: Validate | None = None, sinks: Sequence[Sink] = (),
          check_data: Callable[[tokenizer.Tokenizers], None] | None = None) -> TrainSummary:
    """Trains (or resumes training) in run, validating with `validate` (translation metrics
    besides the loss) and reporting to sinks; returns what happened. check_data: see prepare.

    Raises:
        TrainingInterrupted: on Ctrl-C or SIGTERM, after saving the current state.
    """
    setup = prepare(config, run, check_data)
    state = _State()
    latest = checkpoints.latest(run.last_checkpoints)
    if latest is not None:
        saved = checkpoints.restore(latest, setup.model, setup.optimizer)
        state = _State(**{key: saved[key] for key in asdict(state) if key in saved})
        log.info("resuming from %s (step %d, %d epochs done)", latest, int(setup.optimizer.iterations.numpy()), state.epoch)
    elif config.train.init_from is not None:
        finetune.Base.open(config).initialize(setup.model, setup.optimizer, config.train.resume_optimizer)
    if setup.average is not None:
        _start_average(setup.average, setup.model, latest)
    try:
        return _Loop(config, run, setup, state, validate, sinks).run()
    finally:
        for sink in sinks:
            sink.close()


def _start_average(average: MovingAverage, model: keras.Model, checkpoint: Path | None) -> None:
    """The average resumes from the checkpoint's; a run's first start (from another run's
    weights, too) or a checkpoint written without one starts it at the weights."""
    saved = checkpoints.saved_average(checkpoint, model) if checkpoint is not None else None
    if saved is not None:
        average.load(saved)
        return
    average.restart()
    if checkpoint is not None:
        log.info("%s holds no moving average of the weights: train.ema_decay averages from its weights on", checkpoint)


def plan(config: Config, run: RunDir, timed_steps: int = 10, max_counted_batches: int = 5000) -> dict:
    """What training would do, without checkpoints or records: the data, batches and precision,
    steps per epoch (counted over the first epoch's batches, or estimated from the first
    max_counted_batches of a large one), seconds per step (timed_steps timed after two that
    trace and compile) and the expected time per epoch and in all under the config's budgets.
    It trains steps in `run` (a scratch run directory), and the tokenizer there when it has none."""
    setup = prepare(config, run)
    pairs = sources.epoch_pairs(config.data)
    batches = examples = 0
    replicas = 1
    for batch in setup.train_batches(1):
        # Under several replicas a batch holds one tensor per replica.
        parts = getattr(batch["source_ids"], "values", (batch["source_ids"],))
        replicas = len(parts)
        batches += 1
        examples += sum(int(part.shape[0]) for part in parts)
        if batches == max_counted_batches:
            break
    counted = batches < max_counted_batches or pairs is None
    steps_per_epoch = max(1, (batches if counted else round(batches * pairs / examples)) // config.train.accumulate_steps)
    group = config.train.accumulate_steps
    stream = itertools.chain.from_iterable(setup.train_batches(epoch) for epoch in itertools.count(1))
    for _ in range(2):
        float(setup.train_step(tuple(next(stream) for _ in range(group)))[0])
    started = time.perf_counter()
    for _ in range(timed_steps):
        float(setup.train_step(tuple(next(stream) for _ in range(group)))[0])
    per_step = (time.perf_counter() - started) / timed_steps
    train = config.train
    # The budget that runs out first, in steps.
    ends = [(train.epochs * steps_per_epoch, "epochs")]
    if train.max_steps is not None:
        ends.append((train.max_steps, "max_steps"))
    if train.max_minutes is not None:
        ends.append((int(train.max_minutes * 60 / per_step), "max_minutes"))
    steps, budget = min(ends)
    return {
        "training_pairs": pairs, "precision": setup.precision, "batch_tokens": train.batch_tokens, "replicas": replicas,
        "accumulate_steps": group, "steps_per_epoch": steps_per_epoch, "steps_per_epoch_counted": counted,
        "seconds_per_step": per_step, "timed_steps": timed_steps, "epoch_seconds": steps_per_epoch * per_step,
        "steps": steps, "seconds": steps * per_step, "ended_by": budget, "parameters": setup.model.count_params(),
    }


def _train_step(strategy: tf.distribute.Strategy, model: Transformer, optimizer: keras.optimizers.Optimizer,
                train: TrainConfig, batch_spec, average: MovingAverage | None = None) -> Callable:
    """One update from a tuple of train.accumulate_steps batches (per replica): gradients are
    summed over the batches and the replicas, the loss being normalised by all their tokens, so
    an update equals one on the concatenated batch. A step whose loss or gradient is not finite
    is not applied. An applied update moves `average` (if any) toward the new weights. Returns
    (loss sum, tokens, correct tokens, gradient norm, 1.0 if the step was not applied for a
    non-finite value else 0.0)."""

    def replica_step(batches):
        local_tokens = tf.add_n([real_tokens(batch["target_out"]) for batch in batches])
        tokens = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local_tokens)
        gradients, loss_sum, correct = None, 0.0, 0.0
        for batch in batches:
            with tf.GradientTape() as tape:
                labels, logits = real_target_logits(model, batch, training=True, drop_padding=not train.jit_compile)
                batch_loss, _, batch_correct = label_smoothed_loss(labels, logits, train.label_smoothing)
                loss = batch_loss / tokens
                if scaled:
                    loss = optimizer.scale_loss(loss)
            batch_gradients = tape.gradient(loss, model.trainable_variables)
            gradients = batch_gradients if gradients is None else [
                tf.convert_to_tensor(total) + tf.convert_to_tensor(new) for total, new in zip(gradients, batch_gradients)
            ]
            loss_sum += batch_loss
            correct += batch_correct
        gradient_norm = tf.linalg.global_norm(gradients)
        if scaled:
            gradient_norm /= tf.cast(optimizer.dynamic_scale, gradient_norm.dtype)
            # Scaled float16 gradients overflow routinely: the optimizer skips those steps and
            # lowers its scale. Only a non-finite loss is a failure.
            finite = tf.math.is_finite(loss_sum)
        else:
            finite = tf.logical_and(tf.math.is_finite(loss_sum), tf.math.is_finite(gradient_norm))
        return gradients, (loss_sum, local_tokens, correct, gradient_norm, tf.cast(tf.logical_not(finite), tf.float32))

    def replica_apply(gradients):
        before = tf.identity(optimizer.iterations)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        if average is not None:
            average.update(optimizer.iterations, applied=optimizer.iterations > before)

    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    # A fixed signature: bucketing yields many batch shapes, which must not each trigger a retrace
    # (XLA still compiles once per distinct shape: under jit_compile the batches have a few fixed ones).
    @tf.function(input_signature=[(batch_spec,) * train.accumulate_steps], jit_compile=train.jit_compile)
    def train_step(batches):
        gradients, (*sums, gradient_norm, failed) = strategy.run(replica_step, args=(batches,))
        # Any replica's failure fails the step on all of them: they apply it together or not at all.
        failed = tf.minimum(strategy.reduce(tf.distribute.ReduceOp.SUM, failed, axis=None), 1.0)

        def apply() -> tf.Tensor:
            strategy.run(replica_apply, args=(gradients,))
            return tf.constant(0.0)

        # The condition sits outside the replicas' function: applying gradients synchronises the
        # replicas, which a condition inside it cannot contain. The loss-scaling optimizer skips
        # overflowing steps itself.
        skipped = tf.maximum(apply(), failed) if scaled else tf.cond(failed > 0, lambda: tf.constant(1.0), apply)
        return (*(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in sums),
                strategy.reduce(tf.distribute.ReduceOp.MEAN, gradient_norm, axis=None), skipped)

    return train_step


def _validation_step(model: Transformer) -> Callable:
    @tf.function(input_signature=[_BATCH_SPEC])
    def validation_step(batch):
        labels, logits = real_target_logits(model, batch, training=False)
        # Validation loss is plain cross-entropy, comparable across label-smoothing settings.
        return label_smoothed_loss(labels, logits, 0.0)

    return validation_step


@dataclass
class _Totals:
    """Sums over the batches of one epoch (or one validation pass)."""

    loss: float = 0.0
    tokens: float = 0.0
    correct: float = 0.0
    seconds: float = 0.0
    steps: int = 0
    # Updates that float16 loss scaling dropped because their gradients overflowed.
    overflows: int = 0

    def add(self, loss: float, tokens: float, correct: float) -> None:
        self.loss += loss
        self.tokens += tokens
        self.correct += correct

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.tokens, 1.0)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.tokens, 1.0)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


class _Loop:
    """One invocation of training: steps until a stopping condition holds, validating and
    checkpointing every train.eval_every epochs (or train.eval_every_steps steps) and at the end."""

    def __init__(self, config: Config, run: RunDir, setup: Setup, state: _State, validate: Validate | None,
                 sinks: Sequence[Sink]):
        self.config, self.run_dir, self.setup, self.state = config, run, setup, state
        self.validate, self.sinks = validate, sinks
        self.validated_step: int | None = None
        self.last_validation: dict | None = None
        # Batches waiting to fill an update of train.accumulate_steps batches (kept across
        # epochs), each with its (epoch, index) position.
        self.pending: list[tuple[tuple[int, int], object]] = []
        # The position of the next batch to read.
        self.next_position = (state.epoch + 1, 0)
        # The epoch in progress (or the last one).
        self.totals = _Totals()
        # Steps of a whole epoch, once one has been trained (for the expected end).
        self.steps_per_epoch: int | None = None
        # Steps dropped for a non-finite loss or gradient: in a row, and in this invocation.
        self.skipped_in_a_row = 0
        self.skipped = 0

    @property
    def step(self) -> int:
        return int(self.setup.optimizer.iterations.numpy())

    def _emit(self, method: str, record) -> None:
        for sink in self.sinks:
            getattr(sink, method)(record)

    def _stop_reason(self) -> str | None:
        state = self.state
        return self.config.train.stop_reason(self.step, state.epoch, state.train_seconds, state.validations_without_improvement)

    def _resume_data(self) -> None:
        """Reads the data up to where the checkpoint stopped: the batches of the epoch in progress
        that were applied are skipped; those read but not yet applied (accumulation) are read
        again."""
        epoch, index = self.state.data_epoch, self.state.data_batch
        if epoch == self.state.epoch and epoch > 0:
            # A group of accumulated batches began at the end of the last finished epoch.
            for position, batch in enumerate(self.setup.train_batches(epoch)):
                if position >= index:
                    self.pending.append(((epoch, position), batch))
        elif epoch == self.state.epoch + 1 and index:
            self.next_position = (epoch, index)
            log.info("resuming epoch %d at its batch %d", epoch, index + 1)

    def run(self) -> TrainSummary:
        stopped_by = self._stop_reason()
        first_step = self.step
        self._emit("started", first_step)
        if stopped_by is None:
            self._resume_data()
        steps_per_epoch = None
        try:
            with _sigterm_saves():
                while stopped_by is None:
                    epoch_steps, stopped_by = self._epoch(steps_per_epoch)
                    if stopped_by is None:
                        self.state.epoch += 1
                        steps_per_epoch = epoch_steps
                        if not self.config.train.eval_every_steps and self.state.epoch % self.config.train.eval_every == 0:
                            self._validate_and_save()
                        stopped_by = self._stop_reason()
                # Where training stopped is validated and saved, unless it just was (or nothing ran).
                if self.step != first_step and self.validated_step != self.step:
                    self._validate_and_save()
        except tf.errors.ResourceExhaustedError:
            train = self.config.train
            raise OutOfMemory(
                f"out of memory at step {self.step + 1} with train.batch_tokens={train.batch_tokens}: set "
                f"train.batch_tokens={train.batch_tokens // 2} and train.accumulate_steps={2 * train.accumulate_steps} "
                "(the same update, in halves), or train.batch_tokens=auto to measure what fits; "
                "the run keeps its last checkpoint"
            ) from None
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
            last_validation=self.last_validation,
            best_validation=self.state.best_validation,
            target_tokens_per_second=self.totals.tokens_per_second,
            parameters=self.setup.model.count_params(),
        )

    def _epoch(self, steps_per_epoch: int | None) -> tuple[int, str | None]:
        """Trains until the data ends (returns None) or a budget runs out (returns its name)."""
        epoch = self.state.epoch + 1
        self._emit("epoch_started", EpochStart(epoch, self.config.train.epochs, steps_per_epoch))
        eval_every_steps, save_every_steps = self.config.train.eval_every_steps, self.config.train.save_every_steps
        totals = self.totals = _Totals()
        started = clock = time.monotonic()
        batches = iter(self.setup.train_batches(epoch))
        skip = self.next_position[1] if self.next_position[0] == epoch else 0
        for _ in range(skip):
            next(batches)
        self.next_position = (epoch, skip)
        for batch in batches:
            self.pending.append((self.next_position, batch))
            self.next_position = (epoch, self.next_position[1] + 1)
            if len(self.pending) < self.config.train.accumulate_steps:
                continue
            group, self.pending = tuple(batch for _, batch in self.pending), []
            step_before = self.step
            loss, tokens, correct, gradient_norm, skipped = (float(value) for value in self.setup.train_step(group))
            if skipped:
                self._nonfinite(loss, gradient_norm)
                clock = time.monotonic()
                continue
            if self.step == step_before:
                # Loss scaling (mixed_float16) dropped an update whose gradients overflowed and
                # halved its scale, as it does until it finds one that fits: no step was taken,
                # so none is recorded, validated or saved.
                totals.overflows += 1
                clock = time.monotonic()
                continue
            self.skipped_in_a_row = 0
            totals.add(loss, tokens, correct)
            totals.steps += 1
            now = time.monotonic()
            self.state.train_seconds += now - clock
            totals.seconds += now - clock
            self._emit("stepped", StepRecord(
                step=self.step, epoch=epoch, steps_in_epoch=totals.steps,
                loss=loss / max(tokens, 1.0), accuracy=correct / max(tokens, 1.0),
                epoch_loss=totals.mean_loss, epoch_accuracy=totals.accuracy,
                learning_rate=float(self.setup.optimizer.learning_rate), gradient_norm=gradient_norm,
                target_tokens_per_second=totals.tokens_per_second,
            ))
            if eval_every_steps and self.step % eval_every_steps == 0:
                self._validate_and_save()
            elif save_every_steps and self.step % save_every_steps == 0:
                self._save_last()
            clock = time.monotonic()
            reason = self._stop_reason()
            if reason in ("max_steps", "max_minutes", "early_stopping"):
                self._end_epoch(epoch, time.monotonic() - started, epochs_done=epoch - 1)
                return totals.steps, reason
        # Reaching the end of the data takes time too (tf.data flushes its buckets): it counts.
        self.state.train_seconds += time.monotonic() - clock
        self.next_position = (epoch + 1, 0)
        self._end_epoch(epoch, time.monotonic() - started, epochs_done=epoch)
        return totals.steps, None

    def _nonfinite(self, loss: float, gradient_norm: float) -> None:
        """A step was dropped for a non-finite loss or gradient: go on (train.on_nonfinite: skip,
        up to train.nonfinite_skip_limit in a row) or stop with the run's last checkpoint intact."""
        train = self.config.train
        self.skipped_in_a_row += 1
        self.skipped += 1
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {gradient_norm}"
        if train.on_nonfinite == "skip" and self.skipped_in_a_row < train.nonfinite_skip_limit:
            log.warning("step %d: %s; the step is skipped (%d in a row, %d in all)", self.step + 1, what,
                        self.skipped_in_a_row, self.skipped)
            return
        latest = checkpoints.latest(self.run_dir.last_checkpoints)
        kept = f"the run keeps its last checkpoint, {latest}" if latest else "no checkpoint was saved yet"
        in_a_row = f" ({self.skipped_in_a_row} steps in a row)" if train.on_nonfinite == "skip" else ""
        raise NonFiniteTraining(
            f"training stopped at step {self.step + 1}: {what}{in_a_row}; {kept}. Lower train.learning_rate "
            "or set train.clip_norm (or check the data), then run the command again to resume"
        )

    def _end_epoch(self, epoch: int, seconds: float, epochs_done: int) -> None:
        totals = self.totals
        if epochs_done == epoch:
            # An epoch begun in an earlier invocation counts only its remaining steps here.
            self.steps_per_epoch = max(self.steps_per_epoch or 0, totals.steps)
        remaining = self.config.train.remaining(self.step, epochs_done, self.state.train_seconds, self.steps_per_epoch)
        self._emit("epoch_ended", EpochEnd(
            epoch=epoch, steps=totals.steps, seconds=seconds, step=self.step,
            total_minutes=self.state.train_seconds / 60, loss=totals.mean_loss, accuracy=totals.accuracy,
            target_tokens_per_second=totals.tokens_per_second, remaining=remaining, overflows=totals.overflows,
        ))

    def _save_last(self) -> Path:
        self._record_position()
        average = self.setup.average.values() if self.setup.average is not None else None
        return checkpoints.save(
            self.run_dir.last_checkpoints, self.step, self.setup.model, self.setup.optimizer, asdict(self.state),
            keep=self.config.train.keep_checkpoints, average=average,
        )

    def _record_position(self) -> None:
        self.state.data_epoch, self.state.data_batch = self.pending[0][0] if self.pending else self.next_position

    def _validate_and_save(self) -> None:
        """Validation loss (and what `validate` scores), the best and last checkpoints, and a
        validation record for the sinks. Under train.ema_decay the average is what is validated
        and kept as the best."""
        average = self.setup.average
        with average.applied() if average is not None else contextlib.nullcontext():
            record, scores = self._validate_and_save_best()
        # Recorded before the checkpoint: a kill in between repeats this validation after resuming
        # (and the record is replaced), where the other order would lose it.
        self._emit("validated", ValidationRecord(record, scores.samples))
        self._save_last()
        self.validated_step = self.step

    def _validate_and_save_best(self) -> tuple[dict, ValidationScores]:
        """Validates the model's weights as they are, keeps them as the best checkpoint if they
        are; returns the validation record and what `validate` scored."""
        started = time.monotonic()
        totals = _Totals()
        for batch in self.setup.validation_batches:
            totals.add(*(float(value) for value in self.setup.validation_step(batch)))
        validation = {
            "validation_loss": totals.mean_loss,
            "validation_accuracy": totals.accuracy,
            "validation_perplexity": math.exp(min(totals.mean_loss, 50.0)),
        }
        scores = self.validate(self.setup.model) if self.validate is not None else ValidationScores({})
        validation.update(scores.metrics)
        self.state.train_seconds += time.monotonic() - started
        metric = self.config.train.best_metric
        value = validation["validation_bleu" if metric == "bleu" else "validation_loss"]
        improved = self.state.improves(value, metric)
        record = {
            "epoch": self.state.epoch,
            "step": self.step,
            **({"train_loss": self.totals.mean_loss, "train_accuracy": self.totals.accuracy} if self.totals.steps else {}),
            **validation,
            "best": improved,
            "learning_rate": float(self.setup.optimizer.learning_rate),
            "target_tokens_per_second": self.totals.tokens_per_second,
            "elapsed_minutes": self.state.train_seconds / 60,
        }
        if improved:
            self.state.best_score, self.state.best_validation = value, record
            self.state.validations_without_improvement = 0
            self._record_position()
            checkpoints.save(self.run_dir.best_checkpoints, self.step, self.setup.model, None, asdict(self.state), keep=1)
        else:
            self.state.validations_without_improvement += 1
        self.last_validation = validation
        return record, scores
