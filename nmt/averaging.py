"""Checkpoint averaging: the element-wise mean of several checkpoints' weights, a cheap ensemble
that usually scores better than any one of them. The result goes to checkpoints/averaged/ and is
used by translate/evaluate with eval.checkpoint=averaged."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from nmt import checkpoints, config as config_lib
from nmt.errors import RunDirError
from nmt.run_dir import FROZEN_SECTIONS, RunDir


def last_checkpoints(run: RunDir, count: int) -> list[Path]:
    """The newest `count` training checkpoints of run, oldest first."""
    found = checkpoints.all_checkpoints(run.last_checkpoints)
    if count < 1:
        raise RunDirError(f"--last must be at least 1; got {count}")
    if count > len(found):
        raise RunDirError(
            f"cannot average the last {count} checkpoints: {run.last_checkpoints} holds {len(found)} "
            "(train.keep_checkpoints sets how many are kept)"
        )
    return found[-count:]


def average(run: RunDir, model: keras.Model, paths: list[Path]) -> Path:
    """Writes the mean of the checkpoints' weights into run's checkpoints/averaged; returns its path.

    model must have the run's architecture; its weights are replaced by the average. Under
    train.ema_decay it averages the training checkpoints' own weights, not their moving averages.
    """
    for path in paths:
        _check_same_model(run, path)
    total = None
    for path in paths:
        # The weights themselves, not a moving average kept beside them (train.ema_decay): the
        # mean of averages lags further behind training and scored below both.
        checkpoints.restore(path, model, average=False)
        weights = model.get_weights()
        total = weights if total is None else [np.add(a, b) if _floating(a) else b for a, b in zip(total, weights)]
    # Integer variables (e.g. random-seed states) are not parameters: the last checkpoint's are kept.
    model.set_weights([a / len(paths) if _floating(a) else a for a in total])
    step = max(checkpoints.step_of(path) for path in paths)
    return checkpoints.save(
        run.averaged_checkpoints, step, model, None, {"averaged": [str(path) for path in paths]}, keep=1
    )


def _floating(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.floating)


def _check_same_model(run: RunDir, path: Path) -> None:
    """A checkpoint of another run (checkpoints/<kind>/ckpt-N inside it) must share the data,
    tokenizer and model settings: averaging weights of different models is meaningless."""
    if not (path / "model.weights.h5").is_file():
        raise RunDirError(f"{path} is not a checkpoint (no model.weights.h5)")
    owner = RunDir(path.resolve().parents[2])
    if owner.path == run.path.resolve() or not owner.config_file.is_file():
        return
    ours, theirs = config_lib.load(run.config_file).to_dict(), config_lib.load(owner.config_file).to_dict()
    for section in FROZEN_SECTIONS:
        for key, value in ours[section].items():
            if theirs[section][key] != value:
                raise RunDirError(
                    f"cannot average {path}: its run has {section}.{key}={theirs[section][key]!r}, {run.path} has "
                    f"{value!r}; only checkpoints of the same model can be averaged"
                )
