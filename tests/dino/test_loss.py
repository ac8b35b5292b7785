import math

import pytest
import torch

from open_clip_sparo.dino import DinoLoss


def _reference(student, teacher, center, tau_s, tau_t, num_crops, batch):
    """Equation (3) written out sample by sample."""
    total, pairs = 0.0, 0
    for g in range(2):
        for v in range(num_crops):
            if v == g:
                continue
            for b in range(batch):
                t = torch.softmax((teacher[g * batch + b] - center[0]) / tau_t, dim=0)
                s = torch.log_softmax(student[v * batch + b] / tau_s, dim=0)
                total += -(t * s).sum().item()
            pairs += 1
    return total / (pairs * batch)


def test_loss_matches_equation_3():
    torch.manual_seed(0)
    num_crops, batch, k = 4, 3, 7
    student, teacher = torch.randn(num_crops * batch, k), torch.randn(2 * batch, k)
    loss_fn = DinoLoss(k, student_temp=0.1)
    loss_fn.center.copy_(torch.randn(1, k))
    center = loss_fn.center.clone()
    loss = loss_fn(student, teacher, teacher_temp=0.04, num_crops=num_crops)
    expected = _reference(student, teacher, center, 0.1, 0.04, num_crops, batch)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_center_follows_equation_4():
    k = 5
    loss_fn = DinoLoss(k, center_momentum=0.9)
    teacher = torch.randn(6, k)
    loss_fn(torch.randn(12, k), teacher, teacher_temp=0.04, num_crops=4)
    torch.testing.assert_close(loss_fn.center, 0.1 * teacher.mean(0, keepdim=True))


def test_gradient_reaches_only_the_student():
    student = torch.randn(8, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    DinoLoss(5)(student, teacher, teacher_temp=0.04, num_crops=4).backward()
    assert student.grad is not None and teacher.grad is None


def test_uniform_teacher_gives_log_k():
    k = 16
    loss = DinoLoss(k)(torch.zeros(8, k), torch.zeros(4, k), teacher_temp=0.04, num_crops=4)
    assert loss.item() == pytest.approx(math.log(k))
