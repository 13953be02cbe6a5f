import sys
from pathlib import Path
from unittest import mock

import pytest

from nmt import config as config_lib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import benchmark  # noqa: E402  (a script, not a package module)


def test_a_bf16_lever_is_the_config_itself_on_a_cpu_without_bf16_units(monkeypatch):
    monkeypatch.setattr("nmt.training.precision._gpu_compute_capability", lambda: None)
    config = ROOT / "configs" / "reference_base.yaml"
    base = config_lib.load(config, ["train.precision=float32"])
    bf16 = config_lib.load(config, ["train.precision=mixed_bfloat16"])
    with mock.patch("nmt.training.precision.cpu_flags", return_value=frozenset({"avx2"})):
        assert benchmark.as_run_here(bf16) == benchmark.as_run_here(base)
    with mock.patch("nmt.training.precision.cpu_flags", return_value=frozenset({"avx512_bf16"})):
        assert benchmark.as_run_here(bf16) != benchmark.as_run_here(base)
    xla = config_lib.load(config, ["train.jit_compile=true"])
    assert benchmark.as_run_here(xla) != benchmark.as_run_here(base)


# One variant's training result, as TrainingTimer.result() and speed() give it.
TRAINING_RESULT = {"precision": "float32", "jit_compile": False, "train_target_tokens_per_s": 2000, "train_tokens_per_s": 3900,
                   "padding_fraction": 0.1, "model_gflops_per_s": 100.0, "mfu": 0.5, "batch_shapes": 40, "compile_seconds": None}


def test_a_training_only_table_names_each_levers_compilation_and_no_decoding():
    result = {**TRAINING_RESULT, "input_ms_per_batch": 12.5, "input_share_of_step": 0.0125}
    xla = {**result, "jit_compile": True, "train_target_tokens_per_s": 1500, "speedup": 0.75, "batch_shapes": 7,
           "compile_seconds": 138.8}
    entry = {**result, "config": "configs/reference_base.yaml", "overrides": [], "date": "2026-12-03", "code": "abc",
             "steps": 40, "warmup_steps": 10, "levers": {"xla": xla}, "reference": None, "ctranslate2": None,
             "peak_rss_mb": 2000, "machine": {"cpu": "some CPU", "cores": 2, "gpu": None}}
    table = benchmark.speed_table(entry)
    assert "| config | float32 | no | 2,000 |" in table
    assert "| xla | float32 | yes: 7 shapes compiled in 138.8 s | 1,500 |" in table
    assert "Decoding" not in table
    # An entry of before the variants took turns says they ran one after another.
    assert "the variants one after another" in table
    assert "yields a batch in 12.5 ms, 1.2% of the config's training step" in table


def test_training_variants_take_turns_and_the_table_gives_the_spread_over_rounds():
    calls = []

    class Stub:
        def __init__(self, name, rate):
            self.name, self.rate = name, rate

        def time(self, steps):
            calls.append((self.name, steps))
            return self.rate

    rates = benchmark.take_turns_training({"config": Stub("config", 100.0), "bf16": Stub("bf16", 150.0)}, steps=7, rounds=3)
    assert calls == [("config", 3), ("bf16", 3), ("bf16", 2), ("config", 2), ("config", 2), ("bf16", 2)]
    assert rates == {"config": [100.0] * 3, "bf16": [150.0] * 3}
    result = TRAINING_RESULT
    bf16 = {**result, "precision": "mixed_bfloat16", "train_target_tokens_per_s": 3000, "speedup": 1.5,
            "round_speedups": [1.42, 1.561]}
    entry = {**result, "config": "configs/reference_base.yaml", "overrides": [], "date": "2026-12-04", "code": "abc",
             "steps": 40, "warmup_steps": 10, "rounds": 5, "levers": {"bf16": bf16}, "reference": None,
             "ctranslate2": None, "peak_rss_mb": 2000, "machine": {"cpu": "some CPU", "cores": 2, "gpu": None}}
    table = benchmark.speed_table(entry)
    assert "the variants taking turns in 5 rounds" in table
    assert "| config | float32 | no | 2,000 | 3,900 | 1.00x |  |" in table
    assert "| bf16 | mixed_bfloat16 | no | 3,000 | 3,900 | 1.50x | 1.420–1.561x |" in table
    # The reference toolkit trains between the rounds (after ours in each), its ratio given with its spread.
    between = []
    benchmark.take_turns_training({"config": Stub("config", 100.0)}, steps=7, rounds=3, between=between.append)
    assert between == [3, 2, 2]
    reference = {"toolkit": "OpenNMT-tf 2.32.0", "train_target_tokens_per_s": 1000, "train_tokens_per_s": 1950,
                 "config_speedup": 2.0, "round_config_speedups": [1.8, 2.2]}
    table = benchmark.speed_table({**entry, "round_target_tokens_per_s": [2000, 2200],
                                   "levers": {"bf16": {**bf16, "round_target_tokens_per_s": [3000, 3300]}},
                                   "reference": {**reference, "round_target_tokens_per_s": [1000, 1000]}})
    assert "| config | float32 | no | 2,000 | 3,900 | 1.00x |  | 2.00x (2.00–2.20x) |" in table
    assert "| bf16 | mixed_bfloat16 | no | 3,000 | 3,900 | 1.50x | 1.420–1.561x | 3.00x (3.00–3.30x) |" in table
    assert "| reference: OpenNMT-tf 2.32.0 | float32 | no | 1,000 | 1,950 | 0.50x | | 1.00x |" in table
    assert "The config trains **2.00x** as fast" in table
    assert "it trained in each round after ours, a fresh process each time: single rounds 1.80–2.20x" in table


@pytest.mark.parametrize("arguments, message", [
    (["--lever", "bf16"], "--lever 'bf16': give NAME:key=value[,key=value...]"),
    (["--lever", "config:train.seed=2"], "--lever config: that name is taken"),
    (["--lever", "a:train.seed=2", "--lever", "a:train.seed=3"], "--lever a: that name is taken"),
    (["--lever", "x:train.nope=1"], "--lever x: unknown config key 'train.nope'"),
    (["--set", "train.nope=1"], "--set: unknown config key 'train.nope'"),
    (["--steps", "2", "--rounds", "3"], "--rounds 3: give between 1 and --steps (2) rounds"),
])
def test_bad_speed_arguments_are_one_line_errors_before_any_training(arguments, message, tmp_path):
    from typer.testing import CliRunner

    result = CliRunner().invoke(benchmark.app, ["speed", "--no-decode", "--out", str(tmp_path / "speed.json"), *arguments])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in " ".join(result.output.replace("│", " ").split()), result.output
    assert not (tmp_path / "speed.json").exists()


def test_the_search_table_gives_both_times_the_speedup_and_the_differing_translations():
    entry = {"run_dir": "runs/rb", "baseline_code": "aaa", "code": "bbb", "date": "2026-12-03", "passes": 3, "sentences": 1000,
             "batches": 16, "machine": {"cpu": "some CPU", "cores": 2},
             "results": {"beam 4": {"baseline_seconds": 30.11, "seconds": 26.9, "speedup": 1.119, "pass_speedups": [1.05, 1.2],
                                    "differing_translations": 0}}}
    table = benchmark.search_table(entry)
    assert "code aaa against bbb" in table and "3 passes over the test split (1000 sentences in 16 batches)" in table
    assert "| beam 4 | 30.11 s | 26.90 s | 1.119x | 1.050–1.200x | 0 |" in table


def test_the_decoding_table_gives_each_decoders_rate_bleu_and_ratio_to_ctranslate2_with_its_spread():
    def result(rate, bleu, ratio, low, high):
        return {"sentences_per_s": rate, "bleu": bleu, "versus_ctranslate2_float32": ratio, "round_versus_ctranslate2_float32": [low, high]}

    entry = {"run_dir": "runs/rb", "checkpoint": "best", "code": "abc", "date": "2026-12-05", "rounds": 3, "passes": 2,
             "sentences": 1000, "machine": {"cpu": "some CPU", "cores": 2, "tensorflow": "2.21.0"},
             "results": {"nmt": {"beam4": result(190.5, 25.89, 0.881, 0.85, 0.91), "beam1": result(440.0, 25.7, 0.9, 0.8, 0.97)},
                         "CTranslate2 float32": {"beam4": result(216.2, 26.07, 1.0, 1.0, 1.0), "beam1": result(488.9, 25.7, 1.0, 1.0, 1.0)}}}
    table = benchmark.decoding_table(entry)
    assert "3 rounds" in table and "2 timed passes" in table and "(1,000 sentences)" in table and "(best checkpoint)" in table
    assert "(best checkpoint, `decode.batch_tokens=16384`)" in benchmark.decoding_table({**entry, "set": ["decode.batch_tokens=16384"]})
    assert "| nmt | 190.5 | 25.89 | **0.88x** (0.85–0.91x) | 440.0 | 25.7 | **0.90x** (0.80–0.97x) |" in table
    assert "| CTranslate2 float32 | 216.2 | 26.07 | **1.00x** (1.00–1.00x) |" in table


def test_the_decode_settings_table_names_both_settings_and_gives_both_rates():
    entry = {"run_dir": "runs/rb", "baseline_set": ["decode.batch_size=64"], "set": [], "code": "bbb", "date": "2026-12-03",
             "passes": 3, "sentences": 1000, "machine": {"cpu": "some CPU", "cores": 2},
             "results": {"greedy": {"baseline_sentences_per_s": 178.7, "sentences_per_s": 263.7, "speedup": 1.476,
                                    "differing_translations": 0}}}
    table = benchmark.decode_settings_table(entry)
    assert "`decode.batch_size=64` against the run's settings" in table and "code bbb" in table
    assert "3 passes over the test split (1000 sentences)" in table
    # An entry written before single passes were recorded leaves their cell empty.
    assert "| greedy | 178.70 | 263.70 | 1.476x |  | 0 |" in table


def test_the_prefix_table_gives_each_prefix_lengths_scores_and_speed():
    entry = {"run_dir": "runs/rb", "code": "ccc", "date": "2026-12-04", "machine": {"cpu": "some CPU", "cores": 2},
             "beam_size": 4, "passes": 2, "sentences": 1000,
             "results": {"0": {"sentences_per_s": 120.5, "speed_against_no_prefix": 1.0, "bleu_after_prefix": 25.9,
                               "bleu_after_without_prefix": 25.9, "chrf_after_prefix": 55.1, "chrf_after_without_prefix": 55.1,
                               "bleu_whole": 25.9, "next_word_correct": 0.4213, "next_word_correct_without_prefix": 0.4213},
                         "2": {"sentences_per_s": 110.25, "speed_against_no_prefix": 0.915, "bleu_after_prefix": 28.31,
                               "bleu_after_without_prefix": 20.5, "chrf_after_prefix": 57.0, "chrf_after_without_prefix": 50.25,
                               "bleu_whole": 35.5, "next_word_correct": 0.5, "next_word_correct_without_prefix": 0.25}}}
    table = benchmark.prefix_table(entry)
    assert "Run `runs/rb`, beam 4, the test split (1000 sentences), 2 passes" in table and "code ccc" in table
    assert "| 0 | 25.90 | 25.90 | 55.10 | 55.10 | 42.1% | 42.1% | 25.90 | 120.50 | 1.000x |" in table
    assert "| 2 | 28.31 | 20.50 | 57.00 | 50.25 | 50.0% | 25.0% | 35.50 | 110.25 | 0.915x |" in table


def test_the_local_corpus_table_gives_each_reading_side_by_side():
    probe = {"rss_mib_at_start": 581, "seconds_until_readable": 12.7, "seconds_to_first_pairs": 12.8, "pairs": 3000000,
             "read_pairs_per_s": 570000, "rss_mib_while_reading": 2476, "peak_rss_mib": 2529, "tenths_in_first_percent": 1}
    entry = {"pairs": 3000000, "text_bytes": 450_000_000, "code": "bbb", "date": "2026-12-04",
             "machine": {"cpu": "some CPU", "cores": 2, "tensorflow": "2.21.0"},
             "probes": {"translate_folder": probe, "first_time": {**probe, "seconds_until_readable": 85.3, "rss_mib_while_reading": 680},
                        "prepared": {**probe, "seconds_until_readable": 0.1, "rss_mib_while_reading": 632},
                        "mixed": {**probe, "seconds_until_readable": 1.6, "rss_mib_while_reading": 641,
                                  "tenths_in_first_percent": 10}}}
    table = benchmark.local_corpus_table(entry)
    assert "# Reading a local corpus of 3,000,000 training pairs (450 MB of text)" in table
    assert "which holds 581 MiB before reading" in table
    assert "| seconds until the split can be read | 12.7 | 85.3 | 0.1 | 1.6 |" in table
    assert "| resident memory while reading it (MiB) | 2,476 | 680 | 632 | 641 |" in table
    assert "| tenths of the split the first 1% of pairs read come from | 1 | 1 | 1 | 10 |" in table


def test_taking_turns_alternates_who_goes_first_and_times_each_pass():
    calls = []

    class Stub:
        def __init__(self, name, suffix):
            self.name, self.suffix = name, suffix

        def translate(self, sentences):
            calls.append((self.name, tuple(sentences)))
            return [sentence + self.suffix for sentence in sentences]

    translators = {"a": Stub("a", ""), "b": Stub("b", "")}
    seconds, differing = benchmark._take_turns(translators, [[["x"], ["y", "z"]]] * 2)
    assert [name for name, _ in calls] == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert [work for _, work in calls[::2]] == [("x",), ("y", "z")] * 2
    assert differing == 0 and all(len(times) == 2 and min(times) >= 0 for times in seconds.values())
    _, differing = benchmark._take_turns({"a": Stub("a", ""), "b": Stub("b", "!")}, [[["x"], ["y", "z"]]])
    assert differing == 3
    assert benchmark._speedups([2.0, 3.0], [1.0, 3.0]) == {"speedup": 1.25, "pass_speedups": [1.0, 2.0]}


def test_a_baseline_search_gets_only_the_arguments_it_takes():
    def older_search(model, source_ids, max_lengths, beam_size, alpha=0.0):
        return beam_size, alpha

    assert benchmark._accepting(older_search)("model", "ids", "limits", beam_size=4, alpha=0.6, num_best=1) == (4, 0.6)


def test_the_machine_is_told_apart_by_its_cpu_family_model_and_caches(monkeypatch, tmp_path):
    for index, (level, kind, size) in enumerate([(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "1024K")]):
        (tmp_path / f"index{index}").mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (tmp_path / f"index{index}" / name).write_text(f"{value}\n")
    assert benchmark.cpu_caches(tmp_path) == "L1d 32K, L1i 32K, L2 1024K"
    assert benchmark.cpu_caches(tmp_path / "absent") is None
    monkeypatch.setattr(benchmark.precision, "cpuinfo", lambda: {"model name": "AMD EPYC", "cpu family": "25", "model": "17",
                                                                 "stepping": "1", "flags": "avx2"})
    found = benchmark.machine()
    assert found["cpu"] == "AMD EPYC"
    assert found["cpu_id"] == "cpu family 25, model 17, stepping 1"
    assert found["cpu_vector_units"] == ["avx2"]
