"""A fault-injection arm for the reliability tests, loaded as a space plugin (`plugins: [tests.harness.fault_arms]`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arnq.arms import Arm, ArmConfig, ArmRuntime, register_arm
from arnq.ptq import PTQConfig


@dataclass(frozen=True)
class DivergeConfig(ArmConfig):
    """The loss turns NaN from `at_step` on."""

    at_step: int = 2


@register_arm
class Diverge(Arm):
    name = "diverge"
    config_cls = DivergeConfig
    description = "test only: a fine-tune whose loss becomes NaN"

    def install(self, model: nn.Module, cfg: DivergeConfig, target: PTQConfig, seed: int | None = None) -> ArmRuntime:
        runtime = ArmRuntime()
        calls = [0]

        def term(_model: nn.Module, _inputs: Any) -> tuple[torch.Tensor, dict]:
            calls[0] += 1
            return torch.tensor(float("nan") if calls[0] > cfg.at_step else 0.0), {}

        runtime.losses.append(term)
        return runtime
