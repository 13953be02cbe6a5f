from nmt.config import CorpusConfig, DataConfig
from nmt.data.corpus import corpora_of


def test_a_configs_corpora_are_its_train_split_then_its_further_ones_each_described_on_one_line():
    config = DataConfig(dataset="multi30k", manual_dir="m30k", extra_train=(
        CorpusConfig(dataset="local", manual_dir="bt/synth", weight=0.5, tag="<bt>"),
        CorpusConfig(dataset="synthetic/shifted", split="train[:10%]")))
    main, back_translated, shifted = corpora_of(config)
    assert (main.data, main.weight, main.tag, main.key) == (config, 1.0, None, "data")
    assert back_translated.key == "data.extra_train[0]" and shifted.key == "data.extra_train[1]"
    # A further corpus's one split stands for all three; the languages are data's.
    assert {shifted.data.train_split, shifted.data.validation_split, shifted.data.test_split} == {"train[:10%]"}
    assert (shifted.data.source_lang, shifted.data.extra_train) == (config.source_lang, ())
    assert main.describe(29000) == "multi30k train, 29,000 pairs x 1"
    assert back_translated.describe() == "bt/synth train x 0.5, tagged <bt>"
    assert shifted.describe(3) == "synthetic/shifted train[:10%], 3 pairs x 1"
