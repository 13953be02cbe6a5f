"""The run directory: one training run's config, tokenizer, checkpoints, metrics and reports.

  config.yaml           resolved configuration (translate/evaluate rebuild everything from it)
  tokenizer/            SentencePiece model(s)
  checkpoints/last/     the last train.keep_checkpoints training states (ckpt-<step>/: weights, optimizer, progress)
  checkpoints/best/     ckpt-<step>/ with the weights of the best validation (train.best_metric)
  checkpoints/averaged/ ckpt-<step>/ with the mean of the last N checkpoints (nmt average, train.average_last)
  metrics.jsonl         one JSON line per validation (epoch end or stop)
  data_check.json/.md   what the data check found (nmt data check; nmt train at the run's first start)
  tensorboard/          TensorBoard event files (train.tensorboard)
  eval/<split>/         report.json, report.md, hypotheses.txt from the latest evaluation
  .lock                 held by the training writing the run (which process, on which host)

`runs/latest` (relative to the working directory) points at the most recent training run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from nmt import atomic, checkpoints, config as config_lib
from nmt.config import Config
from nmt.errors import ConfigError, RunDirError

LATEST = Path("runs") / "latest"
# Sections that fix the model's weights: an existing run cannot change them.
FROZEN_SECTIONS = ("data", "tokenizer", "model")
# What to do about a run directory that reports cannot be written into.
READ_ONLY_RUN = "make the run directory writable, or work on a copy of it"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    @property
    def last_checkpoints(self) -> Path:
        return self.path / "checkpoints" / "last"

    @property
    def best_checkpoints(self) -> Path:
        return self.path / "checkpoints" / "best"

    @property
    def averaged_checkpoints(self) -> Path:
        return self.path / "checkpoints" / "averaged"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def data_check_file(self) -> Path:
        return self.path / "data_check.json"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    @property
    def ctranslate2_dir(self) -> Path:
        return self.path / "ctranslate2"

    def eval_dir(self, split: str) -> Path:
        return self.path / "eval" / split

    def load_config(self, overrides: list[str] | tuple[str, ...] = ()) -> Config:
        """The run's saved config with overrides, which may not touch data, tokenizer or model."""
        if not self.config_file.is_file():
            raise RunDirError(f"{self.path} is not a training run (no config.yaml); train one with nmt train --config FILE")
        for override in overrides:
            section = override.split("=", 1)[0].split(".")[0]
            if section in FROZEN_SECTIONS:
                raise ConfigError(
                    f"--set {override}: '{section}' is fixed by the trained model in {self.path}; "
                    "only train, decode and eval settings can change"
                )
        return config_lib.load(self.config_file, overrides)

    def save_config(self, config: Config) -> None:
        atomic.write_text(self.config_file, config_lib.to_yaml(config))

    def checkpoint_path(self, which: str) -> Path:
        """The 'best', 'last' or 'averaged' checkpoint; 'best' falls back to 'last' if no validation ran yet."""
        if which == "averaged":
            path = checkpoints.latest(self.averaged_checkpoints)
            if path is None:
                raise RunDirError(
                    f"no averaged checkpoint in {self.path}; make one with nmt average --run-dir {self.path} --last N"
                )
            return path
        # Each lookup checks the checkpoint's files against their checksums: only the ones needed.
        path = checkpoints.latest(self.best_checkpoints) if which == "best" else None
        path = path or checkpoints.latest(self.last_checkpoints)
        if path is None:
            raise RunDirError(f"no checkpoint in {self.path}/checkpoints; train first (nmt train --config FILE --run-dir {self.path})")
        return path


def resolve(run_dir: str | Path | None) -> RunDir:
    """The given run directory, or the most recent training run."""
    if run_dir is not None:
        path = Path(run_dir)
        if not path.is_dir():
            raise RunDirError(f"run directory not found: {path}")
        return RunDir(path)
    if not LATEST.exists():
        raise RunDirError("no training run found (runs/latest is missing); pass --run-dir DIR or run nmt train first")
    return RunDir(LATEST.resolve())


def load(run_dir: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> tuple[RunDir, Config]:
    """The run directory resolve finds, and its config with overrides ("decode.beam_size=1", ...)."""
    run = resolve(run_dir)
    return run, run.load_config(overrides)


def disk_bytes(path: Path) -> int:
    """The size of the files under path."""
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def mark_latest(run: RunDir) -> None:
    """Points runs/latest at this run (an atomic symlink swap)."""
    LATEST.parent.mkdir(parents=True, exist_ok=True)
    # A name of this process's own: two trainings started at once would otherwise swap each
    # other's temporary link away.
    temporary = LATEST.with_name(f".latest.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(run.path.resolve(), target_is_directory=True)
    os.replace(temporary, LATEST)


@contextlib.contextmanager
def writer_lock(run: RunDir) -> Iterator[None]:
    """Held while a training writes the run: a second one is refused at once, naming the first.
    The lock is the operating system's (flock), released when its process ends however it ends,
    so a killed training never blocks the next. Readers (translate, evaluate) take no lock.

    Raises:
        RunDirError: another process holds the lock, or the run directory is not writable.
    """
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        file = open(run.path / ".lock", "a+", encoding="utf-8")
    except OSError as error:
        raise RunDirError(f"cannot write the run directory {run.path}: {error.strerror}; choose another --run-dir") from None
    try:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            raise RunDirError(
                f"{run.path} is being trained by {holder}; wait for it to finish, stop it, or train in another --run-dir"
            ) from None
        file.truncate(0)
        file.write(f"process {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        file.flush()
        yield
    finally:
        file.close()  # closing releases the lock
