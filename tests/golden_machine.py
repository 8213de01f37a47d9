"""Which machine a golden reference was written on: bit-identity holds only where the float kernels are the same.

The same code and the same torch build give results that differ in the last bits on CPUs
whose kernels differ (vector width, MKL/oneDNN code paths), and methods that search or
optimise (AdaRound, AWQ, GPTQ, MREM, RepQ-ViT's scale search) amplify those bits. A
reference therefore records the fingerprint of the machine that wrote it: the golden tests
compare bit for bit on a machine with that fingerprint and within stated tolerances elsewhere.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path


def machine_fingerprint() -> str:
    """A short hash of the torch build, its CPU kernel level, the architecture and the CPU's model and flags."""
    import torch

    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        cpu = "|".join(sorted({line.split(":", 1)[1].strip() for line in lines if line.startswith(("model name", "flags"))}))
    parts = (torch.__version__, torch.backends.cpu.get_cpu_capability(), platform.machine(), cpu or platform.processor())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def same_machine(recorded: str | None) -> bool:
    """Whether this machine has the fingerprint a reference was recorded with."""
    return recorded is not None and recorded == machine_fingerprint()
