"""`arnq reproduce`: re-run a committed result folder from an empty cache and compare it, value by value.

A result folder is reproducible when it holds its results store (`rows.jsonl`) and what made
it: `space.json` (an `arnq sweep`) or `job.json` (an `arnq quantize`). The rows record the
commit, the code fingerprint, the library versions and the CPU they were computed with, so the
expected agreement is known before anything runs: the same code fingerprint, library versions
and CPU (vendor, model number and the instruction set torch dispatches for; `cpu_identity`)
give the same numbers bit for bit (the pipeline is seeded and runs each trial on a fixed
thread count), so the tolerance is 0; anything else gets a stated tolerance in accuracy points.
Another CPU rounds some float reductions differently: a plain fine-tune usually ends with
the same accuracy, but a quantizer's rounding can flip, and an ARNQ fine-tune, whose noise
follows quantizers re-derived during training, takes another path from there, so its values
move like another draw of seed noise.

Values are compared on `fp_acc`, `ft_acc` and `q_acc`, paired by (model, bits, PTQ method and
parameters, arm and parameters, seed); a trial that ASHA stopped in either run has no final
accuracy and is listed, not compared. `cell_means` adds the comparison a conclusion rests on:
each cell's mean ± std over its seeds in both runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.axes import canonical
from harness.report.stats import stats
from harness.space import Space, SpaceError, space_from_record
from harness.store import ROWS, cpu_identity, provenance, read_rows, set_aside

METRICS = ("fp_acc", "ft_acc", "q_acc")
DEFAULT_TOLERANCE = 1.0  # accuracy points, when exactness cannot be expected (other code, versions, CPU or device)
SPACE, JOB = "space.json", "job.json"


class ReproduceError(ValueError):
    """A result folder cannot be reproduced as asked (what is missing, and what to do instead)."""


@dataclass(frozen=True)
class Result:
    """A committed result folder: what regenerates it and its rows."""

    path: Path
    kind: str  # "sweep" or "quantize"
    spec: Any  # Space or QuantizeJob
    rows: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.spec.name if self.kind == "sweep" else self.path.name

    def axes(self) -> dict[str, list[str]]:
        """What `--cells` can name: the result's models, bits, PTQ methods and (sweeps) arms and their labels."""
        spec = self.spec
        axes = {"model": list(spec.models), "bits": list(spec.bits),
                "ptq": [m for m, _ in spec.ptq] if self.kind == "sweep" else list(spec.ptq)}
        if self.kind == "sweep":
            axes["arm"] = list(dict.fromkeys([a for a, _ in spec.arms] + [label for *_, label in spec.labels]))
        return axes


def load_result(path: Path | str) -> Result:
    """Read a result folder; a clear error if it cannot be regenerated (and why)."""
    path = Path(path)
    if not path.is_dir():
        raise ReproduceError(f"{path}: no such folder; give a results folder holding rows.jsonl and space.json "
                             "or job.json, e.g. results/composition/minilm_w4a4")
    rows = read_rows(path / ROWS)
    if not rows:
        raise ReproduceError(f"{path}: no {ROWS}; this folder predates the results store and cannot be regenerated "
                             "by arnq reproduce (re-run its space with arnq sweep to replace it)")
    if (path / SPACE).is_file():
        try:
            spec: Any = space_from_record(json.loads((path / SPACE).read_text()))
        except SpaceError as err:
            raise ReproduceError(f"{path / SPACE}: {err}") from None
        return Result(path, "sweep", spec, rows)
    if (path / JOB).is_file():
        from harness.quantize import QuantizeJob

        record = json.loads((path / JOB).read_text())
        try:
            spec = QuantizeJob(**record["job"])
        except (KeyError, TypeError, ValueError) as err:
            raise ReproduceError(f"{path / JOB}: not a quantize job this version can run ({err})") from None
        return Result(path, "quantize", spec, rows)
    raise ReproduceError(f"{path}: has {ROWS} but neither {SPACE} nor {JOB}, so what made it is unknown")


def select(result: Result, cells: Sequence[str] = (), seeds: Sequence[int] = ()) -> Result:
    """The part of `result` named by `cells` (names of models, bits, PTQ methods or arms: the same kind
    OR-ed, different kinds AND-ed) and `seeds`; the spec narrowed to it and the rows that belong to it."""
    axes = result.axes()
    chosen: dict[str, list[str]] = {}
    for token in cells:
        kinds = [kind for kind, names in axes.items() if token in names]
        if not kinds:
            known = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in axes.items())
            close = difflib.get_close_matches(token, [n for names in axes.values() for n in names], n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ReproduceError(f"--cells {token!r} names nothing in {result.path} ({known}).{hint}")
        chosen.setdefault(kinds[0], []).append(token)
    spec = result.spec
    all_seeds = list(spec.seeds) if result.kind == "sweep" else [spec.seed]
    unknown = [s for s in seeds if s not in all_seeds]
    if unknown:
        raise ReproduceError(f"--seeds {unknown}: {result.path} ran seeds {all_seeds}")
    if result.kind == "sweep":
        arms = chosen.get("arm")
        keep_arms = [(a, p) for a, p in spec.arms if arms is None or a in arms or any(
            _label_in(spec, a, p, t) for t in arms)]
        try:
            spec = spec.narrowed(models=chosen.get("model"), bits=chosen.get("bits"))
        except SpaceError:
            raise ReproduceError(f"--cells {' '.join(cells)}: no (model, bits) cell of {result.path} is left") from None
        spec = dataclasses.replace(
            spec, ptq=tuple((m, p) for m, p in spec.ptq if m in chosen.get("ptq", [m])), arms=tuple(keep_arms),
            seeds=tuple(seeds or spec.seeds), wandb=None)
        keys = {cell_key(r) for r in expected_rows(spec)}
        rows = [r for r in result.rows if cell_key(r) in keys]
    else:
        spec = dataclasses.replace(spec, models=tuple(chosen.get("model", spec.models)),
                                   bits=tuple(chosen.get("bits", spec.bits)), ptq=tuple(chosen.get("ptq", spec.ptq)))
        rows = [r for r in result.rows if r["model"] in spec.models and r["bits"] in spec.bits and r["ptq"] in spec.ptq]
    return Result(result.path, result.kind, spec, rows)


def _label_in(space: Space, arm: str, params: Mapping[str, Any], label: str) -> bool:
    from harness.grid import expand_params

    points = expand_params(arm, dict(params))
    return any(a == arm and lab == label and point in points for a, point, lab in space.labels)


def expected_rows(space: Space) -> list[dict[str, Any]]:
    """The cell fields (model, bits, PTQ method and parameters, arm and parameters, seed) of every trial of `space`."""
    from harness.pipeline import cell_fields

    return [cell_fields(trial) for trial in space.trials()]


def cell_key(row: Mapping[str, Any]) -> tuple:
    """What a value is paired on: (model, bits, ptq, ptq_params, arm, arm_params, seed)."""
    return (row["model"], row["bits"], row["ptq"], canonical(row.get("ptq_params") or None), row.get("arm", "plain"),
            canonical(row.get("arm_params") or None), int(row["seed"]))


def current_code(kind: str) -> str:
    """The code fingerprint a new row of this kind would record."""
    from arnq.cache import code_fingerprint

    if kind == "sweep":
        from harness.pipeline import PIPELINE_CODE

        return code_fingerprint(*PIPELINE_CODE)
    from harness.quantize import QUANTIZE_CODE

    return code_fingerprint(*QUANTIZE_CODE)


def tolerance(result: Result, given: float | None = None) -> tuple[float, str]:
    """The largest |new - committed| accepted, in accuracy points, and why that much."""
    if given is not None:
        return given, f"±{given:g} points, given with --tolerance"
    versions = provenance()["versions"]
    code = current_code(result.kind)
    reasons = []
    if any(r.get("versions") != versions for r in result.rows):
        old = " | ".join(dict.fromkeys(str(r.get("versions")) for r in result.rows))
        reasons.append(f"library versions differ (committed {old}; now {versions})")
    if any(r.get("code") != code for r in result.rows):
        old = ", ".join(dict.fromkeys(str(r.get("code") or "not recorded") for r in result.rows))
        reasons.append(f"the code changed since (committed code fingerprint {old}; now {code})")
    cpu = cpu_identity()
    if any(r.get("cpu") != cpu for r in result.rows):
        old = " | ".join(dict.fromkeys(str(r.get("cpu") or "not recorded") for r in result.rows))
        reasons.append(f"the CPU differs or was not recorded (committed {old}; now {cpu}), and float reductions "
                       "may round differently")
    gpu = result.spec.resources.get("gpu", 0) if result.kind == "sweep" else result.spec.device != "cpu"
    if gpu:
        reasons.append("it runs on a GPU, whose kernels are not bit-for-bit deterministic")
    if not reasons:
        return 0.0, "exact: same code fingerprint, library versions and CPU as the committed rows, on the CPU"
    return DEFAULT_TOLERANCE, f"±{DEFAULT_TOLERANCE:g} points: {'; '.join(reasons)}"


#: the parts of a row's resolved config that decide what its trial computes (its cell's names aside)
SETTINGS = ("ptq", "arm", "finetune", "calib_size", "fp_seed")
#: arm_target keys that an arm setting of the same name decides (an unset one defers to the PTQ method)
ARM_DECIDED = ("weight_error",)


@dataclass(frozen=True)
class Change:
    """One setting a committed row ran with that the trial its space builds today would not."""

    setting: str  # "part.key", e.g. arm.warmup_frac, ptq.n_grid, arm_target.weight_error
    committed: Any
    now: Any
    resolves_to: Any = None  # today's value where it is unset and resolved by the PTQ method

    @property
    def arm_key(self) -> str | None:
        """The arm setting that, given the committed value, re-creates what ran (None: no arm setting can)."""
        part, _, key = self.setting.partition(".")
        return key if part == "arm" or (part == "arm_target" and key in ARM_DECIDED) else None

    def text(self) -> str:
        now = _short(self.now) + (f" (resolves to {_short(self.resolves_to)})" if self.resolves_to is not None else "")
        return f"{self.setting}: committed {_short(self.committed)}, now {now}"


@dataclass(frozen=True)
class Changes:
    """The committed rows whose settings today's code would not re-create (`changed_settings`)."""

    rows: list[tuple[dict[str, Any], list[Change]]]  # (row, what changed) per changed row
    unchecked: int  # rows without a config, of a cell the space no longer builds, or an arm target not recorded

    def lines(self) -> list[str]:
        return [f"{row.get('model')} {row.get('bits')} {row.get('ptq')} {_arm_text(row)} seed {row.get('seed')}: "
                + "; ".join(c.text() for c in changes) for row, changes in self.rows]


def _as_json(value: Any) -> Any:
    """`value` as a row's config reads back from JSON (tuples as lists, other objects as strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _differences(before: Any, now: Any, prefix: str) -> list[Change]:
    """A `Change` for every setting both sides name with different values (nested settings by dotted name)."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [c for key in sorted(set(before) & set(now)) for c in _differences(before[key], now[key], f"{prefix}.{key}")]
    return [] if before == now else [Change(prefix, before, now)]


def _arm_differences(before: Any, now: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[Change]:
    """The arm settings whose committed value is neither today's value nor what today's unset value
    resolves to (`Arm.resolved_params`: a setting left to the PTQ method, e.g. PTQ-aware ARNQ's
    `ptq_settings`); a committed unset value is the arm target's to check (`arm_target`)."""
    if not isinstance(before, Mapping):
        return []
    return [Change(f"arm.{key}", before[key], now[key], resolved.get(key) if now[key] is None else None)
            for key in sorted(set(before) & set(now))
            if before[key] is not None and before[key] != now[key] and before[key] != resolved.get(key)]


def _row_changes(config: Mapping[str, Any], spec: Any) -> tuple[list[Change], bool]:
    """(what `spec`, the trial built today for a row's cell, would run differently from the row's `config`,
    whether the arm's target could be checked)."""
    now = _as_json(spec.resolved())
    changes = [c for part in SETTINGS if part in config and part != "arm"
               for c in _differences(config[part], now.get(part), part)]
    changes += _arm_differences(config.get("arm"), now["arm"], _as_json(spec.arm_params()))
    if "arm_target" not in config:  # from before the record: checkable only for arms that ignore their target
        return changes, not now.get("arm_target")
    before, after = config["arm_target"], now.get("arm_target", {})  # every key: one the arm now takes, or no longer
    changes += [Change(f"arm_target.{key}", before.get(key), after.get(key))
                for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    return changes, True


def _cell(row: Mapping[str, Any]) -> tuple:
    """A row's cell without its arm: (model, bits, ptq, ptq_params, seed)."""
    key = cell_key(row)
    return key[:4] + key[6:]


@dataclass(frozen=True)
class _ArmPoint:
    """One arm of a space: its entry in `arms` (a grid entry has several), its settings and its trials."""

    entry: int
    arm: str
    settings: dict[str, Any]  # what the entry names for this point, as JSON reads it back
    trials: dict[tuple, Any]  # cell without arm (`_cell`) -> TrialSpec


def _arm_points(space: Space) -> list[_ArmPoint]:
    """Every arm point of `space` with the trials it builds today (entries today's code rejects left out)."""
    from harness.grid import expand_params
    from harness.pipeline import cell_fields

    points = []
    for i, (name, params) in enumerate(space.arms):
        try:
            expanded = expand_params(name, dict(params))
        except (TypeError, ValueError):  # settings today's code rejects: left to the cell-key lookup
            continue
        for point in expanded:
            trials = dataclasses.replace(space, arms=((name, point),), labels=()).trials()
            points.append(_ArmPoint(i, name, _as_json(point),
                                    {_cell(cell_fields(t)): t for t in trials if t.arm.arm == name}))
    return points


def _point_of(row: Mapping[str, Any], config: Mapping[str, Any], points: Sequence[_ArmPoint]) -> _ArmPoint | None:
    """The arm point a row ran under: of those of its arm whose settings all equal the row's config, the one
    that names the most (the entry of defaults matches every row of its arm)."""
    arm = config.get("arm")
    if not isinstance(arm, Mapping):
        return None
    found = [p for p in points if p.arm == row.get("arm", "plain")
             and all(arm.get(k, v) == v for k, v in p.settings.items())]
    return max(found, key=lambda p: len(p.settings)) if found else None


def _trial_of(row: Mapping[str, Any], config: Mapping[str, Any], points: Sequence[_ArmPoint],
              today: Mapping[tuple, Any]) -> Any:
    """The trial that the row's arm point builds today for its cell; a row without a config or whose arm
    point is gone: the trial of its cell key, if the space still builds it."""
    point = _point_of(row, config, points) if config else None
    return point.trials.get(_cell(row)) if point is not None else today.get(cell_key(row))


def changed_settings(result: Result) -> Changes:
    """The committed rows that their space would now run with other settings than they did.

    Each sweep row records every setting its trial ran with, defaults filled in (`config`,
    `TrialSpec.resolved`). A default changed since (a PTQ method's grid, a fine-tune's warm-up, an
    arm's noise ramp) makes `space.json` build a different trial for the same cell today: its
    comparison would measure the change, not the reproduction. Each row is matched to the arm entry
    of the space it ran under (by the settings the entry names) and compared, setting by setting, with
    the trial that entry builds today for its cell: the PTQ config, the arm's config, the fine-tune and
    the calibration size. A setting added since is not a change (a new knob's default keeps what ran
    before); a setting the arm leaves to the PTQ method is checked through `arm_target`, the arm's
    target as the code resolved it. A row without a config, one whose cell the space no longer builds,
    and an arm row that depends on its target but predates `arm_target` are not checked.
    """
    if result.kind != "sweep":
        return Changes([], 0)
    from harness.pipeline import cell_fields

    points = _arm_points(result.spec)
    today = {cell_key(cell_fields(spec)): spec for spec in result.spec.trials()}
    rows, unchecked = [], 0
    for row in result.rows:
        config = json.loads(row["config"]) if row.get("config") else {}
        spec = _trial_of(row, config, points, today)
        if not config or spec is None:
            unchecked += 1
            continue
        changes, checked = _row_changes(config, spec)
        unchecked += not checked
        if changes:
            rows.append((row, changes))
    return Changes(rows, unchecked)


def as_committed(result: Result, changes: Changes) -> tuple[Space, dict[tuple, tuple]] | None:
    """A space that re-runs what the committed rows ran, and the committed cell of each of its cells whose
    arm settings it names; None where arm settings cannot re-create every change (a PTQ method's or the
    fine-tune's default changed, an arm entry is a grid of values, or one entry's rows ran with different
    values of the same setting).

    Each arm entry whose rows changed gets the committed values of the changed settings (e.g.
    `warmup_frac: 0.2` where the default was 0.2 then and is 0.0 now); its new rows name those settings
    in their `arm_params`, so each one's cell is mapped back to the committed cell it re-runs.
    """
    from harness.pipeline import cell_fields

    space: Space = result.spec
    points = _arm_points(space)
    overrides: dict[int, dict[str, Any]] = {}
    for row, row_changes in changes.rows:
        point = _point_of(row, json.loads(row["config"]), points)
        if point is None:
            return None
        values = overrides.setdefault(point.entry, {})
        for change in row_changes:
            if change.arm_key is None or values.get(change.arm_key, change.committed) != change.committed:
                return None
            values[change.arm_key] = change.committed
    arms = tuple((name, {**params, **overrides.get(i, {})}) for i, (name, params) in enumerate(space.arms))
    committed = dataclasses.replace(space, arms=arms)
    new_points = _arm_points(committed)
    back: dict[tuple, tuple] = {}
    for row in result.rows:
        config = json.loads(row["config"]) if row.get("config") else {}
        point = _point_of(row, config, points) if config else None
        if point is None or point.entry not in overrides:
            continue
        now = _point_of(row, config, new_points)
        spec = now.trials.get(_cell(row)) if now is not None and now.entry == point.entry else None
        if spec is None or _row_changes(config, spec)[0]:
            return None
        back[cell_key(cell_fields(spec))] = cell_key(row)
    return committed, back


def _short(value: Any, width: int = 120) -> str:
    text = json.dumps(value, sort_keys=True) if value is not None else "unset"
    return text if len(text) <= width else text[: width - 3] + "..."


def run(result: Result, out: Path, cache: Path | None = None, space: Space | None = None) -> list[dict[str, Any]]:
    """Re-run `result`'s spec (a sweep: `space` where given, e.g. `as_committed`'s) into `out/run` with the
    cache `cache` (default: a new empty `out/cache`); an earlier folder at `out` is moved aside. The new rows."""
    set_aside(out)
    cache = cache or out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["ARNQ_CACHE"] = str(cache.resolve())  # FP checkpoints too, in this process and its workers
    run_dir = out / "run"
    if result.kind == "sweep":
        from harness.sweep import run_sweep

        return run_sweep(space or result.spec, run_dir, cache_root=cache.resolve(), own_tempdir=True)
    from harness.quantize import quantize_into

    return quantize_into(result.spec, run_dir)


def mapped_back(rows: Iterable[Mapping[str, Any]], back: Mapping[tuple, tuple]) -> list[dict[str, Any]]:
    """`rows` of an `as_committed` re-run with each one's `arm_params` those of the committed cell it re-runs."""
    return [dict(row, arm_params=back[cell_key(row)][5]) if cell_key(row) in back else dict(row) for row in rows]


def compare(committed: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]], tol: float) -> list[dict[str, Any]]:
    """One line per (cell, metric): committed and new value, their difference and whether it is within `tol`;
    cells missing from the new run, or stopped by ASHA in either, are lines with a note and no difference."""
    fresh = {cell_key(r): r for r in new}
    lines = []
    for row in committed:
        key = cell_key(row)
        other = fresh.get(key)
        where = {"model": row["model"], "bits": row["bits"], "ptq": row["ptq"], "arm": _arm_text(row),
                 "seed": row["seed"]}
        if other is None or row.get("status") != "ok" or other.get("status") != "ok":
            note = ("no new row" if other is None else
                    f"not compared: {row.get('status')} in the committed run, {other.get('status')} in the new one")
            lines.append({**where, "metric": "", "committed": "", "new": "", "diff": "", "within": other is not None
                          and row.get("status") != "failed" and other.get("status") != "failed", "note": note})
            continue
        for metric in METRICS:
            a, b = row.get(metric), other.get(metric)
            if a is None and b is None:
                continue
            diff = None if a is None or b is None else round(float(b) - float(a), 4)
            lines.append({**where, "metric": metric, "committed": a, "new": b, "diff": diff,
                          "within": diff is not None and abs(diff) <= tol + 1e-9, "note": ""})
    return lines


def cell_means(committed: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]],
               metric: str = "q_acc") -> list[dict[str, Any]]:
    """One line per cell (model, bits, PTQ method, arm): `metric`'s mean ± sample std over the seeds both runs
    finished, in each run, and the difference of the means; what a conclusion drawn from the cell rests on."""
    fresh = {cell_key(r): r for r in new if r.get("status") == "ok" and r.get(metric) is not None}
    cells: dict[tuple, tuple[dict[str, Any], list[float], list[float]]] = {}
    for row in committed:
        other = fresh.get(cell_key(row))
        if other is None or row.get("status") != "ok" or row.get(metric) is None:
            continue
        where = {"model": row["model"], "bits": row["bits"], "ptq": row["ptq"], "arm": _arm_text(row)}
        _, old, now = cells.setdefault(cell_key(row)[:-1], (where, [], []))
        old.append(float(row[metric]))
        now.append(float(other[metric]))
    lines = []
    for where, old, now in cells.values():
        (old_mean, _, n), (new_mean, _, _) = stats(old), stats(now)
        lines.append({**where, "metric": metric, "seeds": n, "committed": _mean_std(old), "new": _mean_std(now),
                      "diff": round(new_mean - old_mean, 2)})
    return lines


def _mean_std(values: Sequence[float]) -> str:
    """'m ± s' (sample std) for several values, 'm' for one: the seed count is a column of its own."""
    m, std, n = stats(values)
    return f"{m:.2f} ± {std:.2f}" if n > 1 else f"{m:.2f}"


def _arm_text(row: Mapping[str, Any]) -> str:
    params = canonical(row.get("arm_params") or None)
    return row.get("arm", "plain") + ("" if params == "{}" else params)


def summary(lines: Sequence[Mapping[str, Any]], tol_text: str) -> str:
    """The verdict line."""
    values = [line for line in lines if line["metric"]]
    bad = [line for line in lines if not line["within"]]
    worst = max((abs(line["diff"]) for line in values if line["diff"] is not None), default=0.0)
    verdict = "reproduced" if not bad else "NOT reproduced"
    return (f"{verdict}: {len(values) - sum(1 for b in bad if b['metric'])} of {len(values)} values within "
            f"tolerance (largest difference {worst:.2f} points); tolerance {tol_text}"
            + (f"; {sum(1 for b in bad if not b['metric'])} cell(s) missing or failed" if any(not b["metric"] for b in bad)
               else ""))


__all__ = ["DEFAULT_TOLERANCE", "METRICS", "ReproduceError", "Result", "cell_key", "cell_means", "compare",
           "expected_rows", "load_result", "run", "select", "summary", "tolerance"]
