"""What training reports, and where it goes: the trainer emits each record once, as it happens,
and every sink writes it its own way (the console, metrics.jsonl, TensorBoard)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import keras


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
                f"(step {record.step}, {record.total_minutes:.1f} min in all)"
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


class MetricsFile(Sink):
    """metrics.jsonl: one JSON line per validation."""

    def __init__(self, path: Path):
        self.path = path

    def validated(self, record: ValidationRecord) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record.metrics) + "\n")
