"""QuantTune's outlier-driven loss on hooked activations, and the KURE weight-kurtosis loss.

For each activation A_l, with per-tensor mean mu_l and std sigma_l taken detached,
`D_l = relu(|A_l - mu_l| - k sigma_l)` and `L_l = mean(D_l ** p)`; the loss is
`lam * sum_l w_l L_l`. Only values beyond k sigma get a gradient, and it pulls them
toward the mean.

Weighting: "uniform" (w_l = 1) or "range" (w_l proportional to the detached
max|A_l - mu_l| / (k sigma_l), normalised to mean 1 over the sites of the call). The
normalisation keeps the total weight equal to the number of sites in both modes, so
`lam` means the same thing whichever weighting is chosen; "range" only moves the
budget toward the sites whose range is most inflated by outliers.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from arnq.arms.sites import SITE_KINDS
from arnq.quant.quantizer import valid_values

WEIGHTINGS = ("uniform", "range")
_EPS = 1e-12


@dataclass(frozen=True)
class OutlierLossConfig:
    """Strength, threshold, exponent, per-site weighting and hooked site kinds of the outlier loss."""

    lam: float = 1e-3
    k: float = 4.0
    p: float = 2
    weighting: str = "uniform"
    sites: tuple[str, ...] = ("post_ln", "fc2_in", "residual")  # kinds passed to find_sites()
    normalize: bool = False  # divide each L_l by sigma_l ** p: a scale-free penalty

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", (self.sites,) if isinstance(self.sites, str) else tuple(self.sites))
        if not (isinstance(self.lam, numbers.Real) and self.lam >= 0):
            raise ValueError(f"lam={self.lam!r}: the loss weight must be a number >= 0 (0 switches the loss off)")
        if not (isinstance(self.k, numbers.Real) and self.k > 0):
            raise ValueError(f"k={self.k!r}: the threshold in standard deviations must be > 0 (default 4)")
        if not (isinstance(self.p, numbers.Real) and self.p >= 1):
            raise ValueError(f"p={self.p!r}: the penalty exponent must be >= 1 (1 = L1, 2 = squared)")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={self.weighting!r}: choose one of {', '.join(WEIGHTINGS)}")
        unknown = [s for s in self.sites if s not in SITE_KINDS]
        if unknown or not self.sites:
            raise ValueError(f"sites={self.sites!r}: give one or more site kinds from {', '.join(SITE_KINDS)}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize={self.normalize!r}: use True (scale-free) or False")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def outlier_loss(
    acts: Mapping[str, torch.Tensor],
    cfg: OutlierLossConfig,
    mask: torch.Tensor | None = None,
    *,
    with_stats: bool = True,
) -> tuple[torch.Tensor, dict[str, dict[str, float]]]:
    """lam * sum_l w_l mean(relu(|A_l - mu_l| - k sigma_l) ** p) over every tensor in `acts`.

    `mask` is the (B, T) mask of real tokens; padded positions are left out of the
    statistics and the penalty. Stats per site: max_dev_over_sigma (max|A - mu| / sigma),
    frac_beyond (fraction of values beyond k sigma), term (L_l) and weight (w_l);
    `with_stats=False` skips them (no host-device sync).
    """
    mask = mask.bool() if mask is not None else None
    names, terms, ratios, fracs = [], [], [], []
    for name, act in acts.items():
        a = valid_values(act, mask).float()  # (N_valid, C) with a mask, else as given
        if a.numel() == 0:
            continue
        mu, sigma = a.detach().mean(), a.detach().std(unbiased=False).clamp_min(_EPS)
        dev = (a - mu).abs()
        term = F.relu(dev - cfg.k * sigma).pow(cfg.p).mean()
        if cfg.normalize:
            term = term / sigma.pow(cfg.p)
        names.append(name)
        terms.append(term)
        ratios.append(dev.detach().max() / (cfg.k * sigma))
        if with_stats:
            fracs.append((dev.detach() > cfg.k * sigma).float().mean())
    if not terms:
        zero = next(iter(acts.values())).new_zeros((), dtype=torch.float32) if acts else torch.zeros(())
        return zero, {}
    term_t, ratio_t = torch.stack(terms), torch.stack(ratios)
    weights = ratio_t / ratio_t.mean().clamp_min(_EPS) if cfg.weighting == "range" else torch.ones_like(ratio_t)
    loss = cfg.lam * (weights * term_t).sum()
    if not with_stats:
        return loss, {}
    table = torch.stack([ratio_t * cfg.k, torch.stack(fracs), term_t.detach(), weights], dim=1)  # (L, 4)
    fields = ("max_dev_over_sigma", "frac_beyond", "term", "weight")
    stats = {name: dict(zip(fields, row, strict=True)) for name, row in zip(names, table.tolist(), strict=True)}
    return loss, stats


def kurtosis(t: torch.Tensor) -> torch.Tensor:
    """Differentiable kurtosis E[(x - mu)^4] / E[(x - mu)^2]^2 over all elements (Gaussian: 3, uniform: 1.8)."""
    x = t.flatten().float()
    centered = x - x.mean()
    var = centered.pow(2).mean()
    return centered.pow(4).mean() / var.pow(2).clamp_min(_EPS)


def kure_loss(weights: Iterable[torch.Tensor], target: float = 1.8) -> torch.Tensor:
    """KURE: sum over weight tensors of (Kurt(W) - target)^2 (1.8 = uniform, quantization friendly)."""
    terms = [(kurtosis(w) - target).pow(2) for w in weights]
    return torch.stack(terms).sum() if terms else torch.zeros(())
