"""End-to-end: the real CLI trains a small model on the synthetic corpus, then translates and
evaluates with it. The BLEU threshold fails if the model cannot learn (e.g. a broken causal mask
or a missing target shift, which give BLEU near 0)."""

import dataclasses
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
from tests.training.test_sinks import read_events

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
    config.write_text("data: {dataset: local, source_lang: en, target_lang: de, manual_dir: corpus}\ntokenizer: {vocab_size: 200}\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("data", "check", "--config", "local.yaml", "--write-clean", "clean")
    assert result.exit_code == 0, result.output
    assert "train: 206 pairs" in result.output and "train: 1 pair (0.49%): untranslated copies (target = source)" in result.output
    assert "validation: 1 pair, 1 of its sources and 1 of its targets also occur in training" in result.output
    assert "Cleaned corpus: clean (200 training pairs, 6 dropped)" in result.output
    report = json.loads((tmp_path / "runs" / "local" / "data_check.json").read_text())
    assert report["splits"]["train"]["checks"]["wrong_language"]["count"] == 2
    assert "## Examples" in (tmp_path / "runs" / "local" / "data_check.md").read_text()
    cleaned = invoke("data", "check", "--config", "local.yaml", "--set", "data.manual_dir=clean", "--output", "cleaned-report",
                     "--max-pairs", "150")
    assert cleaned.exit_code == 0, cleaned.output
    # The first 150 pairs: no problem in training (the tokenizer trained on them lacks some
    # characters of the held-out splits, and says so).
    assert "train: 150 pairs" in cleaned.output and not any(line.startswith("  train:") for line in cleaned.output.splitlines())
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


def test_dry_run_plans_the_epochs_training_has_and_writes_nothing(workdir, tfds_dir):
    metrics = [json.loads(line) for line in (workdir / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    result = invoke("train", "--config", "configs/tiny.yaml", "--run-dir", "runs/planned", "--dry-run",
                    "--set", f"data.data_dir={tfds_dir}", "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert f"steps per epoch: {metrics[0]['step']:,}\n" in result.output
    # Each epoch's shuffle fills the length buckets a little differently: the plan counts the first.
    assert f"in all: {2 * metrics[0]['step']:,} steps" in result.output and "(ended by train.epochs)" in result.output
    assert not (workdir / "runs" / "planned").exists()


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


def test_python_api_translates_like_the_cli(workdir):
    import nmt
    from nmt.errors import NmtError

    translator = nmt.load("runs/tiny")
    assert isinstance(translator, nmt.Translator)
    sentences = ["The dog saw a cat.", "My small teachers will read the book."]
    result = invoke("translate", "--run-dir", "runs/tiny", *sentences)
    assert translator.translate([sentences[0], "", sentences[1]]) == [result.output.splitlines()[0], "", result.output.splitlines()[1]]
    best = translator.translate_n_best(sentences, 3)
    assert [len(hypotheses) for hypotheses in best] == [3, 3]
    assert all(h[0].score >= h[1].score >= h[2].score for h in best)
    assert nmt.load("runs/tiny", ["decode.beam_size=1"]).config.decode.beam_size == 1
    with pytest.raises(NmtError, match="n-best must be between 1 and decode.beam_size"):
        translator.translate_n_best(sentences, 5)
    with pytest.raises(NmtError, match="no-such-run"):
        nmt.load("no-such-run")


def test_info_describes_the_run(workdir):
    from nmt.data import tokenizer
    from nmt.model.transformer import build_transformer
    from nmt.run_dir import RunDir

    result = invoke("info", "--run-dir", "runs/tiny", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    config = RunDir(Path("runs/tiny")).load_config()
    tokenizers = tokenizer.load(Path("runs/tiny/tokenizer"), config.tokenizer.joint)
    model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    assert found["parameters"] == model.count_params()
    metrics = [json.loads(line) for line in Path("runs/tiny/metrics.jsonl").read_text().splitlines()]
    assert found["progress"]["step"] == metrics[-1]["step"] and found["progress"]["stopped_by"] == "epochs"
    assert found["best_validation"]["validation_bleu"] == max(m["validation_bleu"] for m in metrics)
    report = json.loads(Path("runs/tiny/eval/test/report.json").read_text())
    assert found["evaluations"]["test"]["bleu"] == report["bleu"]
    text = invoke("info").output  # runs/latest
    assert f"{model.count_params():,} parameters" in text and "stopped by epochs" in text
    assert_user_error(invoke("info", "--run-dir", "configs"), "is not a training run")


def test_commands_print_no_library_noise(workdir, package_env):
    """In a fresh process, as users run it: TensorFlow's start-up lines (CUDA drivers, cuInit,
    absl) show only with --verbose."""
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "nmt.cli", *args], capture_output=True, text=True, timeout=300,
                              env={key: value for key, value in package_env.items() if key != "TF_CPP_MIN_LOG_LEVEL"})

    quiet = run("translate", "--run-dir", "runs/tiny", "The dog saw a cat.")
    assert quiet.returncode == 0 and quiet.stderr == "" and len(quiet.stdout.splitlines()) == 1, quiet.stderr
    verbose = run("--verbose", "translate", "--run-dir", "no-such-run", "The dog saw a cat.")
    lines = verbose.stderr.splitlines()
    assert verbose.returncode == 1 and lines[-1] == "error: run directory not found: no-such-run" and len(lines) > 1


def test_serve_answers_translate_server_like_a_local_translate(workdir, package_env):
    import subprocess
    import sys

    serving = subprocess.Popen([sys.executable, "-m", "nmt.cli", "serve", "--run-dir", "runs/tiny", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=package_env)
    try:
        first = serving.stdout.readline()  # printed once the model is loaded and traced
        assert first.startswith("Serving ") and " at http://127.0.0.1:" in first, first + serving.stderr.read()
        url = first.split(" at ")[1].strip()
        sentences = ["The dog saw a cat.", "My small teachers will read the book."]
        for options in ([], ["--n-best", "3"]):
            local = invoke("translate", "--run-dir", "runs/tiny", *options, *sentences)
            remote = invoke("translate", "--server", url, *options, *sentences)
            assert remote.exit_code == 0 and remote.output == local.output, (remote.output, local.output)
        assert_user_error(invoke("translate", "--server", url, "--n-best", "5", "A dog."),
                          "the server at http://127.0.0.1:")
        assert_user_error(invoke("translate", "--server", url, "--align", "A dog."), "with --server the server's run")
    finally:
        serving.send_signal(signal.SIGINT)
        out, err = serving.communicate(timeout=60)
    assert serving.returncode == 0 and out.splitlines()[-1] == "stopped", out + err


def test_export_translates_like_translate_in_a_process_without_nmt(workdir, tfds_dir, monkeypatch):
    import subprocess
    import sys

    from nmt.config import DataConfig
    from nmt.evaluation.evaluator import SplitEvaluator

    sentences = SplitEvaluator(DataConfig(data_dir=tfds_dir), "test").sources[:30] + ["", "The dog saw a cat."]
    import nmt

    expected = [best for best, in nmt.load("runs/tiny").translate_n_best(sentences, 1)]

    result = invoke("export", "--run-dir", "runs/tiny")
    assert result.exit_code == 0, result.output
    assert "signature 'serving_default'" in result.output
    program = (
        "import json, sys\n"
        "import tensorflow as tf, tensorflow_text  # noqa: F401 (registers the SentencePiece ops)\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = serve(text=tf.constant(json.load(open(sys.argv[2]))))\n"
        "print(json.dumps({'translation': [t.decode() for t in out['translation'].numpy()],\n"
        "                  'score': out['score'].numpy().tolist(), 'nmt': 'nmt' in sys.modules}))\n"
    )
    (workdir / "export_in.json").write_text(json.dumps(sentences))
    loaded = subprocess.run([sys.executable, "-c", program, str(workdir / "runs/tiny/export"), str(workdir / "export_in.json")],
                            capture_output=True, text=True, timeout=300, cwd="/")
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    served = json.loads(loaded.stdout.splitlines()[-1])
    assert not served["nmt"]
    assert served["translation"] == [best.text for best in expected]
    assert served["score"] == pytest.approx([best.score for best in expected], abs=1e-3)

    # nmt translate now takes the export, built for these weights and decode settings, instead of
    # building the model; with other settings it builds the model as before.
    from nmt.decoding.translator import Translator

    built = []
    from_run_dir = Translator.from_run_dir.__func__
    monkeypatch.setattr(Translator, "from_run_dir", classmethod(lambda cls, *args: built.append(1) or from_run_dir(cls, *args)))
    (workdir / "export_in.txt").write_text("\n".join(sentences) + "\n")
    result = invoke("translate", "--run-dir", "runs/tiny", "--input", "export_in.txt")
    assert result.exit_code == 0 and built == [], result.output
    assert result.output.splitlines() == [best.text for best in expected]
    result = invoke("translate", "--run-dir", "runs/tiny", "--set", "decode.beam_size=2", "The dog saw a cat.")
    assert result.exit_code == 0 and built == [1], result.output

    assert_user_error(invoke("export", "--run-dir", "runs/tiny"), "exists and is not empty; pass --force")
    assert invoke("export", "--run-dir", "runs/tiny", "--force").exit_code == 0
    (workdir / "runs" / "untrained").mkdir()
    shutil.copy(workdir / "runs/tiny/config.yaml", workdir / "runs/untrained/config.yaml")
    assert_user_error(invoke("export", "--run-dir", "runs/untrained"), "no checkpoint in runs/untrained")


def test_hostile_text_through_arguments_files_and_stdin(workdir, tmp_path):
    """One output line per input line, in order, whatever the characters and line endings; a line
    that is not UTF-8 is named."""
    from tests.decoding.test_translator import SPECIAL

    lines = [*SPECIAL, "The dog saw a cat.", "", *reversed(SPECIAL)]
    path = tmp_path / "hostile.txt"
    path.write_bytes("\r\n".join(lines).encode("utf-8") + b"\r\n")
    from_file = invoke("translate", "--input", str(path))
    assert from_file.exit_code == 0, from_file.output
    outputs = from_file.output.split("\n")[:-1]
    assert len(outputs) == len(lines) and all(o == "" for o, line in zip(outputs, lines) if not line.strip())
    assert outputs[len(SPECIAL)] == invoke("translate", "The dog saw a cat.").output.strip()
    from_stdin = invoke("translate", input=path.read_bytes())
    assert from_stdin.exit_code == 0 and from_stdin.output == from_file.output
    from_arguments = invoke("translate", *[line for line in lines if line.strip()])
    assert from_arguments.output.split("\n")[:-1] == [o for o, line in zip(outputs, lines) if line.strip()]
    assert_user_error(invoke("translate", input=b"fine\r\nbad \xff\r\n"), "stdin line 2 is not valid UTF-8")
    assert_user_error(invoke("translate", "fine", "bad \udcff"), "sentence 2 is not valid UTF-8 text")


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


def test_decoding_in_bfloat16_scores_as_float32_does(workdir):
    """decode.precision=bfloat16 (float32, with a warning, on a CPU without bfloat16 units)."""
    from nmt.training import precision

    scores = {}
    for name in ("float32", "bfloat16"):
        result = invoke("evaluate", "--split", "validation", "--set", "decode.beam_size=1", "--set", f"decode.precision={name}")
        assert result.exit_code == 0, result.output
        report = json.loads((workdir / "runs" / "tiny" / "eval" / "validation" / "report.json").read_text())
        assert report["decode"]["precision"] == name
        scores[name] = report["bleu"]
    if precision.unsupported_reason("mixed_bfloat16") is not None:
        assert "decoding in float32 instead" in result.output
    assert abs(scores["bfloat16"] - scores["float32"]) < 2.0, scores


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
    assert_user_error(invoke("translate", "--n-best", "5", "A dog."), "n-best must be between 1 and decode.beam_size (4); got 5")
    assert_user_error(invoke("translate", "--set", "decode.beam_size=0", "A dog."), "'decode.beam_size' must be greater than 0")
    assert_user_error(
        invoke("translate", "--set", "decode.length_penalty=-1", "A dog."), "'decode.length_penalty' must be 0 or more"
    )


def test_sampling_gives_distinct_seeded_samples(workdir):
    def sampled(seed, *extra):
        return invoke("translate", "--set", "decode.sampling=top_p", "--set", "decode.top_p=0.95", "--set", "decode.temperature=2.0",
                      "--set", f"decode.seed={seed}", *extra, "The dog saw a cat.", "My small teachers will read the book.")

    first, again, other = sampled(11, "--n-best", "3"), sampled(11, "--n-best", "3"), sampled(12, "--n-best", "3")
    assert first.exit_code == 0, first.output
    assert first.output == again.output and first.output != other.output
    lines = [line.split(" ||| ") for line in first.output.splitlines()]
    assert [line[0] for line in lines] == ["0", "0", "0", "1", "1", "1"]
    for start in (0, 3):
        scores = [float(line[2]) for line in lines[start : start + 3]]
        assert scores == sorted(scores, reverse=True) and len({line[1] for line in lines[start : start + 3]}) == 3
    # More samples than the beam holds: sampling draws as many as asked.
    assert sampled(11, "--n-best", "6").exit_code == 0
    assert_user_error(invoke("translate", "--set", "decode.sampling=top_p", "--set", "decode.top_p=0", "A dog."),
                      "'decode.top_p' must be in (0, 1]; got 0")
    assert_user_error(invoke("export", "--set", "decode.sampling=top_k", "--output", "sampled-export"),
                      "an export holds greedy or beam search, not sampling")


def test_an_ensemble_translates_and_evaluates(workdir, tmp_path):
    """A run with itself decodes as the run alone (the mean of equal log-probabilities); runs with
    other vocabularies are refused."""
    sentences = ("The dog saw a cat.", "My small teachers will read the book.")
    alone = invoke("translate", *sentences)
    together = invoke("translate", "--run-dir", "runs/tiny", "--run-dir", "runs/tiny", *sentences)
    assert together.exit_code == 0, together.output
    assert together.output == alone.output
    result = invoke("evaluate", "--run-dir", "runs/tiny", "--run-dir", "runs/tiny", "--set", "decode.beam_size=1")
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "runs" / "tiny" / "eval" / "test-ensemble" / "report.json").read_text())
    assert report["ensemble"] == ["runs/tiny", "runs/tiny"] and report["bleu"] >= BLEU_THRESHOLD
    other = tmp_path / "other"
    shutil.copytree(workdir / "runs" / "tiny", other, ignore=shutil.ignore_patterns("tensorboard", "eval"))
    with (other / "tokenizer" / "joint.model").open("ab") as model:
        model.write(b"\0")
    assert_user_error(invoke("translate", "--run-dir", "runs/tiny", "--run-dir", str(other), "A dog."),
                      "has another source vocabulary than runs/tiny")
    assert_user_error(invoke("translate", "--align", "--run-dir", "runs/tiny", "--run-dir", "runs/tiny", "A dog."),
                      "--align shows one model's attention: pass one --run-dir")


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


def test_a_second_training_of_a_run_in_use_is_refused_and_writes_nothing(workdir, tfds_dir):
    from nmt.run_dir import RunDir, writer_lock

    run = Path("runs/tiny")
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file() and path.name != ".lock"}
    with writer_lock(RunDir(run)):
        result = invoke("train", "--config", "configs/tiny.yaml", "--set", f"data.data_dir={tfds_dir}", "--set", "train.epochs=9")
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
        "--set", f"data.data_dir={tfds_dir}", "--set", "data.dataset=synthetic/shifted", "--set", "tokenizer.update_vocab=true",
        "--set", "train.max_steps=150", "--set", "train.learning_rate=0.001", "--set", "train.warmup_steps=50",
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


def test_fine_tuning_from_what_is_not_a_fitting_run_is_refused(workdir, tfds_dir):
    train = ("train", "--config", "configs/tiny.yaml", "--run-dir", "runs/refused", "--set", f"data.data_dir={tfds_dir}")
    assert_user_error(invoke(*train, "--init-from", "configs"), "train.init_from: configs is not a training run (no config.yaml)")
    assert_user_error(invoke(*train, "--init-from", "runs/tiny", "--set", "model.hidden_dim=64", "--set", "model.num_heads=2"),
                      "cannot start from runs/tiny: it was trained with model.hidden_dim=128, model.num_heads=4; "
                      "this config says 64, 2. Set them as in runs/tiny/config.yaml")
    assert_user_error(invoke(*train, "--set", "tokenizer.update_vocab=true"), "'tokenizer.update_vocab' applies when starting")
    assert not Path("runs/refused/config.yaml").exists()

