"""ARNQ adaptive random noise: pseudo-quantization noise from the target PTQ method.

Two ways to size the noise (docs/arms.md#arnq-noise):

- PTQ-aware (`delta_observer=None`, the default): every `ptq_refresh` steps and at every
  epoch start the target's whole PTQ method runs on a copy of the current weights
  (`arnq.arms.shadow`), and each point it quantizes (weights, Linear inputs, q/k/v,
  softmax, LayerNorm inputs, ...) is perturbed by that method's own quantization error
  Q~(X) - X, masked (`dist="bernoulli"`: a
  QuantNoise-style random fraction p * alpha(t) * gamma_l of the elements) or scaled
  (`dist="rounding"`: min(alpha(t) * gamma_l, 1)).
- Uniform-grid (`delta_observer` set to an observer name, or "target" for the target's
  `quant_scheme` observer): weights and Linear inputs only, with the step Delta_X of a
  uniform quantizer (weights per output channel; activations from the range the observer
  computes over the last `refresh` training batches, or per token), X becoming
  `X + alpha(t) * gamma_l * Delta_X * eps` with eps uniform on [-1/2, 1/2] (or Gaussian of
  the same variance), or the masked / scaled rounding error on that grid.

alpha(t) is the noise schedule and gamma_l the per-layer adaptivity. Evaluation
(model.eval()) injects nothing.

The noise lives in the FakeQuantizer slots that `arnq.quant.prepare` inserts, so it
reaches exactly the points PTQ will quantize; the prepared model's state_dict keeps the
FP model's keys, so a fine-tuned checkpoint loads into a fresh FP model.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from arnq.arms.schedules import SCHEDULES, schedule_value
from arnq.arms.shadow import PTQ_SETTINGS, ShadowPoint, Source, TargetShadow, shadow_config
from arnq.ptq import PTQConfig
from arnq.ptq.base import handler_for
from arnq.ptq.common import Batch
from arnq.quant import QuantConfig, prepare, quantizers
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range
from arnq.quant.modules import QuantLinear
from arnq.quant.observers import OBSERVERS
from arnq.quant.quantizer import _TOKEN_MASK, FakeQuantizer, valid_values

TARGETS = ("W", "A", "WA")
#: uniform / gaussian: random noise of one step; bernoulli: the real rounding error on a random
#: fraction p * alpha * gamma of the elements (QuantNoise); rounding: the real rounding error on
#: every element, scaled by min(alpha * gamma, 1) (a fake-quant forward faded in by the schedule).
DISTRIBUTIONS = ("uniform", "gaussian", "bernoulli", "rounding")
#: PTQ-aware weight error: re-quantized every step, or held as the target's last run found it
WEIGHT_ERRORS = ("requantized", "frozen")
ADAPTIVITY = ("none", "outlier", "kurtosis", "sensitivity")
#: delta_observer value for the uniform grid of the target's own `quant_scheme` observer
TARGET_OBSERVER = "target"
#: calibration examples of the in-training target PTQ run when ptq_calib is None (at most the target's own)
PTQ_CALIB_DEFAULT = 64
STAT_MOMENTUM = 0.9  # EMA of the per-layer statistics behind gamma


#: the linear ramp's default length, as a fraction of the steps: none for PTQ-aware noise (chosen on
#: vit_fmnist W3A3 with PTQ4ViT and RepQ-ViT against 0.2, confirmed on fresh seeds:
#: results/composition/recipe_fmnist), the first 20 % on a uniform grid (results/ARNQ.md)
WARMUP_PTQ_AWARE = 0.0
WARMUP_GRID = 0.2


@dataclass(frozen=True)
class NoiseConfig:
    """Every ARNQ knob a sweep can vary.

    Defaults: the target method's own rounding error on every element of the points it
    quantizes (`dist="bernoulli"` at rate `bernoulli_p=1.0`), at full strength from the first
    step (`warmup_frac` resolves to `WARMUP_PTQ_AWARE`, 0); on a uniform grid
    (`delta_observer` set) ramped in over the first `WARMUP_GRID` (0.2) of the steps, the
    recipe of results/ARNQ.md. `dist="uniform"` is random noise of one step. Every knob and
    why these defaults: docs/arms.md#arnq-noise.
    """

    target: str = "WA"
    dist: str = "bernoulli"
    schedule: str = "linear"
    alpha_max: float = 1.0
    warmup_frac: float | None = None  # None: WARMUP_PTQ_AWARE for PTQ-aware noise, WARMUP_GRID on a uniform grid
    n_steps: int = 4  # stages of the "step" schedule
    adapt: str = "none"
    eta: float = 1.0  # exponent of the adaptivity statistic
    gamma_k: float = 4.0  # sigma multiple in the outlier ratio max|A| / (k sigma) behind gamma
    refresh: int = 10  # steps between Delta/gamma updates
    delta_observer: str | None = None  # None: PTQ-aware; an observer name or "target": uniform-grid noise
    bernoulli_p: float = 1.0  # mask rate at alpha = gamma = 1 for dist="bernoulli" (QuantNoise's rates: 0.05-0.2)
    modules: tuple[str, ...] = ()  # fnmatch patterns of module names to perturb; () = all body layers
    gamma_max: float = 4.0  # clip of the normalised gamma, so no layer gets runaway noise
    w_delta: str = "channel"  # weight Delta: "channel" (symmetric, as PTQ) or "tensor" (asymmetric min-max, DiffQ)
    ptq_calib: int | None = None  # PTQ-aware: calibration examples per target run (None: min(target's, 64))
    ptq_refresh: int = 25  # PTQ-aware: steps between runs of the target method (and at every epoch start)
    #: PTQ-aware: "in_training" (the handler's cheaper shadow_params), "configured" (the target as is), or None:
    #: the handler's `shadow_settings` (in_training except where measured unfaithful: PTQ4ViT)
    ptq_settings: str | None = None
    #: PTQ-aware weights: "requantized" (each step's weights through the quantizers and weight change of the
    #: target's last run), "frozen" (the error that run found, Q~(W_r) - W_r, added unchanged to the weights
    #: until the next run, so the forward moves with every weight update), or None: the handler's
    #: `shadow_weight_error` (requantized except where measured to diverge: ERQ, GPTQ)
    weight_error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", tuple(self.modules))
        if self.warmup_frac is None:
            object.__setattr__(self, "warmup_frac", self.default_warmup_frac)
        choices = {"target": TARGETS, "dist": DISTRIBUTIONS, "adapt": ADAPTIVITY, "schedule": tuple(SCHEDULES),
                   "w_delta": ("channel", "tensor"), "ptq_settings": (None, *PTQ_SETTINGS),
                   "weight_error": (None, *WEIGHT_ERRORS)}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(str(v) for v in valid)}")
        if self.delta_observer is not None and self.delta_observer not in (*OBSERVERS, TARGET_OBSERVER):
            raise ValueError(f"delta_observer={self.delta_observer!r}: choose None (PTQ-aware), {TARGET_OBSERVER!r} "
                             f"or one of {', '.join(OBSERVERS)}")
        if self.ptq_aware and self.dist in ("uniform", "gaussian"):
            raise ValueError(f"dist={self.dist!r} draws random noise one uniform step wide, which needs a uniform grid: "
                             "set delta_observer (e.g. 'minmax' or 'target'), or use dist 'bernoulli' or 'rounding' "
                             "for PTQ-aware noise (the target method's own quantization error)")
        if not self.ptq_aware and self.weight_error not in (None, "requantized"):
            raise ValueError(f"weight_error={self.weight_error!r} holds the target method's own weight error fixed "
                             "between its runs, which needs PTQ-aware noise: set delta_observer to null")
        if self.ptq_aware and self.w_delta != "channel":
            raise ValueError("w_delta='tensor' sizes weight noise on a min-max grid: set delta_observer with it")
        if self.ptq_calib is not None and (isinstance(self.ptq_calib, bool) or not isinstance(self.ptq_calib, int)
                                           or self.ptq_calib < 1):
            raise ValueError(f"ptq_calib={self.ptq_calib!r}: use a positive number of examples, or None")
        checks = {
            "alpha_max": self.alpha_max >= 0, "warmup_frac": 0 <= self.warmup_frac <= 1, "n_steps": self.n_steps >= 1,
            "eta": self.eta >= 0, "gamma_k": self.gamma_k > 0, "refresh": isinstance(self.refresh, int) and self.refresh >= 1,
            "bernoulli_p": 0 < self.bernoulli_p <= 1, "gamma_max": self.gamma_max >= 1,
            "ptq_refresh": isinstance(self.ptq_refresh, int) and self.ptq_refresh >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range (see NoiseConfig docs)")

    @property
    def default_warmup_frac(self) -> float:
        """The ramp's length when none is given: `WARMUP_PTQ_AWARE` or, on a uniform grid, `WARMUP_GRID`."""
        return WARMUP_PTQ_AWARE if self.ptq_aware else WARMUP_GRID

    @property
    def ptq_aware(self) -> bool:
        """Whether the noise is the target PTQ method's own quantization error (delta_observer None)."""
        return self.delta_observer is None

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
        self.ptq_aware = cfg.ptq_aware
        self.source: Source | None = None  # PTQ-aware: the target's quantizer here (set by the injector)
        self.keep_applied = False  # keep the last applied perturbation (a bias correction reads it)
        self.applied: torch.Tensor | None = None
        #: a weight under weight_error "frozen" (set by the injector): its error is held between the target's runs
        self.frozen = False
        #: Q~(W) - W at the first forward after the target's last run (the weights it ran on), when `frozen`
        self.frozen_error: torch.Tensor | None = None
        self.per_channel = self.is_weight and cfg.w_delta == "channel"
        own = cfg.delta_observer == TARGET_OBSERVER
        self.per_token = not self.is_weight and own and spec.granularity == "token"
        self.symmetric = spec.symmetric and self.per_channel if self.is_weight else spec.symmetric
        if self.is_weight:
            self.observer_name, self.observer_params = "minmax", {}
        elif own or self.ptq_aware:
            self.observer_name, self.observer_params = spec.observer, dict(spec.observer_params)
        else:
            self.observer_name, self.observer_params = cfg.delta_observer, {}
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

    def _uniform(self, like: torch.Tensor) -> torch.Tensor:
        """U[0, 1) of `like`'s shape, from the seeded noise stream when there is one."""
        if self.generator is not None:
            return torch.rand(like.shape, generator=self.generator, device=like.device, dtype=like.dtype)
        return torch.rand_like(like)

    def _values(self, x: torch.Tensor) -> torch.Tensor:
        """The detached values a statistic or observer sees: a weight whole, an activation without padding."""
        return x.detach() if self.is_weight else valid_values(x.detach(), _TOKEN_MASK.get())

    def _watch_grad(self, x: torch.Tensor) -> torch.Tensor:
        """x, with a hook recording its gradient when the adaptivity is `sensitivity`."""
        if self.cfg.adapt == "sensitivity" and x.requires_grad:
            x = x.view_as(x)
            x.register_hook(self._record_grad)
        return x

    def _eps(self, x: torch.Tensor) -> torch.Tensor:
        u = self._uniform(x)
        if self.cfg.dist == "gaussian":  # same variance as U(-1/2, 1/2): 1/12, via Box-Muller-free inverse CDF
            return torch.special.ndtri(u.clamp(1e-7, 1 - 1e-7)) * math.sqrt(1 / 12)
        return u - 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ptq_aware:
            return self._forward_ptq_aware(x)
        values = self._values(x)
        if self.stats.seen == 0 or self._refresh_due:
            self.stats.update(values, self.cfg.gamma_k)
        if not self.per_token:
            self._observe(values)
            if self._refresh_due or self.delta is None:
                self._refresh_delta()
        x = self._watch_grad(x)
        strength = self.alpha * self.gamma
        if strength == 0:
            return x
        delta, zp = self.qparams(x)
        if self.cfg.dist == "rounding":  # straight-through: the gradient is the identity's
            scale = min(strength, 1.0)
            return _Perturbed.apply(x, lambda xd: self._rounding_error(xd, delta, zp).mul_(scale))
        if self.cfg.dist == "bernoulli":
            rate = min(1.0, self.cfg.bernoulli_p * strength)
            return _Perturbed.apply(
                x, lambda xd: self._rounding_error(xd, delta, zp).mul_((self._uniform(xd) < rate).to(xd.dtype)))
        return x + strength * delta * self._eps(x)

    def _forward_ptq_aware(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.adapt != "none" and (self.stats.seen == 0 or self._refresh_due):
            self.stats.update(self._values(x), self.cfg.gamma_k)
            self._refresh_due = False
        x = self._watch_grad(x)
        strength = self.alpha * self.gamma
        if strength == 0 or self.source is None:
            return x
        if not self.frozen and not self.keep_applied and self._masks_nothing(strength):
            return _Perturbed.apply(x, self._target_error)
        with torch.no_grad():
            xd = x.detach()
            if self.frozen:
                if self.frozen_error is None:
                    self.frozen_error = self.source(xd) - xd
                error = self._masked(self.frozen_error, strength)
            else:
                error = self._masked(self.source(xd) - xd, strength)
        if self.keep_applied:
            self.applied = error
        return x + error

    def _target_error(self, x: torch.Tensor) -> torch.Tensor:
        """source(x) - x as a new tensor (x detached)."""
        q = self.source(x)
        if q.shape != x.shape or q.dtype != x.dtype:
            return q - x
        return _own(q, x).sub_(x)

    def _masks_nothing(self, strength: float) -> bool:
        """Whether `_masked` at this strength returns the error unchanged (every element, unscaled)."""
        if self.cfg.dist == "rounding":
            return strength >= 1.0
        return min(1.0, self.cfg.bernoulli_p * strength) >= 1.0

    def _masked(self, error: torch.Tensor, strength: float) -> torch.Tensor:
        """The error scaled by the schedule ("rounding") or on a random fraction of the elements ("bernoulli")."""
        if self.cfg.dist == "rounding":
            return error if strength >= 1.0 else strength * error  # full strength: no pass over the tensor
        rate = min(1.0, self.cfg.bernoulli_p * strength)
        if rate >= 1.0:  # every element: no mask to draw
            return error
        return (self._uniform(error) < rate).to(error.dtype) * error

    def _rounding_error(self, x: torch.Tensor, delta: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
        """Q(x) - x at the current step and zero point (detached), clipping included."""
        qmin, qmax = quant_range(self.bits, self.symmetric)
        with torch.no_grad():
            xd = x.detach()
            return _own(fake_quantize(xd, delta, zp, qmin, qmax), xd).sub_(xd)

    def _record_grad(self, grad: torch.Tensor) -> None:
        self.stats.update_grad(grad)


class _Perturbed(torch.autograd.Function):
    """x + error_of(x) with the identity's gradient (straight-through), added in the error's own buffer.

    `error_of` maps the detached x to a new tensor (never x or a view of another tensor). The same
    values, bit for bit, as `x + error` out of place: the sum runs in place instead of allocating one
    more tensor of x's size, which on a CPU costs more than the addition (bench/README.md section 7).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, error_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        x = x.detach()
        error = error_of(x)
        if error.shape != x.shape or error.dtype != x.dtype:  # broadcast or cast: out of place
            return x + error
        return error.add_(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def _own(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`value`, or a copy where writing into it in place could change x or another tensor it views."""
    return value.clone() if value.data_ptr() == x.data_ptr() or value._base is not None else value


class BiasNoise(nn.Module):
    """The bias perturbation that goes with a Linear's weight noise (PTQ-aware): the target method's
    own change to the bias, and -e (r b) for the applied weight error e under a shifted reparameterisation."""

    def __init__(self, weight_point: NoisePoint, bias_change: torch.Tensor | None, shift: torch.Tensor | None) -> None:
        super().__init__()
        self.weight_point = [weight_point]  # a list: not a submodule of this one
        self.register_buffer("bias_change", bias_change, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        weight_point.keep_applied = shift is not None

    def forward(self, bias: torch.Tensor) -> torch.Tensor:
        point = self.weight_point[0]
        strength = point.alpha * point.gamma
        if strength == 0 or point.source is None:
            return bias
        with torch.no_grad():
            change = torch.zeros_like(bias)
            if self.bias_change is not None:
                change += point._masked(self.bias_change.to(bias.dtype), strength)
            if self.shift is not None and point.applied is not None:
                change -= point.applied @ self.shift.to(bias.dtype)
        return bias + change


def _gamma_statistic(stats: _Stats, adapt: str) -> float | None:
    if adapt == "outlier":
        return stats.outlier_ratio
    if adapt == "kurtosis":
        return stats.kurtosis
    if adapt == "sensitivity":
        return None if stats.grad_sq is None else 1.0 / math.sqrt(max(stats.grad_sq, 1e-30))
    return 1.0


CalibSource = Callable[[int], Sequence[Batch]]  # n -> batches of the first n calibration examples


@dataclass
class NoiseInjector:
    """Installs ARNQ noise in a model and drives alpha(t), Delta and gamma during training.

    `target` is the PTQ config the fine-tune prepares for (a bare `QuantConfig` scheme is
    enough for uniform-grid noise). PTQ-aware noise (`cfg.delta_observer` None) prepares every
    point of the target's scheme, needs `calib` (n -> batches of n calibration examples) and
    re-runs the target method on the current weights every `ptq_refresh` steps and at the
    start of every epoch. Uniform-grid noise perturbs the weights and Linear inputs of the target's
    `quant_scheme` with its bits, symmetry, observer and granularity.
    """

    model: nn.Module
    cfg: NoiseConfig
    target: PTQConfig | QuantConfig
    seed: int | None = None
    calib: CalibSource | None = None
    points: list[NoisePoint] = field(default_factory=list)
    generator: torch.Generator | None = field(default=None, init=False)  # seeded noise stream (checkpointed)
    shadow: TargetShadow | None = field(default=None, init=False)
    unmatched: list[str] = field(default_factory=list, init=False)  # target points with no place in the model

    def __post_init__(self) -> None:
        scheme = self.target.quant_scheme() if isinstance(self.target, PTQConfig) else self.target
        if self.cfg.target != "W" and not scheme.quantizes_activations:
            raise ValueError("ARNQ activation noise needs quantized activations: target 'W' for weight-only bits")
        if self.seed is not None:
            device = next(self.model.parameters()).device
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        self._by_path: dict[str, NoisePoint] = {}
        self.weight_error = resolved_weight_error(self.cfg, self.target)
        self._hooks: list[Any] = []
        self._shadow_due = True
        self._refreshed_at: int | None = None
        if self.cfg.ptq_aware:
            self._install_ptq_aware(scheme)
        else:
            self._install_uniform_grid(scheme)
        if not self.points:
            raise ValueError(f"ARNQ found no layer to perturb (target={self.cfg.target}, modules={self.cfg.modules})")

    def _wanted(self, kind: str, owner: str) -> bool:
        if self.cfg.target == "W" and kind != "weight":
            return False
        if self.cfg.target == "A" and kind == "weight":
            return False
        return not self.cfg.modules or any(fnmatch.fnmatchcase(owner, p) for p in self.cfg.modules)

    def _install_uniform_grid(self, scheme: QuantConfig) -> None:
        kinds = {"W": ("weight",), "A": ("linear_in",), "WA": ("weight", "linear_in")}[self.cfg.target]
        if not any(isinstance(m, FakeQuantizer) for m in self.model.modules()):
            a_bits = scheme.a_bits if scheme.quantizes_activations else 8  # no activation point is kept
            prepare(self.model, replace(scheme, a_bits=a_bits, probs_bits=None, edge_bits=None, points=kinds, skip=()))
        self._attach(kinds)

    def _install_ptq_aware(self, scheme: QuantConfig) -> None:
        if not isinstance(self.target, PTQConfig):
            raise ValueError("PTQ-aware ARNQ noise needs the target PTQ config, not a bare QuantConfig "
                             "(or set delta_observer for uniform-grid noise)")
        if self.calib is None:
            raise ValueError("PTQ-aware ARNQ noise needs calibration data for the target PTQ method (calib=)")
        if any(isinstance(m, FakeQuantizer) for m in self.model.modules()):
            raise ValueError("PTQ-aware ARNQ noise installs on an FP model; this one is already prepared")
        n = ptq_calib_size(self.cfg, self.target)
        device = next(self.model.parameters()).device
        template = copy.deepcopy(self.model).eval()
        self.shadow = TargetShadow(template, shadow_config(self.target, n, self.cfg.ptq_settings), self.calib(n), device)
        prepare(self.model, scheme)
        self._attach()
        self.refresh_target()  # finds the target's points the model lacks, so a resumed run has the same points
        self._shadow_due = True
        self._refreshed_at = 0  # the weights of step 0 are the ones just quantized (a resumed run starts later)

    def _attach(self, kinds: tuple[str, ...] | None = None) -> None:
        """A NoisePoint in the `noise` slot of every wanted quantizer of the model (of `kinds`, if given)."""
        for name, q in quantizers(self.model):
            if (kinds is None or q.point in kinds) and self._wanted(q.point, name.rsplit(".", 1)[0]):
                self._add(name, NoisePoint(q, self.cfg, self.generator))
                q.noise = self._by_path[name]

    def _clear_bias_noise(self) -> None:
        for module in self.model.modules():
            if isinstance(module, QuantLinear):
                module.bias_noise = None

    def _add(self, path: str, point: NoisePoint) -> None:
        point.frozen = point.is_weight and self.weight_error == "frozen"
        self._by_path[path] = point
        self.points.append(point)

    def refresh_target(self) -> None:
        """Re-run the target PTQ method on the current weights; every point's noise follows its quantizers."""
        weights = {k: v.detach() for k, v in self.model.state_dict().items()}
        shadow_points = self.shadow.refresh(weights)
        for p in self.points:
            p.source, p.keep_applied, p.applied, p.frozen_error = None, False, None, None
        self._clear_bias_noise()
        for sp in shadow_points:
            point = self._by_path.get(sp.path)
            if point is None:
                point = self._extra_point(sp)
            if point is None:
                continue
            point.source = sp.source
            if sp.bias_change is not None or sp.shift is not None:
                owner = self.model.get_submodule(sp.path.rpartition(".")[0])
                if isinstance(owner, QuantLinear):
                    owner.bias_noise = BiasNoise(point, sp.bias_change, sp.shift)
                elif f"{sp.path}:bias" not in self.unmatched:
                    self.unmatched.append(f"{sp.path}:bias")
        self._shadow_due = False

    def _extra_point(self, sp: ShadowPoint) -> NoisePoint | None:
        """A target point the training model lacks (a LayerNorm's input): a pre-hook on its owner module."""
        owner, _, attr = sp.path.rpartition(".")
        if sp.path in self.unmatched or not self._wanted(sp.kind, owner):
            return None
        try:
            module = self.model.get_submodule(owner)
        except AttributeError:
            module = None
        if attr != "input_quantizer" or module is None or isinstance(module, FakeQuantizer):
            self.unmatched.append(sp.path)
            return None
        point = NoisePoint(sp.quantizer, self.cfg, self.generator)
        point.alpha = self.points[0].alpha if self.points else 0.0
        point.train(self.model.training)

        def hook(mod: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            return (point(args[0]), *args[1:]) if mod.training else None

        self._hooks.append(module.register_forward_pre_hook(hook))
        self._add(sp.path, point)
        return point

    def on_epoch_start(self) -> None:
        """Fresh noise steps (and, PTQ-aware, fresh target quantizers) at the next step."""
        self._shadow_due = True
        for point in self.points:
            point.request_refresh(restart=True)

    def on_step(self, step: int, total: int) -> None:
        """Set alpha(step); every `refresh` steps refresh Delta and gamma, every `ptq_refresh` steps (and at
        an epoch's first step) re-run the target method (PTQ-aware)."""
        alpha = self.cfg.alpha(step, total)
        refresh = step % self.cfg.refresh == 0
        if refresh:
            self._update_gamma()
        if self.shadow is not None and (step % self.cfg.ptq_refresh == 0 or self._shadow_due):
            if step != self._refreshed_at:  # no optimiser step since the last run: same weights, same quantizers
                self.refresh_target()
            self._refreshed_at, self._shadow_due = step, False
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
        """Uninstall the noise (the quantizers stay, switched off) and drop the target's shadow model."""
        for _, q in quantizers(self.model):
            q.noise = None
        self._clear_bias_noise()
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        self._by_path.clear()
        self.points.clear()
        if self.shadow is not None:
            self.shadow.model = None

    def __iter__(self) -> Iterator[NoisePoint]:
        return iter(self.points)


def ptq_calib_size(cfg: NoiseConfig, target: PTQConfig) -> int:
    """Calibration examples of each in-training run of the target method (PTQ-aware noise)."""
    return cfg.ptq_calib or min(target.resolved_calib_size, PTQ_CALIB_DEFAULT)


def resolved_weight_error(cfg: NoiseConfig, target: PTQConfig | QuantConfig) -> str:
    """The weight error a fine-tune trains with: the arm's `weight_error`, or, unset, the target handler's
    `shadow_weight_error`; "requantized" for uniform-grid noise."""
    if not cfg.ptq_aware:
        return "requantized"
    if cfg.weight_error is not None or not isinstance(target, PTQConfig):
        return cfg.weight_error or "requantized"
    return handler_for(target).shadow_weight_error


def target_key(cfg: NoiseConfig, target: PTQConfig | QuantConfig) -> dict[str, Any]:
    """The parts of the target this noise depends on (what a fine-tune cache key needs).

    PTQ-aware noise depends on the whole target config as the in-training run uses it;
    uniform-grid noise only on the bits, symmetry and (for `delta_observer="target"`) the
    activation observer and granularity of its scheme.
    """
    if cfg.ptq_aware:
        if not isinstance(target, PTQConfig):
            raise ValueError("PTQ-aware ARNQ noise depends on the target PTQ config, not a bare QuantConfig")
        return {"ptq": shadow_config(target, ptq_calib_size(cfg, target), cfg.ptq_settings).to_dict(),
                "weight_error": resolved_weight_error(cfg, target)}
    scheme = target.quant_scheme() if isinstance(target, PTQConfig) else target
    key: dict[str, Any] = {}
    if cfg.target in ("W", "WA"):
        key |= {"w_bits": scheme.w_bits}
        if cfg.w_delta == "channel":  # a per-tensor Delta is asymmetric min-max whatever the target
            key |= {"w_symmetric": scheme.w_symmetric}
    if cfg.target in ("A", "WA"):
        key |= {"a_bits": scheme.a_bits, "a_symmetric": scheme.a_symmetric}
        if cfg.delta_observer == TARGET_OBSERVER:
            key |= {"a_observer": scheme.a_observer, "a_observer_params": dict(scheme.a_observer_params),
                    "a_granularity": scheme.a_granularity}
    return key


def noise_variance(delta: float, alpha: float, gamma: float, dist: str = "uniform") -> float:
    """Expected variance of the injected noise: (alpha * gamma * Delta)^2 / 12 for uniform and gaussian."""
    if dist not in ("uniform", "gaussian"):
        raise ValueError("closed-form variance is defined for uniform and gaussian noise")
    return (alpha * gamma * delta) ** 2 / 12


__all__ = [
    "ADAPTIVITY", "DISTRIBUTIONS", "PTQ_SETTINGS", "TARGETS", "TARGET_OBSERVER", "BiasNoise", "CalibSource", "NoiseConfig", "NoiseInjector",
    "NoisePoint", "noise_variance", "ptq_calib_size", "target_key",
]
