import pytest

from nmt.training.schedule import InverseSqrtSchedule


def test_warmup_peak_and_decay():
    schedule = InverseSqrtSchedule(1e-3, warmup_steps=100)
    assert float(schedule(49)) == pytest.approx(0.5e-3)
    assert float(schedule(99)) == pytest.approx(1e-3)
    assert float(schedule(399)) == pytest.approx(0.5e-3)


def test_the_optimizer_scales_the_loss_only_under_float16():
    import keras

    from nmt.config import TrainConfig
    from nmt.training.schedule import make_optimizer

    train = TrainConfig(learning_rate=2e-3, warmup_steps=10)
    assert isinstance(make_optimizer(train, "mixed_float16", 10), keras.optimizers.LossScaleOptimizer)
    for policy in ("float32", "mixed_bfloat16"):
        optimizer = make_optimizer(train, policy, 5)
        assert type(optimizer) is keras.optimizers.Adam and optimizer.beta_2 == train.adam_beta2
        assert float(optimizer.learning_rate) == pytest.approx(2e-3 / 5)  # step 1 of a 5-step warmup
