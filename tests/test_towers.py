"""towers.sparo_support: which OpenCLIP model configs SPARO can read, and why not."""

import open_clip

from open_clip_sparo.towers import sparo_support

OWN_TOWERS = ["ViT-B-32", "ViT-B-16-quickgelu", "ViT-L-14-CLIPA-336", "ViT-H-14-worldwide"]


def test_openclip_transformer_towers_are_supported() -> None:
    for name in OWN_TOWERS:
        assert sparo_support(open_clip.get_model_config(name)) is None, name


def test_resnet_and_coca_are_refused_with_their_reason() -> None:
    assert "ResNet" in sparo_support(open_clip.get_model_config("RN50"))
    assert "CoCa" in sparo_support(open_clip.get_model_config("coca_ViT-B-32"))
    vit = open_clip.get_model_config("ViT-B-32")
    pooled = {**vit, "vision_cfg": {**vit["vision_cfg"], "attentional_pool": True}}
    assert "attentional pooler" in sparo_support(pooled)
    with_cls = {**vit, "text_cfg": {**vit["text_cfg"], "embed_cls": True}}
    assert "class token" in sparo_support(with_cls)


def test_timm_and_hf_towers_are_refused_while_unsupported() -> None:
    """Refused by OpenCLIP's own-tower support; a timm / HF tower reader extends this."""
    assert "timm model" in sparo_support(open_clip.get_model_config("ViT-B-16-SigLIP"))
    assert "Hugging Face" in sparo_support(open_clip.get_model_config("xlm-roberta-base-ViT-B-32"))
