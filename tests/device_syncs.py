"""Counting the calls that copy a tensor's value to the host (a device sync on CUDA)."""

from __future__ import annotations

from typing import Any

from torch.overrides import TorchFunctionMode

# the tensor methods and functions that read a value on the host
HOST_READS = frozenset(
    {
        "item",
        "__bool__",
        "__float__",
        "__int__",
        "__index__",
        "tolist",
        "is_nonzero",
        "cpu",
        "numpy",
    }
)


class HostReads(TorchFunctionMode):
    """Inside the block, ``count`` is the number of host reads of any tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if getattr(func, "__name__", "") in HOST_READS:
            self.count += 1
        return func(*args, **(kwargs or {}))
