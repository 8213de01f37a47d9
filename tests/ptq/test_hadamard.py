"""Hadamard rotation (QuaRot): orthogonal rotations, exact folding on every family, spread outliers, W4A4 quality."""

import copy

import pytest
import torch
from torch import nn

import arnq.ptq.hadamard as hadamard
from arnq.batch import forward_logits
from arnq.ptq.base import handler_for, ptq_config, quantize_
from arnq.ptq.common import (
    collect,
    fast_point_rotations,
    input_maps,
    materialize,
    norm_groups,
    point_rotations,
)
from arnq.ptq.hadamard import (
    HadamardConfig,
    HadamardRotation,
    HeadMixing,
    RotatedNorm,
    RotatedQuantizer,
    block_fast,
    clipped_weight_scale,
    hadamard_base,
    make_rotation,
    ones_preserving,
)
from arnq.quant import QuantSpec, quantization_disabled
from arnq.quant.fake_quant import calc_qparams, fake_quantize, quant_range
from tests.conftest import FAMILY_CASES, image_batch, text_batch, tiny_bert, tiny_vit


def with_outlier_channels(model, family):
    """Give two LayerNorm channels a x20 gain, as trained transformers' outlier channels."""
    with torch.no_grad():
        for g in norm_groups(model, family):
            model.get_submodule(g.norm).weight[[3, 7]] *= 20
    return model


def calib_batches(make_inputs):
    return [(make_inputs(seed=10 + i), torch.zeros(8)) for i in range(2)]


@pytest.mark.parametrize("n", [1, 2, 12, 20, 28, 36, 48, 64, 96, 384, 6, 10])
def test_rotations_are_orthogonal_and_the_fast_transform_is_the_matrix(n):
    rotation = make_rotation(n, seed=3, key="test", random_signs=True)
    r = rotation.matrix()
    assert r.is_contiguous()  # torch.kron (the cross-head rotation of 12-head MiniLM) refuses a strided one
    torch.testing.assert_close(r @ r.T, torch.eye(n, dtype=torch.float64), atol=1e-12, rtol=0)
    x = torch.randn(5, 2, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    torch.testing.assert_close(rotation(x), x @ r, atol=1e-12, rtol=0)
    base = hadamard_base(n)
    if n in (6, 10):  # no Hadamard matrix of these orders exists: the seeded random orthogonal fallback
        assert base is None and rotation.dense is not None
    else:
        m = base.shape[0]
        assert n % m == 0 and bool((base.abs() == 1).all())
        torch.testing.assert_close(base @ base.T, m * torch.eye(m))
        assert torch.allclose(r.abs(), torch.full_like(r, n ** -0.5))  # every entry +-1/sqrt(n): a spike spreads evenly


def test_seeded_rotations_repeat_and_differ_by_seed_and_use():
    a = make_rotation(64, seed=0, key="residual", random_signs=True).matrix()
    assert torch.equal(a, make_rotation(64, seed=0, key="residual", random_signs=True).matrix())
    assert not torch.equal(a, make_rotation(64, seed=1, key="residual", random_signs=True).matrix())
    assert not torch.equal(a, make_rotation(64, seed=0, key="ffn", random_signs=True).matrix())


def test_the_residual_rotation_fixes_the_all_ones_direction_so_layernorm_commutes():
    q = ones_preserving(make_rotation(48, seed=0, key="residual", random_signs=True).matrix())
    torch.testing.assert_close(q @ q.T, torch.eye(48, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(q.T @ torch.ones(48, dtype=torch.float64), torch.ones(48, dtype=torch.float64))
    x = torch.randn(16, 48, dtype=torch.float64) + 3.0  # a large common mode, as a residual stream carries
    torch.testing.assert_close(nn.functional.layer_norm(x @ q, (48,)), nn.functional.layer_norm(x, (48,)) @ q)
    plain = make_rotation(48, seed=0, key="residual", random_signs=True).matrix()
    assert (nn.functional.layer_norm(x @ plain, (48,)) - nn.functional.layer_norm(x, (48,)) @ plain).abs().max() > 0.1


def test_head_mixing_is_the_kronecker_product():
    mix = HeadMixing(make_rotation(4, seed=0, key="heads_cross", random_signs=True), head_dim=8)
    x = torch.randn(3, 32, dtype=torch.float64)
    torch.testing.assert_close(mix(x), x @ mix.matrix(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("random_signs", [True, False])
@pytest.mark.parametrize("n", [1, 12, 20, 64, 384, 1536, 6])
def test_the_fast_map_is_the_dense_rotation_and_its_transpose(n, random_signs):
    """What PTQ-aware ARNQ applies on every step: the Kronecker factors (H_m across, Sylvester within) give x R and
    x R^T to float rounding, for Paley and Sylvester orders and the dense random fallback (6)."""
    rotation = make_rotation(n, seed=2, key="ffn", random_signs=random_signs)
    fast, r = rotation.fast_map(), rotation.matrix()
    x = torch.randn(3, 5, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    torch.testing.assert_close(fast.apply(x), x @ r, atol=1e-12, rtol=0)
    torch.testing.assert_close(fast.apply_t(x), x @ r.T, atol=1e-12, rtol=0)
    torch.testing.assert_close(fast.apply_t(fast.apply(x)), x, atol=1e-12, rtol=0)
    x32 = x.float()
    torch.testing.assert_close(fast.apply(x32), (x @ r).float(), atol=2e-5, rtol=0)


def test_the_fast_residual_and_head_maps_are_their_dense_matrices():
    rots = hadamard._Rotations(seed=1, random_signs=True, device=torch.device("cpu"))
    x = torch.randn(7, 48, dtype=torch.float64)
    q, fast = rots.residual(48), rots.residual_fast(48)  # the Hadamard, then the all-ones-preserving reflection
    torch.testing.assert_close(fast.apply(x), x @ q, atol=1e-12, rtol=0)
    torch.testing.assert_close(fast.apply_t(x), x @ q.T, atol=1e-12, rtol=0)
    within = rots.matrix("heads", 8)
    for across, a in ((None, torch.eye(6, dtype=torch.float64)),  # head by head
                      (rots.fast("heads_cross", 6), rots.matrix("heads_cross", 6)),  # 6: the dense fallback
                      (rots.fast("heads_cross", 12), rots.matrix("heads_cross", 12))):
        k = torch.kron(a, within)
        y = torch.randn(4, k.shape[0], dtype=torch.float64)
        mapped = block_fast(within, a.shape[0], across)
        torch.testing.assert_close(mapped.apply(y), y @ k, atol=1e-12, rtol=0)
        torch.testing.assert_close(mapped.apply_t(y), y @ k.T, atol=1e-12, rtol=0)


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_every_recorded_rotation_has_a_fast_map_equal_to_it(family):
    """The shadow reads these: each Linear's column rotation and each q/k/v point's head-wise rotation."""
    build, make_inputs = FAMILY_CASES[family]
    q = quantize_(build(), ptq_config("hadamard", "W4A4"), calib_batches(make_inputs))
    maps, points, fast_points = input_maps(q), point_rotations(q), fast_point_rotations(q)
    rotated = {name: m for name, m in maps.items() if m.rotation is not None}
    assert rotated and all(m.fast_rotation is not None for m in rotated.values())
    assert points and set(fast_points) == set(points)
    pairs = [(m.rotation, m.fast_rotation) for m in rotated.values()] + [(points[p], fast_points[p]) for p in points]
    for dense, fast in pairs:
        eye = torch.eye(dense.shape[0], dtype=torch.float64)
        torch.testing.assert_close(fast.apply(eye), dense.double(), atol=1e-6, rtol=0)  # dense: float32
        torch.testing.assert_close(fast.apply_t(eye), dense.double().T, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bits", ["W4A4", "W4A16"])
def test_hadamard_leaves_the_fp_function_unchanged(family_case, bits):
    family, build, make_inputs = family_case
    model = with_outlier_channels(build(), family)
    x = make_inputs(seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
        q = quantize_(copy.deepcopy(model), ptq_config("hadamard", bits), calib_batches(make_inputs))
        with quantization_disabled(q):
            torch.testing.assert_close(forward_logits(q, x), reference, atol=1e-5, rtol=1e-5)
        assert (forward_logits(q, x) - reference).abs().max() > 1e-4  # and quantization is on
    online = [m for m in q.modules() if isinstance(m, RotatedQuantizer) and m.rotation is not None]
    assert bool(online) == (bits == "W4A4")  # weight-only: the online rotations sit alone at the inputs
    if family in ("vit", "swin"):  # the LayerNorm affine moved into the Linears that read the stream
        norms = [m for m in q.modules() if isinstance(m, nn.LayerNorm)]
        assert norms and all(bool((m.weight == 1).all()) for m in norms)
    assert any(isinstance(m, RotatedNorm) for m in q.modules()) == (family == "swin")


def _cross_head_rotation_of_an_exact_vit(embed_dim: int, depth: int, num_heads: int, **kwargs) -> HeadMixing:
    """Quantize a seeded timm ViT with hadamard at W8A8, check the FP function is unchanged with quantization off,
    and return the first block's cross-head rotation."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                              num_classes=10, **kwargs).eval()
    x = image_batch(seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
        q = quantize_(copy.deepcopy(model), ptq_config("hadamard", "W8A8"), calib_batches(image_batch))
        with quantization_disabled(q):
            torch.testing.assert_close(forward_logits(q, x), reference, atol=1e-5, rtol=1e-5)
    mixing = q.blocks[0].attn.proj.input_quantizer.rotation
    assert isinstance(mixing, HeadMixing)
    return mixing


def test_paley_sized_head_counts_stay_exact():
    """12 heads (MiniLM's count): the cross-head rotation is Paley's H_12, whose dense matrix feeds torch.kron."""
    assert _cross_head_rotation_of_an_exact_vit(96, 1, 12).rotation.base is not None


def test_sizes_without_a_sylvester_hadamard_stay_exact():
    """Width 48 = 12 * 4 (Paley), FFN 192 = 12 * 16, 6 heads (no Hadamard: random orthogonal across heads)."""
    mixing = _cross_head_rotation_of_an_exact_vit(48, 2, 6, init_values=0.5)  # LayerScale folds into the writers
    assert mixing.rotation.dense is not None


def test_rotation_spreads_the_outlier_channels():
    """The inputs a quantizer sees: after folding (ViT qkv), online (BERT query) and online after GELU (fc2)."""
    ratio = lambda m: float(m.max() / m.mean())  # noqa: E731  max/mean of the per-channel absmax
    cases = {"vit": (tiny_vit, image_batch, ("blocks.0.attn.qkv", "blocks.1.mlp.fc1")),
             "bert": (tiny_bert, text_batch, ("bert.encoder.layer.0.attention.self.query",
                                              "bert.encoder.layer.1.intermediate.dense"))}
    for family, (build, make_inputs, names) in cases.items():
        model = with_outlier_channels(build(), family)
        batches = materialize(calib_batches(make_inputs))
        before = collect(model, names, batches)
        q = quantize_(copy.deepcopy(model), ptq_config("hadamard", "W8A8"), batches)
        with torch.no_grad(), quantization_disabled(q):
            after = collect(q, [f"{n}.input_quantizer" for n in names], batches, what="output")
        for name in names:
            assert ratio(before[name].abs().amax(0)) > 10
            assert ratio(after[f"{name}.input_quantizer"].abs().amax(0)) < 2, (family, name)


@pytest.mark.parametrize("family", sorted(FAMILY_CASES))
def test_w4a4_logits_are_closer_to_fp_than_minmax(family):
    build, make_inputs = FAMILY_CASES[family]
    model = with_outlier_channels(build(), family)
    calib, x = calib_batches(make_inputs), make_inputs(seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)

        def logit_mse(cfg):
            return float((forward_logits(quantize_(copy.deepcopy(model), cfg, calib), x) - reference).pow(2).mean())

        rotated, minmax = logit_mse(ptq_config("hadamard", "W4A4")), logit_mse(ptq_config("minmax", "W4A4"))
    assert rotated < 0.5 * minmax, (family, rotated, minmax)


def test_gptq_on_the_rotated_weights_beats_round_to_nearest():
    model = with_outlier_channels(tiny_vit(), "vit")
    calib, x = calib_batches(image_batch), image_batch(seed=30)
    with torch.no_grad():
        reference = forward_logits(model, x)
        errors = {}
        for method in ("rtn", "gptq"):
            cfg = ptq_config("hadamard", "W4A16", w_method=method, w_clip=False)
            errors[method] = float((forward_logits(quantize_(copy.deepcopy(model), cfg, calib), x) - reference)
                                   .pow(2).mean())
    assert errors["gptq"] < 0.7 * errors["rtn"], errors


def test_the_weight_clip_search_finds_the_least_error_on_its_grid():
    w = torch.randn(6, 64, generator=torch.Generator().manual_seed(0))
    w[0, 0] = 12.0  # one outlier weight: clipping it pays
    scale = clipped_weight_scale(w, 4)
    qmin, qmax = quant_range(4, True)
    amax = w.abs().amax(dim=1)

    def err(s):
        return (fake_quantize(w, s.unsqueeze(1), torch.zeros(1), qmin, qmax) - w).abs().pow(2.4).sum(dim=1)

    grid = torch.stack([err((1 - i / 100) * amax / qmax) for i in range(80)])  # (shrinks, rows)
    torch.testing.assert_close(err(scale), grid.min(dim=0).values)
    assert float(scale[0]) < 0.95 * float(amax[0]) / qmax


def test_the_coarse_to_fine_clip_search_finds_a_single_minimum_and_stays_on_the_grid():
    """PTQ-aware ARNQ's in-training runs search every 4th factor, then the neighbours of each row's best."""
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    w[:, 0] *= 6.0  # an outlier column: most rows clip
    qmin, qmax = quant_range(4, True)
    amax = w.abs().amax(dim=1)
    exhaustive, coarse = clipped_weight_scale(w, 4), clipped_weight_scale(w, 4, stride=4)
    shrink = (coarse * qmax / amax).double()
    on_grid = (shrink * 100).round() / 100
    torch.testing.assert_close(shrink, on_grid, atol=1e-6, rtol=0)
    assert bool(((shrink > 0.205) & (shrink <= 1.0 + 1e-6)).all())
    assert (coarse == exhaustive).float().mean() >= 0.9  # the same factor wherever the minimum is single

    def err(s):
        return (fake_quantize(w, s.unsqueeze(1), torch.zeros(1), qmin, qmax) - w).abs().pow(2.4).sum(dim=1)

    assert bool((err(coarse) >= err(exhaustive) - 1e-4).all())  # never below the exhaustive optimum
    assert float(err(coarse).sum()) <= 1.01 * float(err(exhaustive).sum())
    assert handler_for(ptq_config("hadamard", "W4A4")).shadow_params == {"w_clip_stride": 4}


def test_the_rotated_quantizer_clips_per_token_and_reports_in_input_coordinates():
    rotation = make_rotation(16, seed=0, key="t", random_signs=True)
    q = RotatedQuantizer(QuantSpec(4, True, "token"), "linear_in", rotation, clip_ratio=0.9)
    q.quantizing = True
    x = torch.randn(5, 16, dtype=torch.float64)
    xr = x @ rotation.matrix()
    scale, zp = calc_qparams(xr.amin(-1, keepdim=True) * 0.9, xr.amax(-1, keepdim=True) * 0.9, 4, True)
    expected = fake_quantize(xr, scale.double(), zp.double(), *quant_range(4, True))
    torch.testing.assert_close(q(x), expected)
    torch.testing.assert_close(q.quantized_value(x), expected @ rotation.matrix().T)
    q.quantizing = False
    torch.testing.assert_close(q(x), xr)  # the online rotation runs also when quantization is off


def test_config_errors_are_raised_before_any_work():
    for params, match in [
        ({"rotations": ("residual", "spin")}, "rotations"),
        ({"rotations": ("ffn", "ffn")}, "rotations"),
        ({"w_method": "awq"}, "w_method"),
        ({"w_method": "gptq"}, "w_clip"),
        ({"act_order": True}, "act_order"),
        ({"a_granularity": "channel"}, "a_granularity"),
        ({"a_clip_ratio": 0.0}, "a_clip_ratio"),
        ({"a_clip_ratio": 0.9, "a_granularity": "tensor"}, "a_clip_ratio"),
        ({"seed": -1}, "seed"),
        ({"percdamp": 1.0}, "percdamp"),
        ({"w_clip_stride": 0}, "w_clip_stride"),
    ]:
        with pytest.raises(ValueError, match=match):
            ptq_config("hadamard", "W4A4", **params)
    cfg = ptq_config("hadamard", "W4A4", rotations=["ffn", "qk"], w_method="gptq", w_clip=False)
    assert isinstance(cfg, HadamardConfig) and cfg.rotations == ("ffn", "qk")


def test_a_model_the_residual_fold_cannot_handle_is_refused_and_the_other_rotations_still_run():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=4, num_classes=10,
                              qk_norm=True).eval()
    calib = calib_batches(image_batch)
    with pytest.raises(ValueError, match="residual"):
        quantize_(copy.deepcopy(model), ptq_config("hadamard", "W8A8"), calib)
    x = image_batch(seed=30)
    with torch.no_grad():
        q = quantize_(copy.deepcopy(model), ptq_config("hadamard", "W8A8", rotations=("ffn", "heads")), calib)
        with quantization_disabled(q):
            torch.testing.assert_close(forward_logits(q, x), forward_logits(model, x), atol=1e-5, rtol=1e-5)


def test_rotation_module_is_a_hadamard_or_dense_not_both():
    with pytest.raises(ValueError, match="Hadamard base"):
        HadamardRotation(4)
    assert hadamard.paley_hadamard(10) is None  # 9 is no prime, 4 = 3 mod 4: no Paley matrix of order 10
