"""Process-global settings changed for a block only: RNG seeds, determinism flags, torch threads.

Library code uses these context managers so a call leaves the caller's process as it found
it; `set_seed` is for entry points (scripts, tests) that own the process.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch RNGs process-wide, for entry points (library code uses `seeded`).

    With `deterministic`, also ask torch for deterministic kernels.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


@contextlib.contextmanager
def seeded(seed: int | None = None, deterministic: bool = True) -> Iterator[None]:
    """Run the block as after `set_seed(seed, deterministic)` (None: unseeded), then restore the caller's RNG
    states and flags.

    Restored: python, numpy and torch CPU RNGs, CUDA RNGs (re-seeded as the caller's torch
    seed where CUDA started inside the block), deterministic-algorithm and cuDNN flags.
    """
    py_state, np_state, cpu_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cpu_seed = torch.initial_seed()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        if seed is not None:
            set_seed(seed, deterministic)
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        else:  # undo the (possibly lazy) CUDA seeding of torch.manual_seed: the caller's seed, as before
            torch.cuda.manual_seed_all(cpu_seed)
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


@contextlib.contextmanager
def thread_limit(num_threads: int | None) -> Iterator[None]:
    """Run the block with torch.set_num_threads(num_threads), restoring the old value; None = untouched."""
    if num_threads is None:
        yield
        return
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads={num_threads!r} is invalid; use an integer >= 1 or None")
    old = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)
