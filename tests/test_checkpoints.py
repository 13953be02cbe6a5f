import keras
import numpy as np
import pytest

from nmt import checkpoints
from nmt.errors import RunDirError


def small_model():
    model = keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(2)])
    model.build((None, 4))
    return model


def test_save_restore_prune(tmp_path):
    model, optimizer = small_model(), keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    optimizer.iterations.assign(7)
    for step in (1, 2, 3):
        checkpoints.save(tmp_path, step, model, optimizer, {"epoch": step}, keep=2)
    assert [path.name for path in checkpoints.all_checkpoints(tmp_path)] == ["ckpt-2", "ckpt-3"]

    other, other_optimizer = small_model(), keras.optimizers.Adam()
    other_optimizer.build(other.trainable_variables)
    state = checkpoints.restore(checkpoints.latest(tmp_path), other, other_optimizer)
    assert state == {"step": 3, "parameters": model.count_params(), "epoch": 3}
    assert int(other_optimizer.iterations) == 7
    for saved, loaded in zip(model.weights, other.weights):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())


def test_incomplete_checkpoint_is_ignored_and_broken_one_reported(tmp_path):
    (tmp_path / ".ckpt-5.tmp").mkdir()
    assert checkpoints.latest(tmp_path) is None
    (tmp_path / "ckpt-5").mkdir()
    with pytest.raises(RunDirError, match="cannot load checkpoint"):
        checkpoints.restore(tmp_path / "ckpt-5", small_model())
