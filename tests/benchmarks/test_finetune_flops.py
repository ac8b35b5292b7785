"""benchmarks.finetune_flops: stage 1 of the recipe costs less per sample than a full step."""

import open_clip
import torch

from benchmarks.finetune_flops import main, step_flops

TINY = "sparo-ViT-Ti-8-64"


def test_locked_towers_cost_no_backward(capsys) -> None:
    torch.manual_seed(0)
    model = open_clip.create_model(TINY)
    full = step_flops(model, TINY, 2)
    model.lock_image_tower(unlocked_groups=1)
    model.lock_text_tower(unlocked_layers=1)
    stage_1 = step_flops(model, TINY, 2)
    assert stage_1 < full / 2  # a backward costs about twice its forward
    assert main(["--models", TINY, "--batch", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == TINY
