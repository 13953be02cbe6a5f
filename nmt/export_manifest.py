"""What an export is and was made from, in the nmt_export.json inside it: its format (a
SavedModel or a CTranslate2 model), the checkpoint, the decode settings, whether it places
constraints and how its weights are stored. Kept apart from the exports themselves so that it
reads without TensorFlow: `nmt translate` takes an export only when it gives what the run would,
and `nmt info` says whether it does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nmt import checkpoints
from nmt.config import Config

FILE = "nmt_export.json"
SAVEDMODEL, CTRANSLATE2 = "savedmodel", "ctranslate2"
# Decode settings that the export does not hold: whoever calls it batches the sentences.
BATCHING = ("batch_size", "batch_tokens")


def write(directory: Path, checkpoint: Path, config: Config, *, constraints: bool = False, export_format: str = SAVEDMODEL,
          quantization: str | None = None) -> None:
    """Records the export in directory: a SavedModel (placing constraints or not), or a CTranslate2
    model with its weights' quantization."""
    manifest = {"format": export_format, "checkpoint": str(checkpoint.resolve()), "decode": dataclasses.asdict(config.decode),
                "constraints": constraints}
    if quantization is not None:
        manifest["quantization"] = quantization
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
    # Exports made before these entries existed are SavedModels placing no constraints.
    if manifest.get("format", SAVEDMODEL) == CTRANSLATE2:
        return "it is a CTranslate2 model (nmt translate --ctranslate2 decodes with the one in the run's ctranslate2 directory)"
    if manifest.get("format", SAVEDMODEL) != SAVEDMODEL:
        return f"it is not a SavedModel but {manifest['format']!r}"
    # An export that places constraints holds a second search graph: loading it and running its
    # first search took longer than building the model from its checkpoint.
    if manifest.get("constraints", False):
        return "it places constraints, which makes it slower to load than the checkpoint"
    other = other_checkpoint(manifest, checkpoint)
    if other is not None:
        return other
    settings = {key: value for key, value in dataclasses.asdict(config.decode).items() if key not in BATCHING}
    exported = {key: value for key, value in (manifest.get("decode") or {}).items() if key not in BATCHING}
    differing = [f"{key} {exported.get(key, 'unset')} (now {value})" for key, value in settings.items() if exported.get(key) != value]
    if differing or set(exported) - set(settings):
        return "its decode settings differ: " + (", ".join(differing) or "settings this version does not have")
    return None


def other_checkpoint(manifest: dict, checkpoint: Path) -> str | None:
    """What the export of manifest holds if not checkpoint's weights, and what the run translates with."""
    made_from, checkpoint = Path(str(manifest.get("checkpoint"))), checkpoint.resolve()
    if made_from == checkpoint:
        return None
    # A run moved, or an export copied from another run, can hold a checkpoint of the same name.
    held, used = checkpoints.named(made_from), checkpoints.named(checkpoint)
    if held == used:
        held, used = made_from, checkpoint
    return f"it holds {held}, the run translates with {used}"
