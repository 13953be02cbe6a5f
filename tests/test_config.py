import dataclasses
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import yaml

from nmt import config
from nmt.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_and_yaml_values(tmp_path):
    loaded = config.load(write(tmp_path, "model:\n  hidden_dim: 64\ntrain:\n  learning_rate: 1\n"))
    assert loaded.model.hidden_dim == 64
    assert loaded.train.learning_rate == 1.0 and isinstance(loaded.train.learning_rate, float)
    assert loaded.model.num_heads == config.ModelConfig().num_heads


def test_unknown_key_names_path_and_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.hidden_dims' \(did you mean 'hidden_dim'\?\).*num_heads"):
        config.load(write(tmp_path, "model:\n  hidden_dims: 64\n"))


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'trian'.*valid keys in the top level: data, tokenizer"):
        config.load(write(tmp_path, "trian:\n  epochs: 1\n"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  num_heads: four\n", r"'model\.num_heads' must be an integer; got 'four'"),
        ("model:\n  share_embeddings: 1\n", r"'model\.share_embeddings' must be true or false"),
        ("model:\n  norm: middle\n", r"'model\.norm' must be one of pre, post; got 'middle'"),
        ("train:\n  max_minutes: soon\n", r"'train\.max_minutes' must be a number"),
        ("train:\n  epochs: 0\n", r"'train\.epochs' must be greater than 0"),
        ("model:\n  dropout: 1.5\n", r"'model\.dropout' must be in \[0, 1\)"),
        ("model:\n  hidden_dim: 30\n  num_heads: 4\n", r"divisible"),
        ("tokenizer:\n  joint: false\n", r"share_embeddings.*tokenizer\.joint=true"),
        ("decode:\n  beam_size: 0\n", r"'decode\.beam_size' must be greater than 0; got 0"),
        ("decode:\n  temperature: 0\n", r"'decode\.temperature' must be greater than 0; got 0"),
        ("decode:\n  top_k: 0\n", r"'decode\.top_k' must be greater than 0; got 0"),
        ("decode:\n  top_p: 0\n", r"'decode\.top_p' must be in \(0, 1\]; got 0"),
        ("decode:\n  top_p: 1.5\n", r"'decode\.top_p' must be in \(0, 1\]; got 1\.5"),
        ("decode:\n  sampling: nucleus\n", r"decode\.sampling"),
        ("decode:\n  length_penalty: -0.5\n", r"'decode\.length_penalty' must be 0 or more; got -0\.5"),
        ("decode:\n  no_repeat_ngram_size: -1\n", r"'decode\.no_repeat_ngram_size' must be 0 \(off\) or more; got -1"),
        ("train:\n  validation_beam_size: 0\n", r"'train\.validation_beam_size' must be greater than 0"),
        ("train:\n  validation_bleu: false\n", r"'train\.best_metric' is 'bleu' but train\.validation_bleu is false"),
        ("train:\n  average_last: 5\n", r"'train\.average_last' \(5\) exceeds train\.keep_checkpoints \(3\)"),
        ("train:\n  ema_decay: 1.0\n", r"'train\.ema_decay' must be in \(0, 1\), e\.g\. 0\.999 \(null: off\); got 1\.0"),
        ("train:\n  early_stopping_patience: 0\n", r"'train\.early_stopping_patience' must be greater than 0"),
        ("eval:\n  checkpoint: mean\n", r"'eval\.checkpoint' must be one of best, last, averaged"),
        ("model: 3\n", r"'model' must be a mapping"),
        ("train:\n  accumulate_steps: 0\n", r"'train\.accumulate_steps' must be greater than 0; got 0"),
        ("train:\n  distribute: horovod\n", r"'train\.distribute' must be one of none, mirrored, multi_worker, tpu"),
        ("train:\n  replicas: 2\n", r"'train\.replicas' applies to train\.distribute=mirrored only"),
        ("train:\n  precision: fp8\n", r"'train\.precision' must be one of float32, mixed_bfloat16, mixed_float16, auto"),
        ("model:\n  attention: linear\n",
         r"'model\.attention' must be one of additive, dot, scaled_dot, multi_head, multi_query, grouped_query; got 'linear'"),
        ("model:\n  attention: grouped_query\n", r"grouped_query needs 'model\.num_kv_heads'"),
        ("model:\n  attention: grouped_query\n  num_kv_heads: 3\n", r"'model\.num_kv_heads' \(3\) must divide 'model\.num_heads' \(4\)"),
        ("model:\n  num_kv_heads: 2\n", r"'model\.num_kv_heads' applies to model\.attention=grouped_query only"),
        ("model:\n  attention_projections: false\n", r"multi_head splits projected queries.*attention_projections=true"),
        ("tokenizer:\n  update_vocab: true\n", r"'tokenizer\.update_vocab' applies when starting from another run: set train\.init_from"),
        ("train:\n  resume_optimizer: true\n", r"'train\.resume_optimizer' applies when starting from another run"),
        ("tokenizer:\n  sample_alpha: 0\n", r"'tokenizer\.sample_alpha' must be greater than 0, e\.g\. 0\.1 \(null: off\)"),
        ("tokenizer:\n  sample_alpha: 0.1\n  model_type: bpe\n", r"'tokenizer\.sample_alpha' needs tokenizer\.model_type=unigram"),
        ("tokenizer:\n  sample_nbest: 1\n", r"'tokenizer\.sample_nbest' must be at least 2; got 1"),
        ("data:\n  extra_train: bt\n", r"'data\.extra_train' must be a list \(of mappings with keys dataset, manual_dir, split, weight, tag\)"),
        ("data:\n  extra_train:\n    - manual_dir: bt\n", r"'data\.extra_train\[0\]\.dataset' is required"),
        ("data:\n  extra_train:\n    - {dataset: local, weigth: 2}\n", r"unknown config key 'data\.extra_train\[0\]\.weigth' \(did you mean 'weight'\?\)"),
        ("data:\n  extra_train:\n    - {dataset: local}\n    - {dataset: local, weight: 0}\n",
         r"'data\.extra_train\[1\]\.weight' must be greater than 0 \(passes over the corpus per epoch\); got 0"),
        ("data:\n  extra_train:\n    - {dataset: local, tag: 'back translated'}\n", r"'data\.extra_train\[0\]\.tag' must be a word of its own"),
        ("data:\n  extra_train:\n    - {dataset: local, tag: '</s>'}\n", r"'data\.extra_train\[0\]\.tag' must be a word of its own"),
    ],
)
def test_invalid_values(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        config.load(write(tmp_path, text))


def test_yaml_syntax_error_reports_line(tmp_path):
    with pytest.raises(ConfigError, match=r"YAML syntax error in .*c\.yaml at line 3"):
        config.load(write(tmp_path, "model:\n  hidden_dim: 64\n  bad: x: y\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.yaml")


def test_overrides_are_typed_and_validated(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 5\n")
    loaded = config.load(path, ["train.epochs=2", "train.max_minutes=1.5", "data.data_dir=/tmp/x"])
    assert (loaded.train.epochs, loaded.train.max_minutes, loaded.data.data_dir) == (2, 1.5, "/tmp/x")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.epoch'"):
        config.load(path, ["train.epoch=2"])
    with pytest.raises(ConfigError, match="key.path=value"):
        config.load(path, ["train.epochs"])


def test_exponent_notation_is_a_number_in_files_and_overrides(tmp_path):
    """YAML 1.1 would read 5e-4 as a string: the way most people write a learning rate."""
    loaded = config.load(write(tmp_path, "train:\n  learning_rate: 5e-4\n  adam_epsilon: 1E-9\n"))
    assert (loaded.train.learning_rate, loaded.train.adam_epsilon) == (5e-4, 1e-9)
    assert config.load(None, ["train.learning_rate=1e-4"]).train.learning_rate == 1e-4
    with pytest.raises(ConfigError, match="'train.warmup_steps' must be an integer; got 4000.0"):
        config.load(None, ["train.warmup_steps=4e3"])
    with pytest.raises(ConfigError, match="'train.learning_rate' must be a number; got '5e'"):
        config.load(None, ["train.learning_rate=5e"])


def test_extra_training_corpora_are_a_list_of_typed_entries_that_round_trip(tmp_path):
    loaded = config.load(write(tmp_path, "data:\n  extra_train:\n    - dataset: local\n      manual_dir: bt\n      weight: 0.5\n"
                                         "      tag: <bt>\n    - {dataset: multi30k, split: validation}\n"))
    assert loaded.data.extra_train == (config.CorpusConfig("local", "bt", "train", 0.5, "<bt>"),
                                       config.CorpusConfig("multi30k", None, "validation", 1.0, None))
    assert config.load(write(tmp_path, config.to_yaml(loaded))) == loaded
    assert config.load(None, ["data.extra_train=[{dataset: local, weight: 2}]"]).data.extra_train[0].weight == 2.0
    assert config.load(write(tmp_path, "data:\n  extra_train:\n")).data.extra_train == ()


def test_resolved_config_round_trips(tmp_path):
    loaded = config.load(write(tmp_path, "model:\n  hidden_dim: 64\n"), ["train.max_steps=7"])
    again = config.load(write(tmp_path, config.to_yaml(loaded)))
    assert again == loaded


def test_the_readme_documents_every_key_once_with_its_default():
    """The README's configuration table against the dataclasses: each key once, each default as
    the code has it (a new key, or a changed default, fails here until the README says so)."""
    lines = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| key | default | meaning |") + 2
    documented = {}
    for line in itertools.takewhile(lambda line: line.startswith("|"), lines[start:]):
        keys, defaults = (cell.strip() for cell in line.split(" | ")[:2])
        names = [name.strip("`| ") for name in keys.split(", ")]
        section = names[0].split(".")[0]
        values = [value.strip("`") for value in defaults.split(", ")]
        for name, value in zip(names, values, strict=True):
            key = name if "." in name else f"{section}.{name}"
            assert key not in documented, f"{key} documented twice"
            parsed = yaml.safe_load(value)
            documented[key] = float(parsed) if isinstance(parsed, str) and parsed[:1].isdigit() else parsed
    defaults = config.from_dict({}).to_dict()
    expected = {f"{section}.{key}": value for section, values in defaults.items() for key, value in values.items()}
    assert documented == expected


def _every_key(cls=config.Config, prefix=""):
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(field.default_factory if callable(field.default_factory) else None):
            yield from _every_key(field.default_factory, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}"


KEYS = list(_every_key())
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=12), YAML_VALUES, max_size=4))
def test_any_config_values_give_a_config_or_one_config_error(values):
    raw: dict = {}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if name:
            raw.setdefault(section, {})
            if isinstance(raw[section], dict):
                raw[section][name] = value
        else:
            raw[section] = value
    try:
        config.from_dict(raw)
    except ConfigError as error:
        assert "\n" not in str(error) and str(error)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(KEYS) | st.text(max_size=12), st.text(max_size=20))
def test_any_set_string_gives_a_config_or_one_config_error(key, value):
    try:
        config.load(None, [f"{key}={value}"])
    except ConfigError as error:
        assert "\n" not in str(error) and str(error)


def test_the_expected_end_is_the_first_budget_to_run_out():
    from nmt.config import TrainConfig

    # 100 steps in 200 s: 2 s a step; 50 steps an epoch, 2 of 5 epochs done.
    assert TrainConfig(epochs=5).remaining(100, 2, 200.0, 50) == (300.0, "epochs")
    assert TrainConfig(epochs=5, max_steps=120).remaining(100, 2, 200.0, 50) == (40.0, "max_steps")
    assert TrainConfig(epochs=5, max_minutes=4).remaining(100, 2, 200.0, 50) == (40.0, "max_minutes")
    assert TrainConfig(epochs=5).remaining(100, 2, 200.0, None) is None
    assert TrainConfig(epochs=5).remaining(0, 0, 0.0, 50) is None
