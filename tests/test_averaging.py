import keras
import numpy as np
import pytest

from nmt import averaging, checkpoints
from nmt.errors import RunDirError
from nmt.run_dir import RunDir


def small_model():
    model = keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(2)])
    model.build((None, 4))
    return model


def test_average_is_the_mean_of_the_weights(tmp_path):
    run = RunDir(tmp_path)
    model = small_model()
    saved = []
    for step in (10, 20, 30):
        model.set_weights([np.random.default_rng(step).normal(size=w.shape).astype("float32") for w in model.get_weights()])
        saved.append(model.get_weights())
        checkpoints.save(run.last_checkpoints, step, model, None, {}, keep=3)

    path = averaging.average(run, small_model(), averaging.last_checkpoints(run, 2))
    assert path == run.averaged_checkpoints / "ckpt-30"
    averaged = small_model()
    checkpoints.restore(run.checkpoint_path("averaged"), averaged)
    for index, weight in enumerate(averaged.get_weights()):
        np.testing.assert_allclose(weight, (saved[1][index] + saved[2][index]) / 2, rtol=1e-6)


def test_too_many_or_missing_checkpoints(tmp_path):
    run = RunDir(tmp_path)
    checkpoints.save(run.last_checkpoints, 5, small_model(), None, {}, keep=3)
    with pytest.raises(RunDirError, match="cannot average the last 2 checkpoints: .* holds 1"):
        averaging.last_checkpoints(run, 2)
    with pytest.raises(RunDirError, match="no averaged checkpoint"):
        run.checkpoint_path("averaged")
    with pytest.raises(RunDirError, match="is not a checkpoint"):
        averaging.average(run, small_model(), [tmp_path / "nothing"])
