from nmt.evaluation import significance

REFERENCES = [f"Der Hund Nummer {number} läuft schnell über die grüne Wiese." for number in range(40)]
# Half the sentences lose their ending: worse on most resampled test sets.
DAMAGED = [line if number % 2 else " ".join(line.split()[:4]) for number, line in enumerate(REFERENCES)]


def test_a_clearly_better_system_is_significant():
    comparison = significance.paired_bootstrap(("damaged", DAMAGED), ("perfect", REFERENCES), REFERENCES)
    bleu = comparison["metrics"]["BLEU"]
    assert bleu["system"]["score"] == 100.0
    assert bleu["difference"] > 10
    assert bleu["p_value"] < 0.05
    assert comparison["metrics"]["chrF2"]["p_value"] < 0.05


def test_a_system_is_not_significantly_better_than_itself():
    comparison = significance.paired_bootstrap(("a", DAMAGED), ("b", list(DAMAGED)), REFERENCES)
    bleu = comparison["metrics"]["BLEU"]
    assert bleu["difference"] == 0
    assert bleu["p_value"] == 1.0
    assert comparison["metrics"]["chrF2"]["p_value"] == 1.0


def test_write_makes_json_and_a_markdown_table(tmp_path):
    comparison = significance.paired_bootstrap(("damaged", DAMAGED), ("perfect", REFERENCES), REFERENCES)
    comparison.update(split="test", dataset="toy", num_sentences=len(REFERENCES))
    significance.write(tmp_path, comparison)
    table = (tmp_path / "compare.md").read_text()
    assert "| BLEU |" in table and "| chrF2 |" in table
    assert '"p_value"' in (tmp_path / "compare.json").read_text()
