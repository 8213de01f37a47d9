"""The trial pipeline under every arm reproduces its stored rows and fine-tuned weights exactly."""

import json

import harness.pipeline as pipeline
from arnq.arms import arm_config
from arnq.finetune import FinetuneConfig
from arnq.ptq import ptq_config
from tests.harness.golden_trials import GOLDEN, compute, weights_checksum
from tests.test_finetune import _loaded

FT = FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, train_subset=128, val_size=32, diagnostics_batches=1,
                    epoch_q_eval=False)


def test_rows_and_weights_match_the_reference(monkeypatch, tmp_path):
    loaded = _loaded()
    loaded.fp_accuracy = 0.5
    monkeypatch.setattr(pipeline, "_loaded", lambda model, fp_seed, device, cache_root=None: loaded)

    def run(arm, params, ptq, bits):
        spec = pipeline.TrialSpec(model="vit_mnist", ptq=ptq_config(ptq, bits, calib_size=32),
                                  arm=arm_config(arm, **params), seed=0, finetune=FT)
        row = pipeline.run_trial(spec, cache_root=tmp_path)
        state, _, hit = pipeline.cached_finetune(spec, loaded, cache_root=tmp_path)
        assert hit
        return {**row, "weights_checksum": weights_checksum(state)}

    got = compute(run)
    reference = json.loads(GOLDEN.read_text())
    assert got == reference, {k: (got[k], reference[k]) for k in got if got[k] != reference[k]}
