import copy

import torch

from open_clip_sparo.dino import (
    DinoHead,
    DinoModel,
    build_backbone,
    get_backbone_cfg,
    update_teacher,
)


def test_multi_crop_forward_matches_crop_by_crop():
    torch.manual_seed(0)
    backbone = build_backbone(get_backbone_cfg("sparo-ViT-Ti-8-64"))
    model = DinoModel(backbone, DinoHead(backbone.output_dim, 32, 32, 16)).eval()
    crops = [torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64), torch.randn(2, 3, 24, 24)]
    with torch.no_grad():
        out = model(crops)
        one_by_one = torch.cat([model.head(backbone(c)) for c in crops])
    assert out.shape == (6, 32)
    torch.testing.assert_close(out, one_by_one, atol=1e-5, rtol=1e-5)


def test_teacher_update_is_an_exponential_moving_average():
    student = torch.nn.Linear(4, 3)
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in teacher.parameters()]
    update_teacher(teacher, student, momentum=0.9)
    for t, t0, s in zip(teacher.parameters(), before, student.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s)
    after_one = [p.clone() for p in teacher.parameters()]
    update_teacher(teacher, student, momentum=1.0)  # momentum 1: the teacher stays as it is
    for t, t1, s in zip(teacher.parameters(), after_one, student.parameters(), strict=True):
        torch.testing.assert_close(t, t1)
        assert not torch.equal(t, s)
