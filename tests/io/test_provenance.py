import hashlib
import sys

import open_clip

from open_clip_sparo.io.provenance import SHA256_PREFIX, describe, provenance


def test_record_names_files_by_size_and_hash(tmp_path, monkeypatch):
    weights = tmp_path / "epoch_1.pt"
    weights.write_bytes(b"x" * 3_000_000)  # more than one read chunk
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/sparo", "eval", "--model", "a b"])
    record = provenance("sparo-ViT-Ti-8-64", [weights], {"num_slots": 16})
    assert record["checkpoint"] == [
        {
            "path": str(weights.resolve()),
            "size": 3_000_000,
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()[:SHA256_PREFIX],
        }
    ]
    assert record["model"] == "sparo-ViT-Ti-8-64"
    assert record["sparo_cfg"] == {"num_slots": 16}
    assert record["versions"]["open_clip"] == open_clip.__version__
    assert record["versions"]["open_clip_sparo"]
    assert record["command"] == "sparo eval --model 'a b'"
    line = describe(record)
    assert str(weights.resolve()) in line and record["checkpoint"][0]["sha256"] in line


def test_a_pretrained_tag_has_no_files():
    record = provenance("ViT-B-32", [], None, pretrained_tag="openai")
    assert record["checkpoint"] == [] and record["sparo_cfg"] is None
    assert "'openai'" in describe(record)
