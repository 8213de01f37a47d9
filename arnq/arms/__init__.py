"""Fine-tuning arms: plain, ARNQ noise, QuantTune outlier loss, both, and the KURE / DiffQ ablations.

Each arm is a frozen config (every field a sweep can vary) plus a handler that installs
itself on a model for the duration of fine-tuning and hands the training loop its
hooks (`loss_fn`, `step_callback`). `uses_target` says whether the arm's fine-tune
depends on the target PTQ bits and calibrator (ARNQ sizes its noise from them), which
decides what a sweep can share between cells.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from arnq.arms.noise import NoiseConfig, NoiseInjector
from arnq.arms.outlier import OutlierLossConfig, kure_loss, outlier_loss
from arnq.arms.schedules import SCHEDULES, describe_schedules
from arnq.arms.sites import capture, find_sites
from arnq.batch import token_mask
from arnq.registry import Registry, config_from_dict


@dataclass(frozen=True)
class Target:
    """The PTQ configuration a fine-tune prepares the model for."""

    w_bits: int = 8
    a_bits: int = 8
    ptq: str = "minmax"


@dataclass(frozen=True)
class PlainConfig:
    """Task loss only: the baseline every arm is compared with."""

    def to_dict(self) -> dict[str, Any]:
        return {}


ARNQConfig = NoiseConfig


@dataclass(frozen=True)
class QuantTuneConfig(OutlierLossConfig):
    """QuantTune's outlier-driven loss (METHODS.md arm 3)."""


@dataclass(frozen=True)
class ARNQQuantTuneConfig(NoiseConfig, OutlierLossConfig):
    """ARNQ noise and the QuantTune loss at once (noise knobs as in `arnq`, loss knobs as in `quanttune`)."""

    def __post_init__(self) -> None:
        NoiseConfig.__post_init__(self)
        OutlierLossConfig.__post_init__(self)

    def noise(self) -> NoiseConfig:
        return NoiseConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(NoiseConfig)})

    def outlier(self) -> OutlierLossConfig:
        return OutlierLossConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(OutlierLossConfig)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class KUREConfig:
    """KURE ablation: lam * mean_l (Kurt(W_l) - target)^2 over the body Linear weights."""

    lam: float = 0.1
    target: float = 1.8

    def __post_init__(self) -> None:
        if not self.lam >= 0:
            raise ValueError(f"lam={self.lam!r}: use a weight >= 0")
        if not self.target > 0:
            raise ValueError(f"target={self.target!r}: the target kurtosis must be > 0 (uniform: 1.8)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DiffQConfig:
    """DiffQ-style ablation: uniform noise one min-max bin wide on weights, at the target weight bits."""

    alpha_max: float = 1.0

    def __post_init__(self) -> None:
        if not self.alpha_max >= 0:
            raise ValueError(f"alpha_max={self.alpha_max!r}: use a value >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ArmRuntime:
    """An arm installed on a model: hooks for the training loop, and `close()` to uninstall."""

    def __init__(self) -> None:
        self.injector: NoiseInjector | None = None
        self.losses: list[Any] = []  # callables (model, inputs) -> (loss, stats)
        self._stack = contextlib.ExitStack()
        self.last_stats: dict[str, Any] = {}

    def step_callback(self, step: int, total: int) -> None:
        if self.injector is not None:
            self.injector.on_step(step, total)

    def on_epoch_start(self, epoch: int) -> None:
        """Start each epoch with fresh noise steps, so a resumed run matches an uninterrupted one."""
        if self.injector is not None:
            for point in self.injector:
                point.request_refresh(restart=True)

    def loss_fn(self, model: nn.Module, inputs: Any, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        for term in self.losses:
            loss, stats = term(model, inputs)
            total = total + loss
            self.last_stats.update(stats)
        return total

    @property
    def has_loss(self) -> bool:
        return bool(self.losses)

    def state_dict(self) -> dict[str, Any]:
        if self.injector is None:
            return {}
        return {"noise_stats": [dataclasses.asdict(p.stats) for p in self.injector],
                "gammas": [p.gamma for p in self.injector]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.injector is None or not state:
            return
        for point, stats, gamma in zip(self.injector, state["noise_stats"], state["gammas"], strict=True):
            point.stats = type(point.stats)(**stats)
            point.gamma = gamma

    def close(self) -> None:
        self._stack.close()
        if self.injector is not None:
            self.injector.remove()


class Arm:
    """Handler base: turns a config into an installed ArmRuntime."""

    name: ClassVar[str]
    config_cls: ClassVar[type]
    description: ClassVar[str] = ""
    uses_target: ClassVar[bool] = False

    def config(self, params: Mapping[str, Any] | None = None) -> Any:
        return config_from_dict(self.config_cls, dict(params or {}))

    def install(self, model: nn.Module, cfg: Any, target: Target, seed: int | None = None) -> ArmRuntime:
        return ArmRuntime()

    def target_fields(self, cfg: Any) -> tuple[str, ...]:
        """The Target fields this arm's fine-tune depends on (part of its cache key): a fine-tune
        that does not depend on the calibrator or the activation bits is shared across them."""
        return ("w_bits", "a_bits", "ptq") if self.uses_target else ()

    def describe(self) -> dict[str, Any]:
        fields = ", ".join(f.name for f in dataclasses.fields(self.config_cls))
        return {"name": self.name, "uses_target": self.uses_target, "params": fields, "description": self.description}


def _noise_fields(cfg: NoiseConfig) -> tuple[str, ...]:
    bits = {"W": ("w_bits",), "A": ("a_bits",), "WA": ("w_bits", "a_bits")}[cfg.target]
    observer_matters = cfg.target != "W" and cfg.delta_observer is None  # activation steps from the calibrator
    return bits + (("ptq",) if observer_matters else ())


def _add_noise(runtime: ArmRuntime, model: nn.Module, cfg: NoiseConfig, target: Target, seed: int | None) -> None:
    runtime.injector = NoiseInjector(model, cfg, target.w_bits, target.a_bits, calibrator=target.ptq, seed=seed)


def _add_outlier_loss(runtime: ArmRuntime, model: nn.Module, cfg: OutlierLossConfig) -> None:
    sites = find_sites(model, cfg.sites)
    acts = runtime._stack.enter_context(capture(model, sites))

    def term(_model: nn.Module, inputs: Any) -> tuple[torch.Tensor, dict]:
        loss, stats = outlier_loss(acts, cfg, token_mask(inputs))
        acts.clear()
        return loss, {"outlier": stats}

    runtime.losses.append(term)


ARMS: Registry[Arm] = Registry("fine-tuning arm")


def register_arm(cls: type[Arm]) -> type[Arm]:
    ARMS.register(cls.name, cls())
    return cls


@register_arm
class Plain(Arm):
    name = "plain"
    config_cls = PlainConfig
    description = "task loss only (the baseline)"


@register_arm
class ARNQ(Arm):
    name = "arnq"
    config_cls = ARNQConfig
    description = "adaptive random noise sized by the target PTQ step"
    uses_target = True

    def install(self, model: nn.Module, cfg: NoiseConfig, target: Target, seed: int | None = None) -> ArmRuntime:
        runtime = ArmRuntime()
        _add_noise(runtime, model, cfg, target, seed)
        return runtime

    def target_fields(self, cfg: NoiseConfig) -> tuple[str, ...]:
        return _noise_fields(cfg)


@register_arm
class QuantTune(Arm):
    name = "quanttune"
    config_cls = QuantTuneConfig
    description = "outlier-driven loss on post-LN, fc2-input and residual activations"

    def install(self, model: nn.Module, cfg: QuantTuneConfig, target: Target, seed: int | None = None) -> ArmRuntime:
        runtime = ArmRuntime()
        _add_outlier_loss(runtime, model, cfg)
        return runtime


@register_arm
class ARNQQuantTune(Arm):
    name = "arnq_quanttune"
    config_cls = ARNQQuantTuneConfig
    description = "ARNQ noise plus the QuantTune loss"
    uses_target = True

    def install(self, model: nn.Module, cfg: ARNQQuantTuneConfig, target: Target, seed: int | None = None) -> ArmRuntime:
        runtime = ArmRuntime()
        _add_noise(runtime, model, cfg.noise(), target, seed)
        _add_outlier_loss(runtime, model, cfg.outlier())
        return runtime

    def target_fields(self, cfg: ARNQQuantTuneConfig) -> tuple[str, ...]:
        return _noise_fields(cfg.noise())


@register_arm
class KURE(Arm):
    name = "kure"
    config_cls = KUREConfig
    description = "ablation: weight-kurtosis regulariser toward a uniform distribution"

    def install(self, model: nn.Module, cfg: KUREConfig, target: Target, seed: int | None = None) -> ArmRuntime:
        from arnq.quant.api import detect_family, edge_patterns, name_matches

        edges = edge_patterns(model, detect_family(model))
        weights = [m.weight for n, m in model.named_modules() if isinstance(m, nn.Linear) and not name_matches(n, edges)]
        runtime = ArmRuntime()

        def term(_model: nn.Module, _inputs: Any) -> tuple[torch.Tensor, dict]:
            loss = kure_loss(weights, cfg.target) / len(weights)
            return cfg.lam * loss, {"kure": float(loss.detach())}

        runtime.losses.append(term)
        return runtime


@register_arm
class DiffQ(Arm):
    name = "diffq"
    config_cls = DiffQConfig
    description = "ablation: DiffQ-style uniform weight noise of one min-max bin, no adaptivity"
    uses_target = True

    def install(self, model: nn.Module, cfg: DiffQConfig, target: Target, seed: int | None = None) -> ArmRuntime:
        noise = NoiseConfig(target="W", dist="uniform", schedule="constant", alpha_max=cfg.alpha_max, adapt="none",
                            refresh=1, w_delta="tensor")
        runtime = ArmRuntime()
        _add_noise(runtime, model, noise, target, seed)
        return runtime

    def target_fields(self, cfg: DiffQConfig) -> tuple[str, ...]:
        return ("w_bits",)  # weight noise of one min-max bin: the calibrator plays no part


@dataclass(frozen=True)
class DivergeConfig:
    """Fault injection for the reliability tests: the loss turns NaN from `at_step` on."""

    at_step: int = 2

    def to_dict(self) -> dict[str, Any]:
        return {"at_step": self.at_step}


if os.environ.get("ARNQ_TEST_ARMS") == "1":  # never registered for users

    @register_arm
    class Diverge(Arm):
        name = "diverge"
        config_cls = DivergeConfig
        description = "test only: a fine-tune whose loss becomes NaN"

        def install(self, model: nn.Module, cfg: DivergeConfig, target: Target, seed: int | None = None) -> ArmRuntime:
            runtime = ArmRuntime()
            calls = [0]

            def term(_model: nn.Module, _inputs: Any) -> tuple[torch.Tensor, dict]:
                calls[0] += 1
                return torch.tensor(float("nan") if calls[0] > cfg.at_step else 0.0), {}

            runtime.losses.append(term)
            return runtime


__all__ = [
    "ARMS", "SCHEDULES", "ARNQConfig", "ARNQQuantTuneConfig", "Arm", "ArmRuntime", "DiffQConfig", "KUREConfig",
    "NoiseConfig", "OutlierLossConfig", "PlainConfig", "QuantTuneConfig", "Target", "describe_schedules", "register_arm",
]
