"""Who is reading: rank and world size, DataLoader worker. No torch import at module level."""

from __future__ import annotations

import operator
import os
import sys


def detect_rank_world() -> tuple[int, int]:
    """Rank and world size: `torch.distributed` when initialised, else `RANK` / `WORLD_SIZE`,
    else 0 / 1."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return rank, world


def check_rank_world(rank: int, world: int) -> tuple[int, int]:
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world}")
    return rank, world


U64_MAX = 2**64 - 1


def checked_int(name: str, value: object, lo: int = 0, hi: int = U64_MAX) -> int:
    """`value` as an int in [lo, hi], or ValueError naming `name` (no bools, floats, strings)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)  # ints and numpy ints, not 2.9 or "3"
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def worker_info() -> tuple[int, int]:
    """`(worker, num_workers)` of the calling DataLoader worker, `(0, 1)` outside one."""
    if "torch" not in sys.modules:
        return 0, 1
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def in_worker() -> bool:
    """Whether the caller runs in a DataLoader worker process."""
    if "torch" not in sys.modules:
        return False
    from torch.utils.data import get_worker_info

    return get_worker_info() is not None
