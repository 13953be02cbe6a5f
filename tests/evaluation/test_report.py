"""An evaluation report's fields and files: the test set it names (a split or two files), where
it goes in the run directory."""

import json
from pathlib import Path

from nmt import config as config_lib
from nmt.evaluation import report
from nmt.evaluation.evaluator import Evaluation
from nmt.run_dir import RunDir

SCORES = {"bleu": 25.0, "chrf": 50.0, "ter": 60.0, "signature": "nrefs:1|bleu", "chrf_signature": "chrf",
          "ter_signature": "ter", "bleu_details": "25.0 60/30/15/8 (BP = 1.000 ratio = 1.000)", "length_ratio": 1.0}


def test_a_report_names_its_test_set_and_checkpoint_and_is_written(tmp_path):
    config = config_lib.load(Path("configs/quickstart.yaml"))
    evaluation = Evaluation("news.en", ["a b", "c"], ["b a", "c"], ["b a", "d"], SCORES, seconds=0.5)
    files = (tmp_path / "news.en", tmp_path / "news.de")
    fields = report.of_evaluation(config, evaluation, Path("best/ckpt-9"), files, decoder="CTranslate2 (x)")
    assert fields["source_file"] == str(files[0].resolve()) and "dataset" not in fields
    assert (fields["split"], fields["num_sentences"], fields["sentences_per_second"]) == ("news.en", 2, 4.0)
    assert (fields["checkpoint"], fields["decoder"]) == ("best/ckpt-9", "CTranslate2 (x)")
    assert fields["decode"]["beam_size"] == config.decode.beam_size
    assert report.of_evaluation(config, evaluation, Path("c"), None)["dataset"] == config.data.dataset

    directory = report.directory(RunDir(tmp_path), "news.en", ctranslate2=True)
    assert directory == tmp_path / "eval" / "news.en-ctranslate2"
    assert report.directory(RunDir(tmp_path), "test", ensemble=True, constrained=True).name == "test-ensemble-constrained"
    report.write(directory, fields, evaluation, config)
    assert json.loads((directory / "report.json").read_text()) == fields
    assert (directory / "hypotheses.txt").read_text() == "b a\nd\n"
    markdown = (directory / "report.md").read_text()
    assert markdown.startswith(f"# Evaluation: `{files[0].resolve()}` against `{files[1].resolve()}`")
    assert "decoded by CTranslate2 (x)" in markdown and "- translation: d" in markdown and "## Configuration" in markdown
