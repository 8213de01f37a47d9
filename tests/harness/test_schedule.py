"""Trial order: a cost-aware list schedule keeps the slots busy; without costs, models round-robin."""

import json
from types import SimpleNamespace

from arnq.finetune import FinetuneConfig
from harness.grid import build_trials, cost_order, schedule, simulated_wall, trial_id
from harness.pipeline import get_key


def two_model_sweep():
    """A long model whose FP checkpoint must be built (400 s) and a short shipped one, 6 trials each."""
    specs = build_trials(models=["minilm_rt", "vit_mnist"], bits=["W4A4"], ptq=[("repq_vit", {})],
                         arms=[("plain", {}), ("arnq", {})], seeds=[0, 1, 2], finetune=FinetuneConfig(epochs=1))
    seconds = {trial_id(s): (500.0 if s.arm.arm == "arnq" else 340.0) if s.model == "minilm_rt"
               else (160.0 if s.arm.arm == "arnq" else 120.0) for s in specs}
    return specs, SimpleNamespace(seconds=seconds, build={("minilm_rt", 0): 400.0, ("vit_mnist", 0): 0.0}, slots=2)


def test_the_long_fp_build_starts_first_and_short_trials_fill_the_other_slot_meanwhile():
    specs, costs = two_model_sweep()
    order = cost_order(specs, costs)
    assert sorted(map(trial_id, order)) == sorted(map(trial_id, specs))
    assert (order[0].model, order[0].arm.arm) == ("minilm_rt", "arnq")  # builds the FP checkpoint, then the longest
    # while it builds (400 s), the other slot runs short trials (160 s each) instead of waiting
    assert [s.model for s in order[1:4]] == ["vit_mnist"] * 3
    assert [s.model for s in order[-3:]] == ["vit_mnist"] * 3  # short trials last: they fill the tail


def test_the_cost_order_ends_sooner_than_the_round_robin():
    specs, costs = two_model_sweep()
    by_cost = simulated_wall(schedule(specs, costs), costs)
    round_robin = simulated_wall(schedule(specs), costs)
    work = sum(costs.seconds.values()) + 400.0
    assert by_cost < round_robin
    assert by_cost <= 1.1 * work / 2  # within 10 % of perfectly balanced slots
    assert simulated_wall(schedule(specs, costs), SimpleNamespace(**{**vars(costs), "slots": 1})) == work


def test_a_fine_tune_is_built_before_the_trials_that_reuse_it_in_the_cost_order():
    specs = build_trials(models=["vit_mnist"], bits=["W4A4", "W8A8"], ptq=[("minmax", {}), ("omse", {})],
                         arms=[("plain", {}), ("arnq", {})], seeds=[0], finetune=FinetuneConfig(epochs=1))
    costs = SimpleNamespace(seconds={trial_id(s): 1.0 + i for i, s in enumerate(specs)}, build={}, slots=2)
    keys = [get_key(s) for s in schedule(specs, costs)]
    n = len(set(keys))
    assert len(set(keys[:n])) == n
    # a trial reusing a fine-tune waits for its producer in the simulation
    one = SimpleNamespace(seconds={trial_id(s): 10.0 for s in specs}, build={}, slots=len(specs))
    assert simulated_wall(schedule(specs, one), one) == 20.0


def test_trial_costs_need_timings_cached_on_this_machine(tmp_path):
    from harness.costs import Timing, _cache_file, machine_id
    from harness.plan import trial_costs
    from harness.space import parse_space

    space = parse_space({"name": "t", "models": ["vit_mnist"], "bits": ["W4A4"], "ptq": ["minmax"],
                        "arms": ["plain", "arnq"], "seeds": [0, 1], "finetune": {"epochs": 1, "train_subset": 100}})
    specs = space.trials()
    assert trial_costs(space, specs, tmp_path) is None  # nothing timed here: no guess
    ft = space.finetune_of("vit_mnist")
    path = _cache_file("vit_mnist", 1, ft.batch_size, tmp_path)
    path.parent.mkdir(parents=True)
    timing = Timing(model="vit_mnist", threads=1, batch_size=ft.batch_size, train_s=0.01, eval_s=0.001,
                    qeval_s=0.002, train_size=1000, test_size=500, data_name="mnist", data_task="image",
                    measured_s=1.0, machine=machine_id())
    path.write_text(json.dumps(timing.to_dict()))
    costs = trial_costs(space, specs, tmp_path, slots=2)
    assert costs.slots == 2 and set(costs.seconds) == {trial_id(s) for s in specs}
    arnq = [costs.seconds[trial_id(s)] for s in specs if s.arm.arm == "arnq"]
    plain = [costs.seconds[trial_id(s)] for s in specs if s.arm.arm == "plain"]
    assert min(arnq) > max(plain) > 0  # an ARNQ step costs more than a plain one
