"""Search-space validation: every shipped space loads; bad input names the key, value and fix."""

import json

import pytest
import yaml

from harness.cli import spaces_dir
from harness.pipeline import get_key
from harness.plan import SWEEP_OVERHEAD_S
from harness.space import SpaceError, load_space, parse_space

SPACES = sorted(spaces_dir().glob("*.yaml"))
BASE = {"name": "t", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"]}


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_shipped_spaces_validate(path):
    space = load_space(path)
    trials = space.trials()
    assert trials and any(t.arm.arm == "plain" for t in trials)


def test_grid_expansion_and_shared_finetunes():
    space = parse_space({**BASE, "bits": ["W4A4", "W8A8"], "ptq": ["minmax", "omse"], "seeds": [0, 1],
                         "arms": ["plain", {"name": "arnq", "schedule": ["linear", "cosine"]}, "quanttune"]})
    trials = space.trials()
    assert len(trials) == 2 * 2 * (1 + 2 + 1) * 2  # bits x ptq x arm points x seeds
    # plain and quanttune fine-tune once per seed; arnq once per (schedule, target bits, calibrator, seed)
    assert len({get_key(t) for t in trials}) == 2 * (1 + 1 + 2 * 2 * 2)


def test_a_finetune_is_shared_across_the_target_fields_it_does_not_use():
    def keys(arm):
        space = parse_space({**BASE, "bits": ["W4A4", "W4A8", "W6A6"], "ptq": ["minmax", "percentile"], "arms": [arm]})
        return {get_key(t) for t in space.trials() if t.arm.arm != "plain"}

    assert len(keys({"name": "arnq"})) == 3 * 2  # PTQ-aware: per target config (bits and method)
    assert len(keys({"name": "arnq", "target": "W"})) == 3 * 2  # the target's weight rounding may read activations
    assert len(keys({"name": "arnq", "delta_observer": "target"})) == 3 * 2  # the calibrator's grid: bits, observer
    assert len(keys({"name": "arnq", "delta_observer": "minmax"})) == 3  # its own observer: per bits only
    assert len(keys({"name": "arnq", "target": "W", "delta_observer": "target"})) == 2  # per weight bits (4, 6)
    assert len(keys({"name": "arnq", "target": "A", "delta_observer": "ema"})) == 3  # per activation bits (4, 8, 6)
    assert len(keys({"name": "diffq"})) == 2
    assert len(keys("quanttune")) == 1


def test_plan_counts_trials_finetunes_and_cache(tmp_path):
    from harness.pipeline import FINETUNE_KIND
    from harness.plan import make_plan

    space = parse_space({**BASE, "bits": ["W4A4", "W8A8"], "ptq": ["minmax", "omse"], "seeds": [0, 1],
                         "arms": ["plain", {"name": "arnq", "schedule": ["linear", "cosine"]}, "quanttune"],
                         "finetune": {"train_subset": 1000, "epochs": 2}})
    plan = make_plan(space, cache_root=tmp_path, slots=2, measure=False)
    assert (plan.trials, plan.finetunes, plan.finetunes_cached, plan.trials_cached) == (32, 20, 0, 0)
    cost = __import__("arnq.models", fromlist=["MODELS"]).MODELS.get("vit_mnist").cost
    assert plan.cpu_seconds == pytest.approx(20 * 2.0 * cost["train_s_per_1k"] + 32 * cost["ptq_s"])
    assert plan.wall_seconds == pytest.approx(SWEEP_OVERHEAD_S + plan.cpu_seconds / 2)
    assert "cost hints" in plan.source
    from arnq.cache import entry_path
    from harness.pipeline import TRIAL_KIND, trial_cache_spec

    entry_path(FINETUNE_KIND, space.trials()[0].finetune_spec(), tmp_path).mkdir(parents=True)  # one cached
    entry_path(TRIAL_KIND, trial_cache_spec(space.trials()[0], "cpu"), tmp_path).mkdir(parents=True)
    again = make_plan(space, cache_root=tmp_path, measure=False)
    assert (again.finetunes_cached, again.trials_cached) == (1, 1)
    assert again.cpu_seconds == pytest.approx(19 * 2.0 * cost["train_s_per_1k"] + 31 * cost["ptq_s"])
    assert any("cost estimate: ~" in line for line in plan.lines())


def test_tuple_fields_take_lists_as_values_and_lists_of_lists_as_grids():
    one = parse_space({**BASE, "arms": [{"name": "quanttune", "sites": ["post_ln", "fc2_in"]}]})
    two = parse_space({**BASE, "arms": [{"name": "quanttune", "sites": [["post_ln"], ["fc2_in"]]}]})
    assert len([t for t in one.trials() if t.arm.arm == "quanttune"]) == 1
    assert len([t for t in two.trials() if t.arm.arm == "quanttune"]) == 2


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"models": ["vit_mnst"]}, "models[0]: Unknown model 'vit_mnst'. Did you mean 'vit_mnist'?"),
        ({"ptq": ["minmx"]}, "ptq[0]: Unknown PTQ method 'minmx'. Did you mean 'minmax'?"),
        ({"arms": ["arnk"]}, "Did you mean 'arnq'?"),
        ({"arms": [{"name": "arnq", "schedule": "cosin"}]}, "schedule='cosin'"),
        ({"bits": ["W0A8"]}, "bits[0]"),
        ({"bits": ["W9A8"]}, "weight bits must be 2..8"),
        ({"bits": ["W4"]}, "malformed"),
        ({"bits": []}, "bits: the list is empty"),
        ({"finetune": {"epochs": -1}}, "epochs"),
        ({"finetune": {"epochs": 0}, "arms": ["plain", "arnq"]}, "finetune.epochs: 0 is invalid; 0 means no fine-tuning"),
        ({"finetune": {"lr": -1.0}}, "lr"),
        ({"finetune": {"lr": "fast"}}, "finetune.lr"),
        ({"finetune": {"epoch": 2}}, "unknown key(s) ['epoch']"),
        ({"modles": ["vit_mnist"]}, "Did you mean 'models'?"),
        ({"seeds": ["a"]}, "seeds"),
        ({"resources": {"gpu": -1}}, "resources.gpu"),
        ({"scheduler": {"name": "hyperband"}}, "scheduler.name"),
        ({"wandb": {"mode": "cloud"}}, "wandb.mode"),
        ({"arms": [{"name": "arnq", "schedule": []}]}, "an empty list is an empty grid"),
        ({"arms": [{"name": "arnq", "alpha_max": "big"}]}, "alpha_max"),
        ({"arms": [{"name": "arnq", "schedul": "linear"}]}, "schedul"),
        ({"calib_size": "many"}, "calib_size"),
        ({"calib_size": 0}, "calib_size"),
        ({"seeds": []}, "seeds: the list is empty"),
        ({"resources": {"gpu": 1.5}}, "resources.gpu"),
        ({"resources": {"models": {"vit_mnst": {"gpu": 1}}}}, "Did you mean 'vit_mnist'?"),
        ({"scheduler": {"name": "asha", "grace_period": 0}}, "scheduler.grace_period"),
        ({"plugins": "my_lab.arms"}, "plugins: 'my_lab.arms' is invalid"),
        ({"plugins": ["no_such_module_xyz"]}, "plugins[0]: cannot import 'no_such_module_xyz'"),
        ({"ptq": ["smoothquant"], "bits": ["W4A16"]}, "ptq[0] (smoothquant, W4A16): smoothquant moves activation"),
        ({"ptq": [{"name": "percentile", "pct": 2.0}]}, "ptq[0] (percentile, W4A4): pct=2.0"),
    ],
)
def test_bad_spaces_name_key_value_and_fix(patch, message):
    with pytest.raises(SpaceError) as err:
        parse_space({**BASE, **patch})
    assert message in str(err.value)


def test_yaml_syntax_error_gives_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodels: [vit_mnist\nbits: [W4A4]\n")
    with pytest.raises(SpaceError, match="line 3"):
        load_space(path)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(SpaceError, match="YAML"):
        load_space(path)
    assert yaml.safe_load("a: 1") == {"a": 1}


def test_a_plugin_registers_an_arm_the_space_can_name():
    space = parse_space({**BASE, "arms": ["plain", {"name": "diverge", "at_step": 3}],
                         "plugins": ["tests.harness.fault_arms"]})
    assert space.plugins == ("tests.harness.fault_arms",)
    assert [t.arm.arm for t in space.trials()] == ["plain", "diverge"]


PER_MODEL = {"name": "pm", "models": ["vit_mnist", "minilm_rt"], "bits": {"vit_mnist": ["W4A4", "W3A3"],
             "minilm_rt": ["W4A4", "W3A4"]}, "ptq": ["minmax"], "arms": ["plain", "arnq"], "seeds": [0, 1]}


def test_bits_per_model_run_each_model_at_its_own_bit_widths():
    from harness.space import space_from_record

    space = parse_space(PER_MODEL)
    assert space.bits == ("W4A4", "W3A3", "W3A4") and space.bits_of("minilm_rt") == ("W4A4", "W3A4")
    cells = {(t.model, t.bits) for t in space.trials()}
    assert cells == {("vit_mnist", "W4A4"), ("vit_mnist", "W3A3"), ("minilm_rt", "W4A4"), ("minilm_rt", "W3A4")}
    assert len(space.trials()) == 4 * 2 * 2
    again = space_from_record(json.loads(json.dumps(space.to_dict())))
    assert [t.to_dict() for t in again.trials()] == [t.to_dict() for t in space.trials()]
    part = space.narrowed(bits=["W3A4"])
    assert part.models == ("minilm_rt",) and {t.bits for t in part.trials()} == {"W3A4"}


@pytest.mark.parametrize("bits, message", [
    ({"vit_mnist": ["W4A4"]}, r"bits: .*give bits for exactly the space's models.*missing: minilm_rt"),
    ({"vit_mnist": ["W4A4"], "minilm_rt": ["W4A4"], "deit_small": ["W4A4"]}, r"not in models: deit_small"),
    ({"vit_mnist": ["W4A4"], "minilm_rt": ["W9"]}, r"bits.minilm_rt\[0\]"),
])
def test_bits_per_model_errors_name_the_problem(bits, message):
    with pytest.raises(SpaceError, match=message):
        parse_space({**PER_MODEL, "bits": bits})


def test_the_report_of_a_per_model_space_lists_no_cell_the_space_never_runs():
    from harness.report.axes import axes_from_space

    grid = axes_from_space(parse_space(PER_MODEL).to_dict()).grid()
    assert {(m, b) for m, b, *_ in grid} == {(t.model, t.bits) for t in parse_space(PER_MODEL).trials()}


def test_the_smoke_slice_of_a_per_model_space_keeps_one_cell():
    from harness.cli import smoke_space

    smoke = smoke_space(parse_space(PER_MODEL))
    assert {(t.model, t.bits, t.seed) for t in smoke.trials()} == {("vit_mnist", "W4A4", 0)}


def test_a_model_gets_its_own_fine_tuning_budget_under_finetune_models():
    from harness.cli import smoke_space
    from harness.space import space_from_record

    raw = {**PER_MODEL, "finetune": {"epochs": 2, "lr": 2.0e-4, "batch_size": 32, "train_subset": 2000,
                                     "models": {"vit_mnist": {"lr": 1.0e-4, "batch_size": 64}}}}
    space = parse_space(raw)
    budgets = {t.model: t.finetune for t in space.trials()}
    assert (budgets["vit_mnist"].lr, budgets["vit_mnist"].batch_size, budgets["vit_mnist"].train_subset) == (1e-4, 64, 2000)
    assert (budgets["minilm_rt"].lr, budgets["minilm_rt"].batch_size) == (2e-4, 32)
    again = space_from_record(json.loads(json.dumps(space.to_dict())))
    assert [t.to_dict() for t in again.trials()] == [t.to_dict() for t in space.trials()]
    smoke = smoke_space(space)
    assert {(t.finetune.lr, t.finetune.epochs, t.finetune.train_subset) for t in smoke.trials()} == {(1e-4, 1, 256)}
    with pytest.raises(SpaceError, match=r"finetune.models: .*deit_small not in the space's models"):
        parse_space({**raw, "finetune": {"models": {"deit_small": {"lr": 1.0}}}})
    with pytest.raises(SpaceError, match=r"finetune.models.vit_mnist: unknown key\(s\) \['lrr'\]"):
        parse_space({**raw, "finetune": {"models": {"vit_mnist": {"lrr": 1.0}}}})


def test_two_arms_with_the_same_config_are_refused_before_anything_runs():
    base = {"name": "t", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["repq_vit"]}
    with pytest.raises(SpaceError, match=r"arms\[1\] \(arnq \{'warmup_frac': 0.0\}\) is the same arm as arms\[0\]"):
        parse_space({**base, "arms": ["arnq", {"name": "arnq", "warmup_frac": 0.0}]})  # 0 is PTQ-aware's default
    with pytest.raises(SpaceError, match="is the same arm"):
        parse_space({**base, "arms": [{"name": "arnq", "ptq_refresh": [25, 5, 25]}]})
    grid = parse_space({**base, "arms": [{"name": "arnq", "delta_observer": "minmax", "warmup_frac": [0.2, 0.0]}, "arnq"]})
    noise = [s.arm for s in grid.trials() if s.arm.arm == "arnq"]
    ramps = sorted({(a.delta_observer, a.warmup_frac) for a in noise}, key=str)
    assert ramps == [("minmax", 0.0), ("minmax", 0.2), (None, 0.0)]  # the grid's default ramp is 0.2, PTQ-aware's 0
    named = sorted((a.changed_params() for a in noise), key=len)
    assert named == [{}, {"delta_observer": "minmax"}, {"delta_observer": "minmax", "warmup_frac": 0.0}]
