import pytest

from nmt.training.schedule import InverseSqrtSchedule


def test_warmup_peak_and_decay():
    schedule = InverseSqrtSchedule(1e-3, warmup_steps=100)
    assert float(schedule(49)) == pytest.approx(0.5e-3)
    assert float(schedule(99)) == pytest.approx(1e-3)
    assert float(schedule(399)) == pytest.approx(0.5e-3)
