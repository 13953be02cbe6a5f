"""What an export was made from, and why `nmt translate` would pass over it."""

import json

from nmt import config as config_lib
from nmt import export_manifest


def test_an_export_matches_only_its_checkpoint_and_decode_settings(tmp_path):
    config = config_lib.from_dict({"decode": {"beam_size": 4}})
    best, last = tmp_path / "checkpoints" / "best" / "ckpt-900", tmp_path / "checkpoints" / "last" / "ckpt-1000"
    export_manifest.write(tmp_path, best, config, constraints=False)
    manifest = export_manifest.read(tmp_path)
    assert export_manifest.mismatch(manifest, best, config) is None
    smaller_batches = config_lib.from_dict({"decode": {"beam_size": 4, "batch_size": 8, "batch_tokens": 256}})
    assert export_manifest.mismatch(manifest, best, smaller_batches) is None  # the caller batches
    assert export_manifest.mismatch(manifest, last, config) == "it holds best/ckpt-900, the run translates with last/ckpt-1000"
    moved = tmp_path / "moved" / "checkpoints" / "best" / "ckpt-900"
    assert export_manifest.mismatch(manifest, moved, config) == f"it holds {best}, the run translates with {moved}"
    greedy = config_lib.from_dict({"decode": {"beam_size": 1, "length_penalty": 0.0}})
    assert export_manifest.mismatch(manifest, best, greedy) == (
        "its decode settings differ: beam_size 4 (now 1), length_penalty 0.6 (now 0.0)")
    export_manifest.write(tmp_path, best, config, constraints=True)
    assert "places constraints" in export_manifest.mismatch(export_manifest.read(tmp_path), best, config)
    export_manifest.write(tmp_path, best, config, export_format=export_manifest.CTRANSLATE2, quantization="int8")
    assert export_manifest.mismatch(export_manifest.read(tmp_path), best, config).startswith("it is a CTranslate2 model")


def test_manifests_of_other_versions_differ_by_the_settings_they_lack_or_add(tmp_path):
    config = config_lib.from_dict({})
    checkpoint = tmp_path / "ckpt-10"
    export_manifest.write(tmp_path, checkpoint, config, constraints=False)
    manifest = export_manifest.read(tmp_path)
    del manifest["constraints"]  # made before exports could place constraints: they place none
    assert export_manifest.mismatch(manifest, checkpoint, config) is None
    del manifest["decode"]["no_repeat_ngram_size"]
    assert export_manifest.mismatch(manifest, checkpoint, config) == "its decode settings differ: no_repeat_ngram_size unset (now 0)"
    manifest = export_manifest.read(tmp_path)
    manifest["decode"]["a_later_setting"] = 1
    assert export_manifest.mismatch(manifest, checkpoint, config) == "its decode settings differ: settings this version does not have"


def test_a_missing_or_unreadable_manifest_reads_as_none(tmp_path):
    assert export_manifest.read(tmp_path) is None
    for text in ("{not json", json.dumps(["a list"])):
        (tmp_path / export_manifest.FILE).write_text(text)
        assert export_manifest.read(tmp_path) is None
