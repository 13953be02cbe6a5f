import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
    """One TFDS data directory per test session, so the synthetic corpus is generated once."""
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))
