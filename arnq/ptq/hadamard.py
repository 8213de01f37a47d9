"""Hadamard rotation (QuaRot): orthogonal rotations folded into the weights, then W/A quantization.

Ashkboos et al., "QuaRot: Outlier-Free 4-Bit Inference in Rotated LLMs" (NeurIPS 2024);
official code spcl/QuaRot (`fake_quant/`).

Every rotation keeps the FP function (quantization off) and spreads outlier channels:
- residual. timm ViT/DeiT/Swin (pre-LN): each LayerNorm reading the stream has its affine folded
  into the Linears that read it; a randomized Hadamard Q per width, composed with a Householder
  reflection so that Q^T 1 = 1 (then LN(x Q) = LN(x) Q), is folded into every write to the stream
  (patch embedding, class/position tokens, attn.proj, mlp.fc2, Swin's merging reduction:
  W <- Q^T W) and every read (W <- W Q; I_4 (x) Q for Swin's merging). Swin's stem LayerNorm, whose
  output starts the stream, becomes LN without affine followed by the FP map diag(w) Q. Post-LN BERT:
  the LayerNorm output is the residual itself, so Q is applied online at the input quantization
  point of the Linears that read it (query/key/value, intermediate.dense), W <- W Q.
- ffn: a randomized Hadamard online at fc2's input (after GELU), W2 <- W2 H (QuaRot's down_proj).
- heads: a randomized per-head Hadamard folded into the value rows and W_o's input columns, plus
  QuaRot's online cross-head Hadamard at W_o's input.
- qk: a randomized per-head Hadamard folded into the query and key rows (q k^T is unchanged; QuaRot
  applies it online because of RoPE, which these models lack).
A size n = m 2^k uses H_m (x) H_2^k with H_m from Paley's constructions (applied as two small
products); a size with none a seeded random orthogonal matrix. Then weights per output channel
symmetric: round-to-nearest with QuaRot's clip search (`w_clip`) or GPTQ (`arnq.ptq.gptq`) on the
rotated weights; Linear inputs and q/k/v symmetric per token (QuaRot's activation quantizer,
`a_clip_ratio`) or static per tensor; the softmax output and the edges keep the project's
quantizers. Details: docs/ptq.md#hadamard.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from arnq.ptq.base import Calibration, PTQConfig, PTQMethod, register_ptq
from arnq.ptq.common import FastMap, record_input_map, record_point_rotation
from arnq.ptq.gptq import blocks_in_order, gptq_quantize_weight, hessians, install_weights
from arnq.quant import QuantConfig, calibrate, prepare, quantizers
from arnq.quant.api import edge_patterns, name_matches
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range
from arnq.quant.modules import QuantLinear
from arnq.quant.quantizer import FakeQuantizer, QuantSpec

ROTATIONS = ("residual", "ffn", "heads", "qk")
W_METHODS = ("rtn", "gptq")
QKV_POINTS = ("attn_q", "attn_k", "attn_v")
CLIP_GRID, CLIP_MAX_SHRINK, CLIP_NORM = 100, 0.8, 2.4  # QuaRot's weight clip search (quant_utils.WeightQuantizer)


# --- rotation matrices ---------------------------------------------------------------------------------------

def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % p for p in range(2, math.isqrt(n) + 1))


def _jacobsthal(q: int) -> torch.Tensor:
    """Q[i, j] = chi(j - i) mod q, chi the quadratic character of the prime q."""
    chi = -torch.ones(q)
    chi[0] = 0
    chi[[(x * x) % q for x in range(1, q)]] = 1
    idx = torch.arange(q)
    return chi[(idx.unsqueeze(0) - idx.unsqueeze(1)) % q]


def paley_hadamard(order: int) -> torch.Tensor | None:
    """A +-1 Hadamard matrix of `order` from Paley's construction I (order - 1 a prime = 3 mod 4) or II
    (order / 2 - 1 a prime = 1 mod 4), or None."""
    q = order - 1
    if _is_prime(q) and q % 4 == 3:
        s = torch.zeros(order, order)
        s[0, 1:], s[1:, 0], s[1:, 1:] = 1, -1, _jacobsthal(q)
        return s + torch.eye(order)
    q = order // 2 - 1
    if order % 2 == 0 and _is_prime(q) and q % 4 == 1:
        c = torch.zeros(q + 1, q + 1)
        c[0, 1:], c[1:, 0], c[1:, 1:] = 1, 1, _jacobsthal(q)
        plus, minus = torch.tensor([[1.0, 1.0], [1.0, -1.0]]), torch.tensor([[1.0, -1.0], [-1.0, -1.0]])
        return torch.kron(c, plus) + torch.kron(torch.eye(q + 1), minus)
    return None


def hadamard_base(n: int) -> torch.Tensor | None:
    """H_m with n = m 2^k and H_m a +-1 Hadamard matrix (m = 1 for powers of two), or None when none is known."""
    pow2 = n & -n
    m = n // pow2
    while pow2 >= 1:
        base = torch.ones(1, 1) if m == 1 else paley_hadamard(m)
        if base is not None:
            return base
        m, pow2 = m * 2, pow2 // 2
    return None


def _fwht(x: torch.Tensor) -> torch.Tensor:
    """x H over the last dimension (a power of two), H the unnormalized Sylvester Hadamard matrix."""
    n, lead = x.shape[-1], x.shape[:-1]
    h = 1
    while h < n:
        pairs = x.reshape(*lead, n // (2 * h), 2, h)
        x = torch.stack((pairs[..., 0, :] + pairs[..., 1, :], pairs[..., 0, :] - pairs[..., 1, :]), dim=-2)
        h *= 2
    return x.reshape(*lead, n)


def random_orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    """A random orthogonal matrix: QR of a Gaussian with the signs of diag(R) moved into Q (QuaRot's `random` mode)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diag(r)).unsqueeze(0)


class HadamardRotation(nn.Module):
    """x -> x R over the last dimension, R orthogonal (n x n).

    R = diag(signs) (H_m (x) H_2^k) / sqrt(n), applied as two small products: x's (m, 2^k) view
    times the Sylvester H_2^k, then H_m across (n (m + 2^k) multiply-adds per row instead of n^2);
    or a dense random orthogonal matrix where no Hadamard matrix of order n is known (`dense`).
    """

    def __init__(self, n: int, base: torch.Tensor | None = None, signs: torch.Tensor | None = None,
                 dense: torch.Tensor | None = None) -> None:
        super().__init__()
        if (base is None) == (dense is None):
            raise ValueError("give a Hadamard base matrix or a dense orthogonal matrix")
        self.n = n
        self.register_buffer("base", base, persistent=False)
        self.register_buffer("signs", signs, persistent=False)
        self.register_buffer("dense", dense, persistent=False)
        sylvester = None if base is None else _fwht(torch.eye(n // base.shape[0], device=base.device))  # +-1
        self.register_buffer("sylvester", sylvester, persistent=False)

    def extra_repr(self) -> str:
        kind = "dense orthogonal" if self.dense is not None else f"hadamard {self.base.shape[0]}x2^k"
        return f"n={self.n}, {kind}, signs={self.signs is not None}"

    def _kron(self, x: torch.Tensor, across: torch.Tensor) -> torch.Tensor:
        """vec(across @ X @ H_2^k) / sqrt(n), X the (m, 2^k) view of each row of x."""
        m = self.base.shape[0]
        y = x.reshape(-1, m, self.n // m) @ self.sylvester.to(x.dtype)
        return (torch.matmul(across.to(x.dtype), y) / math.sqrt(self.n)).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.signs is not None:
            x = x * self.signs.to(x.dtype)
        if self.dense is not None:
            return x @ self.dense.to(x.dtype)
        return self._kron(x, self.base.T)  # x (H_m (x) H_2^k) = vec(H_m^T X H_2^k)

    def transposed(self, x: torch.Tensor) -> torch.Tensor:
        """x -> x R^T (= x R^-1)."""
        y = x @ self.dense.to(x.dtype).T if self.dense is not None else self._kron(x, self.base)
        return y if self.signs is None else y * self.signs.to(x.dtype)

    def matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The dense R (x R = forward(x)), contiguous (torch.kron needs it)."""
        ref = self.base if self.dense is None else self.dense
        return self.forward(torch.eye(self.n, dtype=dtype, device=ref.device)).contiguous()

    def fast_map(self) -> FastMap:
        """`forward` and `transposed` as a `FastMap` (what PTQ-aware ARNQ applies on every step)."""
        return FastMap(self.forward, self.transposed)


def householder_fast(rotation: FastMap, v: torch.Tensor) -> FastMap:
    """x R P and x (R P)^T = x P R^T with P = I - 2 v v^T / v^T v (symmetric), R given by `rotation`."""
    w = v.double() / float(v.double().norm())

    def reflect(x: torch.Tensor) -> torch.Tensor:
        u = w.to(x.dtype)
        return x - 2 * (x @ u).unsqueeze(-1) * u

    return FastMap(lambda x: reflect(rotation.apply(x)), lambda x: rotation.apply_t(reflect(x)))


def block_fast(within: torch.Tensor, blocks: int, across: FastMap | None = None) -> FastMap:
    """x (A (x) B) over the last dimension, B = `within` (b x b, dense) and A (blocks x blocks) given by
    `across` (the identity when None): A^T X B on the (blocks, b) view of each row, e.g. a head-wise
    rotation (A = I) or QuaRot's cross-head Hadamard after it."""
    b = within.shape[0]

    def mapped(x: torch.Tensor, transpose: bool) -> torch.Tensor:  # transposed: x (A^T (x) B^T) = A X B^T
        y = x.unflatten(-1, (blocks, b)) @ (within.T if transpose else within).to(x.dtype)
        if across is not None:  # (Y^T A)^T = A^T Y
            y = (across.apply_t if transpose else across.apply)(y.transpose(-1, -2)).transpose(-1, -2)
        return y.flatten(-2)

    return FastMap(lambda x: mapped(x, False), lambda x: mapped(x, True))


class HeadMixing(nn.Module):
    """x -> x (R (x) I_head_dim): rotates across the heads of a (..., heads * head_dim) tensor (QuaRot's
    online partial Hadamard at W_o's input)."""

    def __init__(self, rotation: HadamardRotation, head_dim: int) -> None:
        super().__init__()
        self.rotation = rotation
        self.head_dim = head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = x.unflatten(-1, (self.rotation.n, self.head_dim)).transpose(-1, -2)  # (..., head_dim, heads)
        return self.rotation(heads).transpose(-1, -2).flatten(-2)

    def matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        across = self.rotation.matrix(dtype)
        return torch.kron(across, torch.eye(self.head_dim, dtype=dtype, device=across.device))


OnlineRotation = HadamardRotation | HeadMixing


def make_rotation(n: int, seed: int, key: str, random_signs: bool) -> HadamardRotation:
    """The seeded rotation of size n for one use (`key`): a (randomized) Hadamard, or random orthogonal."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(f"{key}:{n}".encode()))
    base = hadamard_base(n)
    if base is None:
        return HadamardRotation(n, dense=random_orthogonal(n, gen))
    signs = (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).float() if random_signs else None
    return HadamardRotation(n, base=base, signs=signs)


# --- quantization points -------------------------------------------------------------------------------------

class RotatedQuantizer(FakeQuantizer):
    """An activation point that rotates its input online (x -> x R, also when off) and quantizes per token with
    ranges scaled by `clip_ratio` (QuaRot's ActQuantizer), or per tensor (static)."""

    def __init__(self, spec: QuantSpec, point: str, rotation: OnlineRotation | None = None,
                 clip_ratio: float = 1.0) -> None:
        super().__init__(spec, point)
        self.rotation = rotation
        self.clip_ratio = clip_ratio

    def extra_repr(self) -> str:
        return super().extra_repr() + f", clip_ratio={self.clip_ratio}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rotation is not None:
            x = self.rotation(x)
        return super().forward(x)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if not self.dynamic or self.clip_ratio == 1.0:
            return super().quantize(x)
        lo = x.detach().amin(dim=-1, keepdim=True) * self.clip_ratio
        hi = x.detach().amax(dim=-1, keepdim=True) * self.clip_ratio
        scale, zp = calc_qparams(lo, hi, self.spec.bits, self.spec.symmetric)
        return fake_quantize(x, scale.to(x.dtype), zp.to(x.dtype), self.qmin, self.qmax)

    def quantized_value(self, x: torch.Tensor) -> torch.Tensor:
        """Quantizing `x` here, in `x`'s own (unrotated) coordinates: q(x R) R^T."""
        if self.rotation is None:
            return self.quantize(x)
        r = self.rotation.matrix(x.dtype).to(x.device)
        return self.quantize(x @ r) @ r.T


@torch.no_grad()
def clipped_weight_scale(weight: torch.Tensor, bits: int, stride: int = 1) -> torch.Tensor:
    """Per-row symmetric scale shrunk to the factor in 1, 0.99, ..., 0.21 with the least sum |q(w) - w|^2.4
    (QuaRot's `--w_clip` search). `stride` > 1 searches every stride-th factor first, then the factors
    within stride - 1 of each row's best: the same choice wherever a row's error has a single minimum
    at that resolution, in 80 / stride + 2 (stride - 1) roundings instead of 80."""
    w = weight.detach().float().reshape(weight.shape[0], -1)
    qmin, qmax = quant_range(bits, True)
    amax = w.abs().amax(dim=1).clamp_min(1e-8)
    best_err = torch.full_like(amax, float("inf"))
    best_step = torch.zeros_like(amax, dtype=torch.long)
    zero = torch.zeros(1, device=w.device)
    steps = int(CLIP_MAX_SHRINK * CLIP_GRID)
    factors = torch.tensor([1 - i / CLIP_GRID for i in range(steps)], dtype=amax.dtype, device=w.device)

    def scale_at(step: torch.Tensor) -> torch.Tensor:  # per row: shrink 1 - step / CLIP_GRID
        return factors[step] * amax / qmax

    def consider(step: torch.Tensor) -> None:
        nonlocal best_err, best_step
        err = (fake_quantize(w, scale_at(step).unsqueeze(1), zero, qmin, qmax) - w).abs_().pow_(CLIP_NORM).sum(dim=1)
        better = err < best_err
        best_err, best_step = torch.where(better, err, best_err), torch.where(better, step, best_step)

    for i in range(0, steps, stride):
        consider(torch.full_like(best_step, i))
    if stride > 1:
        coarse = best_step.clone()
        for offset in (*range(-stride + 1, 0), *range(1, stride)):
            step = coarse + offset
            valid = (step >= 0) & (step < steps)
            if bool(valid.any()):
                consider(torch.where(valid, step, coarse))  # out of range: the coarse best again (no change)
    return scale_at(best_step)


# --- folding ---------------------------------------------------------------------------------------------------

def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def _rotate_inputs(linear: nn.Linear, r: torch.Tensor) -> None:
    """W <- W R: the Linear reads x R instead of x."""
    linear.weight.data = (linear.weight.double() @ r.to(linear.weight.device)).to(linear.weight.dtype)


def _rotate_outputs(module: nn.Module, r: torch.Tensor) -> None:
    """y -> y R: W <- R^T W, b <- R^T b (a Linear, or a conv over its output channels)."""
    w = module.weight.double().reshape(module.weight.shape[0], -1)
    r = r.to(w.device)
    module.weight.data = (r.T @ w).reshape(module.weight.shape).to(module.weight.dtype)
    if module.bias is not None:
        module.bias.data = (module.bias.double() @ r).to(module.bias.dtype)


def _rotate_rows(linear: nn.Linear, start: int, stop: int, r: torch.Tensor) -> None:
    """Rotate the outputs start:stop of a Linear head by head: W_h <- R^T W_h, b_h <- b_h R."""
    hd = r.shape[0]
    r = r.to(linear.weight.device)
    w = linear.weight.double()
    w[start:stop] = (r.T @ w[start:stop].reshape(-1, hd, w.shape[1])).reshape(stop - start, -1)  # (heads, hd, in)
    linear.weight.data = w.to(linear.weight.dtype)
    if linear.bias is not None:
        b = linear.bias.double()
        b[start:stop] = (b[start:stop].reshape(-1, hd) @ r).flatten()
        linear.bias.data = b.to(linear.bias.dtype)


def _fold_norm(norm: nn.LayerNorm, linear: nn.Linear) -> None:
    """W (x w + b_ln) + b = (W diag(w)) x + (b + W b_ln): the LayerNorm's affine moves into the Linear."""
    w = linear.weight.double()
    if norm.bias is not None:
        shift = w @ norm.bias.double()
        if linear.bias is None:
            linear.bias = nn.Parameter(shift.to(linear.weight.dtype))
        else:
            linear.bias.data = (linear.bias.double() + shift).to(linear.bias.dtype)
    if norm.weight is not None:
        linear.weight.data = (w * norm.weight.double()).to(linear.weight.dtype)


def _householder_vector(r: torch.Tensor) -> torch.Tensor | None:
    """v of `ones_preserving`'s reflection P = I - 2 v v^T / v^T v, or None when R^T 1 = 1 already."""
    n = r.shape[0]
    one = torch.full((n,), n ** -0.5, dtype=r.dtype, device=r.device)
    v = r.T @ one - one
    return None if float(v.norm()) < 1e-12 else v


def ones_preserving(r: torch.Tensor) -> torch.Tensor:
    """R P, P the Householder reflection taking R^T 1/sqrt(n) to 1/sqrt(n): orthogonal and (R P)^T 1 = 1, so
    LayerNorm's mean subtraction commutes with it (LN(x R P) = LN(x) R P without affine)."""
    v = _householder_vector(r)
    if v is None:
        return r
    return r - 2 * torch.outer(r @ v, v) / (v @ v)


class RotatedNorm(nn.Module):
    """A LayerNorm whose output starts the residual stream (Swin's patch-embedding norm), rotated:
    LN(x) Q = norm(x) diag(w) Q + b Q, an FP d x d map at the stem (no quantization point)."""

    def __init__(self, norm: nn.LayerNorm, q: torch.Tensor) -> None:
        super().__init__()
        d = norm.normalized_shape[-1]
        w = norm.weight.double() if norm.weight is not None else torch.ones(d, dtype=torch.float64)
        b = norm.bias.double() if norm.bias is not None else torch.zeros(d, dtype=torch.float64)
        q = q.to(w.device)
        self.normalized_shape, self.eps = tuple(norm.normalized_shape), norm.eps
        self.register_buffer("weight_map", (w.unsqueeze(1) * q).float(), persistent=False)
        self.register_buffer("bias_map", (b @ q).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, eps=self.eps) @ self.weight_map.to(x.dtype) + self.bias_map.to(x.dtype)


@dataclass
class _Residual:
    """Where a pre-LN timm model reads and writes its residual stream."""

    readers: list[tuple[str, tuple[str, ...], int]] = field(default_factory=list)  # (norm, its Linears, repeat)
    writers: list[str] = field(default_factory=list)  # Linears / the patch conv whose output joins the stream
    tokens: list[str] = field(default_factory=list)  # parameters added to the stream (class, register, position)
    stem_norms: list[str] = field(default_factory=list)  # LayerNorms whose output starts the stream
    layer_scales: list[tuple[str, str]] = field(default_factory=list)  # (LayerScale, the writer it scales)


@dataclass(frozen=True)
class _Attention:
    """The projections of one attention module: q/k/v as (Linear, first row), the output Linear, heads."""

    q: tuple[str, int]
    k: tuple[str, int]
    v: tuple[str, int]
    out: str
    heads: int
    head_dim: int


def _unsupported(what: str) -> ValueError:
    return ValueError(f"hadamard cannot rotate this model exactly: {what}; drop 'residual' from rotations "
                      "(the ffn, heads and qk rotations need none of it) or use another method")


def _is_identity(module: nn.Module | None) -> bool:
    return module is None or isinstance(module, nn.Identity)


def _timm_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if all(hasattr(m, a) for a in ("norm1", "attn", "norm2", "mlp"))]


def _timm_residual(model: nn.Module, family: str) -> _Residual:
    plan = _Residual()
    for name, block in _timm_blocks(model):
        p = f"{name}."
        if not (isinstance(block.norm1, nn.LayerNorm) and isinstance(block.norm2, nn.LayerNorm)):
            raise _unsupported(f"{name} does not use LayerNorm")
        attn, mlp = block.attn, block.mlp
        if not all(_is_identity(getattr(attn, a, None)) for a in ("q_norm", "k_norm", "norm", "gate")):
            raise _unsupported(f"{name}.attn has q/k/scale norms or a gate")
        if not _is_identity(getattr(mlp, "norm", None)):
            raise _unsupported(f"{name}.mlp has a hidden-layer norm")
        plan.readers += [(f"{p}norm1", (f"{p}attn.qkv",), 1), (f"{p}norm2", (f"{p}mlp.fc1",), 1)]
        plan.writers += [f"{p}attn.proj", f"{p}mlp.fc2"]
        for ls, writer in (("ls1", "attn.proj"), ("ls2", "mlp.fc2")):
            if hasattr(getattr(block, ls, None), "gamma"):
                plan.layer_scales.append((f"{p}{ls}", f"{p}{writer}"))
            elif not _is_identity(getattr(block, ls, None)):
                raise _unsupported(f"{name}.{ls} is neither LayerScale nor Identity")
    for name, m in model.named_modules():
        if hasattr(m, "reduction") and isinstance(getattr(m, "norm", None), nn.LayerNorm):  # Swin patch merging
            plan.readers.append((f"{name}.norm", (f"{name}.reduction",), 4))
            plan.writers.append(f"{name}.reduction")
    if family == "vit":
        if not (_is_identity(model.patch_embed.norm) and _is_identity(model.norm_pre)):
            raise _unsupported("the ViT normalizes its patch embedding (patch_embed.norm / norm_pre)")
        if getattr(model, "attn_pool", None) is not None:
            raise _unsupported("the ViT pools with attention (global_pool='map')")
        plan.writers.insert(0, "patch_embed.proj")
        plan.tokens = [t for t in ("cls_token", "reg_token", "pos_embed") if getattr(model, t, None) is not None]
        finals = [n for n in ("norm", "fc_norm") if isinstance(getattr(model, n, None), nn.LayerNorm)]
        head = "head"
    else:
        plan.stem_norms = ["patch_embed.norm"]
        finals, head = ["norm"], "head.fc"
    if len(finals) != 1 or not isinstance(model.get_submodule(head), nn.Linear):
        raise _unsupported("it needs one final LayerNorm and a Linear classifier head")
    plan.readers.append((finals[0], (head,), 1))
    return plan


def _bert_layers(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n.rpartition(".")[0].endswith("encoder.layer")]


def _attentions(model: nn.Module, family: str) -> list[_Attention]:
    if family == "bert":
        heads = model.config.num_attention_heads
        hd = model.config.hidden_size // heads
        return [_Attention(*((f"{layer}.attention.self.{p}", 0) for p in ("query", "key", "value")),
                           f"{layer}.attention.output.dense", heads, hd) for layer in _bert_layers(model)]
    found = []
    for name, block in _timm_blocks(model):
        attn = block.attn
        d = attn.qkv.out_features // 3
        qkv = f"{name}.attn.qkv"
        found.append(_Attention((qkv, 0), (qkv, d), (qkv, 2 * d), f"{name}.attn.proj", attn.num_heads,
                                d // attn.num_heads))
    return found


def _ffn_outputs(model: nn.Module, family: str) -> list[str]:
    if family == "bert":
        return [f"{layer}.output.dense" for layer in _bert_layers(model)]
    return [f"{name}.mlp.fc2" for name, _ in _timm_blocks(model)]


class _Rotations:
    """The seeded rotations of one run, one per use and size, shared across layers (as QuaRot's single Q)."""

    def __init__(self, seed: int, random_signs: bool, device: torch.device) -> None:
        self.seed, self.random_signs, self.device = seed, random_signs, device
        self.cache: dict[tuple[str, int], HadamardRotation] = {}
        self.dense: dict[tuple[str, int, str], torch.Tensor] = {}
        self.fasts: dict[tuple, FastMap] = {}

    def get(self, key: str, n: int) -> HadamardRotation:
        if (key, n) not in self.cache:
            self.cache[key, n] = make_rotation(n, self.seed, key, self.random_signs).to(self.device)
        return self.cache[key, n]

    def matrix(self, key: str, n: int) -> torch.Tensor:
        """The dense rotation of `get(key, n)` (float64), one tensor per use and size."""
        if (key, n, "matrix") not in self.dense:
            self.dense[key, n, "matrix"] = self.get(key, n).matrix()
        return self.dense[key, n, "matrix"]

    def residual(self, n: int) -> torch.Tensor:
        """The residual stream's Q of width n: the Hadamard made to preserve the all-ones vector."""
        if ("residual", n, "ones") not in self.dense:
            self.dense["residual", n, "ones"] = ones_preserving(self.matrix("residual", n))
        return self.dense["residual", n, "ones"]

    def fast(self, key: str, n: int) -> FastMap:
        """`get(key, n)`'s `FastMap`, one per use and size."""
        if (key, n) not in self.fasts:
            self.fasts[key, n] = self.get(key, n).fast_map()
        return self.fasts[key, n]

    def residual_fast(self, n: int) -> FastMap:
        """`residual(n)`'s `FastMap`: the Hadamard's, then the reflection."""
        if ("residual", n, "ones") not in self.fasts:
            v = _householder_vector(self.matrix("residual", n))
            plain = self.fast("residual", n)
            self.fasts["residual", n, "ones"] = plain if v is None else householder_fast(plain, v)
        return self.fasts["residual", n, "ones"]


class _Trail:
    """What the rotations did to each Linear's weight, for PTQ-aware ARNQ's shadow (`arnq.ptq.common.InputMap`):
    W -> left @ W diag(scale) @ rotation, the LayerNorm folds giving (scale, shift) and the rotations the rest."""

    def __init__(self) -> None:
        self.norms: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.cols: dict[str, list[torch.Tensor]] = {}  # W <- W c, in order
        self.fast_cols: dict[str, list[FastMap | None]] = {}  # c's FastMap, or None (then the dense product)
        self.rows: dict[str, list[tuple[str, torch.Tensor, int, int]]] = {}  # W <- m W, in order
        self.points: dict[tuple[str, str], tuple[torch.Tensor, FastMap]] = {}  # (Linear, attn_q/k/v) -> its
        # head-wise rotation, dense and fast
        self._dense: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # shared across layers (one per recipe)
        self._alive: list[torch.Tensor] = []

    def norm(self, name: str, norm: nn.LayerNorm) -> None:
        d = norm.normalized_shape[-1]
        w = torch.ones(d, dtype=torch.float64) if norm.weight is None else norm.weight.detach().double().clone()
        self.norms[name] = (w, None if norm.bias is None else norm.bias.detach().double() / w)

    def inputs(self, name: str, r: torch.Tensor, fast: FastMap | None = None) -> None:
        self.cols.setdefault(name, []).append(r)
        self.fast_cols.setdefault(name, []).append(fast)

    def outputs(self, name: str, r: torch.Tensor, start: int = 0, stop: int | None = None) -> None:
        """The outputs start:stop rotated head by head by r (all of them by r when stop is None)."""
        self.rows.setdefault(name, []).append(("rot", r, start, -1 if stop is None else stop))

    def scaled_outputs(self, name: str, gamma: torch.Tensor) -> None:
        self.rows.setdefault(name, []).append(("diag", gamma.detach().double().clone(), 0, -1))

    def kron(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a (x) b, one tensor per pair (so the layers share it)."""
        key = ("kron", id(a), id(b))
        if key not in self._dense:
            self._alive += [a, b]  # the ids in the key stay theirs
            m = torch.kron(a.to(b.device), b)
            self._dense[key] = (m, m)
        return self._dense[key][0]

    def point(self, linear: str, point: str, r: torch.Tensor, heads: int) -> None:
        """The q/k/v point `point` of `linear` sees its tensor rotated head by head by r."""
        self.points[linear, point] = (self.kron(torch.eye(heads, dtype=r.dtype, device=r.device), r),
                                      block_fast(r, heads))

    def _cols(self, name: str, n: int) -> torch.Tensor:
        key = ("cols", n, *(id(c) for c in self.cols[name]))
        if key not in self._dense:
            m = torch.eye(n, dtype=torch.float64, device=self.cols[name][0].device)
            for c in self.cols[name]:
                m = m @ c
            self._dense[key] = (m, m)
        return self._dense[key][0]

    def _rows(self, name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        ops = self.rows[name]
        shareable = all(kind == "rot" for kind, *_ in ops)
        key = ("rows", n, *((id(t), a, b) for _, t, a, b in ops)) if shareable else None
        if key is not None and key in self._dense:
            return self._dense[key]
        m = torch.eye(n, dtype=torch.float64, device=ops[0][1].device)
        inv = m.clone()
        for kind, t, start, stop in ops:
            if kind == "diag":
                step, step_inv = torch.diag(t), torch.diag(1 / t)
            else:
                stop = n if stop < 0 else stop
                step = torch.eye(n, dtype=torch.float64, device=t.device)
                step[start:stop, start:stop] = torch.kron(torch.eye((stop - start) // t.shape[0], dtype=t.dtype,
                                                                    device=t.device), t.T.contiguous())
                step_inv = step.T
            m, inv = step @ m, inv @ step_inv
        out = (m, inv)
        if key is not None:
            self._dense[key] = out
        return out

    def _cast(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """t in `dtype`, one tensor per (t, dtype) (so the layers share it)."""
        key = ("cast", id(t), dtype)
        if key not in self._dense:
            self._dense[key] = (t.to(dtype), t)  # t kept alive with it: the id in the key stays its
        return self._dense[key][0]

    def record(self, model: nn.Module) -> None:
        """Note every changed Linear's map and every rotated q/k/v point on the prepared `model`
        (`record_input_map`, `record_point_rotation`)."""
        for name in sorted(set(self.norms) | set(self.cols) | set(self.rows)):
            module = model.get_submodule(name)
            w = module.weight
            n_in = w[0].numel()
            scale, shift = self.norms.get(name, (None, None))
            scale = torch.ones(n_in, dtype=torch.float64, device=w.device) if scale is None else scale
            if scale.numel() != n_in:  # a conv's input channels: the scale would repeat over the kernel
                raise RuntimeError(f"{name}: a folded LayerNorm needs a Linear reader")
            rotation = self._cast(self._cols(name, n_in), w.dtype) if name in self.cols else None
            left, left_inv = ((self._cast(t, w.dtype) for t in self._rows(name, w.shape[0])) if name in self.rows
                              else (None, None))
            record_input_map(model, name, scale.to(w.dtype), None if shift is None else shift.to(w.dtype), rotation,
                             left, left_inv,
                             moves_inputs=name in self.norms or name in self.cols, fast_rotation=self._fast(name))
        dtype = next(model.parameters()).dtype
        for path, q in quantizers(model):
            rotation = self.points.get((path.partition(".output_quantizer")[0], q.point))
            if q.point in QKV_POINTS and rotation is not None:
                record_point_rotation(model, path, self._cast(rotation[0], dtype), rotation[1])

    def _fast(self, name: str) -> FastMap | None:
        """The product of `name`'s column rotations as one `FastMap`; None when one of them has none."""
        factors = self.fast_cols.get(name)
        if not factors or any(f is None for f in factors):
            return None
        return functools.reduce(FastMap.then, factors)


@torch.no_grad()
def rotate_model(model: nn.Module, family: str, rotations: tuple[str, ...], seed: int = 0,
                 random_signs: bool = True, trail: _Trail | None = None) -> dict[str, OnlineRotation]:
    """Fold the chosen rotations into `model` in place (FP function unchanged); the online rotations each
    Linear's input still needs, by Linear name. `trail`, when given, collects what happened to each Linear."""
    rots = _Rotations(seed, random_signs, next(model.parameters()).device)
    trail = trail if trail is not None else _Trail()
    online: dict[str, OnlineRotation] = {}
    if "residual" in rotations and family in ("vit", "swin"):
        _fold_residual(model, _timm_residual(model, family), rots, trail)
    elif "residual" in rotations:  # post-LN BERT: online at the readers of every LayerNorm output
        d = model.config.hidden_size
        q, q_matrix = rots.get("residual", d), rots.matrix("residual", d)
        for layer in _bert_layers(model):
            for name in (*(f"{layer}.attention.self.{p}" for p in ("query", "key", "value")),
                         f"{layer}.intermediate.dense"):
                _rotate_inputs(model.get_submodule(name), q_matrix)
                trail.inputs(name, q_matrix, rots.fast("residual", d))
                online[name] = q
    for att in _attentions(model, family):
        width = att.heads * att.head_dim
        if "qk" in rotations:
            r = rots.matrix("qk", att.head_dim)
            for (linear, start), point in ((att.q, "attn_q"), (att.k, "attn_k")):
                _rotate_rows(model.get_submodule(linear), start, start + width, r)
                trail.outputs(linear, r, start, start + width)
                trail.point(linear, point, r, att.heads)
        if "heads" in rotations:
            r = rots.matrix("heads", att.head_dim)
            linear, start = att.v
            _rotate_rows(model.get_submodule(linear), start, start + width, r)
            trail.outputs(linear, r, start, start + width)
            trail.point(linear, "attn_v", r, att.heads)
            cross = HeadMixing(rots.get("heads_cross", att.heads), att.head_dim)
            full = trail.kron(rots.matrix("heads_cross", att.heads), r)
            _rotate_inputs(model.get_submodule(att.out), full)
            trail.inputs(att.out, full, block_fast(r, att.heads, rots.fast("heads_cross", att.heads)))
            online[att.out] = cross
    if "ffn" in rotations:
        for name in _ffn_outputs(model, family):
            fc2 = model.get_submodule(name)
            h, h_matrix = rots.get("ffn", fc2.in_features), rots.matrix("ffn", fc2.in_features)
            _rotate_inputs(fc2, h_matrix)
            trail.inputs(name, h_matrix, rots.fast("ffn", fc2.in_features))
            online[name] = h
    return online


def _fold_residual(model: nn.Module, plan: _Residual, rots: _Rotations, trail: _Trail) -> None:
    for ls_name, writer_name in plan.layer_scales:  # y * gamma = (diag(gamma) W) x + gamma b
        ls, writer = model.get_submodule(ls_name), model.get_submodule(writer_name)
        trail.scaled_outputs(writer_name, ls.gamma)
        writer.weight.mul_(ls.gamma.unsqueeze(1))
        if writer.bias is not None:
            writer.bias.mul_(ls.gamma)
        ls.gamma.fill_(1.0)
    for norm_name, linears, repeat in plan.readers:
        norm = model.get_submodule(norm_name)
        width = norm.normalized_shape[-1] // repeat
        r = rots.residual(width) if repeat == 1 else trail.kron(torch.eye(repeat, dtype=torch.float64),
                                                                rots.residual(width))  # Swin merging: 4 tokens
        fast = rots.residual_fast(width) if repeat == 1 else None
        for name in linears:
            linear = model.get_submodule(name)
            trail.norm(name, norm)
            _fold_norm(norm, linear)
            _rotate_inputs(linear, r)
            trail.inputs(name, r, fast)
        if norm.weight is not None:  # the affine now lives in the Linears: LN(x Q) = LN(x) Q
            norm.weight.fill_(1.0)
        if norm.bias is not None:
            norm.bias.zero_()
    for name in plan.writers:
        writer = model.get_submodule(name)
        q = rots.residual(writer.weight.shape[0])
        _rotate_outputs(writer, q)
        trail.outputs(name, q)
    for name in plan.tokens:
        token = getattr(model, name)
        token.data = (token.double() @ rots.residual(token.shape[-1]).to(token.device)).to(token.dtype)
    for name in plan.stem_norms:
        norm = model.get_submodule(name)
        _set_module(model, name, RotatedNorm(norm, rots.residual(norm.normalized_shape[-1])))


# --- config and handler ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HadamardConfig(PTQConfig):
    seed: int = 0
    rotations: tuple[str, ...] = ROTATIONS  # any of residual, ffn, heads, qk; () = no rotation (ablation)
    random_signs: bool = True  # R = diag(+-1) H / sqrt(n) for every rotation (False: plain Hadamards)
    w_method: str = "rtn"  # "rtn" or "gptq"
    w_clip: bool = True  # RTN: QuaRot's per-row clip search
    w_clip_stride: int = 1  # the clip search's coarse stride (1: every factor, QuaRot's search)
    a_granularity: str = "token"  # "token" (dynamic, QuaRot) or "tensor" (static min-max)
    a_clip_ratio: float = 1.0  # per-token ranges scaled by this (QuaRot's a_clip_ratio)
    percdamp: float = 0.01  # gptq
    act_order: bool = False  # gptq

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r}: use a non-negative integer")
        unknown = [r for r in self.rotations if r not in ROTATIONS]
        if unknown or len(set(self.rotations)) != len(self.rotations):
            raise ValueError(f"rotations={self.rotations!r}: give distinct names from {', '.join(ROTATIONS)}")
        if self.w_method not in W_METHODS:
            raise ValueError(f"w_method={self.w_method!r}: choose rtn or gptq")
        if self.a_granularity not in ("token", "tensor"):
            raise ValueError(f"a_granularity={self.a_granularity!r}: choose token (dynamic) or tensor (static)")
        if not 0 < self.a_clip_ratio <= 1:
            raise ValueError(f"a_clip_ratio={self.a_clip_ratio!r}: the per-token range factor must be in (0, 1]")
        if self.a_clip_ratio != 1 and self.a_granularity != "token":
            raise ValueError("a_clip_ratio scales per-token ranges: set a_granularity='token' or a_clip_ratio=1")
        if isinstance(self.w_clip_stride, bool) or not isinstance(self.w_clip_stride, int) or self.w_clip_stride < 1:
            raise ValueError(f"w_clip_stride={self.w_clip_stride!r}: use a positive integer (1 searches every factor)")
        if self.w_method == "gptq" and self.w_clip:
            raise ValueError("w_clip searches RTN's clipping; gptq uses arnq.ptq.gptq's max-abs grid: "
                             "set w_clip=False with w_method='gptq'")
        if self.w_method == "rtn" and self.act_order:
            raise ValueError("act_order is a GPTQ option: set w_method='gptq' or act_order=False")
        if not 0 <= self.percdamp < 1:
            raise ValueError(f"percdamp={self.percdamp!r}: the damping fraction must be in [0, 1), e.g. 0.01")

    def quant_scheme(self) -> QuantConfig:
        return QuantConfig(w_bits=self.w_bits, a_bits=self.a_bits, a_granularity=self.a_granularity)


@register_ptq
class Hadamard(PTQMethod):
    name = "hadamard"
    config_cls = HadamardConfig
    quantizes = "W+A"
    granularity = ("W per-channel sym (RTN with clip search, or GPTQ) on rotated weights; Linear inputs and "
                   "q/k/v per-token sym after rotation (or per-tensor static); softmax per the scheme")
    default_calib_size = 128
    #: PTQ-aware ARNQ's in-training runs: the clip search coarse-to-fine (3x fewer roundings; the same
    #: factor on 98.8 % of the rows of minilm_rt's rotated weights at W4, docs/ptq.md#hadamard)
    shadow_params = {"w_clip_stride": 4}
    paper = "QuaRot (Ashkboos et al., NeurIPS 2024), spcl/QuaRot"
    description = "randomized Hadamard rotations folded into the weights (online at fc2, W_o, post-LN inputs)"

    def _quantize(self, model: nn.Module, cfg: HadamardConfig, calib: Calibration) -> None:
        family, batches, device = calib.family, calib.batches, calib.device
        trail = _Trail()
        online = rotate_model(model, family, cfg.rotations, cfg.seed, cfg.random_signs, trail)
        pending = dict(online)
        prepare(model, cfg.quant_scheme(), family)
        trail.record(model)  # PTQ-aware ARNQ maps this model's quantizers back through these (arnq.arms.shadow)
        edges = edge_patterns(model, family)
        spec = QuantSpec(cfg.a_bits, True, cfg.a_granularity) if cfg.quantizes_activations else None
        for path, q in list(quantizers(model)):
            owner = path.rpartition(".")[0]
            body_input = q.point == "linear_in" and not name_matches(owner, edges)
            if spec is not None and (body_input or q.point in QKV_POINTS):
                rotation = pending.pop(owner, None) if body_input else None
                _set_module(model, path, RotatedQuantizer(spec, q.point, rotation, cfg.a_clip_ratio))
        for name, rotation in pending.items():  # weight-only: the online rotations alone
            module = model.get_submodule(name)
            if module.input_quantizer is not None:
                raise RuntimeError(f"{name} has an input point that cannot take its online rotation")
            module.input_quantizer = rotation
        if cfg.w_method == "gptq":
            self._gptq(model, cfg, calib, online)
        calibrate(model, batches, device=device)
        if cfg.w_method == "rtn" and cfg.w_clip:
            for name, module in model.named_modules():
                if isinstance(module, QuantLinear) and module.weight_quantizer is not None and not name_matches(name, edges):
                    scale = clipped_weight_scale(module.weight, module.weight_quantizer.spec.bits, cfg.w_clip_stride)
                    module.weight_quantizer.set_qparams(scale, torch.zeros_like(scale))

    @staticmethod
    def _gptq(model: nn.Module, cfg: HadamardConfig, calib: Calibration, online: dict[str, OnlineRotation]) -> None:
        """GPTQ block by block on the rotated weights; a Linear rotated online sees H = R^T H R."""
        for names in blocks_in_order(model, calib.family):
            hess = hessians(model, names, calib.batches)
            for name in names:
                module = model.get_submodule(name)
                h = hess[name]
                if name in online:
                    r = online[name].matrix(h.dtype).to(h.device)
                    h = r.T @ h @ r
                weight, scales = gptq_quantize_weight(module.weight, h.to(module.weight.device), cfg.w_bits,
                                                      percdamp=cfg.percdamp, act_order=cfg.act_order)
                install_weights(module, weight, scales.to(module.weight.device), cfg.w_bits, None)
                module.weight_quantizer.quantizing = True  # later blocks see this block's quantized weights


__all__ = [
    "ROTATIONS", "Hadamard", "HadamardConfig", "HadamardRotation", "HeadMixing", "RotatedNorm", "RotatedQuantizer",
    "clipped_weight_scale", "hadamard_base", "make_rotation", "ones_preserving", "paley_hadamard", "rotate_model",
]
