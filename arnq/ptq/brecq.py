"""BRECQ: block reconstruction with learned weight rounding, then learned activation steps.

Li, Gong, Tan, Yang, Hu, Zhang, Yu, Wang, Gu, "BRECQ: Pushing the Limit of Post-Training
Quantization by Block Reconstruction" (ICLR 2021); official code yhhhli/BRECQ.

Two passes over the transformer blocks (ViT/Swin blocks, Swin patch merging, BERT layers),
each block on its own in module order (engine: `arnq.ptq.reconstruct`):

1. weights: every activation point off; AdaRound (rectified sigmoid, lam 0.01, beta 20 -> 2
   after a 20 % warm-up) minimises the block's output error on its input from the model whose
   earlier blocks are already rounded, against the FP block output; the error is the squared
   error summed over channels (official default), or, with `fisher`, weighted by the damped
   diagonal Fisher (|g| + 1)^2 of the official code (g: gradient at the block output of
   KL(FP || model quantized through this block), or of the task loss on the calibration
   labels). The rounding is hard when the block is done.
2. activations (a_bits < 16): steps re-initialised on the weight-quantized model (least-L2
   shrunk range), then each block learns its steps alone (LSQ gradient, Adam, cosine to 0) on
   the FP block input, error |out - target|^2.4.

The defaults are a CPU budget (500 + 125 steps per block, not 20,000 + 5,000):
docs/ptq.md#brecq.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from arnq.ptq.base import Calibration, PTQMethod, register_ptq
from arnq.ptq.reconstruct import FISHER_MODES, ReconConfig, Stage, fp_copy, reconstruct_model
from arnq.quant import calibrate, convert, prepare, quantizers


@dataclass(frozen=True)
class BRECQConfig(ReconConfig):
    act_iters: int = 125  # steps per block of the activation-step pass (official 5,000); 0 skips it
    act_p: float = 2.4  # exponent of the activation pass's error (official 2.4)
    fisher: str = "off"  # off (official default: squared error), kl (official code's Fisher), labels

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.act_iters, bool) or not isinstance(self.act_iters, int) or self.act_iters < 0:
            raise ValueError(f"act_iters={self.act_iters!r}: use a non-negative integer (0 skips the step pass)")
        if self.act_p <= 0:
            raise ValueError(f"act_p={self.act_p!r}: the error exponent must be positive (official 2.4)")
        if self.fisher not in FISHER_MODES:
            raise ValueError(f"fisher={self.fisher!r}: choose one of {', '.join(FISHER_MODES)}")


@register_ptq
class BRECQ(PTQMethod):
    name = "brecq"
    config_cls = BRECQConfig
    granularity = ("W per output row, symmetric, searched step, learned rounding per block; "
                   "A per tensor, steps learned per block after the weights")
    default_calib_size = 1024
    paper = "BRECQ (Li et al., ICLR 2021), yhhhli/BRECQ"
    description = "block reconstruction: AdaRound rounding per block (FP activations), then LSQ activation steps"
    smoke_params = {"iters": 20, "act_iters": 5}
    #: PTQ-aware ARNQ's repeated in-training runs: a cheaper reconstruction
    shadow_params = {"iters": 60, "act_iters": 15}

    def _quantize(self, model: nn.Module, cfg: BRECQConfig, calib: Calibration) -> None:
        family, batches, device = calib.family, calib.batches, calib.device
        prepare(model, cfg.quant_scheme(), family)
        calibrate(model, batches, device=device)
        convert(model)
        fp_model = fp_copy(model)
        acts = [q for _, q in quantizers(model) if q.point != "weight"]
        for q in acts:  # pass 1 reconstructs the weights with FP activations
            q.quantizing = False
        weights = Stage(cfg.iters, rounding=True, learn_steps=False, quant_input=True, fisher=cfg.fisher)
        records = reconstruct_model(model, fp_model, family, batches, cfg, weights, "weights", device)
        if acts:
            calibrate(model, batches, device=device)  # activation steps on the weight-quantized model
            convert(model)
            if cfg.act_iters:
                steps = Stage(cfg.act_iters, rounding=False, learn_steps=True, quant_input=False, p_norm=cfg.act_p)
                records += reconstruct_model(model, fp_model, family, batches, cfg, steps, "steps", device)
        model.arnq_recon_log = records


__all__ = ["BRECQ", "BRECQConfig"]
