"""Checkpoints: one directory per saved step holding Keras weight files and the training state.

  ckpt-<step>/model.weights.h5   model weights (Keras format)
  ckpt-<step>/optimizer.npz      optimizer variables, step counter included (training checkpoints)
  ckpt-<step>/state.json         step, parameters, epoch, elapsed training time, best validation, ...

Why not tf.train.Checkpoint: under Keras 3 it does not follow layers kept in Python lists, so it
silently saves a fraction of an encoder-decoder. Keras's own weight files cover every layer.
Each checkpoint is written to a temporary directory and renamed into place, so a crash leaves
either the complete checkpoint or none.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nmt.errors import RunDirError

if TYPE_CHECKING:  # keras is for annotations only: reading run directories must not load TensorFlow
    import keras

_NAME = re.compile(r"^ckpt-(\d+)$")


def save(directory: Path, step: int, model: keras.Model, optimizer: keras.optimizers.Optimizer | None,
         state: dict, keep: int) -> Path:
    """Writes ckpt-<step> atomically, then deletes all but the newest `keep` checkpoints."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"ckpt-{step}"
    temporary = directory / f".ckpt-{step}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    model.save_weights(temporary / "model.weights.h5")
    if optimizer is not None:
        store: dict[str, np.ndarray] = {}
        optimizer.save_own_variables(store)
        np.savez(temporary / "optimizer.npz", **store)
    state = {"step": step, "parameters": model.count_params(), **state}
    (temporary / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    for old in all_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def all_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in directory, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in directory.iterdir() if (match := _NAME.match(path.name))]
    return [path for _, path in sorted(found)]


def step_of(path: Path) -> int:
    """The training step a ckpt-<step> directory was saved at."""
    match = _NAME.match(path.name)
    if match is None:
        raise RunDirError(f"{path} is not a checkpoint directory (expected a name like ckpt-1200)")
    return int(match.group(1))


def latest(directory: Path) -> Path | None:
    checkpoints = all_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def restore(path: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None) -> dict:
    """Loads weights (and optimizer variables when given) from a checkpoint; returns its state."""
    try:
        model.load_weights(path / "model.weights.h5")
        if optimizer is not None:
            with np.load(path / "optimizer.npz") as store:
                optimizer.load_own_variables(dict(store))
        return json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as error:
        raise RunDirError(f"cannot load checkpoint {path}: {error}; delete it to fall back to an older one") from None
