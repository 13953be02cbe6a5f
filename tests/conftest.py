import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

import nmt  # noqa: E402,F401  (before TensorFlow: it sets TensorFlow's environment, as the CLI does)
import tensorflow as tf  # noqa: E402

# Two logical CPU devices, so that mirrored (multi-replica) training runs in tests; this must
# happen before TensorFlow sets up its devices, hence here. Unplaced ops still run on /cpu:0.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
    """One TFDS data directory per test session, so the synthetic corpus is generated once."""
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.fixture(scope="session")
def package_env():
    """The environment for a subprocess that must import this checkout's nmt, whatever its
    working directory (an installed nmt elsewhere would otherwise be found first)."""
    from pathlib import Path

    return {**os.environ, "PYTHONPATH": str(Path(nmt.__file__).parents[1])}
