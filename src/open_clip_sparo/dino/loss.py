"""DINO's loss: cross-entropy between a centred, sharpened teacher and the student over crops."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class DinoLoss(nn.Module):
    """Caron et al. (2021), equations (1) to (4).

    Student probabilities ``P_s(x) = softmax(g_s(x) / tau_s)`` (eq. 1); teacher probabilities are
    centred and sharpened, ``P_t(x) = softmax((g_t(x) - c) / tau_t)``. The loss (eq. 3) is

        sum over global crops x, sum over crops x' != x of  H(P_t(x), P_s(x')),   H(a, b) = -a log b

    averaged over the pairs and the batch. After each step the centre follows the batch mean of
    the teacher outputs over all processes (eq. 4): ``c <- m c + (1 - m) mean_i g_t(x_i)``.
    """

    center: torch.Tensor

    def __init__(
        self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9
    ) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(
        self,
        student_out: torch.Tensor,
        teacher_out: torch.Tensor,
        teacher_temp: float,
        num_crops: int,
    ) -> torch.Tensor:
        """Loss of one step, then a centre update.

        Args:
            student_out: ``(num_crops * B, K)``, crops stacked crop-major, global crops first.
            teacher_out: ``(num_global * B, K)`` for the global crops, in the same order.
            teacher_temp: ``tau_t`` for this step (DINO warms it up).
            num_crops: number of crops of each image seen by the student.
        """
        student = (student_out.float() / self.student_temp).log_softmax(dim=-1)
        student = student.chunk(num_crops)  # num_crops x (B, K)
        teacher = ((teacher_out.float() - self.center) / teacher_temp).softmax(dim=-1).detach()
        teacher = teacher.chunk(teacher_out.shape[0] // student[0].shape[0])  # num_global x (B, K)
        losses = [
            -(t * s).sum(dim=-1).mean()
            for i, t in enumerate(teacher)
            for j, s in enumerate(student)
            if i != j
        ]
        self.update_center(teacher_out)
        return torch.stack(losses).mean()

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """Equation (4), with the batch mean taken over every process."""
        total = teacher_out.float().sum(dim=0, keepdim=True)  # (1, K)
        count = torch.tensor(float(teacher_out.shape[0]), device=total.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(total / count, alpha=1 - self.center_momentum)
