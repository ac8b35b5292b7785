"""torch.jit.script of SPARO models: OpenCLIP's ``jit=True`` and ``--torchscript`` get a
ScriptModule whose outputs and gradients equal the eager model's."""

from __future__ import annotations

import logging
from pathlib import Path

import open_clip
import pytest
import torch
from data_utils import write_caption_shards
from open_clip.loss import ClipLoss
from training_utils import MODEL, checkpoint_state, epoch_losses, run_in_process, train_args

from open_clip_sparo import SparoCLIP, select_slots
from open_clip_sparo.dino import build_backbone, get_backbone_cfg
from open_clip_sparo.io.loading import load_model

TINY = "sparo-ViT-Ti-8-64"
# sparo_cfg overrides of the tiny model (16 slots of 16 dims, as its embed_dim wants)
VARIANTS = {
    "default": {},
    "sem": {"slot_repr": "sem"},
    "sqrtsem": {"slot_repr": "sqrtsem"},
    "norm": {"slot_weight": "norm"},
    "softmax": {"slot_weight": "softmax"},
    "sqrtsoftmax": {"slot_weight": "sqrtsoftmax"},
    "values": {"share_kv": False, "value_dim": 8},
    "shared-queries": {"share_queries": True},
    "4-heads": {"num_heads": 4},
    "mixed": {
        "num_heads": 2,
        "share_kv": False,
        "share_queries": True,
        "slot_repr": "sqrtsem",
        "slot_weight": "sqrtsoftmax",
    },
}


def tiny(sparo_cfg: dict | None = None, seed: int = 0, **kwargs) -> SparoCLIP:
    torch.manual_seed(seed)
    cfg = {"num_slots": 16, "slot_dim": 16, **(sparo_cfg or {})}
    return open_clip.create_model(TINY, sparo_cfg=cfg, **kwargs)


def inputs(size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    captions = ["a red square", "two blue circles on the left", "a small green triangle"]
    images = torch.randn(size, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return images, open_clip.get_tokenizer(TINY)(captions[:size])


def assert_same_encodings(eager: torch.nn.Module, scripted: torch.nn.Module) -> None:
    """Every encoder output of ``scripted`` equals ``eager``'s exactly, on repeated calls (the
    profiling executor optimises the graph after its first runs)."""
    images, text = inputs()
    for _ in range(3):
        for name, x in (("encode_image", images), ("encode_text", text)):
            assert torch.equal(getattr(scripted, name)(x), getattr(eager, name)(x)), name
            assert torch.equal(
                getattr(scripted, name)(x, normalize=True), getattr(eager, name)(x, normalize=True)
            ), name
            expected, got = (
                getattr(eager, f"{name}_slots")(x),
                getattr(scripted, f"{name}_slots")(x),
            )
            assert torch.equal(got.slots, expected.slots) and torch.equal(got.attn, expected.attn)
        for got, expected in zip(scripted(images, text), eager(images, text), strict=True):
            assert torch.equal(got, expected)


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("sparo_cfg", VARIANTS.values(), ids=VARIANTS.keys())
def test_scripted_model_equals_eager(sparo_cfg: dict) -> None:
    model = tiny(sparo_cfg).eval()
    scripted = torch.jit.script(model)
    assert isinstance(scripted, torch.jit.ScriptModule)
    assert scripted.original_name == "SparoCLIP"
    assert_same_encodings(model, scripted)
    slots = scripted.encode_image_slots(inputs()[0])
    assert slots.slots.shape == (3, 16, 16) and slots.attn.shape == (3, 16, 65)  # a NamedTuple


@pytest.mark.parametrize("sparo_cfg", [VARIANTS["default"], VARIANTS["mixed"]], ids=str)
def test_scripted_model_gradients_equal_eager(sparo_cfg: dict) -> None:
    """The scripted model shares the eager model's parameters; ClipLoss gives both the same
    gradient for every one of them."""
    model = tiny(sparo_cfg, output_dict=True).train()
    scripted = torch.jit.script(model)
    images, text = inputs()
    gradients = []
    for module in (model, scripted):
        model.zero_grad(set_to_none=True)
        ClipLoss()(**module(images, text)).backward()
        gradients.append({name: p.grad for name, p in model.named_parameters()})
    eager, script = gradients
    assert all(grad is not None for grad in eager.values())
    for name, grad in eager.items():
        torch.testing.assert_close(script[name], grad, msg=name)


def test_select_slots_works_on_a_scripted_model() -> None:
    model = tiny().eval()
    scripted = torch.jit.script(model)
    images, text = inputs()
    chosen = [3, 5, 11]
    with select_slots(model, chosen), select_slots(scripted, chosen):
        assert scripted.visual.slot_embedding.selected == chosen
        assert_same_encodings(model, scripted)
        slots = scripted.encode_text_slots(text).slots
        unselected = [i for i in range(16) if i not in chosen]
        assert (slots[:, unselected] == 0).all() and (slots[:, chosen] != 0).all()
    assert scripted.visual.slot_embedding.selected is None
    assert scripted.text_slot_embedding.selected is None
    assert torch.equal(scripted.encode_image(images), model.encode_image(images))


def test_create_model_jit_scripts_without_falling_back(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        torch.manual_seed(0)
        scripted = open_clip.create_model(TINY, jit=True, output_dict=True).eval()
    assert isinstance(scripted, torch.jit.ScriptModule)
    assert "JIT scripting successful" in caplog.text and "JIT scripting failed" not in caplog.text
    torch.manual_seed(0)
    eager = open_clip.create_model(TINY, output_dict=True).eval()
    state = scripted.state_dict()  # TorchScript keeps the non-persistent causal mask in it
    assert torch.equal(state.pop("attn_mask"), eager.attn_mask)
    assert_same_state(eager.state_dict(), state)
    images, text = inputs()
    got, expected = scripted(images, text), eager(images, text)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[key], expected[key]) for key in expected)
    assert open_clip.get_model_preprocess_cfg(scripted)["size"] == (64, 64)


def test_eager_model_loads_a_scripted_models_state() -> None:
    """As from a ``--torchscript`` checkpoint: the causal mask in it is skipped."""
    scripted = torch.jit.script(tiny({"slot_weight": "softmax"}))
    eager = tiny({"slot_weight": "softmax"}, seed=1)
    eager.load_state_dict(scripted.state_dict())
    state = scripted.state_dict()
    del state["attn_mask"]
    assert_same_state(eager.state_dict(), state)


# the model families a --torchscript run can train: the baseline, SPARO and the three controls
FAMILIES = [
    "ViT-Ti-8-64",
    "sparo-ViT-Ti-8-64",
    "gap-ViT-Ti-8-64",
    "bottleneck-ViT-Ti-8-64",
    "codebook-ViT-Ti-8-64",
]


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_scripts_with_output_dict_and_its_scripted_checkpoint_loads(
    name: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    eager = open_clip.create_model(name, output_dict=True).eval()
    scripted = torch.jit.script(eager)
    images, text = inputs()
    expected, got = eager(images, text), scripted(images, text)
    assert isinstance(got, dict) and got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    for normalize in (False, True):
        assert torch.equal(
            scripted.encode_image(images, normalize), eager.encode_image(images, normalize)
        )
        assert torch.equal(
            scripted.encode_text(text, normalize), eager.encode_text(text, normalize)
        )

    state = scripted.state_dict()  # what a --torchscript run saves
    assert "attn_mask" in state and "attn_mask" not in eager.state_dict()
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": state}, path)
    loaded = load_model(name, str(path)).model  # sparo eval, select, export; before: "Unexpected
    assert_same_state(loaded.state_dict(), eager.state_dict())  # key(s) in state_dict: attn_mask"


@pytest.mark.parametrize("backbone", ["sparo-ViT-Ti-8-64", "ViT-Ti-8-64"])
def test_dino_backbones_script_and_equal_eager(backbone: str) -> None:
    """Both DINO backbones, on global (64 px) and local (32 px) crops."""
    torch.manual_seed(0)
    model = build_backbone(get_backbone_cfg(backbone)).eval()
    scripted = torch.jit.script(model)
    for size in (64, 32, 64):
        crops = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
        assert torch.equal(scripted(crops), model(crops))


@pytest.mark.slow
def test_training_main_trains_the_scripted_model(tmp_path: Path) -> None:
    """``--torchscript`` trains the ScriptModule (no eager fallback); its checkpoint loads into
    the eager model."""
    shards = write_caption_shards(tmp_path / "shards", num_shards=2)
    assert run_in_process([*train_args(shards, tmp_path, "jit"), "--torchscript"]) == 0
    log = (tmp_path / "jit" / "out.log").read_text()
    assert "JIT scripting failed" not in log
    assert "RecursiveScriptModule(\n  original_name=SparoCLIP\n" in log  # the model it trains
    losses = epoch_losses(tmp_path / "jit" / "out.log")
    assert len(losses[0]) == 4 and all(0 < loss < 10 for loss in losses[0])  # 32 samples / 8

    checkpoint = tmp_path / "jit" / "checkpoints" / "epoch_1.pt"
    trained = checkpoint_state(checkpoint)
    torch.manual_seed(0)  # open_clip_train's seed before it builds the model
    start = open_clip.create_model(MODEL).state_dict()
    # TorchScript saves the non-persistent causal mask too; the checkpoint reader drops it
    assert "attn_mask" not in trained
    assert trained.keys() == start.keys()
    changed = [k for k in start if not torch.equal(trained[k], start[k])]
    assert {"visual.sparo.queries", "text_sparo.key.weight", "logit_scale"} <= set(changed)
    assert_same_state(
        open_clip.create_model(MODEL, pretrained=str(checkpoint)).state_dict(), trained
    )


def test_training_main_refuses_slot_stats_on_a_scripted_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shards = write_caption_shards(tmp_path / "shards", num_shards=1, samples_per_shard=8)
    argv = [*train_args(shards, tmp_path, "stats"), "--torchscript", "--log-slot-stats", "1"]
    assert run_in_process(argv) == 1
    assert "--log-slot-stats hooks into the eager model's read-outs" in capsys.readouterr().err
    assert not list((tmp_path / "stats" / "checkpoints").glob("*.pt"))
