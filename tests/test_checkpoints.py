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


def trained_optimizer(model, loss_scaling):
    """An Adam (inside a LossScaleOptimizer with loss_scaling) after two updates of model."""
    optimizer = keras.optimizers.Adam()
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=64.0)
    optimizer.build(model.trainable_variables)
    for _ in range(2):
        optimizer.apply([np.ones(variable.shape, "float32") for variable in model.trainable_variables], model.trainable_variables)
    return optimizer


@pytest.mark.parametrize("saved_scaling", [True, False])
def test_optimizer_state_moves_between_float16_and_other_precisions(tmp_path, saved_scaling):
    """A float16 run's Adam sits inside a LossScaleOptimizer; resumed where the same config falls
    back to float32 (or the other way round), it keeps Adam's step and moments."""
    model = small_model()
    saved = trained_optimizer(model, saved_scaling)
    checkpoints.save(tmp_path, 2, model, saved, {}, keep=1)
    loaded = trained_optimizer(small_model(), not saved_scaling)  # other values, to be overwritten
    loaded.iterations.assign(0)
    checkpoints.restore(tmp_path / "ckpt-2", small_model(), loaded)
    inner = [getattr(optimizer, "inner_optimizer", optimizer) for optimizer in (saved, loaded)]
    assert int(loaded.iterations) == 2
    for before, after in zip(inner[0].variables, inner[1].variables, strict=True):
        np.testing.assert_array_equal(before.numpy(), after.numpy())

    # An optimizer of other variables is refused, not left as it was.
    for scaling in (False, True):
        other = keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(2)])
        other.build((None, 4))
        first_layer = keras.Sequential([other.layers[0]])
        with pytest.raises(RunDirError, match="optimizer"):
            checkpoints.restore(tmp_path / "ckpt-2", other, trained_optimizer(first_layer, scaling))


def test_incomplete_checkpoint_is_ignored_and_broken_one_reported(tmp_path):
    (tmp_path / ".ckpt-5.tmp").mkdir()
    assert checkpoints.latest(tmp_path) is None
    (tmp_path / "ckpt-5").mkdir()
    with pytest.raises(RunDirError, match="cannot load checkpoint"):
        checkpoints.restore(tmp_path / "ckpt-5", small_model())


FILES = ("model.weights.h5", "optimizer.npz", "state.json", "manifest.json")


def saved_three(directory):
    model, optimizer = small_model(), keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    for step in (1, 2, 3):
        checkpoints.save(directory, step, model, optimizer, {"epoch": step}, keep=3)
    return model, optimizer


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("harm", [truncate, flip_a_byte], ids=["truncated", "flipped"])
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_newest_checkpoint_is_reported_and_passed_over(tmp_path, caplog, name, harm):
    model, optimizer = saved_three(tmp_path)
    harm(tmp_path / "ckpt-3" / name)
    assert checkpoints.latest(tmp_path) == tmp_path / "ckpt-2"
    assert f"checkpoint {tmp_path / 'ckpt-3'} is damaged" in caplog.text
    with pytest.raises(RunDirError, match=f"checkpoint {tmp_path / 'ckpt-3'} is damaged"):
        checkpoints.restore(tmp_path / "ckpt-3", small_model())
    assert checkpoints.restore(checkpoints.latest(tmp_path), small_model())["step"] == 2


def test_a_checked_file_is_hashed_again_only_once_it_changes(tmp_path, monkeypatch):
    """Looking a checkpoint up and loading it (what every command does, three times over when
    fine-tuning opens its base) reads each file once to check it; a file written since is read again."""
    saved_three(tmp_path)
    hashed = []
    sha256 = checkpoints._sha256
    monkeypatch.setattr(checkpoints, "_sha256", lambda path: hashed.append(path.name) or sha256(path))
    for _ in range(3):
        checkpoints.restore(checkpoints.latest(tmp_path), small_model())
    assert sorted(hashed) == sorted([name for name in FILES if name != "manifest.json"] + ["random.npz"])

    hashed.clear()
    flip_a_byte(tmp_path / "ckpt-3" / "model.weights.h5")
    assert checkpoints.latest(tmp_path) == tmp_path / "ckpt-2"
    assert "model.weights.h5" in hashed


def test_a_failed_write_leaves_the_earlier_checkpoints_intact(tmp_path, monkeypatch):
    model, optimizer = saved_three(tmp_path)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}

    def disk_full(path, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(RunDirError, match=r"cannot write checkpoint .*ckpt-3: No space left on device; the earlier "
                                          r"checkpoints are intact"):
        checkpoints.save(tmp_path, 3, model, optimizer, {"epoch": 9}, keep=3)  # replacing ckpt-3 fails midway
    with pytest.raises(RunDirError, match="No space left on device"):
        checkpoints.save(tmp_path, 4, model, optimizer, {"epoch": 4}, keep=3)
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ckpt-1", "ckpt-2", "ckpt-3"]
