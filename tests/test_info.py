"""`nmt info`: what a run directory holds, read from its files (end to end in tests/test_cli_translate.py)."""

import json

import pytest

from nmt import config as config_lib
from nmt import export_manifest, info
from nmt.errors import RunDirError
from nmt.run_dir import RunDir


def checkpoint(directory, step, state, size):
    path = directory / f"ckpt-{step}"
    path.mkdir(parents=True)
    (path / "state.json").write_text(json.dumps({"step": step, **state}))
    (path / "model.weights.h5").write_bytes(b"0" * size)


@pytest.fixture
def run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.save_config(config_lib.from_dict({"train": {"max_steps": 200, "epochs": 50}}))
    return run


def test_a_run_without_checkpoints_is_described_as_not_started(run):
    found = info.describe(run)
    assert found["progress"] == {"step": 0, "epochs": 0, "minutes": 0.0, "stopped_by": None}
    assert found["parameters"] is None and found["best_validation"] is None and found["export"] is None
    assert "not started (no checkpoint)" in info.text(found)
    assert "weights averaged" not in found["config"]["summary"]["training"]
    run.save_config(config_lib.from_dict({"train": {"ema_decay": 0.999}}))
    training = info.describe(run)["config"]["summary"]["training"]
    assert training.endswith("label smoothing 0.1, weights averaged (train.ema_decay 0.999)")


def test_further_training_corpora_are_named_with_their_weights_and_tags(run):
    assert info.describe(run)["config"]["summary"]["dataset"] == "synthetic (en→sy)"
    run.save_config(config_lib.from_dict({"data": {"extra_train": [
        {"dataset": "local", "manual_dir": "bt", "weight": 0.5, "tag": "<bt>"}, {"dataset": "synthetic/shifted"}]}}))
    assert info.describe(run)["config"]["summary"]["dataset"] == (
        "en→sy: synthetic train x 1; bt train x 0.5, tagged <bt>; synthetic/shifted train x 1")


def test_progress_best_validation_checkpoints_and_evaluations(run):
    best = {"step": 100, "epoch": 3, "validation_loss": 2.5, "validation_bleu": 21.5, "train_loss": 3.0}
    state = {"parameters": 1234567, "epoch": 6, "train_seconds": 300.0, "best_validation": best,
             "validations_without_improvement": 1}
    checkpoint(run.last_checkpoints, 100, {**state, "step": 100}, 1000)
    checkpoint(run.last_checkpoints, 200, state, 2_500_000)
    checkpoint(run.best_checkpoints, 100, state, 500_000)
    run.eval_dir("test").mkdir(parents=True)
    (run.eval_dir("test") / "report.json").write_text(json.dumps({
        "split": "test", "bleu": 30.25, "chrf": 55.5, "signature": "nrefs:1|bs:1000", "chrf_signature": "chrF2",
        "num_sentences": 1000, "checkpoint": "ckpt-100", "decode": {"beam_size": 4}}))
    found = info.describe(run)
    assert found["parameters"] == 1234567
    # The latest checkpoint says where training is; max_steps=200 is reached.
    assert found["progress"] == {"step": 200, "epochs": 6, "minutes": 5.0, "stopped_by": "max_steps"}
    assert found["best_validation"] == {"step": 100, "epoch": 3, "validation_loss": 2.5, "validation_bleu": 21.5}
    assert [c["step"] for c in found["checkpoints"]["last"]] == [100, 200]
    assert found["checkpoints"]["last"][1]["megabytes"] == pytest.approx(2.5, abs=0.01)
    assert found["checkpoints"]["averaged"] == []
    assert found["evaluations"]["test"]["bleu"] == 30.25 and found["evaluations"]["test"]["beam_size"] == 4
    text = info.text(found)
    assert "1,234,567 parameters" in text and "step 200, 6 epochs, 5.0 min; stopped by max_steps" in text
    assert "BLEU 21.50, loss 2.500 at step 100 (epoch 3)\n" in text
    assert "ckpt-100 (0.0 MB), ckpt-200 (2.5 MB)" in text
    assert "BLEU 30.25, chrF 55.50 (beam 4, 1000 sentences) nrefs:1|bs:1000" in text
    json.dumps(found)  # --json prints it
    run.save_config(config_lib.from_dict({"train": {"max_steps": 200, "ema_decay": 0.999}}))
    assert "at step 100 (epoch 3), the weights' moving average (train.ema_decay 0.999)\n" in info.text(info.describe(run))
    # An evaluation decoded under an n-gram limit says so.
    (run.eval_dir("test") / "report.json").write_text(json.dumps({
        "split": "test", "bleu": 30.5, "chrf": 55.5, "signature": "nrefs:1|bs:1000", "chrf_signature": "chrF2",
        "num_sentences": 1000, "checkpoint": "ckpt-100", "decode": {"beam_size": 4, "no_repeat_ngram_size": 3}}))
    assert "(beam 4, no repeated 3-grams, 1000 sentences)" in info.text(info.describe(run))
    # An ensemble's evaluation of the same split, beside the run's own: both, each by its name.
    run.eval_dir("test-ensemble").mkdir()
    (run.eval_dir("test-ensemble") / "report.json").write_text(json.dumps({
        "split": "test", "bleu": 33.0, "chrf": 57.0, "signature": "nrefs:1|bs:1000", "chrf_signature": "chrF2",
        "num_sentences": 1000, "checkpoint": "ckpt-100", "decode": {"beam_size": 4}, "ensemble": ["run", "other"]}))
    found = info.describe(run)["evaluations"]
    assert found["test"]["bleu"] == 30.5 and found["test-ensemble"]["bleu"] == 33.0
    assert "Evaluation test-ensemble  BLEU 33.00" in info.text(info.describe(run))


def test_the_export_says_what_it_holds_and_whether_translate_takes_it(run):
    config = run.load_config()
    checkpoint(run.best_checkpoints, 100, {}, 10)
    run.export_dir.mkdir()
    (run.export_dir / "saved_model.pb").write_bytes(b"0" * 1_500_000)
    described = info.describe(run)["export"]
    assert (described["used_by_translate"], described["checkpoint"]) == (False, None)
    assert info.text(info.describe(run)).endswith(
        f"{run.export_dir} (1.5 MB); nmt translate passes over it: it records no manifest (an export of an older version)")
    export_manifest.write(run.export_dir, run.best_checkpoints / "ckpt-100", config, constraints=False)
    assert info.text(info.describe(run)).endswith(f"{run.export_dir} (best/ckpt-100, 1.5 MB); nmt translate uses it")
    json.dumps(info.describe(run))  # --json prints it
    checkpoint(run.best_checkpoints, 200, {}, 10)  # a better checkpoint since the export
    assert info.describe(run)["export"]["passed_over_because"] == "it holds best/ckpt-100, the run translates with best/ckpt-200"
    export_manifest.write(run.export_dir, run.best_checkpoints / "ckpt-200", config, constraints=True)
    assert info.text(info.describe(run)).endswith(
        "(best/ckpt-200, 1.5 MB, places constraints); nmt translate passes over it: "
        "it places constraints, which makes it slower to load than the checkpoint")
    assert "no averaged checkpoint" in info.describe(run, ["eval.checkpoint=averaged"])["export"]["passed_over_because"]


def test_an_unfinished_run_says_so(run):
    checkpoint(run.last_checkpoints, 50, {"epoch": 1, "train_seconds": 60.0}, 10)
    assert info.describe(run)["progress"]["stopped_by"] is None
    assert "not finished (interrupted or running)" in info.text(info.describe(run))


def test_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(RunDirError, match="is not a training run"):
        info.describe(RunDir(tmp_path))
