"""Fine-tuning arms: plain, ARNQ noise, QuantTune outlier loss, both, and the KURE / DiffQ ablations.

Each arm is a frozen config (every field a sweep can vary) plus a handler, found by the
config's type, that installs itself on a model for the duration of fine-tuning and hands
the training loop its hooks (`loss_fn`, `step_callback`). The target of a fine-tune is
the PTQ config it prepares the model for; `Arm.target_key` says which parts of it the
fine-tune depends on (ARNQ sizes its noise from the target's quantizers), which decides
what a sweep can share between cells. Definitions of every arm: docs/arms.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from arnq.arms.noise import CalibSource, NoiseConfig, NoiseInjector, resolved_weight_error, target_key
from arnq.arms.outlier import OutlierLossConfig, kure_loss, outlier_loss
from arnq.arms.schedules import SCHEDULES, describe_schedules
from arnq.arms.shadow import resolved_settings
from arnq.arms.sites import capture, find_sites
from arnq.batch import token_mask
from arnq.ptq import PTQConfig
from arnq.registry import HandlerRegistry


class ArmConfig:
    """Mixin of every arm's frozen config dataclass; `arm` is the registry name (set by `register_arm`)."""

    arm: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Every field, with the arm's name under 'arm' (`arm_config_from_dict` inverts it through JSON)."""
        return {"arm": self.arm, **dataclasses.asdict(self)}

    def params(self) -> dict[str, Any]:
        """Every field (the arm's knobs)."""
        return dataclasses.asdict(self)

    def reference(self) -> ArmConfig:
        """The config whose fields count as this one's defaults (`changed_params`): the arm's defaults."""
        return type(self)()

    def changed_params(self) -> dict[str, Any]:
        """The fields that differ from their defaults: how a row or a label names this variant."""
        default = self.reference()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


@dataclass(frozen=True)
class PlainConfig(ArmConfig):
    """Task loss only: the baseline every arm is compared with."""


class _NoiseDefaults:
    """Noise arms: the ramp's default depends on the kind of noise (`NoiseConfig.default_warmup_frac`),
    so a uniform-grid config at its own default ramp names its grid, not also the ramp."""

    def reference(self) -> ArmConfig:
        return type(self)(warmup_frac=self.default_warmup_frac)  # type: ignore[attr-defined, call-arg]


@dataclass(frozen=True)
class ARNQConfig(_NoiseDefaults, ArmConfig, NoiseConfig):
    """ARNQ's adaptive random noise (knobs in `NoiseConfig`; docs/arms.md#arnq-noise)."""


@dataclass(frozen=True)
class QuantTuneConfig(ArmConfig, OutlierLossConfig):
    """QuantTune's outlier-driven loss (docs/arms.md#quanttune-outlier-loss)."""


@dataclass(frozen=True)
class ARNQQuantTuneConfig(_NoiseDefaults, ArmConfig, NoiseConfig, OutlierLossConfig):
    """ARNQ noise and the QuantTune loss at once (noise knobs as in `arnq`, loss knobs as in `quanttune`)."""

    def __post_init__(self) -> None:
        NoiseConfig.__post_init__(self)
        OutlierLossConfig.__post_init__(self)

    def outlier(self) -> OutlierLossConfig:
        return OutlierLossConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(OutlierLossConfig)})


@dataclass(frozen=True)
class KUREConfig(ArmConfig):
    """KURE ablation: lam * mean_l (Kurt(W_l) - target)^2 over the body Linear weights."""

    lam: float = 0.1
    target: float = 1.8

    def __post_init__(self) -> None:
        if not self.lam >= 0:
            raise ValueError(f"lam={self.lam!r}: use a weight >= 0")
        if not self.target > 0:
            raise ValueError(f"target={self.target!r}: the target kurtosis must be > 0 (uniform: 1.8)")


@dataclass(frozen=True)
class DiffQConfig(ArmConfig):
    """DiffQ-style ablation: uniform noise one min-max bin wide on weights, at the target weight bits."""

    alpha_max: float = 1.0

    def __post_init__(self) -> None:
        if not self.alpha_max >= 0:
            raise ValueError(f"alpha_max={self.alpha_max!r}: use a value >= 0")

    def noise(self) -> NoiseConfig:
        """Uniform noise of one per-tensor min-max bin on weights, constant, no adaptivity."""
        return NoiseConfig(target="W", dist="uniform", schedule="constant", alpha_max=self.alpha_max, adapt="none",
                           refresh=1, w_delta="tensor", delta_observer="minmax")


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
            if self.injector.shadow is not None:
                self.last_stats["ptq_shadow"] = self.injector.shadow.stats()

    def on_epoch_start(self, epoch: int) -> None:
        """Start each epoch with fresh noise steps, so a resumed run matches an uninterrupted one."""
        if self.injector is not None:
            self.injector.on_epoch_start()

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
    config_cls: ClassVar[type[ArmConfig]]
    description: ClassVar[str] = ""
    uses_target: ClassVar[bool] = False  # whether the fine-tune depends on the target PTQ config at all

    def install(self, model: nn.Module, cfg: Any, target: PTQConfig, seed: int | None = None,
                calib: CalibSource | None = None) -> ArmRuntime:
        """Install the arm on `model` for a fine-tune toward `target`; `calib(n)` gives batches of n
        calibration examples (PTQ-aware noise runs the target method on them)."""
        return ArmRuntime()

    def target_key(self, cfg: Any, target: PTQConfig) -> dict[str, Any]:
        """The parts of the target this arm's fine-tune depends on (part of its cache key): a fine-tune
        that does not depend on the method or the activation bits is shared across them."""
        return {}

    def resolved_params(self, cfg: Any, target: PTQConfig) -> dict[str, Any]:
        """`cfg`'s settings, with those it leaves to the target PTQ method (None) as that method resolves them."""
        return cfg.to_dict()

    def describe(self) -> dict[str, Any]:
        fields = ", ".join(f.name for f in dataclasses.fields(self.config_cls))
        return {"name": self.name, "config": self.config_cls.__name__, "uses_target": self.uses_target,
                "params": fields, "description": self.description}


def _add_outlier_loss(runtime: ArmRuntime, model: nn.Module, cfg: OutlierLossConfig) -> None:
    sites = find_sites(model, cfg.sites)
    acts = runtime._stack.enter_context(capture(model, sites))

    def term(_model: nn.Module, inputs: Any) -> tuple[torch.Tensor, dict]:
        loss, stats = outlier_loss(acts, cfg, token_mask(inputs))
        acts.clear()
        return loss, {"outlier": stats}

    runtime.losses.append(term)


ARMS: HandlerRegistry[Arm] = HandlerRegistry("fine-tuning arm", name_field="arm")


def register_arm(cls: type[Arm]) -> type[Arm]:
    """Class decorator: register an arm under `cls.name`, its handler keyed by its config type."""
    return ARMS.register_handler(cls)


def arm_handler(cfg: ArmConfig) -> Arm:
    """The registered handler of an arm config's type."""
    return ARMS.handler(cfg)


def arm_config(name: str, **params: Any) -> ArmConfig:
    """The config of a registered arm from its name and knobs; unknown keys raise with the valid ones."""
    return ARMS.config(name, **params)


def arm_config_from_dict(data: Mapping[str, Any]) -> ArmConfig:
    """Inverse of `ArmConfig.to_dict`: the config of the arm named by data['arm'].

    A noise arm recorded before `ptq_settings` existed (no such key beside `ptq_refresh`) ran the
    in-training settings, the only ones then, and is read back with `ptq_settings="in_training"`; one
    recorded before `weight_error` existed re-quantized its weights every step, and is read back with
    `weight_error="requantized"`.
    """
    data = dict(data)
    if "ptq_refresh" in data and "ptq_settings" not in data:
        data["ptq_settings"] = "in_training"
    if "ptq_refresh" in data and "weight_error" not in data:
        data["weight_error"] = "requantized"
    return ARMS.config_from_dict(data)


@register_arm
class Plain(Arm):
    name = "plain"
    config_cls = PlainConfig
    description = "task loss only (the baseline)"


@register_arm
class ARNQ(Arm):
    """Noise arms: the config's `noise()` says what is injected, sized by the target's quantizers."""

    name = "arnq"
    config_cls = ARNQConfig
    description = "adaptive random noise sized by the target PTQ method's quantizers"
    uses_target = True

    def install(self, model: nn.Module, cfg: Any, target: PTQConfig, seed: int | None = None,
                calib: CalibSource | None = None) -> ArmRuntime:
        runtime = ArmRuntime()
        runtime.injector = NoiseInjector(model, cfg.noise(), target, seed=seed, calib=calib)
        return runtime

    def target_key(self, cfg: Any, target: PTQConfig) -> dict[str, Any]:
        return target_key(cfg.noise(), target)

    def resolved_params(self, cfg: Any, target: PTQConfig) -> dict[str, Any]:
        """PTQ-aware noise: `ptq_settings` and `weight_error` as the target's handler resolves an unset one."""
        params, noise = cfg.to_dict(), cfg.noise()
        if noise.ptq_aware:
            params |= {"ptq_settings": resolved_settings(target, noise.ptq_settings),
                       "weight_error": resolved_weight_error(noise, target)}
        return params


@register_arm
class QuantTune(Arm):
    name = "quanttune"
    config_cls = QuantTuneConfig
    description = "outlier-driven loss on post-LN, fc2-input and residual activations"

    def install(self, model: nn.Module, cfg: QuantTuneConfig, target: PTQConfig, seed: int | None = None,
                calib: CalibSource | None = None) -> ArmRuntime:
        runtime = ArmRuntime()
        _add_outlier_loss(runtime, model, cfg)
        return runtime


@register_arm
class ARNQQuantTune(ARNQ):
    name = "arnq_quanttune"
    config_cls = ARNQQuantTuneConfig
    description = "ARNQ noise plus the QuantTune loss"

    def install(self, model: nn.Module, cfg: ARNQQuantTuneConfig, target: PTQConfig,
                seed: int | None = None, calib: CalibSource | None = None) -> ArmRuntime:
        runtime = super().install(model, cfg, target, seed, calib)
        _add_outlier_loss(runtime, model, cfg.outlier())
        return runtime


@register_arm
class KURE(Arm):
    name = "kure"
    config_cls = KUREConfig
    description = "ablation: weight-kurtosis regulariser toward a uniform distribution"

    def install(self, model: nn.Module, cfg: KUREConfig, target: PTQConfig, seed: int | None = None,
                calib: CalibSource | None = None) -> ArmRuntime:
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
class DiffQ(ARNQ):
    name = "diffq"
    config_cls = DiffQConfig
    description = "ablation: DiffQ-style uniform weight noise of one min-max bin, no adaptivity"



__all__ = [
    "ARMS", "SCHEDULES", "ARNQConfig", "ARNQQuantTuneConfig", "Arm", "ArmConfig", "ArmRuntime", "DiffQConfig",
    "KUREConfig", "NoiseConfig", "OutlierLossConfig", "PlainConfig", "QuantTuneConfig", "arm_config",
    "arm_config_from_dict", "arm_handler", "describe_schedules", "register_arm",
]
