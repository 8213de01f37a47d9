"""Fake quantization core: quantizers, observers, module swap (prepare -> calibrate -> convert)."""

from arnq.quant.api import (
    DEFAULT_POINTS,
    FAMILIES,
    POINTS,
    QuantConfig,
    calibrate,
    calibrate_weights,
    convert,
    detect_family,
    point_summary,
    prepare,
    quantization_disabled,
    quantizers,
    set_quantizing,
)
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range, sqnr_db
from arnq.quant.observers import OBSERVERS
from arnq.quant.quantizer import FakeQuantizer, QuantSpec

__all__ = [
    "DEFAULT_POINTS", "FAMILIES", "OBSERVERS", "POINTS", "FakeQuantizer", "QuantConfig", "QuantSpec",
    "calc_qparams", "calibrate", "calibrate_weights", "convert", "detect_family", "fake_quantize",
    "point_summary", "prepare", "quant_range", "quantization_disabled", "quantizers", "set_quantizing", "sqnr_db",
]
