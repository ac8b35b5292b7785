import math

import pytest
import torch
import torch.distributed as dist
from device_syncs import HostReads
from hypothesis import given, settings
from hypothesis import strategies as st

from open_clip_sparo.util.errors import NonFiniteLossError
from open_clip_sparo.util.loss_watch import NonFiniteLossWatch

CAUSES = ("a cause (--flag)",)


def test_watching_steps_never_reads_the_loss_on_the_host():
    watch = NonFiniteLossWatch(steps_per_epoch=4, rank=0, causes=CAUSES)
    with HostReads() as reads:
        for step in range(10):
            watch.watch(torch.tensor(float("nan") if step == 6 else 1.0, requires_grad=True), step)
        assert reads.count == 0
        with pytest.raises(NonFiniteLossError):
            watch.check(9, lambda: "the last good checkpoint is k.pt")
        assert reads.count >= 1


def test_the_error_names_the_first_bad_step_the_check_the_checkpoint_and_the_causes():
    watch = NonFiniteLossWatch(steps_per_epoch=4, rank=3, causes=CAUSES)
    for step, loss in enumerate([1.0, 2.0, float("inf"), float("nan"), 1.0]):
        watch.watch(torch.tensor(loss), step)
    with pytest.raises(NonFiniteLossError) as error:
        watch.check(4, lambda: "the last good checkpoint is k.pt")
    assert str(error.value) == (
        "the training loss is inf at step 2 (epoch 0, batch 3 of 4) on rank 3 (found at the "
        "check of step 4); training stopped before saving anything of this epoch (the last "
        "good checkpoint is k.pt). Likely causes: a cause (--flag)."
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0.5, -2.0, 1e30, math.inf, -math.inf, math.nan]), max_size=12))
def test_check_raises_exactly_when_a_loss_was_not_finite_naming_the_first(losses):
    watch = NonFiniteLossWatch(steps_per_epoch=5, rank=0, causes=CAUSES)
    watch.check(0, lambda: "kept")  # nothing watched yet
    for step, loss in enumerate(losses):
        watch.watch(torch.tensor(loss, dtype=torch.bfloat16), step)
    bad = [step for step, loss in enumerate(losses) if not math.isfinite(loss)]
    if not bad:
        watch.check(len(losses), lambda: "kept")
        return
    with pytest.raises(NonFiniteLossError, match=rf"^the training loss is \S+ at step {bad[0]} "):
        watch.check(len(losses), lambda: "kept")


def test_processes_agree_on_the_first_bad_step(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        watch = NonFiniteLossWatch(steps_per_epoch=10, rank=0, causes=CAUSES)
        watch.watch(torch.tensor(1.0), 0)
        watch.check(0, lambda: "kept", distributed=True)
        watch.watch(torch.tensor(float("nan")), 1)
        with pytest.raises(NonFiniteLossError, match=r"at step 1 .* on rank 0 "):
            watch.check(1, lambda: "kept", distributed=True)
    finally:
        dist.destroy_process_group()
