"""What an export was made from, in its nmt_export.json beside the SavedModel: the checkpoint, the
decode settings and whether it places constraints. Kept apart from the export itself so that it
reads without TensorFlow: `nmt translate` takes an export only when it gives what the run would,
and `nmt info` says whether it does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nmt import checkpoints
from nmt.config import Config

FILE = "nmt_export.json"
# Decode settings that the export does not hold: whoever calls it batches the sentences.
BATCHING = ("batch_size", "batch_tokens")


def write(directory: Path, checkpoint: Path, config: Config, constraints: bool) -> None:
    manifest = {"checkpoint": str(checkpoint.resolve()), "decode": dataclasses.asdict(config.decode), "constraints": constraints}
    (directory / FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def read(directory: Path) -> dict | None:
    """The manifest of the export in directory; None if it has none (exports made before manifests
    existed) or it is unreadable."""
    try:
        manifest = json.loads((directory / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def mismatch(manifest: dict, checkpoint: Path, config: Config) -> str | None:
    """Why the export of manifest does not translate as checkpoint with config's decode settings
    would, through `nmt translate`; None when it does (batched by config's settings)."""
    # An export that places constraints holds a second search graph: loading it and running its
    # first search took longer than building the model from its checkpoint. Exports made before
    # the entry existed place none.
    if manifest.get("constraints", False):
        return "it places constraints, which makes it slower to load than the checkpoint"
    made_from, checkpoint = Path(str(manifest.get("checkpoint"))), checkpoint.resolve()
    if made_from != checkpoint:
        # A run moved, or an export copied from another run, can hold a checkpoint of the same name.
        held, used = checkpoints.named(made_from), checkpoints.named(checkpoint)
        if held == used:
            held, used = made_from, checkpoint
        return f"it holds {held}, the run translates with {used}"
    settings = {key: value for key, value in dataclasses.asdict(config.decode).items() if key not in BATCHING}
    exported = {key: value for key, value in (manifest.get("decode") or {}).items() if key not in BATCHING}
    differing = [f"{key} {exported.get(key, 'unset')} (now {value})" for key, value in settings.items() if exported.get(key) != value]
    if differing or set(exported) - set(settings):
        return "its decode settings differ: " + (", ".join(differing) or "settings this version does not have")
    return None
