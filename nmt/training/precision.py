"""Training precision: the Keras dtype policy a model computes in, and whether the device runs it fast.

Mixed policies keep float32 weights and compute in 16 bits. bfloat16 has float32's range, so it
needs no loss scaling; float16 does (see the trainer's LossScaleOptimizer).
"""

from __future__ import annotations

import contextlib
import logging
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import keras
import tensorflow as tf

log = logging.getLogger("nmt")
# CPU flags of bfloat16 matrix units, which oneDNN uses for bfloat16 matmuls.
BF16_UNITS = frozenset({"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def cpuinfo() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo ('model name', 'flags', ...); empty where unknown."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (Linux), e.g. avx512_bf16; empty where unknown."""
    return frozenset(cpuinfo().get("flags", "").split())


def _gpu_compute_capability() -> tuple[int, int] | None:
    """The lowest compute capability among visible GPUs; None without a GPU."""
    capabilities = [
        tf.config.experimental.get_device_details(gpu).get("compute_capability")
        for gpu in tf.config.list_physical_devices("GPU")
    ]
    capabilities = [capability for capability in capabilities if capability]
    return min(capabilities) if capabilities else None


def unsupported_reason(policy: str) -> str | None:
    """Why this machine cannot run `policy` fast (None when it can)."""
    if policy == "float32":
        return None
    capability = _gpu_compute_capability()
    if capability is not None:
        needed = (8, 0) if policy == "mixed_bfloat16" else (7, 0)
        if capability < needed:
            return f"the GPU (compute capability {capability[0]}.{capability[1]}) lacks fast {policy[6:]} units"
        return None
    if policy == "mixed_float16":
        return "CPUs have no fast float16 matrix units (mixed_bfloat16 is the CPU's 16-bit choice)"
    # Without these units TF emulates bfloat16 matmuls, which is slower than float32.
    if not cpu_flags() & BF16_UNITS:
        return "this CPU has no bfloat16 units (avx512_bf16 or amx_bf16)"
    return None


def resolve(name: str) -> str:
    """The policy to train with for train.precision = name (see choose)."""
    return choose(name)[0]


def choose(name: str) -> tuple[str, str]:
    """The policy to train with for train.precision = name, and why. 'auto' picks bfloat16 where
    the device has bfloat16 units (CPUs with AVX-512 BF16 or AMX, GPUs from Ampere on), float16
    with loss scaling on GPUs with float16 tensor cores only (Volta, Turing), float32 elsewhere.
    An explicit policy the device cannot run fast falls back to float32 with a warning."""
    if name == "auto":
        capability = _gpu_compute_capability()
        if capability is not None:
            gpu = f"the GPU (compute capability {capability[0]}.{capability[1]})"
            if unsupported_reason("mixed_bfloat16") is None:
                return "mixed_bfloat16", f"auto: {gpu} has bfloat16 tensor cores"
            if unsupported_reason("mixed_float16") is None:
                return "mixed_float16", f"auto: {gpu} has float16 tensor cores but no bfloat16 ones (loss scaling on)"
            return "float32", f"auto: {gpu} has no 16-bit tensor cores"
        units = sorted(cpu_flags() & BF16_UNITS)
        if units:
            return "mixed_bfloat16", f"auto: the CPU has bfloat16 units ({', '.join(units)})"
        return "float32", f"auto: the CPU has no bfloat16 units ({' or '.join(sorted(BF16_UNITS))})"
    reason = unsupported_reason(name)
    if reason is not None:
        log.warning("train.precision=%s: %s; training in float32 instead", name, reason)
        return "float32", f"{name} falls back: {reason}"
    return name, "as configured"


@contextlib.contextmanager
def policy_scope(policy: str) -> Iterator[None]:
    """Layers built inside compute in `policy`; the global policy is restored afterwards, so that
    models built later (for translation) are unaffected."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
