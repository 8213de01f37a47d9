"""QDrop: block reconstruction with randomly dropped activation quantization.

Wei, Gong, Li, Liu, Yu, "QDrop: Randomly Dropping Quantization for Extremely Low-bit
Post-Training Quantization" (ICLR 2022); official code wimh966/QDrop.

One pass over the transformer blocks (ViT/Swin blocks, Swin patch merging, BERT layers),
each block on its own in module order (engine: `arnq.ptq.reconstruct`): AdaRound weight
rounding (rectified sigmoid, lam 0.01, beta 20 -> 2 after a 20 % warm-up) and the steps of
the block's activation points (LSQ gradient, Adam, cosine to 0) are learned jointly to
reproduce the FP block output (squared error summed over channels). During this optimisation
each element of each activation point's output keeps its FP value with probability
`drop_prob` (0.5), and the block input takes each element from the FP model with the same
probability, else from the model whose earlier blocks are already quantized. Nothing is
dropped afterwards: the rounding is hard and every point quantizes.

The defaults are a CPU budget (500 steps per block, not 20,000): docs/ptq.md#qdrop.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from arnq.ptq.base import Calibration, PTQMethod, register_ptq
from arnq.ptq.reconstruct import ReconConfig, Stage, fp_copy, reconstruct_model
from arnq.quant import calibrate, convert, prepare


@dataclass(frozen=True)
class QDropConfig(ReconConfig):
    drop_prob: float = 0.5  # probability that an activation element keeps its FP value (official 0.5)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.drop_prob, bool) or not 0 <= self.drop_prob < 1:
            raise ValueError(f"drop_prob={self.drop_prob!r}: use a probability in [0, 1) (official 0.5; "
                             "0 quantizes every element while reconstructing)")


@register_ptq
class QDrop(PTQMethod):
    name = "qdrop"
    config_cls = QDropConfig
    granularity = ("W per output row, symmetric, searched step, learned rounding per block; "
                   "A per tensor, steps learned jointly with the rounding")
    default_calib_size = 1024
    paper = "QDrop (Wei et al., ICLR 2022), wimh966/QDrop"
    description = "block reconstruction of rounding and activation steps with activation quantization dropped (p 0.5)"
    smoke_params = {"iters": 20}
    #: PTQ-aware ARNQ's repeated in-training runs: a cheaper reconstruction
    shadow_params = {"iters": 60}

    def _quantize(self, model: nn.Module, cfg: QDropConfig, calib: Calibration) -> None:
        family, batches, device = calib.family, calib.batches, calib.device
        prepare(model, cfg.quant_scheme(), family)
        calibrate(model, batches, device=device)
        convert(model)
        fp_model = fp_copy(model)
        joint = Stage(cfg.iters, rounding=True, learn_steps=True, quant_input=True, drop_prob=cfg.drop_prob)
        model.arnq_recon_log = reconstruct_model(model, fp_model, calib.family, batches, cfg, joint, "joint", device)


__all__ = ["QDrop", "QDropConfig"]
