"""End-to-end: the real CLI translates, evaluates, exports, serves, averages and compares with the
run that conftest.py's `trained_quickstart` trained. Apart from tests/test_cli.py, which trains,
resumes and fine-tunes, so that the two halves run in parallel under xdist."""

import json
import re
import shutil
import signal
import struct
from pathlib import Path

import pytest

from nmt import checkpoints
from tests.test_cli import BLEU_THRESHOLD, assert_user_error, invoke, read_metrics


def read_report(workdir, split, name="report.json"):
    return json.loads((workdir / "runs" / "tiny" / "eval" / split / name).read_text())


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


def test_translate_at_a_terminal_translates_sentences_as_they_are_typed(workdir, package_env):
    """With no sentences, file or piped text, stdin a terminal (a pseudo-terminal here): a prompt,
    each sentence's translation printed as it is entered, as `nmt translate SENTENCE` gives it,
    and Ctrl-D ends with status 0."""
    import os
    import pty
    import subprocess
    import sys

    sentences = ["The dog saw a cat.", "My small teachers will read the book."]
    expected = invoke("translate", "--run-dir", "runs/tiny", *sentences).output.splitlines()
    controller, terminal = pty.openpty()
    typing = subprocess.Popen([sys.executable, "-m", "nmt.cli", "translate", "--run-dir", "runs/tiny"], stdin=terminal,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=package_env)
    os.close(terminal)
    try:
        for sentence, translation in zip(sentences, expected):
            os.write(controller, f"{sentence}\n".encode())
            assert typing.stdout.readline() == translation + "\n"  # before the next sentence is typed
        os.write(controller, b"\x04")  # Ctrl-D at the start of a line: end of input
        out, err = typing.communicate(timeout=60)
    finally:
        typing.kill()
        os.close(controller)
    assert typing.returncode == 0 and out == "", out + err
    assert 0 <= err.find("Loading the model...") < err.find("Type a sentence") and err.count("> ") == 3, err

    controller, terminal = pty.openpty()
    refused = subprocess.run([sys.executable, "-m", "nmt.cli", "translate", "--run-dir", "runs/tiny", "--output", "typed.txt"],
                             stdin=terminal, capture_output=True, text=True, env=package_env, timeout=120)
    os.close(terminal)
    os.close(controller)
    assert refused.returncode == 1 and refused.stderr.splitlines()[-1].startswith(
        "error: nothing to translate into --output"), refused.stderr
    assert not Path("typed.txt").exists()


def test_score_gives_translate_n_best_scores_and_prefers_the_right_translations(workdir):
    """Scoring the beam's own hypotheses gives the scores translate --n-best printed (where the
    text tokenizes back to the pieces the model chose); a trained model scores each reference
    above the reference of another sentence."""
    from nmt.evaluation.evaluator import Evaluator
    from nmt.run_dir import RunDir

    evaluator = Evaluator.of_split(RunDir(Path("runs/tiny")).load_config().data, "test")
    sources, references = evaluator.sources[:40], evaluator.references[:40]
    Path("score.src").write_text("".join(f"{line}\n" for line in sources))
    n_best = invoke("translate", "--input", "score.src", "--n-best", "2")
    assert n_best.exit_code == 0, n_best.output
    rows = [line.split(" ||| ") for line in n_best.output.splitlines()]
    Path("hyp.src").write_text("".join(f"{sources[int(line)]}\n" for line, _, _ in rows))
    Path("hyp.tgt").write_text("".join(f"{text}\n" for _, text, _ in rows))
    scored = invoke("score", "--source", "hyp.src", "--target", "hyp.tgt", "--output", "hyp.scores")
    assert scored.exit_code == 0, scored.output
    found = [float(line) for line in Path("hyp.scores").read_text().splitlines()]
    agree = [abs(value - float(printed)) < 1e-3 for value, (_, _, printed) in zip(found, rows)]
    assert len(found) == len(rows) and sum(agree) >= 0.9 * len(rows), list(zip(found, rows))

    Path("ref.tgt").write_text("".join(f"{line}\n" for line in references))
    Path("other.tgt").write_text("".join(f"{line}\n" for line in references[1:] + references[:1]))
    right = [float(line) for line in invoke("score", "-s", "score.src", "-t", "ref.tgt").output.splitlines()]
    wrong = [float(line) for line in invoke("score", "-s", "score.src", "-t", "other.tgt").output.splitlines()]
    assert sum(a > b for a, b in zip(right, wrong)) >= 0.9 * len(right)
    alpha = RunDir(Path("runs/tiny")).load_config().decode.length_penalty
    for score, line in zip(right, invoke("score", "-s", "score.src", "-t", "ref.tgt", "--tokens").output.splitlines()):
        printed, tokens = line.split(" ||| ")
        pieces, log_probs = zip(*(token.rsplit(":", 1) for token in tokens.split(" ")))
        assert float(printed) == score and pieces[-1] == "</s>"
        assert sum(map(float, log_probs)) / ((5 + len(pieces)) / 6) ** alpha == pytest.approx(score, abs=1e-3)
    assert_user_error(invoke("score", "-s", "score.src", "-t", "hyp.tgt"), "has 40 lines but --target hyp.tgt has 80")


@pytest.mark.parametrize("search", [[], ["--set", "decode.sampling=top_k", "--set", "decode.temperature=3", "--set", "decode.seed=5"]],
                         ids=["beam", "seeded sampling"])
def test_an_interrupted_translation_of_a_file_goes_on_where_it_stopped(workdir, monkeypatch, caplog, search):
    """--output is written chunk by chunk; Ctrl-C in the second chunk leaves the first on disk, and
    the same command again translates only the rest, as an uninterrupted run would have (seeded
    samples included). LINE numbers count over the whole input."""
    from nmt import text_io
    from nmt.decoding.translator import Translator

    monkeypatch.setattr(text_io, "CHUNK_LINES", 2)
    Path("long.txt").write_text("The dog saw a cat.\nA man reads.\n\nMy small teachers will read the book.\nThe cat runs.\n")
    Path("long.de.txt").unlink(missing_ok=True)
    whole = invoke("translate", "--input", "long.txt", "--n-best", "2", *search)
    assert whole.exit_code == 0, whole.output
    assert [line.split(" ||| ")[0] for line in whole.output.splitlines()] == [str(index // 2) for index in range(10)]

    translate_n_best, chunks, stop = Translator.translate_n_best, [], [2]

    def recorded(self, sentences, *args, **kwargs):
        chunks.append(list(sentences))
        if len(chunks) == stop[0]:
            raise KeyboardInterrupt
        return translate_n_best(self, sentences, *args, **kwargs)

    monkeypatch.setattr(Translator, "translate_n_best", recorded)
    command = ("translate", "--input", "long.txt", "--n-best", "2", "--output", "long.de.txt", *search)
    assert invoke(*command).exit_code == 130
    assert not Path("long.de.txt").exists() and Path("long.de.txt.partial").read_text() == "".join(whole.output.splitlines(True)[:4])
    chunks.clear()
    stop[0] = None
    with caplog.at_level("INFO", logger="nmt"):
        result = invoke(*command)
    assert result.exit_code == 0, result.output
    assert "resuming: 2 of 5 lines already done" in caplog.text
    assert chunks == [["", "My small teachers will read the book."], ["The cat runs."]]
    assert Path("long.de.txt").read_text() == whole.output and not Path("long.de.txt.partial").exists()


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
    with pytest.raises(NmtError, match="n-best must be 1 or more; got 0"):
        translator.translate_n_best(sentences, 0)
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
    # Preparing a dataset, into a log: no progress bars of TFDS's (carriage-return lines of "%|").
    from nmt.data import sources

    sources.write_local(workdir / "noise_corpus", "en", "sy", {split: (["A dog runs."] * 3, ["Tir zon."] * 3)
                                                               for split in ("train", "validation", "test")})
    prepared = run("data", "check", "--config", "configs/tiny.yaml", "--set", "data.dataset=local", "--set", "data.train_split=train",
                   "--set", f"data.manual_dir={workdir / 'noise_corpus'}", "--set", f"data.data_dir={workdir / 'noise_tfds'}")
    assert prepared.returncode == 0 and "preparing" in prepared.stderr, prepared.stderr
    assert "%|" not in prepared.stderr and "\r" not in prepared.stderr, prepared.stderr
    verbose = run("--verbose", "translate", "--run-dir", "runs/tiny", "--set", "model.hidden_dim=8", "The dog saw a cat.")
    lines = verbose.stderr.splitlines()
    assert verbose.returncode == 1 and "'model' is fixed by the trained model" in lines[-1] and len(lines) > 1


def test_serve_answers_translate_server_like_a_local_translate(workdir, package_env, monkeypatch, caplog):
    import dataclasses
    import subprocess
    import sys

    serving = subprocess.Popen([sys.executable, "-m", "nmt.cli", "serve", "--run-dir", "runs/tiny", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=package_env)
    try:
        first = serving.stdout.readline()  # printed once the model is loaded and traced
        assert first.startswith("Serving ") and " at http://127.0.0.1:" in first, first + serving.stderr.read()
        url = first.split(" at ")[1].strip()
        from nmt import server
        from nmt.run_dir import RunDir

        # What an interrupted --server --output must find again to resume: the decode settings too.
        assert server.health(url)["decode"] == dataclasses.asdict(RunDir(Path("runs/tiny")).load_config().decode)
        sentences = ["The dog saw a cat.", "My small teachers will read the book."]
        for options in ([], ["--n-best", "3"]):
            local = invoke("translate", "--run-dir", "runs/tiny", *options, *sentences)
            remote = invoke("translate", "--server", url, *options, *sentences)
            assert remote.exit_code == 0 and remote.output == local.output, (remote.output, local.output)
        local = invoke("translate", "--run-dir", "runs/tiny", "--prefix", "Tir", *sentences)
        remote = invoke("translate", "--server", url, "--prefix", "Tir", *sentences)
        assert remote.exit_code == 0 and remote.output == local.output, (remote.output, local.output)
        assert [line[:3] for line in local.output.splitlines()] == ["Tir", "Tir"]
        local = invoke("translate", "--run-dir", "runs/tiny", "--constraint", "lergol", *sentences)
        remote = invoke("translate", "--server", url, "--constraint", "lergol", *sentences)
        assert remote.exit_code == 0 and remote.output == local.output, (remote.output, local.output)
        assert all("lergol" in line for line in local.output.splitlines()), local.output
        assert invoke("translate", "--server", url, "--output", "served.txt", *sentences).exit_code == 0
        assert Path("served.txt").read_text() == invoke("translate", "--run-dir", "runs/tiny", *sentences).output
        Path("served.src").write_text("".join(f"{sentence}\n" for sentence in sentences) + "\n")
        Path("served.tgt").write_text("Der Hund sah eine Katze.\nMeine kleinen Lehrer werden das Buch lesen.\nEtwas.\n")
        local = invoke("score", "-s", "served.src", "-t", "served.tgt", "--tokens")
        remote = invoke("score", "--server", url, "-s", "served.src", "-t", "served.tgt", "--tokens")
        assert remote.exit_code == 0 and remote.output == local.output and "-inf |||" in local.output, (remote.output, local.output)
        # A sentence cut to the model's length is warned of here, by its line: the third, in a
        # chunk and a request of its own.
        from nmt import text_io

        monkeypatch.setattr(text_io, "CHUNK_LINES", 2)
        monkeypatch.setattr(server, "REQUEST_SENTENCES", 1)
        Path("served_cut.txt").write_text("A dog.\nA cat.\n" + "The dog saw a cat " * 60 + "\n")
        with caplog.at_level("WARNING", logger="nmt"):
            assert invoke("translate", "--server", url, "--input", "served_cut.txt").exit_code == 0
        assert [record.getMessage().split(" has ")[0] for record in caplog.records if record.name == "nmt"] == ["sentence 3"]
        assert_user_error(invoke("translate", "--server", url, "--n-best", "5", "A dog."),
                          "the server at http://127.0.0.1:")
        assert_user_error(invoke("translate", "--server", url, "--align", "A dog."), "with --server the server's run")
    finally:
        serving.send_signal(signal.SIGINT)
        out, err = serving.communicate(timeout=60)
    assert serving.returncode == 0 and out.splitlines()[-1] == "stopped", out + err


def test_export_translates_like_translate_in_a_process_without_nmt(workdir, monkeypatch):
    import dataclasses
    import subprocess
    import sys

    import tensorflow as tf

    from nmt.evaluation.evaluator import Evaluator
    from nmt.training import precision
    from nmt.run_dir import RunDir

    sentences = Evaluator.of_split(RunDir(Path("runs/tiny")).load_config().data, "test").sources[:30] + ["", "The dog saw a cat."]
    import nmt

    translator = nmt.load("runs/tiny")
    expected = [best for best, in translator.translate_n_best(sentences, 1)]

    # A token budget of a few sentences: nmt translate, taking the export, decodes in several batches.
    budget = ["--set", "decode.batch_tokens=64"]
    result = invoke("export", "--run-dir", "runs/tiny", *budget)
    assert result.exit_code == 0, result.output
    assert "signature 'serving_default'" in result.output and "signature 'source_lengths'" in result.output
    assert "signature 'translate_with_prefix'" in result.output
    program = (
        "import json, sys\n"
        "import tensorflow as tf, tensorflow_text  # noqa: F401 (registers the SentencePiece ops)\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "text = tf.constant(json.load(open(sys.argv[2])))\n"
        "out = serve(text=text)\n"
        "lengths = tf.saved_model.load(sys.argv[1]).signatures['source_lengths'](text=text)['length']\n"
        "prefixed = tf.saved_model.load(sys.argv[1]).signatures['translate_with_prefix'](\n"
        "    text=text[:2], prefix=tf.constant(['Zi', '']))['translation']\n"
        "print(json.dumps({'translation': [t.decode() for t in out['translation'].numpy()],\n"
        "                  'score': out['score'].numpy().tolist(), 'length': lengths.numpy().tolist(),\n"
        "                  'prefixed': [t.decode() for t in prefixed.numpy()], 'nmt': 'nmt' in sys.modules}))\n"
    )
    (workdir / "export_in.json").write_text(json.dumps(sentences))
    loaded = subprocess.run([sys.executable, "-c", program, str(workdir / "runs/tiny/export"), str(workdir / "export_in.json")],
                            capture_output=True, text=True, timeout=300, cwd="/")
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    served = json.loads(loaded.stdout.splitlines()[-1])
    assert not served["nmt"]
    assert served["translation"] == [best.text for best in expected]
    assert served["score"] == pytest.approx([best.score for best in expected], abs=1e-3)
    assert served["length"] == translator.tokenizers.source.tokenize(sentences).row_lengths().numpy().tolist()
    assert sum(served["length"]) > 64
    assert served["prefixed"] == [best.text for best, in translator.translate_n_best(sentences[:2], 1, prefixes=["Zi", ""])]
    assert served["prefixed"][0].startswith("Zi") and served["prefixed"][1] == served["translation"][1]

    # nmt translate now takes the export, built for these weights and decode settings, instead of
    # building the model; with other settings it builds the model as before.
    from nmt.decoding.translator import Translator

    built = []
    from_run_dir = Translator.from_run_dir.__func__
    monkeypatch.setattr(Translator, "from_run_dir", classmethod(lambda cls, *args: built.append(1) or from_run_dir(cls, *args)))
    (workdir / "export_in.txt").write_text("\n".join(sentences) + "\n")
    result = invoke("translate", "--run-dir", "runs/tiny", "--input", "export_in.txt", *budget)
    assert result.exit_code == 0 and built == [], result.output
    assert result.output.splitlines() == [best.text for best in expected]
    result = invoke("translate", "--run-dir", "runs/tiny", *budget, "--prefix", "Zi", sentences[0])
    assert result.exit_code == 0 and built == [] and result.output.splitlines() == served["prefixed"][:1], result.output
    result = invoke("translate", "--run-dir", "runs/tiny", *budget, "--set", "decode.beam_size=2", "The dog saw a cat.")
    assert result.exit_code == 0 and built == [1], result.output
    assert re.search(r"Export +runs/tiny/export \(best/ckpt-\d+, [\d.]+ MB\); nmt translate uses it$", invoke("info", "--run-dir", "runs/tiny").output)

    assert_user_error(invoke("export", "--run-dir", "runs/tiny"), "exists and is not empty; pass --force")
    # Replaced by an export that decodes in bfloat16 (float32 where the CPU lacks the units): it
    # translates and scores as the translator decoding in bfloat16 does, and nmt translate takes it
    # for those settings.
    result = invoke("export", "--run-dir", "runs/tiny", "--force", "--set", "decode.precision=bfloat16")
    assert result.exit_code == 0, result.output
    config = RunDir(Path("runs/tiny")).load_config()
    config = dataclasses.replace(config, decode=dataclasses.replace(config.decode, precision="bfloat16"))
    float32 = [best.score for best in expected]
    expected = [best for best, in Translator.from_run_dir(RunDir(Path("runs/tiny")), config).translate_n_best(sentences, 1)]
    served = tf.saved_model.load("runs/tiny/export").signatures["serving_default"](text=tf.constant(sentences))
    assert [text.decode() for text in served["translation"].numpy()] == [best.text for best in expected]
    scores = served["score"].numpy().tolist()
    assert scores == pytest.approx([best.score for best in expected], abs=1e-4)
    if precision.unsupported_reason("mixed_bfloat16") is None:
        assert scores != pytest.approx(float32, abs=1e-4)  # it did decode in bfloat16
    assert invoke("info", "--run-dir", "runs/tiny").output.endswith(
        "nmt translate passes over it: its decode settings differ: precision bfloat16 (now float32)\n")
    assert invoke("info", "--run-dir", "runs/tiny", "--set", "decode.precision=bfloat16").output.endswith("; nmt translate uses it\n")
    built.clear()
    result = invoke("translate", "--run-dir", "runs/tiny", "--input", "export_in.txt", "--set", "decode.precision=bfloat16")
    assert result.exit_code == 0 and built == [], result.output
    assert result.output.splitlines() == [best.text for best in expected]
    (workdir / "runs" / "untrained").mkdir()
    shutil.copy(workdir / "runs/tiny/config.yaml", workdir / "runs/untrained/config.yaml")
    assert_user_error(invoke("export", "--run-dir", "runs/untrained"), "no checkpoint in runs/untrained")


def test_a_ctranslate2_export_translates_as_greedy_nmt_translate_does_and_nmt_decodes_and_serves_with_it(workdir):
    """Through the recipe nmt export prints (and the README gives): SentencePiece, then
    ctranslate2.Translator within the model's lengths; one sentence per call, each with the length
    limit nmt gives it (translate_batch takes one per call; the tiny model loops in a few)."""
    import ctranslate2
    import sentencepiece as spm

    import nmt
    from nmt.evaluation.evaluator import Evaluator
    from nmt.run_dir import RunDir

    sentences = Evaluator.of_split(RunDir(Path("runs/tiny")).load_config().data, "test").sources[:30]
    greedy = nmt.load("runs/tiny", ["decode.beam_size=1"]).translate(sentences)
    result = invoke("export", "--run-dir", "runs/tiny", "--format", "ctranslate2")
    assert result.exit_code == 0, result.output
    path = Path("runs/tiny/ctranslate2")
    # decode.precision rounds the weights for our own decoding, not for the export.
    assert invoke("export", "--run-dir", "runs/tiny", "--format", "ctranslate2", "--set", "decode.precision=bfloat16",
                  "--output", "ct2_bf16").exit_code == 0
    assert Path("ct2_bf16/model.bin").read_bytes() == (path / "model.bin").read_bytes()
    max_input_length, max_decoding_length = map(int, re.search(
        r"max_input_length=(\d+), max_decoding_length=(\d+)\)", result.output).groups())
    config = RunDir(Path("runs/tiny")).load_config()
    assert (max_input_length, max_decoding_length) == (config.model.max_length, config.model.max_length - 1)
    source, target = (spm.SentencePieceProcessor(model_file=str(path / f"{side}.model")) for side in ("source", "target"))
    engine = ctranslate2.Translator(str(path))
    translations = []
    for pieces in source.encode(sentences, out_type=str):
        limit = min(int(len(pieces) * config.decode.max_length_ratio) + config.decode.max_length_offset, max_decoding_length)
        found, = engine.translate_batch([pieces], beam_size=1, max_input_length=max_input_length, max_decoding_length=limit)
        translations.append(target.decode(found.hypotheses[0]))
    assert translations == greedy

    # nmt translate and nmt evaluate decode with it when asked.
    Path("ct2_in.txt").write_text("\n".join(sentences) + "\n")
    result = invoke("translate", "--run-dir", "runs/tiny", "--ctranslate2", "--set", "decode.beam_size=1", "--input", "ct2_in.txt")
    assert result.exit_code == 0 and result.output.splitlines() == greedy, result.output
    result = invoke("evaluate", "--run-dir", "runs/tiny", "--ctranslate2")
    assert result.exit_code == 0, result.output
    ours, theirs = (json.loads(Path(f"runs/tiny/eval/{split}/report.json").read_text()) for split in ("test", "test-ctranslate2"))
    assert theirs["decoder"] == "CTranslate2 (runs/tiny/ctranslate2, float32 weights)" and abs(theirs["bleu"] - ours["bleu"]) < 1, (
        ours, theirs)
    info = invoke("info", "--run-dir", "runs/tiny").output
    assert re.search(r"CTranslate2 +runs/tiny/ctranslate2 \(best/ckpt-\d+, float32 weights, [\d.]+ MB\)$", info)

    # nmt score --ctranslate2 scores as nmt score does, to the printed precision but for rounding.
    Path("ct2_out.txt").write_text("\n".join(greedy) + "\n")
    theirs, ours = (invoke("score", "--run-dir", "runs/tiny", "-s", "ct2_in.txt", "-t", "ct2_out.txt", *flag).output
                    for flag in (["--ctranslate2"], []))
    assert [float(line) for line in theirs.splitlines()] == pytest.approx([float(line) for line in ours.splitlines()], abs=2e-4)

    # nmt serve --ctranslate2 translates and scores with it, and refuses constraints.
    import threading

    from nmt import ctranslate2_jobs, server
    from nmt.decoding.ctranslate2_translator import CTranslate2Translator
    from nmt.errors import NmtError

    http, about = ctranslate2_jobs.server("runs/tiny", ["decode.beam_size=1"], "127.0.0.1", 0)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{http.server_address[1]}"
        assert server.health(url)["decoder"] == "CTranslate2 (runs/tiny/ctranslate2, float32 weights)"
        assert [best for (best, _), in server.request(url, sentences)] == greedy
        with pytest.raises(NmtError, match="this server decodes with CTranslate2, which places no constraints"):
            server.request(url, sentences[:1], constraints=[["lergol"]])
        local = RunDir(Path("runs/tiny"))
        ours = CTranslate2Translator.from_run_dir(local, local.load_config(["decode.beam_size=1"])).score(sentences, greedy)
        served = server.score(url, sentences, greedy)
        assert [(scored.score, list(scored.pieces)) for scored in ours] == [(value, pieces) for value, pieces, _ in served]
    finally:
        http.shutdown()
        http.server_close()
    assert re.search(r"Evaluation test-ctranslate2 +BLEU .* sentences, by CTranslate2 \(runs/tiny/ctranslate2, float32 weights\)\) ", info)


def test_warnings_of_cut_sentences_and_prefixes_name_their_line_in_the_whole_input(workdir, monkeypatch, caplog):
    """In chunks of two lines, through the export (the previous test's, for bfloat16 decoding) and
    through the checkpoint alike; an empty sentence's prefix is not translated, so not cut."""
    from nmt import text_io
    from nmt.decoding.translator import Translator

    def cut(caplog):  # nmt's warnings (TensorFlow's own may come between them)
        return [record.getMessage().split(" has ")[0] for record in caplog.records if record.name == "nmt"]

    monkeypatch.setattr(text_io, "CHUNK_LINES", 2)
    built = []
    from_run_dir = Translator.from_run_dir.__func__
    monkeypatch.setattr(Translator, "from_run_dir", classmethod(lambda cls, *args: built.append(1) or from_run_dir(cls, *args)))
    long_sentence, long_prefix = "The dog saw a cat " * 60, "Tir " * 300
    Path("cut.txt").write_text(f"The dog saw a cat.\n\n{long_sentence}\nA man reads.\nThe cat runs.\n")
    Path("cut.prefix.txt").write_text(f"\n{long_prefix}\n\n\n{long_prefix}\n")
    for through_export, settings in ((True, ["--set", "decode.precision=bfloat16"]), (False, [])):
        caplog.clear()
        built.clear()
        with caplog.at_level("WARNING", logger="nmt"):
            result = invoke("translate", "--input", "cut.txt", "--prefix-file", "cut.prefix.txt", *settings)
        assert result.exit_code == 0 and (built == []) == through_export, result.output
        assert cut(caplog) == ["sentence 3", "the prefix of sentence 5"], caplog.messages
        assert result.output.splitlines()[4].startswith("Tir Tir")

    Path("cut.tgt.txt").write_text(f"Tir.\nTir.\nTir.\nTir.\n{long_prefix}\n")
    caplog.clear()
    with caplog.at_level("WARNING", logger="nmt"):
        result = invoke("score", "-s", "cut.txt", "-t", "cut.tgt.txt")
    assert result.exit_code == 0 and result.output.splitlines()[4] == "nan", result.output
    assert cut(caplog) == ["sentence 3", "target 5"], caplog.messages


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


def test_outputs_that_cannot_be_written_are_one_line_errors(workdir, monkeypatch):
    """Checked before the work starts (a path inside a file, a directory named as a file); a
    write that fails at the end (a full disk) is one line too."""
    for option, path, *command in (("--output", "configs/tiny.yaml/out.txt", "translate", "Hello."),
                                   ("--output", "configs/tiny.yaml/out.png", "attention", "Hello."),
                                   ("--output", "configs/tiny.yaml/out", "export"),
                                   ("--output", "configs/tiny.yaml/out", "data", "check", "--config", "configs/tiny.yaml"),
                                   ("--write-clean", "configs/tiny.yaml/out", "data", "check", "--config", "configs/tiny.yaml")):
        assert_user_error(invoke(*command, option, path),
                          f"cannot write {option} {path}: configs/tiny.yaml is not a directory; choose another path")
    assert_user_error(invoke("translate", "--output", "configs", "Hello."),
                      "cannot write --output configs: configs is a directory; choose another path")
    # Exports and reports go into the run directory by default: where they cannot, before the work.
    export, aside = Path("runs/tiny/export"), Path("export-aside")
    if export.exists():
        export.rename(aside)
    export.write_text("")
    assert_user_error(invoke("export", "--run-dir", "runs/tiny"), f"cannot write the export to {export}: {export} is not a directory; choose another path")
    export.unlink()
    if aside.exists():
        aside.rename(export)
    report = Path("runs/tiny/eval/validation")
    shutil.rmtree(report, ignore_errors=True)
    report.write_text("")
    for command in (["evaluate", "--split", "validation"], ["evaluate", "--split", "validation", "--compare", "runs/tiny"]):
        assert_user_error(invoke(*command), f"{report} is not a directory; make the run directory writable, or work on a copy of it")
    report.unlink()

    from nmt import atomic

    def disk_full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic, "write_text", disk_full)
    assert_user_error(invoke("translate", "--output", "unwritten.txt", "Hello."),
                      "cannot write --output unwritten.txt: No space left on device; free space")
    assert not Path("unwritten.txt").exists()


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
    # On a path the model would not take: the translation follows the prefix.
    result = invoke("attention", "The dog saw a cat.", "--self", "--prefix", "Zi", "--output", "self.png")
    assert result.exit_code == 0 and "25 heatmaps" in result.output, result.output
    assert result.output.startswith("Zi") and not translation.startswith("Zi"), result.output
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


def test_evaluate_other_split_and_a_test_set_of_files(workdir):
    """The split written out as two files scores as the split does, its report beside the split's."""
    from nmt.evaluation.evaluator import Evaluator
    from nmt.run_dir import RunDir

    result = invoke("evaluate", "--split", "validation", "--set", "decode.batch_size=100")
    assert result.exit_code == 0, result.output
    assert "validation: BLEU" in result.output
    split = json.loads((workdir / "runs" / "tiny" / "eval" / "validation" / "report.json").read_text())
    assert split["split"] == "validation" and split["decode"]["batch_size"] == 100
    assert_user_error(invoke("evaluate", "--split", "dev"), "--split must be train, validation or test")

    pairs = Evaluator.of_split(RunDir(Path("runs/tiny")).load_config().data, "validation")
    Path("dev.src").write_text("".join(f"{line}\n" for line in pairs.sources))
    Path("dev.ref").write_text("".join(f"{line}\n" for line in pairs.references))
    result = invoke("evaluate", "--source", "dev.src", "--reference", "dev.ref", "--set", "decode.batch_size=100")
    assert result.exit_code == 0, result.output
    assert f"dev.src: BLEU {split['bleu']:.2f}" in result.output
    report = json.loads(Path("runs/tiny/eval/dev.src/report.json").read_text())
    assert report["source_file"] == str(Path("dev.src").resolve()) and report["reference_file"] == str(Path("dev.ref").resolve())
    assert {key: report[key] for key in ("bleu", "chrf", "ter", "num_sentences")} == {
        key: split[key] for key in ("bleu", "chrf", "ter", "num_sentences")}
    assert Path("runs/tiny/eval/dev.src/hypotheses.txt").read_text() == Path("runs/tiny/eval/validation/hypotheses.txt").read_text()
    assert Path("runs/tiny/eval/dev.src/report.md").read_text().startswith(
        f"# Evaluation: `{Path('dev.src').resolve()}` against `{Path('dev.ref').resolve()}`")
    assert re.search(rf"Evaluation dev.src +BLEU {split['bleu']:.2f}", invoke("info").output)
    assert_user_error(invoke("evaluate", "--source", "dev.src"), "--source and --reference go together")
    assert_user_error(invoke("evaluate", "--source", "dev.src", "--reference", "dev.ref", "--split", "test"),
                      "--split scores a split of the run's data and --source a test set of your own: pass one of them")


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


def test_translations_begin_with_the_prefixes_given(workdir):
    sentences = ["The dog saw a cat.", "My small teachers will read the book."]
    best = invoke("translate", *sentences).output.splitlines()
    own = " ".join(best[0].split()[:2])  # the model's own beginning: it goes on as without a prefix
    other = best[1].split()[0]  # another sentence's first word: forced (the model may go on with the word)
    result = invoke("translate", "--prefix", own, sentences[0])
    assert result.exit_code == 0 and result.output.splitlines() == best[:1], (result.output, best)
    forced = invoke("translate", "--prefix", other, "--n-best", "3", sentences[0])
    assert forced.exit_code == 0, forced.output
    hypotheses = [line.split(" ||| ") for line in forced.output.splitlines()]
    assert len(hypotheses) == 3 and all(text.startswith(other) for _, text, _ in hypotheses), hypotheses
    assert not best[0].startswith(other)
    # One prefix per input line, an empty line for none; the output file as stdout.
    Path("prefixed.txt").write_text(f"{sentences[0]}\n\n{sentences[1]}\n")
    Path("prefixes.txt").write_text(f"{other}\nEin\n\n")
    result = invoke("translate", "--input", "prefixed.txt", "--prefix-file", "prefixes.txt", "--output", "prefixed.out")
    assert result.exit_code == 0, result.output
    lines = Path("prefixed.out").read_text().splitlines()
    assert lines[0] == hypotheses[0][1] and lines[1] == "" and lines[2] == best[1]
    Path("prefixes.txt").write_text(f"{other}\n")
    assert_user_error(invoke("translate", "--input", "prefixed.txt", "--prefix-file", "prefixes.txt"),
                      "--prefix-file has 1 lines but the input has 3; give one prefix per input line")
    assert_user_error(invoke("translate", "--prefix", "Ein", "--prefix-file", "prefixes.txt", "A dog."), "pass one of them")
    assert_user_error(invoke("translate", "--prefix-file", "missing.txt", "A dog."), "cannot read --prefix-file missing.txt")


def test_translations_contain_the_constraints_given(workdir):
    sentences = ["The dog saw a cat.", "My small teachers will read the book."]
    best = invoke("translate", *sentences).output.splitlines()
    # Words of the other sentence's translation, which this one's lacks: placed where the model finds best.
    terms = [word.strip(".") for word in best[1].split() if word.strip(".") not in best[0]][:2]
    assert len(terms) == 2, best
    result = invoke("translate", "--constraint", terms[0], "--constraint", terms[1], "--n-best", "2", sentences[0])
    assert result.exit_code == 0, result.output
    hypotheses = [line.split(" ||| ")[1] for line in result.output.splitlines()]
    assert len(hypotheses) == 2 and all(term in hypothesis for hypothesis in hypotheses for term in terms), (hypotheses, terms)
    # A line of constraints per input line, tab-separated, an empty line for none.
    Path("constrained.txt").write_text(f"{sentences[0]}\n{sentences[1]}\n")
    Path("constraints.txt").write_text(f"{terms[0]}\t{terms[1]}\n\n")
    result = invoke("translate", "--input", "constrained.txt", "--constraint-file", "constraints.txt")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(term in lines[0] for term in terms) and lines[1] == best[1], lines
    Path("constraints.txt").write_text(f"{terms[0]}\n")
    assert_user_error(invoke("translate", "--input", "constrained.txt", "--constraint-file", "constraints.txt"),
                      "--constraint-file has 1 lines but the input has 2 sentences; give one line of constraints per sentence")
    assert_user_error(invoke("translate", "--constraint", "a", "--constraint-file", "constraints.txt", "A dog."),
                      "pass one of them")
    assert_user_error(invoke("translate", "--constraint", "a", "--set", "decode.sampling=top_k", "A dog."),
                      "constraints are placed by beam search")
    # A split evaluated with constraints: words of each reference that its translation lacks.
    from nmt.data import sources
    from nmt.run_dir import RunDir

    assert invoke("evaluate").exit_code == 0
    plain = Path("runs/tiny/eval/test/report.json").read_text()
    hypotheses = Path("runs/tiny/eval/test/hypotheses.txt").read_text().splitlines()
    _, references = sources.read_pairs(RunDir(Path("runs/tiny")).load_config().data, "test")
    words = [next((word for word in reference.replace(".", "").split() if word not in hypothesis), "")
             for reference, hypothesis in zip(references, hypotheses)]
    given = sum(map(bool, words))
    assert given > 10, "the translations lack too few words to show anything"
    Path("test_words.txt").write_text("".join(f"{word}\n" for word in words))
    result = invoke("evaluate", "--constraint-file", "test_words.txt")
    assert result.exit_code == 0, result.output
    report = json.loads(Path("runs/tiny/eval/test-constrained/report.json").read_text())
    assert report["constraints"] == {"file": "test_words.txt", "given": given, "in_translations": given}
    assert report["bleu"] > json.loads(plain)["bleu"], (report["bleu"], json.loads(plain)["bleu"])
    assert f"constraints: {given} of {given} in the translations" in result.output
    assert Path("runs/tiny/eval/test/report.json").read_text() == plain  # the run's own evaluation stays
    assert_user_error(invoke("evaluate", "--constraint-file", "constraints.txt"),
                      f"--constraint-file has 1 lines but the test split of synthetic has {len(references)} sentences")
    assert_user_error(invoke("evaluate", "--constraint-file", "test_words.txt", "--compare", "runs/tiny"),
                      "leave out --constraint-file")

def test_no_repeat_ngram_size_keeps_translations_from_repeating_subwords(workdir):
    from nmt.data import tokenizer
    from nmt.run_dir import RunDir

    run = RunDir(Path("runs/tiny"))
    tokenizers = tokenizer.load(run.tokenizer_dir, run.load_config().tokenizer.joint)
    sentences = ["The dog saw the cat and the cat saw the dog.", "My small teachers will read the old books and the new books."]

    def pieces(output):
        return tokenizers.target.tokenize(output.splitlines()).to_list()

    plain = invoke("translate", *sentences)
    assert any(len(set(line)) < len(line) for line in pieces(plain.output)), "no subword repeated: the test shows nothing"
    blocked = invoke("translate", "--set", "decode.no_repeat_ngram_size=1", *sentences)
    assert blocked.exit_code == 0, blocked.output
    assert all(len(set(line)) == len(line) for line in pieces(blocked.output)), blocked.output


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
    # Scored by the run with itself: as by the run alone.
    Path("pair.src").write_text("".join(f"{sentence}\n" for sentence in sentences))
    Path("pair.tgt").write_text(alone.output)
    scores = [invoke("score", *runs, "-s", "pair.src", "-t", "pair.tgt").output.split() for runs in ([], ["--run-dir", "runs/tiny"] * 2)]
    assert len(scores[1]) == 2 and [float(value) for value in scores[1]] == pytest.approx([float(value) for value in scores[0]], abs=2e-4)


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
