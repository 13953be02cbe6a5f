"""Checkpoints: one directory per saved step holding Keras weight files and the training state.

  ckpt-<step>/model.weights.h5   model weights (Keras format)
  ckpt-<step>/optimizer.npz      optimizer variables, step counter included (training checkpoints)
  ckpt-<step>/random.npz         the model's random state (dropout's seed generators), which
                                 Keras's weight files leave out (training checkpoints)
  ckpt-<step>/average.npz        the moving average of the weights, in the order of the model's
                                 trainable weights (training checkpoints under train.ema_decay)
  ckpt-<step>/state.json         step, parameters, epoch, elapsed training time, best validation, ...
  ckpt-<step>/manifest.json      size and SHA-256 of each file above, checked on every load

Why not tf.train.Checkpoint: under Keras 3 it does not follow layers kept in Python lists, so it
silently saves a fraction of an encoder-decoder. Keras's own weight files cover every layer.

Each checkpoint is written to a temporary directory, fsynced and renamed into place
(atomic.replace_directory: a checkpoint it replaces is moved aside first, then deleted), so a
crash or a power cut leaves either the complete checkpoint or none. A checkpoint whose files no
longer match their manifest (truncated, corrupted) is reported with its path and passed over for
the newest good one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nmt import atomic
from nmt.errors import RunDirError

if TYPE_CHECKING:  # keras is for annotations only: reading run directories must not load TensorFlow
    import keras

_NAME = re.compile(r"^ckpt-(\d+)$")
MANIFEST = "manifest.json"
AVERAGE = "average.npz"
log = logging.getLogger("nmt")


def save(directory: Path, step: int, model: keras.Model, optimizer: keras.optimizers.Optimizer | None,
         state: dict, keep: int, average: list[np.ndarray] | None = None) -> Path:
    """Writes ckpt-<step> atomically and durably, then deletes all but the newest `keep`
    checkpoints. average: the moving average of the weights, to resume it.

    Raises:
        RunDirError: the checkpoint could not be written (disk full, ...); earlier ones are intact.
    """
    final = directory / f"ckpt-{step}"
    temporary = directory / f".ckpt-{step}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        model.save_weights(temporary / "model.weights.h5")
        if optimizer is not None:
            store: dict[str, np.ndarray] = {}
            optimizer.save_own_variables(store)
            np.savez(temporary / "optimizer.npz", **store)
            # In the model's own order: names of seed generators depend on what else the process built.
            np.savez(temporary / "random.npz", *(variable.numpy() for variable in _random_state(model)))
        if average is not None:
            np.savez(temporary / AVERAGE, *average)
        state = {"step": step, "parameters": model.count_params(), **state}
        (temporary / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        manifest = {path.name: _describe(path) for path in sorted(temporary.iterdir())}
        (temporary / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        atomic.replace_directory(temporary, final)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise RunDirError(
            f"cannot write checkpoint {final}: {error.strerror or error}; the earlier checkpoints are intact. "
            "Free disk space (or fix the directory's permissions), then run the command again to resume"
        ) from None
    for old in all_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _load_optimizer(optimizer: keras.optimizers.Optimizer, values: list[np.ndarray]) -> None:
    """Sets optimizer's variables to values, as save_own_variables saved them. A float16 run's
    optimizer is Adam inside a LossScaleOptimizer, whose own variables (the loss scale) come before
    Adam's: a run moved between a GPU that trains in float16 and a device that cannot (where the
    same config falls back to float32) keeps Adam's state and step, and its loss scale where both
    have one. (Keras's own loading skips the whole state, with a warning, when the counts differ.)"""
    variables = optimizer.variables
    inner = getattr(optimizer, "inner_optimizer", optimizer).variables
    if len(values) != len(variables):
        saved_wraps_it = len(variables) == len(inner) < len(values)
        if not (saved_wraps_it or len(values) == len(inner)):
            raise ValueError(f"optimizer.npz holds {len(values)} optimizer variables, this training's optimizer "
                             f"has {len(variables)}")
        variables, values = inner, values[len(values) - len(inner):]
    for variable, value in zip(variables, values):
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"optimizer variable {variable.path} has shape {tuple(variable.shape)}, the saved one {value.shape}")
        variable.assign(value)


def _random_state(model: keras.Model) -> list:
    """The model's variables that are not weights: its seed generators' states."""
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def _describe(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Checksums of files this process has already checked, by the file's identity and its stat: a
# command looks a checkpoint up (latest) and then loads it (restore), and fine-tuning opens its
# base three times. A model of a billion bytes takes seconds to hash; a file that changes is
# hashed again, since writing it changes its modification time.
_checked: dict[tuple[int, int, int, int, int], str] = {}


def _checked_sha256(path: Path) -> str:
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _checked:
        _checked[key] = _sha256(path)
    return _checked[key]


def damage(path: Path) -> str | None:
    """What is wrong with a checkpoint's files against its manifest, or None if they match.
    Checkpoints written before manifests existed have none and pass (their loading still fails
    loudly if a file is unreadable)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        return f"its {MANIFEST} is unreadable ({error})"
    for name, expected in manifest.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        size = file.stat().st_size
        if size != expected["bytes"]:
            return f"{name} has {size:,} bytes, {expected['bytes']:,} were written"
        if _checked_sha256(file) != expected["sha256"]:
            return f"{name} does not match the checksum written with it"
    return None


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


def named(path: Path) -> str:
    """A checkpoint by its kind and step: best/ckpt-900 for checkpoints/best/ckpt-900."""
    return f"{path.parent.name}/{path.name}"


def latest(directory: Path) -> Path | None:
    """The newest undamaged checkpoint in directory; damaged newer ones are reported and passed over."""
    for path in reversed(all_checkpoints(directory)):
        problem = damage(path)
        if problem is None:
            return path
        log.warning("checkpoint %s is damaged (%s); using an earlier one", path, problem)
    return None


def restore(path: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None,
            average: bool = True) -> dict:
    """Loads weights (and optimizer variables when given) from a checkpoint; returns its state.
    Without an optimizer (to decode, not to train on) and with `average`, a checkpoint that holds a
    moving average of the weights (train.ema_decay) gives the average: what validation scored."""
    problem = damage(path)
    if problem is not None:
        raise RunDirError(f"checkpoint {path} is damaged: {problem}; use another one")
    try:
        model.load_weights(path / "model.weights.h5")
        if average and optimizer is None and (values := saved_average(path, model)) is not None:
            import keras  # a model is loaded: TensorFlow is, too

            for weight, value in zip(model.trainable_weights, values):
                # A model that decodes in bfloat16 holds its weights in it.
                weight.assign(keras.ops.cast(value, weight.dtype))
        if optimizer is not None:
            with np.load(path / "optimizer.npz") as store:
                _load_optimizer(optimizer, [store[str(index)] for index in range(len(store.files))])
            if (path / "random.npz").is_file():
                with np.load(path / "random.npz") as store:
                    values = [store[f"arr_{index}"] for index in range(len(store.files))]
                variables = _random_state(model)
                if len(values) != len(variables):
                    raise ValueError(f"random.npz holds {len(values)} random states, the model has {len(variables)}")
                for variable, value in zip(variables, values):
                    variable.assign(value)
        return json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as error:
        raise RunDirError(f"cannot load checkpoint {path}: {error}; delete it to fall back to an older one") from None


def saved_average(path: Path, model: keras.Model) -> list[np.ndarray] | None:
    """The moving average of model's trainable weights that checkpoint `path` holds (its files
    checked as `restore` checks them), or None if it holds none.

    Raises:
        RunDirError: the file is unreadable or does not fit model.
    """
    if not (path / AVERAGE).is_file():
        return None
    try:
        with np.load(path / AVERAGE) as store:
            values = [store[f"arr_{index}"] for index in range(len(store.files))]
        weights = model.trainable_weights
        if len(values) != len(weights):
            raise ValueError(f"{AVERAGE} holds {len(values)} weights, the model has {len(weights)} trainable ones")
        for weight, value in zip(weights, values):
            if tuple(weight.shape) != value.shape:
                raise ValueError(f"{AVERAGE} holds a weight of shape {value.shape} for {weight.path}, of shape {tuple(weight.shape)}")
        return values
    except (OSError, ValueError, KeyError) as error:
        raise RunDirError(f"cannot load checkpoint {path}: {error}; delete it to fall back to an older one") from None
