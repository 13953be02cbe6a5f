"""Decoding with the run's CTranslate2 export: our greedy translations, prefixes and length limits
included, and clear errors where it cannot stand in for our search (end to end in
tests/test_cli_translate.py)."""

import dataclasses
import itertools
import json
import random

import pytest
import tensorflow as tf

from nmt import config as config_lib
from nmt import export_ctranslate2
from nmt.decoding.ctranslate2_translator import CTranslate2Translator
from nmt.decoding.plan import Hypothesis
from nmt.decoding.translator import Translator
from nmt.errors import NmtError
from nmt.model.transformer import build_transformer
from nmt.run_dir import RunDir
from tests.decoding.test_translator import WORDS, tiny_setup

SENTENCES = ["the dog runs", "a big house sees the small tree", "", "tree", "the cat " * 20]
PREFIXES = ["a small", "", "the", "", "the dog"]


@pytest.fixture(scope="module")
def run_and_model(tmp_path_factory):
    """A run directory with a checkpoint (its files only) and the CTranslate2 export of an untrained
    model, which loops: its translations run to their length limits."""
    directory = tmp_path_factory.mktemp("run")
    tf.keras.utils.set_random_seed(0)  # before the tokenizer loads: seeding drops its resources
    config, tokenizers = tiny_setup(directory / "tokenizer", beam_size=2, max_length_ratio=1.0, max_length_offset=2)
    model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    run = RunDir(directory)
    run.save_config(config)
    checkpoint = run.best_checkpoints / "ckpt-10"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text(json.dumps({"step": 10}))
    files = {side: directory / "tokenizer" / "joint.model" for side in ("source", "target")}
    export_ctranslate2.export(config, model, files, checkpoint, run.ctranslate2_dir, force=False, quantization="float32")
    return run, config, Translator(config, model, tokenizers)


def test_greedy_translations_are_ours_with_prefixes_and_length_limits(run_and_model, caplog):
    run, config, ours = run_and_model
    greedy = dataclasses.replace(config, decode=dataclasses.replace(config.decode, beam_size=1))
    engine = CTranslate2Translator.from_run_dir(run, greedy)
    ours = Translator(greedy, ours.model, ours.tokenizers)
    assert engine.translate(SENTENCES) == ours.translate(SENTENCES)
    expected = ours.translate(SENTENCES, prefixes=PREFIXES)
    engine.start_at(100)
    caplog.clear()
    with caplog.at_level("WARNING", logger="nmt"):
        assert engine.translate(SENTENCES, prefixes=PREFIXES) == expected
    assert [record.getMessage().split(" has ")[0] for record in caplog.records] == ["sentence 105"]  # 40 subwords, 24 kept


@pytest.mark.parametrize("beam_size, length_penalty", [(1, 0.6), (2, 0.6), (2, 0.0)])
def test_outputs_and_scores_in_a_batch_are_each_sentences_alone(run_and_model, beam_size, length_penalty):
    """A batch's sentences are searched in one CTranslate2 call with its largest length limit, and
    those whose search came within reach of their own limit again with it: the n-best lists and
    scores of each sentence translated alone, a call with its own limit. The untrained model runs
    some sentences to their limits and ends others at every length short of them; a hundred
    sentences make the rarer cases happen (a beam's last hypothesis ending one token short)."""
    run, config, _ = run_and_model
    decode = dataclasses.replace(config.decode, beam_size=beam_size, length_penalty=length_penalty)
    engine = CTranslate2Translator.from_run_dir(run, dataclasses.replace(config, decode=decode))
    draw = random.Random(0)
    sentences = SENTENCES + [" ".join(draw.choices(WORDS, k=draw.randint(1, 9))) for _ in range(100)]
    for n, prefixes in itertools.product(sorted({1, beam_size}), (None, PREFIXES * 21)):
        found = engine.translate_n_best(sentences, n, prefixes=prefixes)
        alone = [engine.translate_n_best([sentence], n, prefixes=prefixes and [prefixes[index]])[0]
                 for index, sentence in enumerate(sentences)]
        assert [[hypothesis.text for hypothesis in hypotheses] for hypotheses in found] == \
               [[hypothesis.text for hypothesis in hypotheses] for hypotheses in alone]
        assert [[hypothesis.score for hypothesis in hypotheses] for hypotheses in found] == \
               [pytest.approx([hypothesis.score for hypothesis in hypotheses], abs=1e-4) for hypotheses in alone]


def test_a_greedy_output_ending_at_its_own_limit_is_scored_as_alone(run_and_model):
    """Without an offset a short sentence's length limit is its prefix's length. Where the model
    ends right after the prefix, a call with the batch's larger limit finds EOS after the limit's
    last token, which a call with the sentence's own limit never reaches: the score leaves it out."""
    run, config, _ = run_and_model
    prefixes = WORDS + [" ".join(pair) for pair in itertools.product(WORDS, repeat=2)]
    sentences = ["cat", "a big house sees the small tree"]
    pairs = list(itertools.product(sentences, prefixes))
    sentences, prefixes = [sentence for sentence, _ in pairs], [prefix for _, prefix in pairs]

    def engine(**settings):
        decode = dataclasses.replace(config.decode, beam_size=1, **settings)
        return CTranslate2Translator.from_run_dir(run, dataclasses.replace(config, decode=decode))

    free = engine(max_length_offset=100).translate(sentences, prefixes=prefixes)
    ended = {prefix for prefix, output in zip(prefixes, free) if output == prefix}
    assert ended & set(WORDS) and set(prefixes) - ended  # some end at a limit below the batch's largest
    tight = engine(max_length_ratio=0.1, max_length_offset=0)
    found = tight.translate_n_best(sentences, 1, prefixes=prefixes)
    alone = [tight.translate_n_best([sentence], 1, prefixes=[prefix])[0] for sentence, prefix in pairs]
    assert [best.text for best, in found] == [best.text for best, in alone]
    assert [best.score for best, in found] == [pytest.approx(best.score, abs=1e-4) for best, in alone]


def test_a_length_limit_of_nothing_gives_our_empty_translation_and_its_score(run_and_model):
    """decode.max_length_offset 0 leaves a short sentence no token before EOS, which
    translate_batch refuses to search for; one with a prefix still gets room for it."""
    run, config, ours = run_and_model
    tight = dataclasses.replace(config, decode=dataclasses.replace(config.decode, max_length_ratio=0.5, max_length_offset=0))
    engine = CTranslate2Translator.from_run_dir(run, tight)
    ours = Translator(tight, ours.model, ours.tokenizers)
    sentences, prefixes = ["tree", "tree", "the dog runs"], ["", "a", ""]
    found, expected = engine.translate_n_best(sentences, 2, prefixes=prefixes), ours.translate_n_best(sentences, 2, prefixes=prefixes)
    assert found[0] == [Hypothesis("", pytest.approx(expected[0][0].score, abs=1e-4))] * 2 and expected[0][0].text == ""
    assert [best.text for best, _ in found] == [best.text for best, _ in expected] and found[1][0].text.startswith("a")


def test_n_best_lists_come_from_the_beam(run_and_model):
    run, config, _ = run_and_model
    engine = CTranslate2Translator.from_run_dir(run, config)
    found = engine.translate_n_best(SENTENCES, 2)
    assert [len(hypotheses) for hypotheses in found] == [2] * len(SENTENCES)
    assert found[2][0].text == "" and found[0][0].score >= found[0][1].score
    with pytest.raises(NmtError, match=r"n-best must be between 1 and decode.beam_size \(2\); got 3"):
        engine.translate_n_best(SENTENCES, 3)


def test_what_cannot_stand_in_for_our_search_is_refused(run_and_model, tmp_path):
    run, config, _ = run_and_model
    sampling = dataclasses.replace(config, decode=dataclasses.replace(config.decode, sampling="top_k"))
    with pytest.raises(NmtError, match="decodes with greedy or beam search"):
        CTranslate2Translator.from_run_dir(run, sampling)
    later = run.best_checkpoints / "ckpt-20"  # trained on since the export
    later.mkdir()
    (later / "state.json").write_text(json.dumps({"step": 20}))
    try:
        with pytest.raises(NmtError, match=r"is out of date \(it holds best/ckpt-10, the run translates with best/ckpt-20\); "
                                           r"remake it with nmt export .* --format ctranslate2 --force"):
            CTranslate2Translator.from_run_dir(run, config)
    finally:
        (later / "state.json").unlink()
        later.rmdir()
    other = RunDir(tmp_path)
    other.save_config(config_lib.from_dict({}))
    with pytest.raises(NmtError, match=f"no CTranslate2 export in {tmp_path}/ctranslate2; make one with nmt export"):
        CTranslate2Translator.from_run_dir(other, config)


def test_scores_are_ours_token_by_token_with_the_same_empty_and_too_long_cases(run_and_model):
    run, config, ours = run_and_model
    engine = CTranslate2Translator.from_run_dir(run, config)
    sources = ["the dog runs", "", "", "tree", "a big house sees the small tree"]
    targets = ["a small cat", "", "tree", "the tree " * 20, "the house"]
    theirs, expected = engine.score(sources, targets), ours.score(sources, targets)
    assert [scored.pieces for scored in theirs] == [scored.pieces for scored in expected]
    assert [scored.score for scored in theirs[1:4]] == [0.0, float("-inf"), pytest.approx(float("nan"), nan_ok=True)]
    for mine, reference in zip(theirs[::4], expected[::4]):
        assert mine.score == pytest.approx(reference.score, abs=1e-4)
        assert mine.log_probs == pytest.approx(reference.log_probs, abs=1e-4)
