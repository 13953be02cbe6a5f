"""nmt: train, run and evaluate Transformer translation models from a YAML config."""

import os

# TensorFlow reads this once, when it loads, so nmt must be imported before it (the `nmt` command
# is). TensorFlow enables its oneDNN CPU kernels by itself only on CPUs with AVX-512 VNNI/BF16 or
# AMX; on a 2-core AVX2 CPU they trained configs/reference_base.yaml 1.11x as fast (its large
# matmuls ran ~1.7x as fast). TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's default.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
