"""nmt: train, run and evaluate Transformer translation models from a YAML config."""

__version__ = "0.1.0"
