"""Post-training quantization methods: typed configs, handlers found by config type, `quantize_`.

```python
from arnq.ptq import RepQViTConfig, quantize_

quantize_(model, RepQViTConfig(w_bits=4, a_bits=4), calib_batches)
```
"""

from __future__ import annotations

# importing a method's module registers it
from arnq.ptq import (  # noqa: F401
    adalog,
    adaround,
    awq,
    brecq,
    calibrators,
    erq,
    fq_vit,
    gptq,
    hadamard,
    liu2021,
    mrem,
    noisyquant,
    os_plus,
    ptq4vit,
    qdrop,
    repq_vit,
    smoothquant,
)
from arnq.ptq.adalog import AdaLogConfig
from arnq.ptq.adaround import AdaRoundConfig
from arnq.ptq.awq import AWQConfig
from arnq.ptq.base import (
    PTQ_METHODS,
    Calibration,
    PTQConfig,
    PTQMethod,
    format_bits,
    handler_for,
    parse_bits,
    ptq_config,
    ptq_config_from_dict,
    quantize_,
    register_ptq,
)
from arnq.ptq.brecq import BRECQConfig
from arnq.ptq.calibrators import (
    CALIBRATORS,
    CalibratorConfig,
    EMAConfig,
    MinMaxConfig,
    OMSEConfig,
    PercentileConfig,
)
from arnq.ptq.erq import ERQConfig
from arnq.ptq.fq_vit import FQViTConfig
from arnq.ptq.gptq import GPTQConfig
from arnq.ptq.hadamard import HadamardConfig
from arnq.ptq.liu2021 import Liu2021Config
from arnq.ptq.mrem import MREMConfig
from arnq.ptq.noisyquant import NoisyQuantConfig
from arnq.ptq.os_plus import OSPlusConfig
from arnq.ptq.ptq4vit import PTQ4ViTConfig
from arnq.ptq.qdrop import QDropConfig
from arnq.ptq.repq_vit import RepQViTConfig
from arnq.ptq.smoothquant import SmoothQuantConfig

__all__ = [
    "AWQConfig", "AdaLogConfig", "AdaRoundConfig", "BRECQConfig", "CALIBRATORS", "Calibration", "CalibratorConfig",
    "EMAConfig", "ERQConfig", "FQViTConfig", "GPTQConfig", "HadamardConfig", "Liu2021Config", "MREMConfig",
    "MinMaxConfig", "NoisyQuantConfig", "OMSEConfig", "OSPlusConfig", "PTQ4ViTConfig", "PTQConfig", "PTQMethod",
    "PTQ_METHODS", "PercentileConfig", "QDropConfig", "RepQViTConfig", "SmoothQuantConfig", "format_bits",
    "handler_for", "parse_bits", "ptq_config", "ptq_config_from_dict", "quantize_", "register_ptq",
]
