"""End-to-end: the real CLI trains a small model on the synthetic corpus (conftest.py's
`trained_quickstart`), then resumes, stops and fine-tunes it; tests/test_cli_translate.py decodes
with it. The BLEU threshold fails if the model cannot learn (e.g. a broken causal mask or a missing
target shift, which give BLEU near 0)."""

import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nmt import checkpoints
from nmt.cli import app
from nmt.training import trainer
from tests.training.test_sinks import read_events

runner = CliRunner()
BLEU_THRESHOLD = 35.0


def invoke(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def assert_user_error(result, message):
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_training_learns_and_writes_the_run_directory(workdir):
    run = workdir / "runs" / "tiny"
    report = json.loads((run / "eval" / "test" / "report.json").read_text())
    assert report["bleu"] >= BLEU_THRESHOLD, report
    assert report["num_sentences"] == 500 and report["signature"].startswith("nrefs:1|case:mixed")
    assert {"bleu", "chrf", "ter", "signature", "ter_signature", "num_sentences", "seconds", "decode"} <= report.keys()
    assert 0 <= report["ter"] < 60  # a model that learned edits few words
    assert "## Sample translations" in (run / "eval" / "test" / "report.md").read_text()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2] and metrics[1]["validation_loss"] < metrics[0]["validation_loss"]
    assert metrics[1]["validation_bleu"] > metrics[0]["validation_bleu"]
    # TensorBoard holds the same validations, and one training point per step.
    events = read_events(run / "tensorboard")
    for key in ("loss", "bleu", "chrf"):
        assert [(step, pytest.approx(float(value))) for step, value in events[f"validation/{key}"]] == [
            (m["step"], m[f"validation_{key}"]) for m in metrics]
    assert [step for step, _ in events["train/loss"]] == list(range(1, metrics[-1]["step"] + 1))
    assert float(events["train/learning_rate"][-1][1]) == pytest.approx(metrics[-1]["learning_rate"])
    assert len(events["validation/samples"]) == 2
    assert (run / "config.yaml").is_file() and (run / "tokenizer" / "joint.model").is_file()
    assert list((run / "checkpoints" / "best").glob("ckpt-*")) and list((run / "checkpoints" / "last").glob("ckpt-*"))
    assert (workdir / "runs" / "latest").resolve() == run.resolve()
    # The data check at the first start: the synthetic language 'sy' is unknown to the identifier.
    check = json.loads((run / "data_check.json").read_text())
    assert check["splits"]["train"]["pairs"] > 0 and check["subword_checks"]
    assert "py3langid does not know 'sy'" in check["language_identification"]


def test_data_check_reports_problems_and_writes_a_cleaned_corpus_that_checks_clean(tmp_path, monkeypatch):
    from nmt.data import sources
    from tests.data.test_check import PROBLEMS, clean_pairs

    pairs = clean_pairs()
    train = pairs[:200] + list(PROBLEMS.values()) + [pairs[0]]
    corpus = {"train": train, "validation": pairs[300:320] + [pairs[5]], "test": pairs[320:340]}
    sources.write_local(tmp_path / "corpus", "en", "de", {name: tuple(map(list, zip(*split))) for name, split in corpus.items()})
    config = tmp_path / "local.yaml"
    config.write_text("data: {dataset: local, source_lang: en, target_lang: de, manual_dir: corpus, data_dir: tfds}\n"
                      "tokenizer: {vocab_size: 200}\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("data", "check", "--config", "local.yaml", "--write-clean", "clean")
    assert result.exit_code == 0, result.output
    assert "train: 206 pairs" in result.output and "train: 1 pair (0.49%): untranslated copies (target = source)" in result.output
    assert "validation: 1 pair, 1 of its sources and 1 of its targets also occur in training" in result.output
    assert "Cleaned corpus: clean (200 training pairs, 6 dropped)" in result.output
    # TFDS's own messages about preparing the files stay out of the output (a line of ours says it).
    assert "Downloading and preparing" not in result.output and "Dataset local_text" not in result.output
    report = json.loads((tmp_path / "runs" / "local" / "data_check.json").read_text())
    assert report["splits"]["train"]["checks"]["wrong_language"]["count"] == 2
    assert "## Examples" in (tmp_path / "runs" / "local" / "data_check.md").read_text()
    cleaned = invoke("data", "check", "--config", "local.yaml", "--set", "data.manual_dir=clean", "--output", "cleaned-report",
                     "--max-pairs", "150")
    assert cleaned.exit_code == 0, cleaned.output
    # Local text keeps its files' order, so at most 150 pairs spread over each split: one in 2 of
    # training's 200. No problem in training (the tokenizer lacks some characters of the held-out
    # splits, and says so).
    assert "train: 100 pairs (one in 2 of the split's)" in cleaned.output, cleaned.output
    assert not any(line.startswith("  train:") for line in cleaned.output.splitlines())
    assert (tmp_path / "cleaned-report" / "data_check.md").is_file()


def test_data_check_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("missing.yaml").write_text("data: {dataset: local, source_lang: en, target_lang: de, manual_dir: nowhere}\n")
    assert_user_error(invoke("data", "check", "--config", "missing.yaml"), "data.manual_dir nowhere is not a directory")
    Path("full").mkdir()
    Path("full", "file.txt").write_text("")
    assert_user_error(invoke("data", "check", "--config", "missing.yaml", "--write-clean", "full"),
                      "full is not empty; choose a new directory for --write-clean")
    assert_user_error(invoke("data", "check", "--config", "missing.yaml", "--write-clean", "new", "--max-pairs", "10"),
                      "drop --max-pairs")
    assert_user_error(invoke("data", "check", "--config", "missing.yaml", "--write-clean", "new", "--set", "data.train_split=train[:10%]"),
                      "--write-clean writes whole splits; set data.train_split to a split's name (it is 'train[:10%]')")
    uneven = Path("uneven")
    uneven.mkdir()
    for split in ("train", "validation", "test"):
        (uneven / f"en.{split}.txt").write_text("A dog.\nA cat.\n")
        (uneven / f"de.{split}.txt").write_text("Ein Hund.\nEine Katze.\n" if split != "test" else "Ein Hund.\n")
    assert_user_error(invoke("data", "check", "--config", "missing.yaml", "--set", "data.manual_dir=uneven", "--set", "data.data_dir=tfds"),
                      "de.test.txt ends after 1 line but en.test.txt goes on: a split's files need one sentence per line, line for line")


def test_a_missing_run_directory_fails_before_tensorflow_is_imported(tmp_path, package_env):
    """A mistyped --run-dir, or no training run yet, is said at once, not after TensorFlow's import."""
    import subprocess
    import sys

    program = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from nmt.cli import app\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    print(json.dumps([result.exit_code, 'tensorflow' in sys.modules, result.output.strip()]))\n"
    )
    commands = [["translate", "--run-dir", "nowhere", "A dog."], ["translate", "--run-dir", "runs/tiny", "--run-dir", "nowhere", "A dog."],
                ["evaluate", "--run-dir", "nowhere"], ["export", "--run-dir", "nowhere"],
                ["attention", "--run-dir", "nowhere", "A dog.", "--output", "a.png"], ["serve", "--run-dir", "nowhere"],
                ["score", "--run-dir", "nowhere", "-s", "a.txt", "-t", "b.txt"], ["translate", "A dog."]]
    Path(tmp_path, "runs", "tiny").mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", program, json.dumps(commands)], capture_output=True, text=True,
                          cwd=tmp_path, env=package_env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert results == [[1, False, "error: run directory not found: nowhere"]] * 7 + [
        [1, False, "error: no training run found (runs/latest is missing); pass --run-dir DIR or run nmt train first"]]


def test_dry_run_plans_the_epochs_training_has_and_writes_nothing(workdir):
    metrics = [json.loads(line) for line in (workdir / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    result = invoke("train", "--config", "configs/tiny.yaml", "--run-dir", "runs/planned", "--dry-run",
                    "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert f"steps per epoch: {metrics[0]['step']:,}\n" in result.output
    # Each epoch's shuffle fills the length buckets a little differently: the plan counts the first.
    assert f"in all: {2 * metrics[0]['step']:,} steps" in result.output and "(ended by train.epochs)" in result.output
    assert not (workdir / "runs" / "planned").exists()


def read_metrics(workdir):
    return [json.loads(line) for line in (workdir / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]



def test_resume_continues_from_the_last_checkpoint(workdir):
    metrics = read_metrics(workdir)
    before = metrics[-1]["step"]
    result = invoke(
        "train", "--config", "configs/tiny.yaml",
        "--set", f"train.max_steps={before + 3}", "--set", "train.eval_every_steps=2",
    )
    assert result.exit_code == 0, result.output
    assert "stopped by max_steps" in result.output
    # Validation every 2 steps (mid-epoch), and once more where training stopped.
    even = before + 1 if (before + 1) % 2 == 0 else before + 2
    assert [record["step"] for record in read_metrics(workdir)[len(metrics):]] == [even, before + 3]


def test_sigterm_saves_the_state_like_ctrl_c(workdir, monkeypatch):
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
        result = invoke("train", "--config", "configs/tiny.yaml",
                        "--set", f"train.max_steps={before + 10}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143, result.output
    assert f"training stopped by SIGTERM at step {before + 2}; state saved" in result.output
    assert "Traceback" not in result.output
    assert checkpoints.step_of(checkpoints.latest(last)) == before + 2


def test_resume_with_a_different_model_is_refused(workdir):
    result = invoke("train", "--config", "configs/tiny.yaml", "--set", "model.hidden_dim=64")
    assert_user_error(result, "was trained with model.hidden_dim=128, this config says 64")


def test_a_second_training_of_a_run_in_use_is_refused_and_writes_nothing(workdir):
    from nmt.run_dir import RunDir, writer_lock

    run = Path("runs/tiny")
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file() and path.name != ".lock"}
    with writer_lock(RunDir(run)):
        result = invoke("train", "--config", "configs/tiny.yaml", "--set", "train.epochs=9")
        assert_user_error(result, f"runs/tiny is being trained by process {os.getpid()} on ")
        # While a training holds the run, translating with it still works.
        assert invoke("translate", "--run-dir", "runs/tiny", "The dog saw a cat.").exit_code == 0
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file() and path.name != ".lock"} == before


def test_config_errors_are_one_line(workdir):
    assert_user_error(invoke("train", "--config", "nope.yaml"), "config file not found: nope.yaml")
    (workdir / "bad.yaml").write_text("model:\n  hidden_dimm: 3\n")
    assert_user_error(invoke("train", "--config", "bad.yaml"), "unknown config key 'model.hidden_dimm'")


def test_fine_tuning_on_a_new_domain_improves_bleu_and_learns_words_of_new_characters(workdir, tfds_dir):
    """The trained quickstart model, fine-tuned on the shifted domain (sea nouns it never saw, and
    names written with letters its vocabulary lacks), against itself on that domain's test split."""
    from nmt.data import sources, tokenizer
    from nmt.run_dir import RunDir, mark_latest

    base = RunDir(Path("runs/tiny"))
    result = invoke(
        "train", "--config", "configs/tiny.yaml", "--run-dir", "runs/sea", "--init-from", "runs/tiny",
        "--set", f"data.data_dir={tfds_dir}", "--set", "data.dataset=synthetic/shifted", "--set", "data.train_split=train",
        "--set", "tokenizer.update_vocab=true",
        "--set", "train.max_steps=150", "--set", "train.learning_rate=0.002", "--set", "train.warmup_steps=50",
        "--set", "train.validation_bleu=false", "--set", "train.best_metric=loss", "--set", "train.eval_every_steps=150",
    )
    mark_latest(base)  # the other tests use the latest run
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", "--run-dir", "runs/sea", "--compare", "runs/tiny", "--set", "decode.beam_size=1")
    assert result.exit_code == 0, result.output
    bleu = json.loads(Path("runs/sea/eval/test/compare.json").read_text())["metrics"]["BLEU"]
    assert bleu["system"]["score"] > bleu["baseline"]["score"] + 10 and bleu["p_value"] < 0.05, bleu

    config = RunDir(Path("runs/sea")).load_config()
    _, references = sources.read_pairs(config.data, "test")
    hypotheses = Path("runs/sea/eval/test/hypotheses.txt").read_text().splitlines()
    names = [(name, hypothesis) for reference, hypothesis in zip(references, hypotheses)
             for name in reference.rstrip(".").split() if not name.isascii()]
    # The base's vocabulary cannot even represent them; the fine-tuned model writes most of them.
    base_tokenizer = tokenizer.load(base.tokenizer_dir, True).target
    assert all(tokenizer.UNK_ID in ids for ids in base_tokenizer.tokenize([name for name, _ in names]).to_list())
    copied = sum(name in hypothesis.rstrip(".").split() for name, hypothesis in names)
    assert len(names) > 200 and copied > 0.25 * len(names), (copied, len(names))
    info = " ".join(invoke("info", "--run-dir", "runs/sea").output.split())
    assert "Fine-tuned from runs/tiny (its vocabulary updated)" in info


def test_fine_tuning_from_what_is_not_a_fitting_run_is_refused(workdir):
    train = ("train", "--config", "configs/tiny.yaml", "--run-dir", "runs/refused")
    assert_user_error(invoke(*train, "--init-from", "configs"), "train.init_from: configs is not a training run (no config.yaml)")
    assert_user_error(invoke(*train, "--init-from", "runs/tiny", "--set", "model.hidden_dim=64", "--set", "model.num_heads=2"),
                      "cannot start from runs/tiny: it was trained with model.hidden_dim=128, model.num_heads=4; "
                      "this config says 64, 2. Set them as in runs/tiny/config.yaml")
    assert_user_error(invoke(*train, "--set", "tokenizer.update_vocab=true"), "'tokenizer.update_vocab' applies when starting")
    assert not Path("runs/refused/config.yaml").exists()


def test_prefixes_are_one_per_input_line_or_one_for_every_line(tmp_path):
    from nmt.cli import _prefixes
    from nmt.errors import NmtError

    (tmp_path / "prefixes.txt").write_text("Ein\n\nDie\n")
    assert _prefixes(None, tmp_path / "prefixes.txt", ["a", "b", "c"])(2, 1) == ["", "Die"]
    assert _prefixes("Ein", None, None)(2, 5) == ["Ein", "Ein"]
    assert _prefixes(None, None, ["a"])(1, 0) is None and _prefixes("", None, ["a"])(1, 0) is None
    with pytest.raises(NmtError, match="--prefix-file gives one prefix per input line: pass sentences"):
        _prefixes(None, tmp_path / "prefixes.txt", None)  # at a terminal, sentences come one by one


def test_export_passes_constraints_on_and_names_the_signature(monkeypatch, tmp_path):
    """The signature itself is tests/test_export.py's: exported for real, it is slow to trace."""
    from nmt import jobs

    asked = []
    monkeypatch.setattr(jobs, "export", lambda run_dir, overrides, output, force, constraints, export_format, quantization: asked.append(
        (constraints, export_format, quantization)) or (tmp_path, {"checkpoint": "ckpt-1", "beam_size": 4, "megabytes": 1.0,
                                                                  "quantization": quantization, "max_length": 128}))
    run = ["--run-dir", str(tmp_path)]
    assert invoke("export", *run).exit_code == 0 and asked == [(False, "savedmodel", None)]
    result = invoke("export", *run, "--constraints")
    assert result.exit_code == 0 and asked[-1] == (True, "savedmodel", None), result.output
    assert "signature 'translate_with_constraints': inputs 'text', 'prefix' and 'constraints'" in result.output
    result = invoke("export", *run, "--format", "ctranslate2", "--quantization", "int8")
    assert result.exit_code == 0 and asked[-1] == (False, "ctranslate2", "int8"), result.output
    assert "as a CTranslate2 model (int8 weights, 1.0 MB)" in result.output and "max_input_length=128" in result.output


def test_export_refuses_options_of_the_other_format_before_loading_anything(monkeypatch, tmp_path):
    """Before loading anything: the run directory named holds no run."""
    assert_user_error(invoke("export", "--run-dir", str(tmp_path), "--quantization", "int8"), "--quantization is for --format ctranslate2")
    assert_user_error(invoke("export", "--run-dir", str(tmp_path), "--format", "ctranslate2", "--constraints"),
                      "a CTranslate2 model places no constraints")
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "ctranslate2" else find_spec(name, *args))
    assert_user_error(invoke("export", "--run-dir", str(tmp_path), "--format", "ctranslate2"),
                      "--format ctranslate2 needs the ctranslate2 package: pip install 'nmt[ctranslate2]'")
