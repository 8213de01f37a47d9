"""What a search space will cost before it runs: trials, distinct fine-tunes, PTQ
evaluations, what the cache already holds, and a wall-time estimate.

The estimate (`estimate`) adds up, from a short timing of each model on this machine
(`harness.costs.measure`: seconds per training example, per FP and per quantized test
example), what the sweep will compute that the cache does not hold:

- each FP checkpoint to train (neither cached nor shipped): its recipe's epochs over its
  training set, and a test evaluation;
- each fine-tune: its steps at the arm's cost per step relative to plain fine-tuning, a
  validation pass per epoch, a test evaluation and, for PTQ-aware ARNQ, the in-training runs
  of the target method (one at install, one per epoch start and one every `ptq_refresh`
  steps). The step ratio and a run's seconds are timed here for each (arm, target) the
  sweep will fine-tune (`harness.costs.measure_arms`, cached per machine): a step toward the
  Hadamard rotation costs more than one toward min-max, and by how much depends on the
  model. Where an arm cannot be timed (a model timed nowhere, `measure=False`), the step
  ratio is `ARM_STEP_COST`'s and a run `CALIB_COST` forwards per calibration example;
- each PTQ trial: the method's calibration (`CALIB_COST` forwards per calibration
  example; block reconstruction per calibration and per optimised example, `RECON_COST`) and a quantized
  evaluation of the test split.

With every model timed, the wall time is that of the sweep's own trial order on `slots`
slots (`harness.grid.schedule`, `simulated_wall`: FP checkpoints built by the first trial of
their model while its others wait, trials reusing a fine-tune after the one that builds it),
times `CONTENTION` (trials that share the cores also share memory bandwidth). Otherwise FP
builds count as serial and the rest as spread evenly over the slots.
Models that cannot be timed here (weights or data not on
this machine) fall back on their registered cost hints (`ModelSpec.cost`, a reference
2-core CPU); the estimate says so.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arnq.cache import entry_path
from arnq.models import MODELS
from harness.pipeline import FINETUNE_KIND, TRIAL_KIND, TrialSpec, get_key, trial_cache_spec
from harness.space import Space

log = logging.getLogger(__name__)

#: an arm's training step in plain steps where it is not timed here (bench/README.md: PTQ-aware ARNQ
#: 1.27-1.44x without its target runs counted here separately, the uniform-grid noise 1.54x); arms not
#: listed: DEFAULT_ARM_STEP_COST
ARM_STEP_COST = {"plain": 1.0, "quanttune": 1.1, "arnq": 1.3, "arnq/grid": 1.54, "arnq_quanttune": 1.4,
                 "arnq_quanttune/grid": 1.64}
DEFAULT_ARM_STEP_COST = 1.3
#: a method's calibration in FP forwards per calibration example, from the calibration times of
#: results/ptq_methods (vit_fmnist and minilm_tweets, each method at its own calibration size); the
#: methods added since (from adalog on) at the median over every committed row that records its
#: calibration time (results/ptq_methods/calib_cost.md, which also shows how far the per-example
#: figure of one method varies between models); BRECQ and QDrop: RECON_COST; methods not listed:
#: DEFAULT_CALIB_COST
CALIB_COST = {"minmax": 1.0, "ema": 1.0, "percentile": 3.0, "omse": 15.0, "smoothquant": 2.0, "repq_vit": 15.0,
              "noisyquant": 16.0, "fq_vit": 3.0, "ptq4vit": 60.0, "liu2021": 60.0, "mrem": 30.0,
              "adalog": 680.0, "adaround": 1100.0, "awq": 23.0, "erq": 72.0, "gptq": 12.0,
              "hadamard": 9.0, "os_plus": 28.0}
DEFAULT_CALIB_COST = 10.0
#: block reconstruction (BRECQ, QDrop), per model family: (FP forwards per calibration example, per
#: optimised example). Its time has a part that grows with `calib_size` (every example's block inputs and
#: targets, block by block) and a part, larger at the default sizes, that does not: `iters` steps (BRECQ:
#: plus `act_iters`) of `batch_size` examples per block. Fitted to each method run at 256 and 1,024
#: calibration examples, the two jobs sharing 2 cores: vit from vit_mnist W3A3
#: (results/ptq_methods/vit_mnist_w3a3_calib256 and _calib1024), bert from minilm_rt W4A4
#: (minilm_rt_w4a4_calib256 and _calib1024); the fits and how far every committed row is from them:
#: calib_cost.md, second table. Families without a fit of their own (deit, swin) are priced as vit.
RECON_COST = {"brecq": {"vit": (124.0, 6.6), "bert": (16.0, 3.8)},
              "qdrop": {"vit": (103.0, 15.3), "bert": (0.0, 7.2)}}
#: slowdown of each of several trials sharing a machine's cores, against one timed alone. 1.0: the
#: per-example timings extrapolated from a short run of one model already exceed what two trials
#: sharing two cores take (results/composition/minilm_w4a4, 2 cores: PTQ-aware fine-tunes took
#: 0.7-0.9x their estimate, PTQ trials 0.5-1.3x), and with 1.25 the wall-time estimates of the
#: composition sweeps ran 25-70 % high (README, "Cost estimate")
CONTENTION = 1.0
#: a sweep's own cost besides its trials: starting Ray, the cache lookups, the report (the quickstart
#: with every trial cached: 19 s on 2 cores)
SWEEP_OVERHEAD_S = 15.0


@dataclass
class Plan:
    trials: int
    finetunes: int  # distinct fine-tunes (the cache key of each trial's fine-tune)
    finetunes_cached: int
    ptq_evals: int  # one calibration + quantized test evaluation per trial
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu_seconds: float | None = None  # trial time, all trials added up (None: a model without a cost)
    slots: int = 1  # trials at once on the target
    unknown_cost: list[str] = field(default_factory=list)
    trials_cached: int = 0
    serial_seconds: float = 0.0  # FP checkpoints to build first, one trial each while the rest waits
    source: str = "hints"  # "measured on this machine" or the registered hints
    scheduled_seconds: float | None = None  # the trials' span in the sweep's own order (measured timings only)

    @property
    def wall_seconds(self) -> float | None:
        if self.cpu_seconds is None:
            return None
        if self.scheduled_seconds is not None:
            return SWEEP_OVERHEAD_S + self.scheduled_seconds
        return SWEEP_OVERHEAD_S + self.serial_seconds + (self.cpu_seconds - self.serial_seconds) / max(self.slots, 1)

    def lines(self) -> list[str]:
        out = [
            f"trials (PTQ evaluations): {self.trials} ({self.trials_cached} already cached)",
            f"distinct fine-tunes: {self.finetunes} ({self.finetunes_cached} already cached, "
            f"{self.finetunes - self.finetunes_cached} to run)",
        ]
        for model, info in self.per_model.items():
            out.append(f"  {model}: {info['trials']} trials, {info['finetunes']} fine-tunes "
                       f"({info['cached']} cached)")
        if self.cpu_seconds is None:
            out.append(f"cost estimate: unknown (no cost for {', '.join(self.unknown_cost)})")
        else:
            out.append(f"cost estimate: ~{human(self.wall_seconds)} wall, {self.slots} trial(s) at once "
                       f"(~{human(self.cpu_seconds)} of trial time; {self.source})")
        return out


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def make_plan(space: Space, cache_root: Path | None = None, slots: int | None = None,
              measure: bool = True) -> Plan:
    """Counts and cost estimate of `space` against the cache at `cache_root`; `measure=False`
    estimates from the registered cost hints instead of timing the models here."""
    specs = space.trials()
    seen: dict[str, TrialSpec] = {}
    for spec in specs:
        if spec.finetune.epochs:  # epochs 0: the FP checkpoint, nothing to fine-tune
            seen.setdefault(get_key(spec), spec)
    cached = {k for k, spec in seen.items() if entry_path(FINETUNE_KIND, spec.finetune_spec(), cache_root).exists()}
    device = "cuda" if space.resources["gpu"] else "cpu"
    trials_cached = {i for i, spec in enumerate(specs)
                     if entry_path(TRIAL_KIND, trial_cache_spec(spec, device), cache_root).exists()}
    trials_per_model = Counter(s.model for s in specs)
    ft_per_model = Counter(s.model for s in seen.values())
    cached_per_model = Counter(seen[k].model for k in cached)
    per_model = {m: {"trials": trials_per_model[m], "finetunes": ft_per_model[m], "cached": cached_per_model[m]}
                 for m in space.models}
    if slots is None:
        slots = local_slots(space) if not space.resources["gpu"] else 1
    plan = Plan(trials=len(specs), finetunes=len(seen), finetunes_cached=len(cached), ptq_evals=len(specs),
                per_model=per_model, slots=slots, trials_cached=len(trials_cached))
    todo_ft = [spec for k, spec in seen.items() if k not in cached]
    todo_trials = [spec for i, spec in enumerate(specs) if i not in trials_cached]
    timings = _timings(space, cache_root) if measure and not space.resources["gpu"] else {}
    arms = _arm_timings(space, todo_ft, timings.keys(), cache_root)
    estimate(plan, space, todo_ft, todo_trials, timings, cache_root, arms)
    if timings:  # every model timed here (else no costs): the span of the sweep's own order
        from harness.grid import schedule, simulated_wall

        costs = trial_costs(space, specs, cache_root, slots, timings, arms)
        if costs is not None:
            plan.scheduled_seconds = CONTENTION * simulated_wall(schedule(specs, costs), costs)
    return plan


def _timings(space: Space, cache_root: Path | None) -> dict[str, Any]:
    """Each model's timing on this machine (cached); a model that cannot be timed here is left out."""
    from harness.costs import measure

    threads = max(1, int(space.resources["cpu"]))
    out = {}
    for model in space.models:
        try:
            out[model] = measure(model, threads=threads, batch_size=space.finetune_of(model).batch_size,
                                 cache_root=cache_root)
        except (OSError, ValueError, RuntimeError, ImportError) as err:  # weights or data not on this machine
            log.info("cannot time %s here (%s); its estimate uses the registered cost hint", model, err)
    return out


def _arm_timings(space: Space, specs: list[TrialSpec], models: Any, cache_root: Path | None,
                 measure: bool = True) -> dict[tuple[str, str], Any]:
    """The timing of each fine-tuning arm other than plain toward its target among `specs`, by (model,
    `arm_key`), for `models`: read from the cache, the missing ones timed here now unless `measure` is
    False."""
    from harness.costs import measure_arms

    threads = max(1, int(space.resources["cpu"]))
    out: dict[tuple[str, str], Any] = {}
    for model in models:
        pairs = [(s.arm, s.ptq) for s in specs if s.model == model and s.arm.arm != "plain" and s.finetune.epochs]
        if not pairs:
            continue
        try:
            got = measure_arms(model, pairs, threads=threads, batch_size=space.finetune_of(model).batch_size,
                               cache_root=cache_root, measure=measure)
        except (OSError, ValueError, RuntimeError, ImportError) as err:
            log.info("cannot time the arms of %s here (%s); their steps cost ARM_STEP_COST", model, err)
            continue
        out.update({(model, key): timing for key, timing in got.items()})
    return out


def estimate(plan: Plan, space: Space, finetunes: list[TrialSpec], trials: list[TrialSpec],
             timings: dict[str, Any], cache_root: Path | None,
             arms: dict[tuple[str, str], Any] | None = None) -> None:
    """Fill in plan.cpu_seconds and plan.serial_seconds (see the module docstring)."""
    total = serial = 0.0
    unknown: list[str] = []
    for model in space.models:
        timing = timings.get(model)
        model_ft = [s for s in finetunes if s.model == model]
        model_trials = [s for s in trials if s.model == model]
        if timing is None:
            hinted = _hinted(space, model, model_ft, model_trials)
            if hinted is None:
                unknown.append(model)
                continue
            total += hinted
            continue
        build = _fp_build_s(model, timing, space.fp_seed, cache_root) if (model_ft or model_trials) else 0.0
        serial += build * CONTENTION
        total += build * CONTENTION
        total += CONTENTION * sum(_finetune_s(s, timing, arms) for s in model_ft)
        total += CONTENTION * sum(_trial_s(s, timing) for s in model_trials)
    plan.unknown_cost = unknown
    plan.cpu_seconds = None if unknown else total
    plan.serial_seconds = serial
    hinted = [m for m in space.models if m not in timings]
    if not timings:
        plan.source = "cost hints of a reference 2-core CPU"
    else:
        plan.source = "measured on this machine" + (f", cost hints for {', '.join(hinted)}" if hinted else "")
        if arms:
            plan.source += f"; {len(arms)} arm x target step cost(s) timed here"


def _hinted(space: Space, model: str, finetunes: list[TrialSpec], trials: list[TrialSpec]) -> float | None:
    cost = MODELS.get(model).cost
    if not cost:
        return None
    ft = space.finetune_of(model)
    examples_k = (ft.train_subset or 0) * ft.epochs / 1000
    return len(finetunes) * examples_k * cost["train_s_per_1k"] + len(trials) * cost["ptq_s"]


def _arm_step_cost(spec: TrialSpec) -> float:
    arm = spec.arm
    key = arm.arm + ("/grid" if getattr(arm, "delta_observer", None) is not None else "")
    return ARM_STEP_COST.get(key, ARM_STEP_COST.get(arm.arm, DEFAULT_ARM_STEP_COST))


def optimised_examples(ptq: Any) -> int:
    """Examples a block reconstruction optimises on, summed over its steps; 0 for other methods."""
    if ptq.method not in RECON_COST:
        return 0
    return (ptq.iters + getattr(ptq, "act_iters", 0)) * ptq.batch_size


def recon_family(method: str, family: str) -> str:
    """The family whose RECON_COST fit prices `method` on a model of `family`: its own, else vit."""
    return family if family in RECON_COST[method] else "vit"


def recon_cost(method: str, family: str) -> tuple[float, float]:
    """RECON_COST of `method` for a model of `family`; vit's for a family without a fit of its own."""
    return RECON_COST[method][recon_family(method, family)]


def calibration_forwards(ptq: Any, family: str = "vit") -> float:
    """A calibration of `ptq` (a PTQConfig) on a model of `family`, in FP forwards of one example."""
    examples = ptq.resolved_calib_size
    if ptq.method in RECON_COST:
        per_example, per_optimised = recon_cost(ptq.method, family)
        return per_example * examples + per_optimised * optimised_examples(ptq)
    return CALIB_COST.get(ptq.method, DEFAULT_CALIB_COST) * examples


def _calibration_s(ptq: Any, timing: Any, model: str) -> float:
    return calibration_forwards(ptq, MODELS.get(model).family) * timing.eval_s


def _finetune_s(spec: TrialSpec, timing: Any, arms: dict[tuple[str, str], Any] | None = None) -> float:
    """One fine-tune: its steps, a validation pass per epoch, the test evaluation, the target runs;
    the arm's step ratio and run seconds from its timing in `arms` where it has one."""
    arm_timing = None
    if arms and spec.arm.arm != "plain":
        from harness.costs import arm_key

        arm_timing = arms.get((spec.model, arm_key(spec.arm, spec.ptq)))
    ft = spec.finetune
    n_train = ft.train_subset if ft.train_subset is not None else max(timing.train_size - ft.val_size, 0)
    ratio = arm_timing.step_ratio if arm_timing is not None else _arm_step_cost(spec)
    seconds = ft.epochs * n_train * timing.train_s * ratio
    seconds += ft.epochs * ft.val_size * timing.eval_s + timing.test_size * timing.eval_s
    if ft.epoch_q_eval:
        seconds += ft.epochs * (_calibration_s(spec.ptq, timing, spec.model)
                                + ft.val_size * timing.qeval_s)
    runs = _target_runs(spec, n_train)
    if runs and arm_timing is not None and arm_timing.run_s > 0:
        seconds += runs * arm_timing.run_s
    elif runs:
        from arnq.arms.noise import ptq_calib_size
        from arnq.arms.shadow import shadow_config

        in_training = shadow_config(spec.ptq, ptq_calib_size(spec.arm, spec.ptq), spec.arm.ptq_settings)
        seconds += runs * _calibration_s(in_training, timing, spec.model)
    return seconds


def _target_runs(spec: TrialSpec, n_train: int) -> int:
    """PTQ-aware ARNQ's in-training runs of the target method: at install, each epoch start, every ptq_refresh steps."""
    arm = spec.arm
    if getattr(arm, "ptq_aware", False) is not True:
        return 0
    ft = spec.finetune
    steps = ft.epochs * math.ceil(n_train / ft.batch_size)
    return 1 + ft.epochs + steps // max(arm.ptq_refresh, 1)


def _trial_s(spec: TrialSpec, timing: Any) -> float:
    """One PTQ trial: the method's calibration and the quantized test evaluation."""
    return _calibration_s(spec.ptq, timing, spec.model) + timing.test_size * timing.qeval_s


def _fp_build_s(model: str, timing: Any, seed: int, cache_root: Path | None) -> float:
    """Training the FP checkpoint, if neither shipped nor cached: its recipe's epochs, then a test evaluation."""
    from types import SimpleNamespace

    from arnq.models.fp import CACHE_KIND, fp_cache_spec
    from arnq.models.shipped import shipped_checkpoint

    spec = MODELS.get(model)
    if spec.recipe is None or (spec.source == "scratch" and shipped_checkpoint(spec, seed) is not None):
        return 0.0
    data = SimpleNamespace(name=timing.data_name, task=timing.data_task, train=range(timing.train_size),
                           test=range(timing.test_size))
    if entry_path(CACHE_KIND, fp_cache_spec(spec, seed=seed, data=data), cache_root).exists():
        return 0.0
    n = min(spec.fp_train_subset or timing.train_size, timing.train_size)
    return spec.recipe.epochs * n * timing.train_s + timing.test_size * timing.eval_s


@dataclass(frozen=True)
class TrialCosts:
    """Estimated seconds of each trial of a sweep, for ordering it (`harness.grid.schedule`).

    `seconds[trial_id]`: the trial's fine-tune (where it is the first trial of a fine-tune the
    cache lacks) plus its PTQ trial (0 when the trial cache holds it); `build[(model, fp_seed)]`:
    training that FP checkpoint first (0 when shipped or cached); `slots`: trials at once.
    """

    seconds: dict[str, float]
    build: dict[tuple[str, int], float]
    slots: int


def local_slots(space: Space) -> int:
    """Trials this machine runs at once: its CPUs over each trial's CPUs."""
    return max(1, int((os.cpu_count() or 1) // max(space.resources["cpu"], 1e-9)))


def trial_costs(space: Space, specs: list[TrialSpec], cache_root: Path | None = None,
                slots: int | None = None, timings: dict[str, Any] | None = None,
                arms: dict[tuple[str, str], Any] | None = None) -> TrialCosts | None:
    """Per-trial estimates from `timings` (each model's) and `arms` (each arm's toward its target),
    by default those already cached on this machine (`arnq validate` and `arnq sweep` measure
    them); None when a model has none, or on a GPU space. Nothing is timed."""
    from harness.costs import cached
    from harness.grid import trial_id

    if space.resources["gpu"]:
        return None
    threads = max(1, int(space.resources["cpu"]))
    timings = timings or {m: cached(m, threads=threads, batch_size=space.finetune_of(m).batch_size,
                                    cache_root=cache_root) for m in space.models}
    if any(timings.get(m) is None for m in space.models):
        return None
    arms = arms if arms is not None else _arm_timings(space, specs, space.models, cache_root, measure=False)
    device = "cpu"
    seconds: dict[str, float] = {}
    producers: set[str] = set()
    for spec in specs:
        timing = timings[spec.model]
        cost = 0.0
        key = get_key(spec)
        if spec.finetune.epochs and key not in producers:
            producers.add(key)
            if not entry_path(FINETUNE_KIND, spec.finetune_spec(), cache_root).exists():
                cost += _finetune_s(spec, timing, arms)
        if not entry_path(TRIAL_KIND, trial_cache_spec(spec, device), cache_root).exists():
            cost += _trial_s(spec, timing)
        seconds[trial_id(spec)] = cost
    build = {(s.model, s.fp_seed): _fp_build_s(s.model, timings[s.model], s.fp_seed, cache_root) for s in specs}
    return TrialCosts(seconds=seconds, build=build, slots=slots or local_slots(space))
