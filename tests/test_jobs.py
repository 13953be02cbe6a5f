"""How the jobs compose training, decoding and evaluation (end to end in tests/test_cli.py)."""

from nmt import config as config_lib
from nmt.jobs import validation_decode


def test_validation_decodes_with_the_validation_beam():
    config = config_lib.from_dict({"decode": {"beam_size": 5, "length_penalty": 1.0}, "train": {"validation_beam_size": 2}})
    decode = validation_decode(config).decode
    assert decode.beam_size == 2 and decode.length_penalty == 1.0
