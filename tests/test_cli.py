"""End-to-end: the real CLI trains a small model on the synthetic corpus, then translates and
evaluates with it. The BLEU threshold fails if the model cannot learn (e.g. a broken causal mask
or a missing target shift, which give BLEU near 0)."""

import json
import os
import shutil
import signal
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nmt import checkpoints
from nmt.cli import app
from nmt.training import trainer

runner = CliRunner()
BLEU_THRESHOLD = 35.0


def invoke(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def assert_user_error(result, message):
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tfds_dir):
    """A working directory holding configs/tiny.yaml and, after training, runs/tiny."""
    directory = tmp_path_factory.mktemp("work")
    (directory / "configs").mkdir()
    config = (Path(__file__).parents[1] / "configs" / "quickstart.yaml").read_text()
    (directory / "configs" / "tiny.yaml").write_text(config)
    previous = os.getcwd()
    os.chdir(directory)
    result = invoke(
        "train", "--config", "configs/tiny.yaml",
        "--set", f"data.data_dir={tfds_dir}", "--set", "train.epochs=2",
    )
    assert result.exit_code == 0, result.output
    yield directory
    os.chdir(previous)


def test_training_learns_and_writes_the_run_directory(workdir):
    run = workdir / "runs" / "tiny"
    report = json.loads((run / "eval" / "test" / "report.json").read_text())
    assert report["bleu"] >= BLEU_THRESHOLD, report
    assert report["num_sentences"] == 500 and report["signature"].startswith("nrefs:1|case:mixed")
    assert {"bleu", "chrf", "signature", "num_sentences", "seconds", "decode"} <= report.keys()
    assert "## Sample translations" in (run / "eval" / "test" / "report.md").read_text()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2] and metrics[1]["validation_loss"] < metrics[0]["validation_loss"]
    assert metrics[1]["validation_bleu"] > metrics[0]["validation_bleu"]
    assert (run / "config.yaml").is_file() and (run / "tokenizer" / "joint.model").is_file()
    assert list((run / "checkpoints" / "best").glob("ckpt-*")) and list((run / "checkpoints" / "last").glob("ckpt-*"))
    assert (workdir / "runs" / "latest").resolve() == run.resolve()


def test_translate_arguments_file_and_stdin(workdir):
    result = invoke("translate", "The dog saw a cat.", "My small teachers will read the book.")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and all(line.endswith(".") and line[0].isupper() for line in lines)

    (workdir / "in.txt").write_text("The dog saw a cat.\n\nMy small teachers will read the book.\n")
    result = invoke("translate", "--run-dir", "runs/tiny", "--input", "in.txt", "--output", "out.txt")
    assert result.exit_code == 0, result.output
    assert (workdir / "out.txt").read_text().splitlines() == [lines[0], "", lines[1]]

    result = invoke("translate", input="The dog saw a cat.\n\n")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [lines[0], ""]


def test_translate_bad_input(workdir):
    assert_user_error(invoke("translate", "  "), "empty sentence argument")
    (workdir / "latin1.txt").write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    assert_user_error(invoke("translate", "--input", "latin1.txt"), "latin1.txt line 2 is not valid UTF-8")
    assert_user_error(invoke("translate", "--input", "missing.txt"), "cannot read --input missing.txt")
    assert_user_error(invoke("translate", "--run-dir", "nowhere", "Hello."), "run directory not found: nowhere")
    (workdir / "empty_run").mkdir()
    (workdir / "empty_run" / "config.yaml").write_text((workdir / "runs" / "tiny" / "config.yaml").read_text())
    shutil.copytree(workdir / "runs" / "tiny" / "tokenizer", workdir / "empty_run" / "tokenizer")
    assert_user_error(invoke("translate", "--run-dir", "empty_run", "Hello."), "no checkpoint in empty_run")
    assert_user_error(invoke("translate", "--set", "model.hidden_dim=8", "Hello."), "'model' is fixed by the trained model")


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_attention_pictures(workdir):
    result = invoke("attention", "The dog saw a cat.", "--output", "attention.png")
    assert result.exit_code == 0, result.output
    translation, panels, picture = result.output.splitlines()
    assert translation == invoke("translate", "The dog saw a cat.").output.strip()
    # configs/quickstart.yaml: 2 decoder layers of 4 heads, and the last layer's mean of heads.
    width, height = png_size(workdir / "attention.png")
    assert panels == f"9 heatmaps, {width}x{height} pixels"
    result = invoke("attention", "The dog saw a cat.", "--self", "--output", "self.png")
    assert result.exit_code == 0 and "25 heatmaps" in result.output, result.output
    result = invoke("attention", "The dog saw a cat.", "--softmax-demo", "--output", "softmax.png")
    assert result.exit_code == 0 and "softmax of one query's logits: std" in result.output, result.output
    assert png_size(workdir / "softmax.png")[0] > 0
    assert_user_error(invoke("attention", "  ", "--output", "empty.png"), "empty sentence")
    assert not (workdir / "empty.png").exists()
    assert_user_error(invoke("attention", "A dog.", "--output", "picture.jpg"), "--output must name a .png file")


def test_translate_align(workdir):
    sentences = ["The dog saw a cat.", "", "My small teachers will read the old book in the garden."]
    result = invoke("translate", "--align", input="\n".join(sentences) + "\n")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    for index, (line, source) in enumerate(zip(lines, sentences)):
        number, translation, alignment = line.split(" ||| ")
        assert int(number) == index
        pairs = [tuple(map(int, pair.split("-"))) for pair in alignment.split()]
        # One pair per output word, each source word index in range.
        assert [target for _, target in pairs] == list(range(len(translation.split())))
        assert all(0 <= source_word < len(source.split()) for source_word, _ in pairs)
    assert lines[1] == "1 |||  ||| "
    assert_user_error(invoke("translate", "--align", "--n-best", "2", "A dog."), "--align aligns the best translation only")


def test_evaluate_other_split(workdir):
    result = invoke("evaluate", "--split", "validation", "--set", "decode.batch_size=100")
    assert result.exit_code == 0, result.output
    assert "validation: BLEU" in result.output
    report = json.loads((workdir / "runs" / "tiny" / "eval" / "validation" / "report.json").read_text())
    assert report["split"] == "validation" and report["decode"]["batch_size"] == 100
    assert_user_error(invoke("evaluate", "--split", "dev"), "--split must be train, validation or test")


def read_metrics(workdir):
    return [json.loads(line) for line in (workdir / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]


def read_report(workdir, split, name="report.json"):
    return json.loads((workdir / "runs" / "tiny" / "eval" / split / name).read_text())


def test_validation_bleu_logged_in_training_is_what_evaluate_reports(workdir):
    last = read_metrics(workdir)[-1]
    result = invoke("evaluate", "--split", "validation", "--set", "decode.beam_size=1", "--set", "eval.checkpoint=last")
    assert result.exit_code == 0, result.output
    report = read_report(workdir, "validation")
    assert report["checkpoint"].endswith(f"ckpt-{last['step']}")
    assert (report["bleu"], report["chrf"]) == (last["validation_bleu"], last["validation_chrf"])
    # The best checkpoint is the one with the highest validation BLEU.
    best = max(read_metrics(workdir), key=lambda record: record["validation_bleu"])
    assert [path.name for path in (workdir / "runs" / "tiny" / "checkpoints" / "best").iterdir()] == [f"ckpt-{best['step']}"]


def test_beam_search_n_best(workdir):
    best = invoke("translate", "The dog saw a cat.")
    result = invoke("translate", "--n-best", "3", "The dog saw a cat.", "A teacher reads.")
    assert result.exit_code == 0, result.output
    lines = [line.split(" ||| ") for line in result.output.splitlines()]
    assert [line[0] for line in lines] == ["0", "0", "0", "1", "1", "1"]
    assert lines[0][1] == best.output.strip()
    for first in (0, 3):
        scores = [float(line[2]) for line in lines[first : first + 3]]
        assert scores == sorted(scores, reverse=True) and len({line[1] for line in lines[first : first + 3]}) == 3
    assert_user_error(invoke("translate", "--n-best", "5", "A dog."), "--n-best must be between 1 and decode.beam_size (4)")
    assert_user_error(invoke("translate", "--set", "decode.beam_size=0", "A dog."), "'decode.beam_size' must be greater than 0")
    assert_user_error(
        invoke("translate", "--set", "decode.length_penalty=-1", "A dog."), "'decode.length_penalty' must be 0 or more"
    )


def test_average_checkpoints(workdir):
    run = workdir / "runs" / "tiny"
    result = invoke("average", "--last", "2")
    assert result.exit_code == 0, result.output
    assert len(list((run / "checkpoints" / "averaged").glob("ckpt-*"))) == 1
    result = invoke("evaluate", "--split", "validation", "--set", "eval.checkpoint=averaged", "--set", "decode.beam_size=1")
    assert result.exit_code == 0, result.output
    assert "/averaged/" in read_report(workdir, "validation")["checkpoint"]

    assert_user_error(invoke("average", "--last", "9"), "cannot average the last 9 checkpoints")
    assert_user_error(invoke("average"), "pass either --last N")
    other = workdir / "other_run"
    first = checkpoints.all_checkpoints(run / "checkpoints" / "last")[0]
    shutil.copytree(first, other / "checkpoints" / "last" / first.name)
    config = (run / "config.yaml").read_text().replace("hidden_dim: 128", "hidden_dim: 64")
    (other / "config.yaml").write_text(config)
    result = invoke("average", "--checkpoint", str(first), "--checkpoint", str(other / "checkpoints" / "last" / first.name))
    assert_user_error(result, "its run has model.hidden_dim=64")


def test_compare_two_runs_with_paired_bootstrap(workdir):
    run = workdir / "runs" / "tiny"
    earlier = workdir / "runs" / "earlier"
    shutil.copytree(run, earlier)
    # The copy's "best" becomes its oldest checkpoint: the same model one epoch less trained.
    shutil.rmtree(earlier / "checkpoints" / "best")
    oldest = checkpoints.all_checkpoints(earlier / "checkpoints" / "last")[0]
    shutil.copytree(oldest, earlier / "checkpoints" / "best" / oldest.name)
    result = invoke("evaluate", "--split", "validation", "--compare", str(earlier), "--set", "decode.beam_size=1")
    assert result.exit_code == 0, result.output
    comparison = read_report(workdir, "validation", "compare.json")
    bleu = comparison["metrics"]["BLEU"]
    assert bleu["system"]["score"] > bleu["baseline"]["score"] and bleu["p_value"] < 0.05
    assert bleu["baseline"]["ci95"] > 0 and "p-value" in (run / "eval" / "validation" / "compare.md").read_text()
    assert_user_error(invoke("evaluate", "--compare", "nowhere"), "run directory not found: nowhere")


def test_resume_continues_from_the_last_checkpoint(workdir, tfds_dir):
    metrics = read_metrics(workdir)
    before = metrics[-1]["step"]
    result = invoke(
        "train", "--config", "configs/tiny.yaml", "--set", f"data.data_dir={tfds_dir}",
        "--set", f"train.max_steps={before + 3}", "--set", "train.eval_every_steps=2",
    )
    assert result.exit_code == 0, result.output
    assert "stopped by max_steps" in result.output
    # Validation every 2 steps (mid-epoch), and once more where training stopped.
    even = before + 1 if (before + 1) % 2 == 0 else before + 2
    assert [record["step"] for record in read_metrics(workdir)[len(metrics):]] == [even, before + 3]


def test_sigterm_saves_the_state_like_ctrl_c(workdir, tfds_dir, monkeypatch):
    """What schedulers and `kill` send: the state at the step reached is saved, not lost."""
    last = workdir / "runs" / "tiny" / "checkpoints" / "last"
    before = checkpoints.step_of(checkpoints.latest(last))
    stop_reason = trainer._Loop._stop_reason

    def terminate_after_two_steps(loop):
        if loop.step == before + 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return stop_reason(loop)

    monkeypatch.setattr(trainer._Loop, "_stop_reason", terminate_after_two_steps)
    # Should training not handle SIGTERM, this fails the test instead of killing pytest.
    previous = signal.signal(signal.SIGTERM, lambda *_: pytest.fail("SIGTERM reached the default handler"))
    try:
        result = invoke("train", "--config", "configs/tiny.yaml", "--set", f"data.data_dir={tfds_dir}",
                        "--set", f"train.max_steps={before + 10}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143, result.output
    assert f"training stopped by SIGTERM at step {before + 2}; state saved" in result.output
    assert "Traceback" not in result.output
    assert checkpoints.step_of(checkpoints.latest(last)) == before + 2


def test_resume_with_a_different_model_is_refused(workdir, tfds_dir):
    result = invoke("train", "--config", "configs/tiny.yaml", "--set", f"data.data_dir={tfds_dir}", "--set", "model.hidden_dim=64")
    assert_user_error(result, "was trained with model.hidden_dim=128, this config says 64")


def test_config_errors_are_one_line(workdir):
    assert_user_error(invoke("train", "--config", "nope.yaml"), "config file not found: nope.yaml")
    (workdir / "bad.yaml").write_text("model:\n  hidden_dimm: 3\n")
    assert_user_error(invoke("train", "--config", "bad.yaml"), "unknown config key 'model.hidden_dimm'")


def test_mirrored_bfloat16_training_with_accumulation_resumes_and_matches_evaluate(workdir, tfds_dir):
    """The distributed path end to end: two CPU replicas (see conftest.py), accumulated batches
    and bfloat16 (float32 where the CPU lacks bf16 units); checkpoints restore into mirrored
    variables, and validation BLEU (decoded by a float32 one-device copy) equals nmt evaluate."""
    common = [
        "train", "--config", "configs/tiny.yaml", "--run-dir", "runs/mirrored", "--set", f"data.data_dir={tfds_dir}",
        "--set", "train.distribute=mirrored", "--set", "train.replicas=2", "--set", "train.accumulate_steps=2",
        "--set", "train.precision=mixed_bfloat16", "--set", "train.eval_every_steps=2", "--set", "decode.beam_size=1",
        # Short outputs keep the decoding of a 4-step model (validations, evaluations) quick, and
        # one layer each side the tracing of the replicated, accumulated step.
        "--set", "decode.max_length_ratio=0.3", "--set", "decode.max_length_offset=2",
        "--set", "model.num_encoder_layers=1", "--set", "model.num_decoder_layers=1",
    ]
    # Same data and tokenizer settings as runs/tiny: its SentencePiece model saves training another.
    shutil.copytree(workdir / "runs" / "tiny" / "tokenizer", workdir / "runs" / "mirrored" / "tokenizer")
    assert invoke(*common, "--set", "train.max_steps=2").exit_code == 0
    result = invoke(*common, "--set", "train.max_steps=4")
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (workdir / "runs" / "mirrored" / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in metrics] == [2, 4]
    assert metrics[1]["train_loss"] < metrics[0]["train_loss"]
    result = invoke("evaluate", "--run-dir", "runs/mirrored", "--split", "validation", "--set", "eval.checkpoint=last")
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "runs" / "mirrored" / "eval" / "validation" / "report.json").read_text())
    assert (report["bleu"], report["chrf"]) == (metrics[1]["validation_bleu"], metrics[1]["validation_chrf"])
