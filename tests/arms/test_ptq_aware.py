"""PTQ-aware ARNQ noise: at full strength the training forward is the target's quantized model."""

import copy
from dataclasses import replace

import pytest
import torch

from arnq.arms import arm_config, arm_config_from_dict
from arnq.arms.noise import NoiseConfig, NoiseInjector, ptq_calib_size, resolved_weight_error, target_key
from arnq.arms.shadow import shadow_config
from arnq.ptq import PTQ_METHODS, ptq_config, quantize_
from arnq.ptq.base import handler_for
from arnq.ptq.common import run_model
from arnq.quant import QuantConfig
from tests.conftest import image_batch, text_batch, tiny_bert, tiny_swin, tiny_vit

WEIGHT_ONLY = ("gptq", "awq", "adaround")
FAMILIES = {"vit": (tiny_vit, image_batch), "bert": (tiny_bert, text_batch)}


def _config(method, **params):
    bits = "W4A16" if method in WEIGHT_ONLY else "W4A4"
    return ptq_config(method, bits, **(handler_for(ptq_config(method, bits)).smoke_params | params))


def _setup(family, target, cfg=None, base=None):
    make, batch = FAMILIES[family]
    base = base if base is not None else make().eval()
    calib = [(batch(8, seed=5), torch.zeros(8, dtype=torch.long))]
    model = copy.deepcopy(base)
    cfg = cfg or NoiseConfig(target="W" if target.a_bits == 16 else "WA", schedule="constant")
    inj = NoiseInjector(model, cfg, target, seed=0, calib=lambda n: calib)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return base, model, inj, calib, batch


MIRRORED = sorted(m for m in PTQ_METHODS.names() if PTQ_METHODS.get(m).shadow_mirrorable)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("method", [m for m in MIRRORED if m != "omse"])  # omse: minmax's path, 15 s
def test_full_strength_noise_is_the_targets_quantized_forward(family, method):
    """Every point the method quantizes (its reparameterisation, special quantizers, weight rounding and
    bias changes included) carries exactly the method's error: the noisy training forward at alpha = 1
    computes what `quantize_` makes of the same weights."""
    target = _config(method)
    handler = handler_for(target)
    if family == "bert" and "bert" not in handler.families:
        pytest.skip(f"{method} does not support bert")
    base, model, inj, calib, batch = _setup(family, target)
    inj.on_step(0, 10)
    x = batch(8, seed=9)
    quantized = inj.shadow.model  # `quantize_` with the target config on a copy of the same weights
    assert quantized.training is False and inj.shadow.target == shadow_config(target, ptq_calib_size(inj.cfg, target))
    with torch.no_grad():
        noisy, expected, fp = run_model(model, x), run_model(quantized, x), run_model(base, x)
    assert (fp - expected).abs().max() > 1e-3  # quantization changes the output
    torch.testing.assert_close(noisy, expected, atol=2e-5, rtol=0)
    assert not inj.unmatched


def test_noise_follows_the_weights_at_each_refresh_and_epoch():
    target = _config("repq_vit")
    base, model, inj, calib, batch = _setup("vit", target, NoiseConfig(schedule="constant", ptq_refresh=5))
    assert inj.shadow.refreshes == 1  # at install: it finds the target's points
    inj.on_step(0, 20)
    first = inj.shadow.refreshes
    assert first == 1  # step 0 trains the weights install quantized: no second run
    with torch.no_grad():
        model.blocks[0].mlp.fc1.weight.mul_(3.0)
    inj.on_step(3, 20)
    assert inj.shadow.refreshes == first  # between refreshes the quantizers stay
    inj.on_step(5, 20)
    assert inj.shadow.refreshes == first + 1
    inj.on_epoch_start()
    inj.on_step(6, 20)
    assert inj.shadow.refreshes == first + 2  # a new epoch starts from fresh quantizers (resume-safe)
    moved = copy.deepcopy(base)
    moved.load_state_dict({k: v for k, v in model.state_dict().items()})
    quantized = quantize_(moved, shadow_config(target, 8), calib)
    x = batch(8, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(run_model(model, x), run_model(quantized, x), atol=2e-5, rtol=0)


@pytest.mark.parametrize("method", ["gptq", "erq"])
def test_a_frozen_weight_error_is_the_refresh_s_error_added_to_the_moved_weights(method):
    """weight_error="frozen": at a refresh the forward is the target's quantized model, as requantized; after the
    weights move it is W + e with e the refresh's error, where requantized rounds the moved weights again."""
    target = _config(method)
    family = "bert" if method == "erq" else "vit"
    cfgs = {mode: NoiseConfig(target="W" if target.a_bits == 16 else "WA", schedule="constant", weight_error=mode)
            for mode in ("requantized", "frozen")}
    setups = {mode: _setup(family, target, cfg) for mode, cfg in cfgs.items()}
    x = setups["frozen"][4](8, seed=9)
    outs = {}
    for mode, (_, model, inj, _, _) in setups.items():
        inj.on_step(0, 10)
        with torch.no_grad():
            outs[mode] = run_model(model, x)
    torch.testing.assert_close(outs["frozen"], outs["requantized"], atol=2e-5, rtol=0)
    _, model, inj, _, _ = setups["frozen"]
    layer = next(m for m in model.modules() if getattr(m, "weight_quantizer", None) is not None
                 and m.weight_quantizer.noise is not None)
    w0 = layer.weight.detach().clone()
    error = layer.weight_quantizer(layer.weight).detach() - w0
    point = layer.weight_quantizer.noise
    step = torch.full_like(w0, 1e-4)
    with torch.no_grad():
        layer.weight.add_(step)
    inj.on_step(1, 10)  # no refresh: the error of step 0 stays
    torch.testing.assert_close(layer.weight_quantizer(layer.weight).detach(), w0 + step + error, atol=1e-6, rtol=0)
    requantized = point.source(layer.weight.detach())
    assert not torch.allclose(requantized, w0 + step + error, atol=1e-6)  # requantized: rounded again
    inj.on_epoch_start()
    inj.on_step(2, 10)  # a refresh: the error of the moved weights
    torch.testing.assert_close(layer.weight_quantizer(layer.weight).detach(), point.source(layer.weight.detach()),
                               atol=1e-6, rtol=0)


def test_the_default_weight_error_is_the_handlers_and_keys_the_same_target_as_naming_it():
    """Unset, ERQ's and GPTQ's weights carry the frozen error (requantized, the training diverges), every other
    method's are requantized; the cache key's target part is the same as with the setting named."""
    default = NoiseConfig()
    assert default.weight_error is None
    for method in MIRRORED:
        target = ptq_config(method, "W4A16" if method in WEIGHT_ONLY else "W4A4")
        mode = "frozen" if method in ("erq", "gptq") else "requantized"
        assert handler_for(target).shadow_weight_error == mode
        assert resolved_weight_error(default, target) == mode
        assert target_key(default, target) == target_key(NoiseConfig(weight_error=mode), target)
        other = "requantized" if mode == "frozen" else "frozen"
        assert target_key(default, target) != target_key(NoiseConfig(weight_error=other), target)
    grid = NoiseConfig(delta_observer="minmax")
    assert resolved_weight_error(grid, ptq_config("erq", "W4A4")) == "requantized"
    _, model, inj, _, _ = _setup("bert", _config("erq"))
    assert inj.weight_error == "frozen"
    assert all(p.frozen == p.is_weight for p in inj.points)


def test_a_noise_arm_recorded_before_weight_error_existed_reads_back_requantized():
    recorded = arm_config("arnq").to_dict()
    assert recorded["weight_error"] is None and arm_config_from_dict(recorded).weight_error is None
    del recorded["weight_error"]  # a row's config from before the knob: every weight was requantized
    assert arm_config_from_dict(recorded).weight_error == "requantized"


def test_noise_is_off_in_eval_and_gradients_pass_straight_through():
    target = _config("ptq4vit")
    base, model, inj, _, batch = _setup("vit", target)
    inj.on_step(0, 10)
    x = batch(8, seed=9)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(run_model(model, x), run_model(base, x), atol=1e-6, rtol=0)
    model.train()
    q = model.blocks[0].mlp.fc2.input_quantizer  # PTQ4ViT's twin-uniform GELU quantizer in the target
    h = torch.randn(4, 17, model.blocks[0].mlp.fc2.in_features, requires_grad=True)
    q(h).sum().backward()
    torch.testing.assert_close(h.grad, torch.ones_like(h))


def test_warm_up_perturbs_a_growing_fraction_of_the_elements():
    target = _config("minmax")
    _, model, inj, _, _ = _setup("vit", target, NoiseConfig(schedule="linear", warmup_frac=0.5))
    layer = model.blocks[1].mlp.fc1
    inj.on_step(0, 100)
    assert torch.equal(layer.weight_quantizer(layer.weight), layer.weight)  # alpha 0
    inj.on_step(10, 100)  # alpha 0.2: about a fifth of the weights carry their error
    changed = (layer.weight_quantizer(layer.weight) != layer.weight).float().mean()
    full = (layer.weight_quantizer.noise.source(layer.weight.detach()) != layer.weight).float().mean()
    assert 0.1 < float(changed / full) < 0.3


def test_fq_vit_layernorm_inputs_are_perturbed_through_hooks():
    target = _config("fq_vit")
    _, _, inj, _, _ = _setup("vit", target)
    inj.on_step(0, 10)
    kinds = {p.point for p in inj.points}
    assert {"weight", "linear_in", "attn_q", "attn_k", "attn_v", "attn_probs", "norm_in"} <= kinds


def test_config_and_target_validation():
    with pytest.raises(ValueError, match="uniform grid"):
        NoiseConfig(dist="uniform")
    NoiseConfig(dist="uniform", delta_observer="minmax")  # the uniform-grid path keeps random noise
    with pytest.raises(ValueError, match="target PTQ config"):
        NoiseInjector(tiny_vit(), NoiseConfig(), QuantConfig(w_bits=4, a_bits=4))
    with pytest.raises(ValueError, match="calibration data"):
        NoiseInjector(tiny_vit(), NoiseConfig(), ptq_config("minmax", "W4A4"))
    with pytest.raises(ValueError, match="ptq_calib"):
        NoiseConfig(ptq_calib=0)
    with pytest.raises(ValueError, match="ptq_refresh"):
        NoiseConfig(ptq_refresh=0)
    with pytest.raises(ValueError, match="weight_error"):
        NoiseConfig(weight_error="fixed")
    with pytest.raises(ValueError, match="needs PTQ-aware noise"):
        NoiseConfig(weight_error="frozen", delta_observer="minmax")
    NoiseConfig(weight_error="requantized", delta_observer="minmax")  # what the uniform grid does anyway


def test_cache_key_depends_on_the_whole_target_config():
    cfg = NoiseConfig()
    keys = [target_key(cfg, t) for t in (ptq_config("minmax", "W4A4"), ptq_config("percentile", "W4A4"),
                                        ptq_config("repq_vit", "W4A4"), ptq_config("repq_vit", "W4A4", log_softmax=False),
                                        ptq_config("repq_vit", "W4A8"))]
    assert len({repr(k) for k in keys}) == len(keys)
    assert target_key(NoiseConfig(ptq_calib=16), ptq_config("minmax", "W4A4")) != keys[0]
    grid = NoiseConfig(delta_observer="minmax")  # uniform grid: the method does not matter
    assert target_key(grid, ptq_config("minmax", "W4A4")) == target_key(grid, ptq_config("percentile", "W4A4"))


def test_an_arm_aiming_at_a_method_the_shadow_cannot_mirror_is_refused_before_training_unless_its_noise_is_a_uniform_grid(
        monkeypatch):
    monkeypatch.setattr(PTQ_METHODS.get("hadamard"), "shadow_mirrorable", False)  # a method of the future
    target = ptq_config("hadamard", "W4A4")
    with pytest.raises(ValueError, match="cannot aim at .*uniform-grid noise"):
        target_key(NoiseConfig(), target)  # what a sweep computes for its cache keys, before any trial starts
    with pytest.raises(ValueError, match="cannot aim at"):
        _setup("vit", target)
    _, model, inj, _, batch = _setup("vit", target, NoiseConfig(delta_observer="target", schedule="constant"))
    inj.on_step(0, 10)
    assert torch.isfinite(run_model(model, batch(8, seed=9))).all() and inj.points


@pytest.mark.parametrize("params", [{}, {"w_method": "gptq", "w_clip": False}])
def test_hadamard_noise_maps_the_rotated_quantizers_back_exactly_on_a_swin(params):
    """Swin exercises what the ViT and BERT cases do not: the patch-merging reduction (a LayerNorm folded into a
    Linear without bias, rotated over four tokens) and the stem LayerNorm. In float64 the noisy training forward
    equals the rotated quantized model up to float rounding; in float32 a value landing on a rounding boundary can round
    the other way in the two coordinate systems (a few elements of the larger Swin activations)."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        base = tiny_swin().eval()
        target = ptq_config("hadamard", "W4A4", **params)
        calib = [(image_batch(8, seed=5), torch.zeros(8, dtype=torch.long))]
        model = copy.deepcopy(base)
        inj = NoiseInjector(model, NoiseConfig(target="WA", schedule="constant"), target, seed=0,
                            calib=lambda n: calib)
        model.train()
        for m in model.modules():
            if type(m).__name__ == "DropPath":  # stochastic depth would make the two forwards differ
                m.eval()
        inj.on_step(0, 10)
        x = image_batch(8, seed=9)
        with torch.no_grad():
            noisy, expected, fp = run_model(model, x), run_model(inj.shadow.model, x), run_model(base, x)
    finally:
        torch.set_default_dtype(dtype)
    assert (fp - expected).abs().max() > 1e-3
    torch.testing.assert_close(noisy, expected, atol=1e-7, rtol=0)  # GPTQ solves in float32
    assert not inj.unmatched and any(p.point == "attn_q" for p in inj.points)


@pytest.mark.parametrize("method", MIRRORED)
def test_in_training_runs_change_only_the_handlers_shadow_params(method):
    target = ptq_config(method, "W4A16" if method in WEIGHT_ONLY else "W4A4")
    shadow = shadow_config(target, 16, "in_training")
    changed = {k for k in target.to_dict() if target.to_dict()[k] != shadow.to_dict()[k]}
    assert changed <= {"calib_size", *handler_for(target).shadow_params} and shadow.calib_size == 16
    configured = shadow_config(target, 16, "configured")  # ptq_settings: configured keeps the method as is
    assert configured == replace(target, calib_size=16)


def test_the_default_ptq_settings_are_the_handlers_and_key_the_same_fine_tune_as_naming_them():
    """Unset, the in-training runs are the handler's `shadow_settings`: PTQ4ViT as configured (its cheaper
    search is an unfaithful surrogate on text models), the others with their `shadow_params`."""
    default = NoiseConfig()
    assert default.ptq_settings is None
    for method in MIRRORED:
        target = ptq_config(method, "W4A16" if method in WEIGHT_ONLY else "W4A4")
        settings = "configured" if method == "ptq4vit" else "in_training"
        assert handler_for(target).shadow_settings == settings
        assert shadow_config(target, 16) == shadow_config(target, 16, settings)
        assert target_key(default, target) == target_key(NoiseConfig(ptq_settings=settings), target)


def test_a_noise_arm_recorded_before_ptq_settings_existed_reads_back_with_the_in_training_settings():
    recorded = arm_config("arnq").to_dict()
    assert recorded["ptq_settings"] is None and arm_config_from_dict(recorded).ptq_settings is None
    del recorded["ptq_settings"]  # a row's config from before the knob: the in-training settings were the only ones
    assert arm_config_from_dict(recorded) == arm_config("arnq", ptq_settings="in_training")
    assert arm_config_from_dict(arm_config("plain").to_dict()) == arm_config("plain")


def test_ptq_settings_configured_runs_the_target_as_is_and_keys_the_fine_tune_only_where_that_differs():
    ptq4vit, minmax = ptq_config("ptq4vit", "W4A4"), ptq_config("minmax", "W4A4")
    cheap, full = NoiseConfig(ptq_settings="in_training"), NoiseConfig(ptq_settings="configured")
    assert target_key(cheap, ptq4vit) != target_key(full, ptq4vit)
    assert target_key(full, ptq4vit)["ptq"]["n_grid"] == ptq4vit.n_grid  # the grid PTQ4ViT is scored with
    assert target_key(cheap, minmax) == target_key(full, minmax)  # no shadow_params: the same fine-tune
    with pytest.raises(ValueError, match="ptq_settings='full': choose one of None, in_training, configured"):
        NoiseConfig(ptq_settings="full")
    with pytest.raises(ValueError, match="settings"):
        shadow_config(ptq4vit, 16, "full")
