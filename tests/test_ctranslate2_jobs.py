"""nmt translate, nmt score and nmt evaluate of files with --ctranslate2 run without TensorFlow, as
a user runs them, and give what the CTranslate2 translator gives; what only our search does is
refused (nmt serve and nmt evaluate of a split with --ctranslate2 end to end in
tests/test_cli_translate.py)."""

import dataclasses
import json
import subprocess
import sys

import pytest
import sacrebleu

from nmt import ctranslate2_jobs
from nmt.decoding.ctranslate2_translator import CTranslate2Translator
from nmt.errors import NmtError
from tests.decoding.test_ctranslate2_translator import run_and_model  # noqa: F401 (a fixture)

# The CLI in a fresh interpreter; it prints what it prints, then whether TensorFlow was imported.
CLI = """
import sys
from nmt.cli import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    assert not done.code, done.code
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""


def _cli(*args: str, cwd) -> list[str]:
    found = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, cwd=cwd)
    assert found.returncode == 0, found.stderr
    return found.stdout.splitlines()


def test_the_cli_translates_and_scores_with_the_export_without_importing_tensorflow(run_and_model, tmp_path):  # noqa: F811
    run, config, _ = run_and_model
    greedy = dataclasses.replace(config, decode=dataclasses.replace(config.decode, beam_size=1))
    engine = CTranslate2Translator.from_run_dir(run, greedy)
    sentences = ["the dog runs", "a big house sees the small tree"]
    expected = engine.translate(sentences)
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n")
    (tmp_path / "out.txt").write_text("\n".join(expected) + "\n")

    *printed, imported = _cli("translate", "--run-dir", str(run.path), "--ctranslate2", "--set", "decode.beam_size=1",
                              *sentences, cwd=tmp_path)
    assert printed == expected and imported == "False False"
    *printed, imported = _cli("score", "--run-dir", str(run.path), "--ctranslate2", "-s", "in.txt", "-t", "out.txt",
                              cwd=tmp_path)
    assert printed == [f"{scored.score:.4f}" for scored in engine.score(sentences, expected)] and imported == "False False"
    # Into a file, with the run's beam (2), as nmt translate --output writes it.
    *_, imported = _cli("translate", "--run-dir", str(run.path), "--ctranslate2", "-i", "in.txt", "-o", "t.txt", cwd=tmp_path)
    beam = CTranslate2Translator.from_run_dir(run, config).translate(sentences)
    assert (tmp_path / "t.txt").read_text().splitlines() == beam and imported == "False False"

    # A test set of files, scored by sacreBLEU and reported as nmt evaluate reports a split.
    references = [beam[0], "a house"]
    (tmp_path / "ref.txt").write_text("\n".join(references) + "\n")
    *printed, imported = _cli("evaluate", "--run-dir", str(run.path), "--ctranslate2", "--source", "in.txt",
                              "--reference", "ref.txt", cwd=tmp_path)
    report = json.loads((run.path / "eval" / "in.txt-ctranslate2" / "report.json").read_text())
    assert imported == "False False", printed
    assert report["bleu"] == pytest.approx(sacrebleu.corpus_bleu(beam, [references]).score, abs=0.01)
    assert (report["source_file"], report["num_sentences"]) == (str(tmp_path / "in.txt"), 2)
    assert report["decoder"].startswith("CTranslate2 (") and printed[0].startswith(f"in.txt: BLEU {report['bleu']:.2f}")
    assert (run.path / "eval" / "in.txt-ctranslate2" / "hypotheses.txt").read_text().splitlines() == beam

def test_what_only_our_search_does_is_refused(run_and_model):  # noqa: F811
    run, config, _ = run_and_model
    for asked in ({"ensemble": [str(run.path)]}, {"with_attention": True}, {"constrained": True}):
        with pytest.raises(NmtError, match="--ctranslate2 translates with one run's model, without constraints or alignments"):
            ctranslate2_jobs.translator(str(run.path), [], **asked)
    with pytest.raises(NmtError, match="--ctranslate2 scores with one run's model: leave out the other --run-dir"):
        ctranslate2_jobs.scorer(str(run.path), [], [str(run.path)])
    for asked in ({"ensemble": [run]}, {"constraint_file": run.path / "constraints.txt"}):
        with pytest.raises(NmtError, match="--ctranslate2 evaluates one run's model without constraints"):
            ctranslate2_jobs.evaluate(run, config, "test", **asked)
    translate, checkpoints = ctranslate2_jobs.translator(str(run.path), ["decode.beam_size=2"], n_best=2)
    assert checkpoints == [str((run.best_checkpoints / "ckpt-10").resolve())]
    assert [len(hypotheses) for hypotheses in translate(["the dog runs", ""])] == [2, 2]


def test_nmt_load_gives_the_export_in_python_without_importing_tensorflow(run_and_model):  # noqa: F811
    run, config, _ = run_and_model
    expected = CTranslate2Translator.from_run_dir(run, config).translate_n_best(["the dog runs"], 2)[0]
    found = subprocess.run(
        [sys.executable, "-c", "import json, sys, nmt\n"
                               f"translator = nmt.load({str(run.path)!r}, ctranslate2=True)\n"
                               "best = translator.translate_n_best(['the dog runs'], 2)[0]\n"
                               "print(json.dumps([[h.text, h.score] for h in best]), 'tensorflow' in sys.modules)"],
        capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    hypotheses, imported = found.stdout.rsplit(" ", 1)
    assert [tuple(pair) for pair in json.loads(hypotheses)] == [(h.text, pytest.approx(h.score, abs=1e-5)) for h in expected]
    assert imported.strip() == "False"
