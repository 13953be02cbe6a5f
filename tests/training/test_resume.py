"""Exact resumption: a training killed at any point and run again ends where an uninterrupted
one ends. The first kill is a real SIGKILL of `nmt train`, at whatever step it has reached once
its first checkpoint exists; the others are simulated in-process by an exception at a chosen
point (nothing is written after it, as after SIGKILL), one of them inside a checkpoint write,
leaving a half-written temporary directory. Dropout is on (its random state travels in the
checkpoint), gradients are accumulated over 2 batches (a group may begin in one epoch and end in
the next), and checkpoints come every 7 steps and at each epoch's end."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from nmt import checkpoints
from nmt import config as config_lib
from nmt.run_dir import RunDir
from nmt.training import sinks, trainer

TINY = {
    # Half the corpus, and of it only sentences of up to 20 subwords, so that an epoch is short.
    "data": {"max_length": 20, "train_split": "train[:15000]"},
    "tokenizer": {"vocab_size": 200},
    "model": {"num_encoder_layers": 1, "num_decoder_layers": 1, "hidden_dim": 32, "num_heads": 2,
              "intermediate_dim": 64, "dropout": 0.1},
    # float32, not the default auto, and no data check: these tests are about the loop (a 32-wide
    # model trains slower in bfloat16, casts outweighing its matmuls; the check reads 30,000 pairs).
    "train": {"precision": "float32", "data_check": False, "batch_tokens": 512, "accumulate_steps": 2, "epochs": 3, "save_every_steps": 7, "learning_rate": 3e-3,
              "warmup_steps": 20, "validation_bleu": False, "best_metric": "loss", "tensorboard": False},
}


class Killed(Exception):
    """Stands for SIGKILL: the training stops where it is, saving nothing."""


class KillAt(sinks.Sink):
    def __init__(self, step: int):
        self.step = step

    def stepped(self, record: sinks.StepRecord) -> None:
        if record.step == self.step:
            raise Killed


def tiny(tfds_dir: str) -> dict:
    return {**TINY, "data": {**TINY["data"], "data_dir": tfds_dir}}


def train(run: RunDir, tfds_dir: str, *extra: sinks.Sink) -> None:
    trainer.train(config_lib.from_dict(tiny(tfds_dir)), run, None, [sinks.MetricsFile(run.metrics_file), *extra])


def sigkill_nmt_train(run: RunDir, tfds_dir: str, env: dict) -> int:
    """Starts `nmt train` on run, SIGKILLs it as soon as its first checkpoint is on disk, and
    returns that checkpoint's step."""
    config = run.path.parent / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny(tfds_dir)))
    training = subprocess.Popen([sys.executable, "-m", "nmt.cli", "train", "--config", str(config), "--run-dir", str(run.path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=run.path.parent)  # where it makes runs/latest, not the repository
    deadline = time.monotonic() + 240
    while not checkpoints.all_checkpoints(run.last_checkpoints):
        assert training.poll() is None, f"nmt train ended before its first checkpoint: {training.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    training.send_signal(signal.SIGKILL)
    training.communicate()
    assert training.returncode == -signal.SIGKILL
    return int(checkpoints.all_checkpoints(run.last_checkpoints)[-1].name.removeprefix("ckpt-"))


def validations(run: RunDir) -> list[tuple[int, float]]:
    return [(record["step"], record["validation_loss"])
            for record in map(json.loads, run.metrics_file.read_text().splitlines())]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tfds_dir):
    run = RunDir(tmp_path_factory.mktemp("uninterrupted"))
    train(run, tfds_dir)
    return run


def test_a_killed_training_resumes_to_the_same_end(tmp_path, tfds_dir, uninterrupted, monkeypatch, package_env):
    expected = validations(uninterrupted)
    steps_per_epoch = expected[0][0]
    assert len(expected) == 3 and steps_per_epoch > 10
    run = RunDir(tmp_path / "run")
    # Mid-epoch 1, at or after the first checkpoint (step 7).
    assert sigkill_nmt_train(run, tfds_dir, package_env) < steps_per_epoch
    # Inside the write of the checkpoint at the end of epoch 2 (after its validation loss).
    save = checkpoints.save
    end_of_epoch_2 = expected[1][0]

    def dies_while_writing(directory, step, *args, **kwargs):
        if step == end_of_epoch_2 and directory == run.last_checkpoints:
            temporary = directory / f".ckpt-{step}.tmp"
            temporary.mkdir(parents=True)
            (temporary / "model.weights.h5").write_bytes(b"\x89HDF\r\n")
            raise Killed
        return save(directory, step, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "save", dies_while_writing)
    with pytest.raises(Killed):
        train(run, tfds_dir)
    monkeypatch.setattr(checkpoints, "save", save)
    # Early in epoch 3, right after the first step.
    with pytest.raises(Killed):
        train(run, tfds_dir, KillAt(end_of_epoch_2 + 1))
    train(run, tfds_dir)

    got = validations(run)
    # Each validation once, at the same steps, and the same losses: float32 sums in the same
    # order on the same machine (tolerance 1e-6 relative, for the order in which TensorFlow's
    # threads may add partial sums).
    assert [step for step, _ in got] == [step for step, _ in expected]
    np.testing.assert_allclose([loss for _, loss in got], [loss for _, loss in expected], rtol=1e-6)
    final, reference = checkpoints.latest(run.last_checkpoints), checkpoints.latest(uninterrupted.last_checkpoints)
    assert final.name == reference.name


def test_the_same_config_and_seed_give_the_same_curve(tmp_path, tfds_dir, uninterrupted):
    """On one CPU device (the tolerance as above)."""
    run = RunDir(tmp_path / "again")
    train(run, tfds_dir)
    got, expected = validations(run), validations(uninterrupted)
    assert [step for step, _ in got] == [step for step, _ in expected]
    np.testing.assert_allclose([loss for _, loss in got], [loss for _, loss in expected], rtol=1e-6)
