"""train.distribute: the tf.distribute strategy training runs under, and how batches split over it."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from nmt.config import TrainConfig
from nmt.errors import ConfigError


def make_strategy(train: TrainConfig) -> tf.distribute.Strategy:
    """The strategy for train.distribute; 'none' is TF's default (one device) strategy.

    Raises:
        ConfigError: multi_worker without TF_CONFIG, no TPU to connect to, or CPU replicas
            requested after TensorFlow has already set up its devices.
    """
    if train.distribute == "none":
        return tf.distribute.get_strategy()
    if train.distribute == "mirrored":
        devices = _mirrored_devices(train.replicas)
        if devices[0].startswith("/cpu"):
            # Logical CPU devices share memory: reducing on one of them is all they need, and it
            # avoids collective ops, whose instance keys clash between strategies in one process.
            return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
        return tf.distribute.MirroredStrategy(devices)
    if train.distribute == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise ConfigError(f"train.distribute=tpu: no TPU found ({error}); set TPU_NAME or use train.distribute=mirrored") from None
    return tf.distribute.TPUStrategy(resolver)


def _mirrored_devices(replicas: int | None) -> list[str]:
    """All GPUs (or the first `replicas`); without GPUs, `replicas` logical CPU devices, splitting
    the CPU as TF allows, which runs the same distributed code path on a laptop or in CI."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if replicas is not None and replicas > len(gpus):
            raise ConfigError(f"config key 'train.replicas' is {replicas} but only {len(gpus)} GPUs are visible")
        return [f"/gpu:{index}" for index in range(replicas or len(gpus))]
    replicas = replicas or 1
    cpu = tf.config.list_physical_devices("CPU")[0]
    # Configure first, count after: listing logical devices sets them up, and from then on TF
    # refuses a new split (raises RuntimeError), which is fine only if enough are there already.
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) < replicas:
            raise ConfigError(
                f"train.replicas={replicas} CPU replicas: TensorFlow's devices were already set up in this "
                "process; start a fresh process (nmt train does this first)"
            ) from None
    return [f"/cpu:{index}" for index in range(replicas)]


def worker_index(train: TrainConfig) -> int:
    """This machine's index among multi_worker workers (TF_CONFIG's task index); 0 otherwise."""
    if train.distribute != "multi_worker":
        return 0
    return _check_tf_config()["task"]["index"]


def _check_tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError(
            "train.distribute=multi_worker needs the TF_CONFIG environment variable on every worker, e.g. "
            'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
        )
    try:
        tf_config = json.loads(raw)
        if not isinstance(tf_config["cluster"]["worker"], list) or not isinstance(tf_config["task"]["index"], int):
            raise TypeError
        return tf_config
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            'TF_CONFIG must be JSON with "cluster": {"worker": [...]} and "task": {"type": "worker", "index": N}; '
            f"got {raw!r}"
        ) from None


def batch_multiplier(train: TrainConfig, num_replicas: int) -> int:
    """How many train.batch_tokens batches one update consumes: replicas (when batch_tokens is per
    replica) times accumulate_steps. The learning-rate warmup, stated in batch_tokens batches,
    is divided by it."""
    replicas = num_replicas if train.batch_scope == "replica" else 1
    return replicas * train.accumulate_steps


def replica_batch_tokens(train: TrainConfig, num_replicas: int) -> int:
    """Token budget of each replica's batch."""
    if train.batch_scope == "replica":
        return train.batch_tokens
    return max(1, train.batch_tokens // num_replicas)
