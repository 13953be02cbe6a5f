"""The sinks training reports to: what each writes, read back the way its reader reads it."""

import json
import time

import pytest
import tensorflow as tf

from nmt.errors import NmtError
from nmt.training import sinks
from nmt.training.sinks import EpochEnd, EpochStart, Sample, StepRecord, ValidationRecord


def step_record(step, loss):
    return StepRecord(step=step, epoch=1, steps_in_epoch=step, loss=loss, accuracy=0.5, epoch_loss=loss, epoch_accuracy=0.5,
                      learning_rate=1e-3 * step, gradient_norm=2.0 + step, target_tokens_per_second=1000.0)


VALIDATION = ValidationRecord(
    {"epoch": 1, "step": 2, "train_loss": 3.0, "validation_loss": 2.5, "validation_accuracy": 0.4,
     "validation_perplexity": 12.18, "validation_bleu": 17.3, "validation_chrf": 40.1, "best": True},
    (Sample("A | dog.", "Ein Hund.", "Ein Hund."), Sample("", "Leer.", "")),
)


def read_events(directory):
    """{tag: [(step, value)]} of every event file in directory, as TensorBoard reads them."""
    found = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return found


def test_tensorboard_writes_steps_validations_and_samples(tmp_path):
    sink = sinks.TensorBoard(tmp_path / "tensorboard")
    sink.stepped(step_record(1, 4.0))
    sink.stepped(step_record(2, 3.0))
    sink.validated(VALIDATION)
    sink.close()
    events = read_events(tmp_path / "tensorboard")
    assert [(step, float(value)) for step, value in events["train/loss"]] == [(1, 4.0), (2, 3.0)]
    assert [step for step, _ in events["train/gradient_norm"]] == [1, 2]
    assert float(events["train/learning_rate"][1][1]) == pytest.approx(2e-3)
    for key in ("loss", "accuracy", "perplexity", "bleu", "chrf"):
        (step, value), = events[f"validation/{key}"]
        assert step == 2 and float(value) == pytest.approx(VALIDATION.metrics[f"validation_{key}"])
    (_, table), = events["validation/samples"]
    lines = table.item().decode().splitlines()
    assert lines[0] == "| source | reference | translation |" and len(lines) == 4
    assert lines[2] == "| A \\| dog. | Ein Hund. | Ein Hund. |" and lines[3] == "|   | Leer. |   |"


def test_tensorboard_draws_the_steps_a_resumed_run_repeats_once(tmp_path):
    """As TensorBoard's server loads a run directory: the points a killed run logged after the checkpoint
    the run resumed from are replaced by the resumed run's."""
    from tensorboard.backend.event_processing import plugin_event_accumulator

    killed = sinks.TensorBoard(tmp_path)
    killed.started(0)
    time.sleep(1.1)  # event files sort by the second they were created in
    for step in (1, 2, 3, 4):
        killed.stepped(step_record(step, 10.0 - step))
    killed.close()
    time.sleep(1.1)
    resumed = sinks.TensorBoard(tmp_path)
    resumed.started(2)
    time.sleep(1.1)
    for step in (3, 4, 5):
        resumed.stepped(step_record(step, 1.0 * step))
    resumed.close()
    loaded = plugin_event_accumulator.EventAccumulator(str(tmp_path), tensor_size_guidance={"scalars": 0}).Reload()
    points = [(event.step, float(tf.make_ndarray(event.tensor_proto))) for event in loaded.Tensors("train/loss")]
    assert points == [(1, 9.0), (2, 8.0), (3, 3.0), (4, 4.0), (5, 5.0)]


def test_an_unwritable_tensorboard_directory_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NmtError, match="cannot write TensorBoard events to .*file/tensorboard.*train.tensorboard=false"):
        sinks.TensorBoard(tmp_path / "file" / "tensorboard")


def test_metrics_file_gets_one_line_per_validation(tmp_path):
    sink = sinks.MetricsFile(tmp_path / "metrics.jsonl")
    sink.stepped(step_record(1, 4.0))
    sink.validated(VALIDATION)
    sink.validated(VALIDATION)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [VALIDATION.metrics] * 2


def test_a_partial_last_metrics_line_is_removed_when_training_starts(tmp_path):
    """A process killed while writing a line; the resumed run repeats that validation."""
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(VALIDATION.metrics) + "\n" + '{"epoch": 2, "st')
    sink = sinks.MetricsFile(path)
    sink.started(2)
    sink.validated(VALIDATION)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [VALIDATION.metrics] * 2


def test_metrics_after_the_resumed_step_are_removed_when_training_starts(tmp_path):
    """Validations the resumed run repeats (recorded before a kill, or after a checkpoint that
    turned out damaged) keep one line each: the new one."""
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({**VALIDATION.metrics, "step": step}) + "\n" for step in (2, 4, 6)))
    sinks.MetricsFile(path).started(4)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 4]
    sinks.MetricsFile(path).started(0)
    assert path.read_text() == ""


def test_console_prints_epochs_and_validations(capsys):
    sink = sinks.Console(validation_beam_size=4)
    sink.epoch_started(EpochStart(epoch=1, epochs=3, steps_per_epoch=None))
    sink.stepped(step_record(1, 4.0))
    sink.epoch_ended(EpochEnd(epoch=1, steps=1, seconds=2.0, step=1, total_minutes=0.1, loss=4.0, accuracy=0.5,
                              target_tokens_per_second=1234.0, remaining=(750.0, "epochs")))
    sink.validated(VALIDATION)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/3"
    assert "1 steps in 2 s: loss 4.000, accuracy 0.500, 1,234 target tokens/s" in lines[-2]
    assert lines[-2].endswith("(step 1, 0.1 min in all, ~12 min to go by train.epochs)")
    assert [sinks.duration(seconds) for seconds in (42, 750, 9000)] == ["42 s", "12 min", "2.5 h"]
    assert lines[-1] == "  validation loss 2.500, accuracy 0.400, perplexity 12.18, BLEU 17.30 (beam 4)  (best)"

    sink.epoch_started(EpochStart(epoch=2, epochs=3, steps_per_epoch=1))
    sink.epoch_ended(EpochEnd(epoch=2, steps=1, seconds=2.0, step=2, total_minutes=0.1, loss=4.0, accuracy=0.5,
                              target_tokens_per_second=1234.0, overflows=3))
    assert capsys.readouterr().out.splitlines()[-1].endswith(
        "(step 2, 0.1 min in all); 3 updates dropped by float16 loss scaling (gradients overflowed)")
