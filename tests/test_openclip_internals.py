import open_clip
import pytest
from open_clip.transformer import VisionTransformer

from open_clip_sparo import openclip_internals
from open_clip_sparo.openclip_internals import missing_names, supported_range


def test_the_installed_release_has_every_name():
    assert missing_names() == []
    openclip_internals.check()


def test_the_supported_range_is_the_declared_one():
    declared = supported_range()
    assert declared.startswith("open_clip_torch")
    assert any(op in declared for op in ("==", ">=", "<"))


@pytest.mark.parametrize(
    ("owner", "name", "named"),
    [
        (VisionTransformer, "_pool", "open_clip.transformer.VisionTransformer._pool"),
        (open_clip.factory, "_MODEL_CONFIG_PATHS", "open_clip.factory._MODEL_CONFIG_PATHS"),
        (open_clip.model, "_build_vision_tower", "open_clip.model._build_vision_tower"),
        (open_clip.factory, "CoCa", "open_clip.factory.CoCa"),
    ],
)
def test_a_missing_name_fails_with_the_range(monkeypatch, owner, name, named):
    monkeypatch.delattr(owner, name)
    with pytest.raises(ImportError) as raised:
        openclip_internals.check()
    message = str(raised.value)
    assert named in message and supported_range() in message
    assert open_clip.__version__ in message


def test_a_factory_that_no_longer_looks_the_classes_up_is_reported(monkeypatch):
    def create_model(name: str) -> str:  # builds without looking the model classes up
        return name

    monkeypatch.setattr(open_clip.factory, "create_model", create_model)
    with pytest.raises(ImportError, match="create_model's lookup of CLIP"):
        openclip_internals.check()
