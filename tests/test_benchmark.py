import sys
from pathlib import Path
from unittest import mock

from nmt import config as config_lib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import benchmark  # noqa: E402  (a script, not a package module)


def test_a_bf16_lever_is_the_config_itself_on_a_cpu_without_bf16_units(monkeypatch):
    monkeypatch.setattr("nmt.training.precision._gpu_compute_capability", lambda: None)
    config = ROOT / "configs" / "reference_base.yaml"
    base = config_lib.load(config, ["train.precision=float32"])
    bf16 = config_lib.load(config, ["train.precision=mixed_bfloat16"])
    with mock.patch("nmt.training.precision.cpu_flags", return_value=frozenset({"avx2"})):
        assert benchmark.as_run_here(bf16) == benchmark.as_run_here(base)
    with mock.patch("nmt.training.precision.cpu_flags", return_value=frozenset({"avx512_bf16"})):
        assert benchmark.as_run_here(bf16) != benchmark.as_run_here(base)
    xla = config_lib.load(config, ["train.jit_compile=true"])
    assert benchmark.as_run_here(xla) != benchmark.as_run_here(base)
