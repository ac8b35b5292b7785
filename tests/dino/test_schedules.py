import itertools
import math

import pytest

from open_clip_sparo.dino.schedules import cosine_schedule, teacher_temp_schedule


def test_cosine_schedule_warms_up_then_decays():
    values = cosine_schedule(1.0, 0.1, epochs=4, steps_per_epoch=5, warmup_epochs=1)
    assert len(values) == 20
    assert values[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert values[5] == pytest.approx(1.0)
    decay = values[5:]
    assert all(a > b for a, b in itertools.pairwise(decay))
    assert decay[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 14 / 15)))


def test_momentum_schedule_goes_from_0996_to_1():
    values = cosine_schedule(0.996, 1.0, epochs=10, steps_per_epoch=10)
    assert values[0] == 0.996
    assert all(a < b for a, b in itertools.pairwise(values))
    assert 0.9999 < values[-1] < 1


def test_teacher_temperature_warms_up_per_epoch():
    assert teacher_temp_schedule(0.04, 0.07, warmup_epochs=4, epochs=6) == pytest.approx(
        [0.04, 0.05, 0.06, 0.07, 0.07, 0.07]
    )
    assert teacher_temp_schedule(0.04, 0.04, warmup_epochs=0, epochs=2) == [0.04, 0.04]
