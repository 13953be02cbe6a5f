"""Starting a run from another run (train.init_from): fine-tuning, domain adaptation.

The new run takes the base run's tokenizer, extended for the new data's unseen characters when
tokenizer.update_vocab (nmt/data/tokenizer.py `extend`), and the base's weights, with embedding
rows appended for the added pieces. The optimizer starts afresh unless train.resume_optimizer.
All of this happens at the run's first start; from its first checkpoint on, the run resumes as
any other.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from nmt import atomic, checkpoints
from nmt import config as config_lib
from nmt.config import Config
from nmt.data import sources, tokenizer
from nmt.errors import RunDirError
from nmt.model.transformer import build_transformer
from nmt.run_dir import RunDir
from nmt.training import precision
from nmt.training.schedule import make_optimizer

log = logging.getLogger("nmt")

# Settings that shape the weights or give them their meaning: the base run's must be the config's.
# (Dropout and model.max_length do not: positions are computed, not learned.)
MODEL_KEYS = ("num_encoder_layers", "num_decoder_layers", "hidden_dim", "num_heads", "intermediate_dim", "norm",
              "share_embeddings", "tie_output", "attention", "num_kv_heads", "attention_projections")
TOKENIZER_KEYS = ("model_type", "joint")


@dataclass(frozen=True)
class Base:
    """The run (and its checkpoint) a new run starts from."""

    run: RunDir
    config: Config
    checkpoint: Path

    @classmethod
    def open(cls, config: Config) -> Base:
        """The base named by config.train.init_from, checked against config.

        Raises:
            RunDirError: it is not a run or a run's checkpoint, has no checkpoint (with an
                optimizer state, for train.resume_optimizer), or its model or tokenizer settings
                differ from config's.
        """
        path = Path(config.train.init_from)
        if not path.is_dir():
            raise RunDirError(f"train.init_from: {path} does not exist; name a training run (or one of its checkpoints)")
        checkpoint = None
        if path.name.startswith("ckpt-") and not (path / "config.yaml").is_file():
            checkpoint, path = path, path.parents[2]  # <run>/checkpoints/<kind>/ckpt-<step>
        run = RunDir(path)
        if not run.config_file.is_file():
            raise RunDirError(f"train.init_from: {config.train.init_from} is not a training run (no config.yaml); "
                              "name a run directory or one of its checkpoints")
        base_config = config_lib.load(run.config_file)
        _check_settings(run, base_config, config)
        if checkpoint is None:
            checkpoint = run.checkpoint_path("last" if config.train.resume_optimizer else "best")
        if config.train.resume_optimizer and not (checkpoint / "optimizer.npz").is_file():
            raise RunDirError(f"train.resume_optimizer: {checkpoint} holds no optimizer state (best and averaged "
                              "checkpoints keep weights only); name a checkpoint of checkpoints/last, or drop it")
        return cls(run, base_config, checkpoint)

    def initialize(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, resume_optimizer: bool) -> None:
        """Sets model's weights (and, with resume_optimizer, optimizer's state and step) to the
        base checkpoint's. Embeddings grown by a vocabulary update keep their old rows (see grow
        for the new ones); the new rows' optimizer moments start at zero."""
        joint = self.config.tokenizer.joint
        base_tokenizers = tokenizer.load(self.run.tokenizer_dir, joint)
        base_model = build_transformer(self.config.model, base_tokenizers.source_vocab_size, base_tokenizers.target_vocab_size)
        base_optimizer = None
        if resume_optimizer:
            base_optimizer = make_optimizer(self.config.train, precision.resolve(self.config.train.precision),
                                            self.config.train.warmup_steps)
            base_optimizer.build(base_model.trainable_variables)
        checkpoints.restore(self.checkpoint, base_model, base_optimizer)
        _transfer(base_model.weights, model.weights, fill="mean")
        if base_optimizer is not None:
            _transfer(_inner(base_optimizer).variables, _inner(optimizer).variables, fill="zeros")
        log.info("starting from %s%s", self.checkpoint, " with its optimizer state" if resume_optimizer else "")


def _inner(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    # A loss scale of the base's precision means nothing to the new run's: only Adam's state moves.
    return optimizer.inner_optimizer if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else optimizer


def _check_settings(run: RunDir, base: Config, config: Config) -> None:
    differences = [(f"{section}.{key}", getattr(getattr(base, section), key), getattr(getattr(config, section), key))
                   for section, keys in (("model", MODEL_KEYS), ("tokenizer", TOKENIZER_KEYS)) for key in keys]
    differences = [difference for difference in differences if difference[1] != difference[2]]
    if differences:
        theirs = ", ".join(f"{key}={value!r}" for key, value, _ in differences)
        ours = ", ".join(f"{value!r}" for _, _, value in differences)
        raise RunDirError(f"cannot start from {run.path}: it was trained with {theirs}; this config says {ours}. "
                          f"Set them as in {run.config_file}")


def _transfer(base_variables: list, variables: list, fill: str) -> None:
    if len(base_variables) != len(variables):
        raise RunDirError(f"the base model has {len(base_variables)} variables where this one has {len(variables)}")
    for base_variable, variable in zip(base_variables, variables):
        variable.assign(grow(base_variable.numpy(), variable.numpy(), fill))


def grow(value: np.ndarray, initial: np.ndarray, fill: str) -> np.ndarray:
    """value padded to initial's shape (no axis may shrink), along each longer axis (vocabulary
    rows or output columns): with 'zeros', or with 'mean', the mean of value's entries along that
    axis plus initial's freshly initialised entries there. Identical new rows would look alike to
    the model and learn apart slowly; centred on the old rows' mean, they start where the trained
    ones are (for output, near the mean logit: neither favoured nor excluded)."""
    shape = initial.shape
    if len(shape) != value.ndim or any(new < old for new, old in zip(shape, value.shape)):
        raise RunDirError(f"a base weight of shape {value.shape} does not fit this model's {shape}")
    for axis, size in enumerate(shape):
        if size > value.shape[axis]:
            index = [slice(None)] * value.ndim
            index[axis] = slice(value.shape[axis], size)
            fresh = initial[tuple(slice(0, extent) if other != axis else index[axis]
                                  for other, extent in enumerate(value.shape))]
            pad = value.mean(axis=axis, keepdims=True) + fresh if fill == "mean" else np.zeros_like(fresh)
            value = np.concatenate([value, pad.astype(value.dtype)], axis=axis)
    return value


def prepare_tokenizers(config: Config, directory: Path) -> tokenizer.Tokenizers:
    """The tokenizers in directory; the first time, with train.init_from, the base run's (extended
    for the new training data with tokenizer.update_vocab), else trained as tokenizer.prepare does."""
    if config.train.init_from is None or tokenizer.exists(directory, config.tokenizer.joint):
        return tokenizer.prepare(config.tokenizer, config.data, directory)
    base = Base.open(config)
    # Copied and extended aside, then renamed: an interrupted start leaves no half-updated vocabulary.
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".tokenizer.") as scratch:
        staged = Path(scratch) / "tokenizer"
        shutil.copytree(base.run.tokenizer_dir, staged)
        if config.tokenizer.update_vocab:
            source_texts, target_texts = tokenizer.training_sample(config.data, config.tokenizer.max_sentences)
            added = tokenizer.extend(staged, config.tokenizer, source_texts, target_texts, sources.tags(config.data))
            log.info("vocabulary update: %s", ", ".join(f"{count} pieces added to {name}" for name, count in added.items()))
        atomic.replace_directory(staged, directory)
    return tokenizer.load(directory, config.tokenizer.joint)
