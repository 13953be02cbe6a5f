"""The distributed path through the real CLI. Apart from tests/test_cli.py, whose trained run it
does not need, so that the two slowest parts of the CLI's tests run in parallel under xdist."""

import json
from pathlib import Path

from tests.test_cli import invoke


def test_mirrored_bfloat16_training_with_accumulation_resumes_and_matches_evaluate(tmp_path, tfds_dir, monkeypatch):
    """Two CPU replicas (see conftest.py), accumulated batches and bfloat16 (float32 where the CPU
    lacks bf16 units); checkpoints restore into mirrored variables, and validation BLEU (decoded by
    a float32 one-device copy) equals nmt evaluate."""
    config = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
    common = [
        "train", "--config", str(config), "--run-dir", "runs/mirrored", "--set", f"data.data_dir={tfds_dir}",
        "--set", "train.distribute=mirrored", "--set", "train.replicas=2", "--set", "train.accumulate_steps=2",
        "--set", "train.precision=mixed_bfloat16", "--set", "train.eval_every_steps=2", "--set", "decode.beam_size=1",
        "--set", "train.data_check=false", "--set", "tokenizer.vocab_size=200", "--set", "data.train_split=train[:2000]",
        # Short outputs keep the decoding of a 4-step model (validations, evaluations) quick, and
        # one layer each side the tracing of the replicated, accumulated step.
        "--set", "decode.max_length_ratio=0.3", "--set", "decode.max_length_offset=2",
        "--set", "model.num_encoder_layers=1", "--set", "model.num_decoder_layers=1",
    ]
    monkeypatch.chdir(tmp_path)
    assert invoke(*common, "--set", "train.max_steps=2").exit_code == 0
    result = invoke(*common, "--set", "train.max_steps=4")
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in Path("runs/mirrored/metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in metrics] == [2, 4]
    assert metrics[1]["train_loss"] < metrics[0]["train_loss"]
    result = invoke("evaluate", "--run-dir", "runs/mirrored", "--split", "validation", "--set", "eval.checkpoint=last")
    assert result.exit_code == 0, result.output
    report = json.loads(Path("runs/mirrored/eval/validation/report.json").read_text())
    assert (report["bleu"], report["chrf"]) == (metrics[1]["validation_bleu"], metrics[1]["validation_chrf"])
