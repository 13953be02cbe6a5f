"""How the jobs compose training, decoding and evaluation (end to end in tests/test_cli.py and tests/test_cli_translate.py)."""

import dataclasses
import logging

import yaml

from nmt import config as config_lib
from nmt import jobs
from nmt.jobs import validation_decode
from nmt.training import autotune
from tests.training.test_trainer import tiny


def test_validation_decodes_with_the_validation_beam():
    config = config_lib.from_dict({"decode": {"beam_size": 5, "length_penalty": 1.0}, "train": {"validation_beam_size": 2}})
    decode = validation_decode(config).decode
    assert decode.beam_size == 2 and decode.length_penalty == 1.0


def test_automatic_settings_are_decided_once_said_and_recorded(tmp_path, tfds_dir, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # the run becomes runs/latest there, not in the repository
    monkeypatch.setattr(autotune, "CPU_BUDGETS", (256, 512))
    monkeypatch.setattr(autotune, "TIMED_SECONDS", 0.5)
    caplog.set_level(logging.INFO, logger="nmt")
    config_file = tmp_path / "auto.yaml"
    config_file.write_text(yaml.safe_dump(tiny(tfds_dir, batch_tokens="auto", precision="auto", max_steps=2, data_check=False).to_dict()))

    def train(max_steps):
        with jobs.training_run(config_file, str(tmp_path / "run"), [f"train.max_steps={max_steps}"]) as (config, run):
            jobs.train(config, run, progress=False)
        return config_lib.load(run.config_file).train

    recorded = train(2)
    assert recorded.batch_tokens in (256, 512) and recorded.precision in ("float32", "mixed_bfloat16")
    assert f"train.batch_tokens: {recorded.batch_tokens:,} (auto: the smallest of the fastest budgets" in caplog.text
    assert f"train.precision: {recorded.precision} (auto: the CPU has " in caplog.text
    caplog.clear()
    assert train(3) == dataclasses.replace(recorded, max_steps=3)
    assert "train.batch_tokens:" not in caplog.text and "batch_tokens=256" not in caplog.text
