"""What training reports, and where it goes: the trainer emits each record once, as it happens,
and every sink writes it its own way (the console, metrics.jsonl, TensorBoard)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from nmt import atomic
from nmt.errors import NmtError


@dataclass(frozen=True)
class EpochStart:
    epoch: int
    epochs: int
    # Known from the second epoch on (the first one counts them).
    steps_per_epoch: int | None


@dataclass(frozen=True)
class StepRecord:
    step: int
    epoch: int
    steps_in_epoch: int
    # This update's cross-entropy (label-smoothed) and accuracy per target token.
    loss: float
    accuracy: float
    # The same over the epoch so far.
    epoch_loss: float
    epoch_accuracy: float
    learning_rate: float
    # The global norm of the update's gradients before clipping (with several replicas, the mean
    # of the replicas' norms: each clips its own part of the sum).
    gradient_norm: float
    # Over the epoch so far.
    target_tokens_per_second: float


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    steps: int
    seconds: float
    step: int
    total_minutes: float
    loss: float
    accuracy: float
    target_tokens_per_second: float
    # Expected training seconds left and the budget that ends training (TrainConfig.remaining).
    remaining: tuple[float, str] | None = None
    # Batches whose update float16 loss scaling dropped (their gradients overflowed).
    overflows: int = 0


@dataclass(frozen=True)
class Sample:
    source: str
    reference: str
    hypothesis: str


@dataclass(frozen=True)
class ValidationRecord:
    # The line metrics.jsonl gets: epoch, step, train_loss, train_accuracy, validation_loss,
    # validation_accuracy, validation_perplexity, [validation_bleu, validation_chrf,
    # validation_decode_seconds,] best, learning_rate, target_tokens_per_second, elapsed_minutes.
    metrics: dict
    # A few validation sentences with their translations by the model at this step.
    samples: tuple[Sample, ...] = ()


class Sink:
    """Receives training's records; each method does nothing unless a sink needs it."""

    def started(self, step: int) -> None:
        """Training starts (step 0) or resumes from its checkpoint at step: whatever a sink
        recorded after that step (before a kill or a fall-back past a damaged checkpoint) is
        about to be recorded again."""

    def epoch_started(self, record: EpochStart) -> None:
        pass

    def stepped(self, record: StepRecord) -> None:
        pass

    def epoch_ended(self, record: EpochEnd) -> None:
        pass

    def validated(self, record: ValidationRecord) -> None:
        pass

    def close(self) -> None:
        pass


class Console(Sink):
    """An epoch heading, a live progress bar (on terminals only: logs get the epoch's summary
    line instead) and one line per validation."""

    def __init__(self, validation_beam_size: int):
        self.validation_beam_size = validation_beam_size
        self.bar: keras.utils.Progbar | None = None

    def epoch_started(self, record: EpochStart) -> None:
        print(f"Epoch {record.epoch}/{record.epochs}")
        self.bar = keras.utils.Progbar(
            record.steps_per_epoch, stateful_metrics=["loss", "acc", "tok/s", "lr"],
            verbose=1 if sys.stdout.isatty() else 0,
        )

    def stepped(self, record: StepRecord) -> None:
        self.bar.update(record.steps_in_epoch, [
            ("loss", record.epoch_loss), ("acc", record.epoch_accuracy),
            ("tok/s", record.target_tokens_per_second), ("lr", record.learning_rate),
        ])

    def epoch_ended(self, record: EpochEnd) -> None:
        self.bar.update(record.steps, finalize=True)
        if record.steps:
            print(
                f"  {record.steps} steps in {record.seconds:.0f} s: loss {record.loss:.3f}, "
                f"accuracy {record.accuracy:.3f}, {record.target_tokens_per_second:,.0f} target tokens/s "
                f"(step {record.step}, {record.total_minutes:.1f} min in all{_remaining(record.remaining)})"
                + (f"; {record.overflows} updates dropped by float16 loss scaling (gradients overflowed)"
                   if record.overflows else "")
            )

    def validated(self, record: ValidationRecord) -> None:
        metrics = record.metrics
        bleu = (
            f", BLEU {metrics['validation_bleu']:.2f} (beam {self.validation_beam_size})"
            if "validation_bleu" in metrics else ""
        )
        print(
            f"  validation loss {metrics['validation_loss']:.3f}, accuracy {metrics['validation_accuracy']:.3f}, "
            f"perplexity {metrics['validation_perplexity']:.2f}{bleu}{'  (best)' if metrics['best'] else ''}",
        )


def _remaining(remaining: tuple[float, str] | None) -> str:
    if remaining is None or remaining[0] <= 0:
        return ""
    return f", ~{duration(remaining[0])} to go by train.{remaining[1]}"


def duration(seconds: float) -> str:
    """A human span: seconds, minutes or hours."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class MetricsFile(Sink):
    """metrics.jsonl: one JSON line per validation, each written whole and fsynced. When training
    starts, lines after its step are removed (the resumed run validates those steps again), and
    so is a partial last line (a process killed while writing it), so that each validation has
    exactly one valid JSON line."""

    def __init__(self, path: Path):
        self.path = path

    def started(self, step: int) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_bytes().splitlines(keepends=True)
        kept = [line for line, line_step in zip(lines, map(_step_of, lines)) if line_step is not None and line_step <= step]
        if kept != lines:
            atomic.write_bytes(self.path, b"".join(kept))

    def validated(self, record: ValidationRecord) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record.metrics) + "\n")
            file.flush()
            os.fsync(file.fileno())


def _step_of(line: bytes) -> int | None:
    """The step of a complete metrics line; None for a partial or unreadable one."""
    if not line.endswith(b"\n"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("step") if isinstance(record, dict) and isinstance(record.get("step"), int) else None


class TensorBoard(Sink):
    """tf.summary event files for `tensorboard --logdir runs/`: training scalars at every step,
    validation scalars and sample translations at every validation."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._writer: tf.summary.SummaryWriter | None = None
        # Checked now, in Python: the writer itself is made on first use, since creating it sets
        # up TensorFlow's devices, which the trainer must do first (it may split the CPU).
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=directory).close()
        except OSError as error:
            raise NmtError(f"cannot write TensorBoard events to {directory}: {error.strerror or error}; "
                           "make it writable, or set train.tensorboard=false") from None

    def started(self, step: int) -> None:
        # A START event at each start: from the second on, TensorBoard discards the points it has
        # read at or after that step, so the steps a resumed run trains again are drawn once,
        # from the resumed run. The event gets a file of its own, named (by time) after the
        # earlier runs' files and before the one this run's writer creates at its first step,
        # which includes tracing the training step (seconds).
        writer = EventFileWriter(str(self.directory))
        writer.add_event(event_pb2.Event(step=step + 1, wall_time=time.time(),
                                         session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
        writer.close()

    @property
    def writer(self) -> tf.summary.SummaryWriter:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.directory))
        return self._writer

    def stepped(self, record: StepRecord) -> None:
        with self.writer.as_default(step=record.step):
            tf.summary.scalar("train/loss", record.loss)
            tf.summary.scalar("train/accuracy", record.accuracy)
            tf.summary.scalar("train/learning_rate", record.learning_rate)
            tf.summary.scalar("train/gradient_norm", record.gradient_norm)
            tf.summary.scalar("train/target_tokens_per_second", record.target_tokens_per_second)

    def validated(self, record: ValidationRecord) -> None:
        metrics = record.metrics
        with self.writer.as_default(step=metrics["step"]):
            for key in ("loss", "accuracy", "perplexity", "bleu", "chrf"):
                if f"validation_{key}" in metrics:
                    tf.summary.scalar(f"validation/{key}", metrics[f"validation_{key}"])
            if record.samples:
                tf.summary.text("validation/samples", samples_table(record.samples))
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def samples_table(samples: tuple[Sample, ...]) -> str:
    """A Markdown table (TensorBoard renders it in its text tab)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|") or " "

    rows = [f"| {cell(s.source)} | {cell(s.reference)} | {cell(s.hypothesis)} |" for s in samples]
    return "\n".join(["| source | reference | translation |", "| --- | --- | --- |", *rows])
