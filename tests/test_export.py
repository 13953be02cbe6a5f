"""How `nmt translate` drives an export: batches of similar length within the decode settings'
limits, answers in the input's order, and a clear error when a batch does not fit in memory. The
SavedModel's signatures are stand-ins here; tests/test_cli_translate.py exports a trained run."""

import numpy as np
import pytest
import tensorflow as tf

from nmt import config as config_lib
from nmt import export, export_manifest
from nmt.errors import NmtError


class _Exported:
    """Signatures of a stand-in export: a sentence's length is its word count, its translation the
    sentence upper-cased (after its prefix and '|'); every batch served is recorded."""

    def __init__(self, fail: bool = False):
        self.batches = []
        self.signatures = {export.SIGNATURE: self._serve, export.COUNTS_SIGNATURE: self._counts,
                           export.PREFIX_SIGNATURE: lambda text, prefix: self._serve(tf.strings.join([prefix, text], separator="|"))}
        self._fail = fail

    @staticmethod
    def _counts(text, prefix):
        return {side: tf.constant([len(words.split()) for words in texts.numpy()], tf.int32)
                for side, texts in (("source", text), ("prefix", prefix))}

    def _serve(self, text):
        sentences = [sentence.decode() for sentence in text.numpy()]
        self.batches.append(sentences)
        if self._fail:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return {"translation": tf.constant([sentence.upper() for sentence in sentences]),
                "score": tf.constant([-float(len(sentence)) for sentence in sentences])}


def _matching(tmp_path, monkeypatch, exported, model=None, **decode):
    config = config_lib.from_dict({"decode": decode, "model": model or {}})
    checkpoint = tmp_path / "checkpoints" / "best"
    export_manifest.write(tmp_path, checkpoint, config, constraints=False)
    monkeypatch.setattr(tf.saved_model, "load", lambda path: exported)
    return export.load_matching(tmp_path, checkpoint, config)


def test_prefixes_go_to_the_prefix_signature_with_their_sentences(tmp_path, monkeypatch):
    translate = _matching(tmp_path, monkeypatch, _Exported(), batch_size=2)
    sentences, prefixes = ["a b c", "a", "a b"], ["x", "", "y"]
    assert [text for text, _ in translate(sentences, prefixes=prefixes)] == ["X|A B C", "|A", "Y|A B"]


def test_sentences_and_prefixes_cut_are_named_by_their_line_in_the_whole_input(tmp_path, monkeypatch, caplog):
    """model.max_length 4: a sentence of 5 words is cut, and so is a prefix of 4 (BOS takes a
    position); an empty sentence's prefix is not translated, so not cut."""
    translate = _matching(tmp_path, monkeypatch, _Exported(), {"max_length": 4})
    with caplog.at_level("WARNING", logger="nmt"):
        translate(["a b c d e", "", "a b", "a b c d"], prefixes=["", "w x y z", "w x y z", "x y z"], start=5000)
    assert [record.getMessage().split(" has ")[0] for record in caplog.records] == ["sentence 5001", "the prefix of sentence 5003"]


def test_an_export_made_before_the_token_counts_signature_is_passed_over(tmp_path, monkeypatch):
    """It could not say which sentences are cut; nmt translate then builds the model instead."""
    exported = _Exported()
    del exported.signatures[export.COUNTS_SIGNATURE]
    assert _matching(tmp_path, monkeypatch, exported) is None


def test_translate_through_an_export_batches_by_length_within_the_limits_and_keeps_the_order(tmp_path, monkeypatch):
    exported = _Exported()
    translate = _matching(tmp_path, monkeypatch, exported, batch_size=3, batch_tokens=8)
    sentences = ["a b c d e", "a", "a b", "", "a b c", "a b", "a"]
    assert translate(sentences) == [(sentence.upper(), -float(len(sentence))) for sentence in sentences]
    assert sorted(sentence for batch in exported.batches for sentence in batch) == sorted(sentences)
    for batch in exported.batches:
        lengths = [len(sentence.split()) for sentence in batch]
        assert len(batch) <= 3 and (len(batch) * max(lengths) <= 8 or len(batch) == 1)
    assert [len(sentence.split()) for batch in exported.batches for sentence in batch] == [0, 1, 1, 2, 2, 3, 5]


def test_a_batch_out_of_memory_through_an_export_is_one_clear_error(tmp_path, monkeypatch):
    translate = _matching(tmp_path, monkeypatch, _Exported(fail=True), batch_size=8, batch_tokens=100)
    with pytest.raises(NmtError, match=r"^out of memory decoding a batch of 2 sentences of up to 3 tokens \(beam 4\): "
                                       r"set decode.batch_tokens=50 \(now 100\) or a smaller decode.batch_size \(now 8\)$"):
        translate(["a b c", "a b"])


def test_the_exported_search_follows_the_decode_settings_as_translate_does(tmp_path):
    """decode.no_repeat_ngram_size included: the untrained model repeats itself, so the setting
    changes its translations, in the export as in the Translator."""
    import dataclasses

    from nmt.decoding.translator import Translator
    from nmt.model.transformer import build_transformer
    from tests.decoding.test_translator import tiny_setup

    # Seeded: some random weights end every sentence at once, where the setting changes nothing.
    # (Before the tokenizers load: seeding TensorFlow drops the SentencePiece resources loaded.)
    tf.keras.utils.set_random_seed(1)
    config, tokenizers = tiny_setup(tmp_path, beam_size=2)
    model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    sources = ["the dog runs", "a big house sees the small tree"]
    found = {}
    for n in (0, 1):
        settings = dataclasses.replace(config, decode=dataclasses.replace(config.decode, no_repeat_ngram_size=n))
        serving = export._Serving(settings, model, tokenizers)  # held: its traced method keeps only a weak reference
        found[n] = [text.decode() for text in serving.translate(tf.constant(sources))["translation"].numpy()]
        translator = Translator(settings, model, tokenizers)
        assert found[n] == translator.translate(sources)
        # The prefix signature: as translate --prefix-file, an empty prefix (or source) included.
        prefixes = ["a cat", "", "the"]
        prefixed = serving.translate_with_prefix(tf.constant(sources + [""]), tf.constant(prefixes))
        expected = translator.translate_n_best(sources + [""], 1, prefixes=prefixes)
        assert [text.decode() for text in prefixed["translation"].numpy()] == [best[0].text for best in expected]
        np.testing.assert_allclose(prefixed["score"].numpy(), [best[0].score for best in expected], atol=1e-4)
        assert found[n][1] == expected[1][0].text and expected[0][0].text.startswith("a cat")
    assert found[0] != found[1]


def test_an_export_made_with_constraints_places_them_as_translate_does(tmp_path, monkeypatch):
    """Its signature gives the Translator's translations and scores, with what its warnings would
    say: constraints placed (after a prefix too), one the vocabulary cannot write left out, a
    sentence's too long for the model left out, and a sentence whose constraints no hypothesis can
    hold (a repeat that the decode settings forbid) translated as without them; an empty sentence
    translates to nothing. nmt translate passes over such an export without loading it."""
    from nmt.decoding.translator import Translator
    from nmt.model.transformer import build_transformer
    from tests.decoding.test_translator import tiny_setup

    tf.keras.utils.set_random_seed(0)  # reproducible: what an untrained model translates depends on its weights
    config, tokenizers = tiny_setup(tmp_path / "tokenizer", beam_size=2, max_length_ratio=1.0, max_length_offset=2,
                                    no_repeat_ngram_size=2)
    model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    checkpoint = tmp_path / "checkpoints" / "best"
    export.export(config, model, tokenizers, checkpoint, tmp_path / "export", force=False, constraints=True)
    sentences = ["the dog runs", "tree", "", "a big house", "small cat", "the cat sees a tree", "a dog"]
    constraints = [["big house", "cat"], ["dog sees the small tree", "a"], ["tree"], [], ["house " * 30],
                   ["世界", "small cat"], ["dog dog dog"]]
    signature = tf.saved_model.load(str(tmp_path / "export")).signatures[export.CONSTRAINTS_SIGNATURE]
    translator = Translator(config, model, tokenizers)
    for prefixes in ([""] * len(sentences), ["", "a", "", "the", "", "a tree", ""]):
        served = signature(text=tf.constant(sentences), prefix=tf.constant(prefixes),
                           constraints=tf.constant(["\t".join(texts) for texts in constraints]))
        expected = translator.translate_n_best(sentences, 1, prefixes=prefixes, constraints=constraints)
        translations = [text.decode() for text in served["translation"].numpy()]
        assert translations == [best.text for best, in expected]
        np.testing.assert_allclose(served["score"].numpy(), [best.score for best, in expected], atol=1e-4)
        for index in (0, 1, 5):
            assert all(text in translations[index] for text in constraints[index][-2:] if text != "世界"), translations[index]
        assert translations[2] == "" and translations[6] == translator.translate(sentences[6:], prefixes=prefixes[6:])[0]
        assert served["placed"].numpy().tolist() == [True, True, False, True, False, True, False]
        assert served["writable"].numpy()[5].tolist() == [False, True] and served["writable"].numpy()[:5].all()
        writable = [[text for text in texts if text != "世界"] for texts in constraints]
        subwords = [int(tokenizers.target.tokenize(list(texts) + [prefix]).row_lengths().numpy().sum())
                    for texts, prefix in zip(writable, prefixes)]
        assert served["constraint_tokens"].numpy().tolist() == subwords and subwords[4] > config.model.max_length
    (tmp_path / export_manifest.FILE).write_text((tmp_path / "export" / export_manifest.FILE).read_text())
    monkeypatch.setattr(tf.saved_model, "load", lambda path: pytest.fail("loaded"))
    assert export.load_matching(tmp_path, checkpoint, config) is None
