"""training.model_config: --model-kwargs merged into a registered model config."""

from __future__ import annotations

import re
from pathlib import Path

import open_clip
import pytest
from training_utils import MODEL, run_in_process

from training.model_config import deep_merge, merged_model_config

BASELINE = "ViT-Ti-8-64"


@pytest.mark.parametrize(
    ("model", "kwargs", "key", "allowed"),
    [
        (MODEL, {"sparo_cfg": {"num_slot": 8}}, "sparo_cfg.num_slot", "num_slots"),
        (MODEL, {"vision_cfg": {"widht": 64}}, "vision_cfg.widht", "width"),
        (MODEL, {"text_cfg": {"context_len": 16}}, "text_cfg.context_len", "context_length"),
        (MODEL, {"embed_dims": 256}, "embed_dims", "embed_dim"),
        ("ViT-Ti-8-64", {"quick_gleu": True}, "quick_gleu", "quick_gelu"),
    ],
    ids=["sparo_cfg", "vision_cfg", "text_cfg", "top-level", "plain-clip"],
)
def test_unknown_model_kwargs_fail_naming_the_key_and_the_allowed_keys(
    model: str, kwargs: dict, key: str, allowed: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(key))) as error:
        merged_model_config(model, kwargs).__enter__()
    assert f"'{allowed}'" in str(error.value)  # in the list of allowed keys


def test_deep_merge_merges_objects_and_replaces_the_rest() -> None:
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}
    merged = deep_merge(base, {"a": {"c": {"d": 3, "f": 4}}, "e": [2], "g": None})
    assert merged == {"a": {"b": 1, "c": {"d": 3, "f": 4}}, "e": [2], "g": None}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}


def test_merged_model_config_reaches_model_and_tokenizer_then_restores() -> None:
    overrides = {"sparo_cfg": {"num_slots": 8, "slot_dim": 32}, "text_cfg": {"context_length": 16}}
    with merged_model_config(MODEL, overrides):
        model = open_clip.create_model(MODEL, force_patch_dropout=0.25)
        tokenizer = open_clip.get_tokenizer(MODEL)
        assert open_clip.get_model_config(BASELINE)["text_cfg"]["context_length"] == 32
    assert model.num_slots == 8 and model.model_cfg["vision_cfg"]["patch_dropout"] == 0.25
    assert tokenizer(["a red square"]).shape == (1, 16)
    assert model.encode_text(tokenizer(["a red square"])).shape == (1, 256)
    assert open_clip.get_model_config(MODEL)["sparo_cfg"]["num_slots"] == 16
    with pytest.raises(ValueError, match="registered model name"):
        merged_model_config("local-dir:/some/run", overrides).__enter__()


def test_model_kwargs_block_must_be_an_object_and_cli_stops_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="vision_cfg must be a JSON object"):
        merged_model_config(MODEL, {"vision_cfg": 64}).__enter__()
    argv = ["--model", MODEL, "--logs", str(tmp_path), "--model-kwargs", '{"sparo_cfg": {"x": 1}}']
    assert run_in_process(argv) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("training.main: error: --model-kwargs: unknown key 'sparo_cfg.x'")
    assert "'num_slots'" in error
    assert not list(tmp_path.iterdir())  # stopped before any run folder
