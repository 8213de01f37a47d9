"""ARNQ adaptive random noise: pseudo-quantization noise sized by the target PTQ step.

During training forward passes each targeted tensor X becomes
`X + alpha(t) * gamma_l * Delta_X * eps` (docs/arms.md#arnq-noise), where
Delta_X is the step the target PTQ method's uniform quantizer would assign (its
`quant_scheme`: weights per output channel at the target bits and symmetry;
activations from the range its observer computes over the last `refresh` training
batches, or per token when it quantizes per token), eps is uniform on [-1/2, 1/2]
(or Gaussian of the same variance, or a QuantNoise-style Bernoulli mask of the real
rounding error, or that rounding error scaled by the schedule, "rounding"), alpha(t)
is the noise schedule and gamma_l the per-layer adaptivity. Evaluation (model.eval())
injects nothing.

The noise lives in the FakeQuantizer slots that `arnq.quant.prepare` inserts, so it
reaches exactly the points PTQ will quantize; the prepared model's state_dict keeps the
FP model's keys, so a fine-tuned checkpoint loads into a fresh FP model.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from arnq.arms.schedules import SCHEDULES, schedule_value
from arnq.quant import QuantConfig, prepare, quantizers
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range
from arnq.quant.observers import OBSERVERS
from arnq.quant.quantizer import _TOKEN_MASK, FakeQuantizer, valid_values

TARGETS = ("W", "A", "WA")
#: uniform / gaussian: random noise of one step; bernoulli: the real rounding error on a random
#: fraction p * alpha * gamma of the elements (QuantNoise); rounding: the real rounding error on
#: every element, scaled by min(alpha * gamma, 1) (a fake-quant forward faded in by the schedule).
DISTRIBUTIONS = ("uniform", "gaussian", "bernoulli", "rounding")
ADAPTIVITY = ("none", "outlier", "kurtosis", "sensitivity")
STAT_MOMENTUM = 0.9  # EMA of the per-layer statistics behind gamma


@dataclass(frozen=True)
class NoiseConfig:
    """Every ARNQ knob a sweep can vary.

    Defaults: the real rounding error on weights and Linear inputs (`dist="bernoulli"` at
    rate `bernoulli_p=1.0`, ramped in by the linear schedule over the first `warmup_frac`
    of the steps), the step from the target's quantizer (why this recipe: results/ARNQ.md).
    `dist="uniform"` is random noise of one step. Every knob: docs/arms.md#arnq-noise.
    """

    target: str = "WA"
    dist: str = "bernoulli"
    schedule: str = "linear"
    alpha_max: float = 1.0
    warmup_frac: float = 0.2
    n_steps: int = 4  # stages of the "step" schedule
    adapt: str = "none"
    eta: float = 1.0  # exponent of the adaptivity statistic
    gamma_k: float = 4.0  # sigma multiple in the outlier ratio max|A| / (k sigma) behind gamma
    refresh: int = 10  # steps between Delta/gamma updates
    delta_observer: str | None = None  # None: the target quantizer's activation observer
    bernoulli_p: float = 1.0  # mask rate at alpha = gamma = 1 for dist="bernoulli" (QuantNoise's rates: 0.05-0.2)
    modules: tuple[str, ...] = ()  # fnmatch patterns of module names to perturb; () = all body layers
    gamma_max: float = 4.0  # clip of the normalised gamma, so no layer gets runaway noise
    w_delta: str = "channel"  # weight Delta: "channel" (symmetric, as PTQ) or "tensor" (asymmetric min-max, DiffQ)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", tuple(self.modules))
        choices = {"target": TARGETS, "dist": DISTRIBUTIONS, "adapt": ADAPTIVITY, "schedule": tuple(SCHEDULES),
                   "w_delta": ("channel", "tensor")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(valid)}")
        if self.delta_observer is not None and self.delta_observer not in OBSERVERS:
            raise ValueError(f"delta_observer={self.delta_observer!r}: choose one of {', '.join(OBSERVERS)} or None")
        checks = {
            "alpha_max": self.alpha_max >= 0, "warmup_frac": 0 <= self.warmup_frac <= 1, "n_steps": self.n_steps >= 1,
            "eta": self.eta >= 0, "gamma_k": self.gamma_k > 0, "refresh": isinstance(self.refresh, int) and self.refresh >= 1,
            "bernoulli_p": 0 < self.bernoulli_p <= 1, "gamma_max": self.gamma_max >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range (see NoiseConfig docs)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def noise(self) -> NoiseConfig:
        """The noise knobs alone (a config that adds other knobs, e.g. the QuantTune loss's, drops them)."""
        return NoiseConfig(**{f.name: getattr(self, f.name) for f in fields(NoiseConfig)})

    def alpha(self, step: int, total: int) -> float:
        return schedule_value(
            self.schedule, step, total, alpha_max=self.alpha_max, warmup_frac=self.warmup_frac, n_steps=self.n_steps
        )


@dataclass
class _Stats:
    """Running (EMA) statistics of one noisy point, the inputs of gamma."""

    outlier_ratio: float = 1.0
    kurtosis: float = 3.0
    grad_sq: float | None = None
    seen: int = 0

    def update(self, values: torch.Tensor, k: float) -> None:
        v = values.detach().float().flatten()
        mu, sigma = v.mean(), v.std().clamp_min(1e-12)
        ratio = float((v - mu).abs().max() / (k * sigma))
        kurt = float(((v - mu) / sigma).pow(4).mean())
        m = STAT_MOMENTUM if self.seen else 0.0
        self.outlier_ratio = m * self.outlier_ratio + (1 - m) * ratio
        self.kurtosis = m * self.kurtosis + (1 - m) * kurt
        self.seen += 1

    def update_grad(self, grad: torch.Tensor) -> None:
        g2 = float(grad.detach().float().pow(2).mean())
        self.grad_sq = g2 if self.grad_sq is None else STAT_MOMENTUM * self.grad_sq + (1 - STAT_MOMENTUM) * g2


class NoisePoint(nn.Module):
    """The perturbation installed in one FakeQuantizer's `noise` slot."""

    def __init__(self, quantizer: FakeQuantizer, cfg: NoiseConfig, generator: torch.Generator | None):
        super().__init__()
        spec = quantizer.spec
        self.cfg = cfg
        self.point = quantizer.point
        self.is_weight = quantizer.point == "weight"
        self.bits = spec.bits
        self.per_channel = self.is_weight and cfg.w_delta == "channel"
        self.per_token = not self.is_weight and cfg.delta_observer is None and spec.granularity == "token"
        self.symmetric = spec.symmetric and self.per_channel if self.is_weight else spec.symmetric
        if self.is_weight:
            self.observer_name, self.observer_params = "minmax", {}
        elif cfg.delta_observer is not None:
            self.observer_name, self.observer_params = cfg.delta_observer, {}
        else:
            self.observer_name, self.observer_params = spec.observer, dict(spec.observer_params)
        self.alpha = 0.0
        self.gamma = 1.0
        self.stats = _Stats()
        self.generator = generator
        self.register_buffer("delta", None, persistent=False)
        self.register_buffer("zero_point", None, persistent=False)
        self._observer = None
        self._refresh_due = True

    def extra_repr(self) -> str:
        return f"point={self.point}, bits={self.bits}, alpha={self.alpha:.3g}, gamma={self.gamma:.3g}"

    def request_refresh(self, restart: bool = False) -> None:
        """Recompute Delta at the next forward from the batches seen since the last refresh
        (`restart`: from the next batch alone, as at the start of an epoch)."""
        self._refresh_due = True
        if restart:
            self._observer = None

    def _observe(self, values: torch.Tensor) -> None:
        if self._observer is None:
            axis = 0 if self.per_channel else None
            self._observer = OBSERVERS[self.observer_name](self.bits, self.symmetric, axis, **self.observer_params)
        self._observer.update(values)

    def _refresh_delta(self) -> None:
        scale, zero_point = self._observer.qparams()
        self.delta, self.zero_point = scale, zero_point
        self._observer = None
        self._refresh_due = False

    def step_size(self, x: torch.Tensor) -> torch.Tensor:
        """Delta broadcast against x: per output channel for weights, per token or a scalar for activations."""
        return self.qparams(x)[0]

    def qparams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Delta, zero point) broadcast against x."""
        if self.per_token:  # dynamic, as the target quantizer: from each token's own range
            lo, hi = x.detach().amin(dim=-1, keepdim=True), x.detach().amax(dim=-1, keepdim=True)
            delta, zp = calc_qparams(lo, hi, self.bits, self.symmetric)
            return delta.to(x.dtype), zp.to(x.dtype)
        delta, zp = self.delta.to(x.device, x.dtype), self.zero_point.to(x.device, x.dtype)
        if self.per_channel:
            shape = (-1, *([1] * (x.dim() - 1)))
            return delta.reshape(shape), zp.reshape(shape)
        return delta, zp

    def _eps(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.rand(x.shape, generator=self.generator, device=x.device, dtype=x.dtype) if self.generator is not None \
            else torch.rand_like(x)
        if self.cfg.dist == "gaussian":  # same variance as U(-1/2, 1/2): 1/12, via Box-Muller-free inverse CDF
            return torch.special.ndtri(u.clamp(1e-7, 1 - 1e-7)) * math.sqrt(1 / 12)
        return u - 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = x.detach() if self.is_weight else valid_values(x.detach(), _TOKEN_MASK.get())
        if self.stats.seen == 0 or self._refresh_due:
            self.stats.update(values, self.cfg.gamma_k)
        if not self.per_token:
            self._observe(values)
            if self._refresh_due or self.delta is None:
                self._refresh_delta()
        if self.cfg.adapt == "sensitivity" and x.requires_grad:
            x = x.view_as(x)
            x.register_hook(self._record_grad)
        strength = self.alpha * self.gamma
        if strength == 0:
            return x
        delta, zp = self.qparams(x)
        if self.cfg.dist == "rounding":  # straight-through: the gradient is the identity's
            return x + min(strength, 1.0) * self._rounding_error(x, delta, zp)
        if self.cfg.dist == "bernoulli":
            rate = min(1.0, self.cfg.bernoulli_p * strength)
            u = torch.rand(x.shape, generator=self.generator, device=x.device, dtype=x.dtype) \
                if self.generator is not None else torch.rand_like(x)
            return x + (u < rate).to(x.dtype) * self._rounding_error(x, delta, zp)
        return x + strength * delta * self._eps(x)

    def _rounding_error(self, x: torch.Tensor, delta: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
        """Q(x) - x at the current step and zero point (detached), clipping included."""
        qmin, qmax = quant_range(self.bits, self.symmetric)
        return (fake_quantize(x, delta, zp, qmin, qmax) - x).detach()

    def _record_grad(self, grad: torch.Tensor) -> None:
        self.stats.update_grad(grad)


def _gamma_statistic(stats: _Stats, adapt: str) -> float | None:
    if adapt == "outlier":
        return stats.outlier_ratio
    if adapt == "kurtosis":
        return stats.kurtosis
    if adapt == "sensitivity":
        return None if stats.grad_sq is None else 1.0 / math.sqrt(max(stats.grad_sq, 1e-30))
    return 1.0


@dataclass
class NoiseInjector:
    """Installs ARNQ noise in a model and drives alpha(t), Delta and gamma during training.

    `scheme` is the target's uniform quantizers (`PTQConfig.quant_scheme()`): the noise
    perturbs the points it quantizes, with its bits, symmetry, observer and granularity.
    """

    model: nn.Module
    cfg: NoiseConfig
    scheme: QuantConfig
    seed: int | None = None
    points: list[NoisePoint] = field(default_factory=list)
    generator: torch.Generator | None = field(default=None, init=False)  # seeded noise stream (checkpointed)

    def __post_init__(self) -> None:
        kinds = {"W": ("weight",), "A": ("linear_in",), "WA": ("weight", "linear_in")}[self.cfg.target]
        if self.cfg.target != "W" and not self.scheme.quantizes_activations:
            raise ValueError("ARNQ activation noise needs quantized activations: target 'W' for weight-only bits")
        if not any(isinstance(m, FakeQuantizer) for m in self.model.modules()):
            a_bits = self.scheme.a_bits if self.scheme.quantizes_activations else 8  # no activation point is kept
            prepare(self.model, replace(self.scheme, a_bits=a_bits, probs_bits=None, edge_bits=None, points=kinds,
                                        skip=()))
        if self.seed is not None:
            device = next(self.model.parameters()).device
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        for name, q in quantizers(self.model):
            owner = name.rsplit(".", 1)[0]
            if q.point not in kinds or (self.cfg.modules and not any(fnmatch.fnmatchcase(owner, p) for p in self.cfg.modules)):
                continue
            point = NoisePoint(q, self.cfg, self.generator)
            q.noise = point
            self.points.append(point)
        if not self.points:
            raise ValueError(f"ARNQ found no layer to perturb (target={self.cfg.target}, modules={self.cfg.modules})")

    def on_step(self, step: int, total: int) -> None:
        """Set alpha(step); every `refresh` steps refresh Delta and recompute gamma."""
        alpha = self.cfg.alpha(step, total)
        refresh = step % self.cfg.refresh == 0
        if refresh:
            self._update_gamma()
        for p in self.points:
            p.alpha = alpha
            if refresh:
                p.request_refresh()

    def _update_gamma(self) -> None:
        for is_weight in (True, False):
            group = [p for p in self.points if p.is_weight == is_weight]
            values = [_gamma_statistic(p.stats, self.cfg.adapt) for p in group]
            if not group or any(v is None for v in values):
                continue  # sensitivity before the first backward: keep gamma = 1
            raw = [max(v, 1e-12) ** self.cfg.eta for v in values]
            mean = sum(raw) / len(raw)
            for p, r in zip(group, raw, strict=True):
                p.gamma = min(r / mean, self.cfg.gamma_max)

    def remove(self) -> None:
        """Uninstall the noise (the quantizers stay, switched off)."""
        for _, q in quantizers(self.model):
            q.noise = None
        self.points.clear()

    def __iter__(self) -> Iterator[NoisePoint]:
        return iter(self.points)


def target_key(cfg: NoiseConfig, scheme: QuantConfig) -> dict[str, Any]:
    """The parts of the target's quantizers this noise depends on (what a fine-tune cache key needs)."""
    key: dict[str, Any] = {}
    if cfg.target in ("W", "WA"):
        key |= {"w_bits": scheme.w_bits}
        if cfg.w_delta == "channel":  # a per-tensor Delta is asymmetric min-max whatever the target
            key |= {"w_symmetric": scheme.w_symmetric}
    if cfg.target in ("A", "WA"):
        key |= {"a_bits": scheme.a_bits, "a_symmetric": scheme.a_symmetric}
        if cfg.delta_observer is None:
            key |= {"a_observer": scheme.a_observer, "a_observer_params": dict(scheme.a_observer_params),
                    "a_granularity": scheme.a_granularity}
    return key


def noise_variance(delta: float, alpha: float, gamma: float, dist: str = "uniform") -> float:
    """Expected variance of the injected noise: (alpha * gamma * Delta)^2 / 12 for uniform and gaussian."""
    if dist not in ("uniform", "gaussian"):
        raise ValueError("closed-form variance is defined for uniform and gaussian noise")
    return (alpha * gamma * delta) ** 2 / 12


__all__ = [
    "ADAPTIVITY", "DISTRIBUTIONS", "TARGETS", "NoiseConfig", "NoiseInjector", "NoisePoint", "target_key",
    "noise_variance",
]
