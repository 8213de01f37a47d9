"""Search spaces: declarative YAML validated into a typed `Space` before anything runs.

Schema (every key but `name`, `models`, `bits`, `ptq` optional):

    name: quickstart
    models: [vit_mnist, minilm_rt]
    bits: [W8A8, W6A6, W4A4]                            # or per model: {vit_mnist: [W4A4], minilm_rt: [W4A4, W3A4]}
    ptq: [minmax, {name: percentile, pct: 0.9999}]      # a name, or {name: ..., param: value}
    arms:                                               # plain (the baseline) is always run
      - plain
      - {name: arnq, schedule: [cosine, linear], adapt: outlier}   # a list = a grid over it
      - {name: arnq, label: arnq-minmax, delta_observer: minmax}     # label: its name in tables and plots
    finetune: {epochs: 2, lr: 5.0e-5, batch_size: 32, train_subset: 2000,
               models: {vit_fmnist: {lr: 1.0e-4, batch_size: 64}}}    # optional per-model changes
    seeds: [0, 1, 2]
    calib_size: 256                                     # optional; default: each method's own
    scheduler: {name: asha, grace_period: 1, reduction_factor: 2}   # or none
    resources: {cpu: 1, gpu: 0}
    wandb: {project: arnq-bench, mode: offline}

Errors name the key, the bad value and the valid choices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from arnq.arms import arm_config
from arnq.cache import canonical_json
from arnq.finetune import FinetuneConfig
from arnq.models import MODELS
from arnq.ptq import PTQ_METHODS, parse_bits, ptq_config
from arnq.registry import UnknownNameError
from harness.grid import build_trials, expand_params
from harness.pipeline import TrialSpec

TOP_KEYS = ("name", "models", "bits", "ptq", "arms", "finetune", "seeds", "calib_size", "fp_seed", "scheduler",
            "resources", "wandb", "description", "plugins")
SCHEDULERS = ("asha", "none")
WANDB_MODES = ("offline", "online", "disabled")


class SpaceError(ValueError):
    """A search-space file that cannot run, with the key, the value and the fix."""


def _err(key: str, value: Any, fix: str) -> SpaceError:
    return SpaceError(f"{key}: {value!r} is invalid; {fix}")


def _named(entry: Any, key: str) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
        return entry["name"], {k: v for k, v in entry.items() if k != "name"}
    raise _err(key, entry, "write a name or a mapping with a 'name' key, e.g. {name: percentile, pct: 0.9999}")


def _list(raw: Mapping[str, Any], key: str, default: Any = None) -> list[Any]:
    value = raw.get(key, default)
    if value is None:
        raise SpaceError(f"{key}: missing; give a list, e.g. {key}: [...]")
    if not isinstance(value, list):
        value = [value]
    if not value:
        raise SpaceError(f"{key}: the list is empty; give at least one value")
    return value


@dataclass(frozen=True)
class Space:
    """A validated search space."""

    name: str
    models: tuple[str, ...]
    bits: tuple[str, ...]
    ptq: tuple[tuple[str, Mapping[str, Any]], ...]
    arms: tuple[tuple[str, Mapping[str, Any]], ...]
    finetune: FinetuneConfig
    seeds: tuple[int, ...] = (0,)
    calib_size: int | None = None
    fp_seed: int = 0
    scheduler: Mapping[str, Any] = field(default_factory=lambda: {"name": "none"})
    resources: Mapping[str, Any] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    wandb: Mapping[str, Any] | None = None
    plugins: tuple[str, ...] = ()  # modules imported before the space is read (and in every trial's worker)
    labels: tuple[tuple[str, Mapping[str, Any], str], ...] = ()  # (arm, grid point, its entry's `label:`)
    source_hash: str = ""
    model_bits: tuple[tuple[str, tuple[str, ...]], ...] = ()  # `bits:` given per model; `bits` is then their union
    model_finetune: tuple[tuple[str, FinetuneConfig], ...] = ()  # `finetune.models`: a model's own budget

    def finetune_of(self, model: str) -> FinetuneConfig:
        """The fine-tuning budget of `model`: `finetune`, with the model's `finetune.models` entry applied."""
        return dict(self.model_finetune).get(model, self.finetune)

    def bits_of(self, model: str) -> tuple[str, ...]:
        """The bit-widths the space runs `model` at."""
        return dict(self.model_bits).get(model, self.bits)

    def trials(self) -> list[TrialSpec]:
        """Every cell of the grid as a TrialSpec (plain included)."""
        if not self.model_bits and not self.model_finetune:
            return build_trials(self.models, self.bits, self.ptq, self.arms, self.seeds, self.finetune,
                                calib_size=self.calib_size, fp_seed=self.fp_seed)
        return [spec for model in self.models for spec in build_trials(
            [model], self.bits_of(model), self.ptq, self.arms, self.seeds, self.finetune_of(model),
            calib_size=self.calib_size, fp_seed=self.fp_seed)]

    def narrowed(self, models: Sequence[str] | None = None, bits: Sequence[str] | None = None) -> Space:
        """The space restricted to these models and bit-widths (None: all); a model left with no bits is dropped."""
        models = [m for m in self.models if models is None or m in models]
        keep = {m: tuple(b for b in self.bits_of(m) if bits is None or b in bits) for m in models}
        models = [m for m in models if keep[m]]
        if not models:
            raise SpaceError("no (model, bits) cell of the space is left")
        union = tuple(b for b in self.bits if any(b in keep[m] for m in models))
        model_bits = tuple((m, keep[m]) for m in models) if self.model_bits else ()
        model_finetune = tuple((m, ft) for m, ft in self.model_finetune if m in models)
        return dataclasses.replace(self, models=tuple(models), bits=union, model_bits=model_bits,
                                   model_finetune=model_finetune)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def parse_space(raw: Any, source: str = "<space>", same_arms: bool = False) -> Space:
    """Validate a loaded YAML mapping into a Space; `same_arms` accepts two arm entries that are the same
    arm under today's defaults (a record of a run whose defaults differed then)."""
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{source}: the top level must be a mapping of keys ({', '.join(TOP_KEYS)})")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        from arnq.registry import suggest

        hints = "".join(suggest(k, list(TOP_KEYS)) for k in unknown)
        raise SpaceError(f"unknown key(s) {unknown}.{hints} Valid keys: {', '.join(TOP_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _err("name", name, "give the space a non-empty name")
    try:
        plugins = _plugins(raw.get("plugins", []))
        models = [str(m) for m in _list(raw, "models")]
        for i, model in enumerate(models):
            if model not in MODELS:
                raise SpaceError(f"models[{i}]: {MODELS.unknown_message(model)}")
        bits, model_bits = _bits(raw, models)
        ptq = []
        for i, entry in enumerate(_list(raw, "ptq")):
            method, params = _named(entry, f"ptq[{i}]")
            if method not in PTQ_METHODS:
                raise SpaceError(f"ptq[{i}]: {PTQ_METHODS.unknown_message(method)}")
            for b in bits:  # every bit-width: a method may refuse some (smoothquant needs quantized activations)
                try:
                    ptq_config(method, b, **params)
                except (TypeError, ValueError) as err:
                    raise SpaceError(f"ptq[{i}] ({method}, {b}): {err}") from None
            ptq.append((method, params))
        arms, labels = [], []
        configs: dict[str, tuple[int, dict[str, Any]]] = {}  # each arm variant's whole config: no two alike
        for i, entry in enumerate(_list(raw, "arms", ["plain"])):
            arm, params = _named(entry, f"arms[{i}]")
            label = params.pop("label", None)
            if label is not None and (not isinstance(label, str) or not label.strip() or "[" in label):
                raise _err(f"arms[{i}].label", label, "use a short non-empty name without brackets, e.g. arnq-minmax")
            try:
                points = expand_params(arm, params)
            except UnknownNameError as err:
                raise SpaceError(f"arms[{i}]: {err}") from None
            except (TypeError, ValueError) as err:
                raise SpaceError(f"arms[{i}] ({arm}): {err}") from None
            arms.append((arm, params))
            labels += [(arm, point, label) for point in points if label is not None]
            for point in points:
                config = canonical_json(arm_config(arm, **point).to_dict())
                if config in configs and not same_arms:
                    where, other = configs[config]
                    raise SpaceError(
                        f"arms[{i}] ({arm} {point or '(defaults)'}) is the same arm as arms[{where}] "
                        f"({other or '(defaults)'}): every knob it sets is at its default; drop one of them")
                configs[config] = (i, point)
        _check_labels(arms, labels)
        finetune, model_finetune = _finetunes(raw.get("finetune", {}), models)
        if any(ft.epochs == 0 for ft in (finetune, *dict(model_finetune).values())) and any(
                arm != "plain" for arm, _ in arms):
            raise _err("finetune.epochs", 0, "0 means no fine-tuning (the FP model as it is), which only the plain "
                       "arm can do; give epochs >= 1 or keep arms: [plain]")
        seeds = _list(raw, "seeds", [0])
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise _err("seeds", seeds, "use a list of integers, e.g. [0, 1, 2]")
        calib_size = raw.get("calib_size")
        if calib_size is not None and not (isinstance(calib_size, int) and calib_size >= 1):
            raise _err("calib_size", calib_size, "use a positive integer, or omit it for each method's default")
        fp_seed = raw.get("fp_seed", 0)
        if not isinstance(fp_seed, int):
            raise _err("fp_seed", fp_seed, "use an integer")
        scheduler = _scheduler(raw.get("scheduler", {"name": "none"}))
        resources = _resources(raw.get("resources", {"cpu": 1, "gpu": 0}))
        wandb = _wandb(raw.get("wandb"))
    except SpaceError as err:
        raise SpaceError(f"{source}: {err}") from None
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Space(name=name, models=tuple(models), bits=tuple(bits), ptq=tuple(ptq), arms=tuple(arms),
                 finetune=finetune, seeds=tuple(seeds), calib_size=calib_size, fp_seed=fp_seed,
                 scheduler=scheduler, resources=resources, wandb=wandb, plugins=plugins, labels=tuple(labels),
                 source_hash=digest, model_bits=model_bits, model_finetune=model_finetune)


def _bits(raw: Mapping[str, Any], models: list[str]) -> tuple[list[str], tuple[tuple[str, tuple[str, ...]], ...]]:
    """The space's `bits:`, a list for every model or a mapping model -> list: (their union in order,
    per-model tuples, or () for a list)."""
    per_model_raw = raw.get("bits")
    if isinstance(per_model_raw, Mapping):
        stray = [m for m in per_model_raw if m not in models]
        missing = [m for m in models if m not in per_model_raw]
        if stray or missing:
            raise _err("bits", dict(per_model_raw), f"give bits for exactly the space's models ({', '.join(models)}); "
                       + (f"not in models: {', '.join(map(str, stray))}" if stray else
                          f"missing: {', '.join(missing)}"))
        per_model = {m: [str(b) for b in _list(per_model_raw, m)] for m in models}
        for model, bits in per_model.items():
            _check_bits(bits, f"bits.{model}")
        union = list(dict.fromkeys(b for m in models for b in per_model[m]))
        return union, tuple((m, tuple(per_model[m])) for m in models)
    bits = [str(b) for b in _list(raw, "bits")]
    _check_bits(bits, "bits")
    return bits, ()


def _check_bits(bits: list[str], key: str) -> None:
    for i, b in enumerate(bits):
        try:
            parse_bits(b)
        except ValueError as err:
            raise SpaceError(f"{key}[{i}]: {err}") from None


def _check_labels(arms: list[tuple[str, dict[str, Any]]], labels: list[tuple[str, dict[str, Any], str]]) -> None:
    """Every arm variant gets a distinct label (given or automatic), or a SpaceError names the clash."""
    from harness.report.axes import axes_from_space

    try:
        axes = axes_from_space({"models": [], "bits": [], "ptq": [], "seeds": [], "arms": arms, "labels": labels})
        _ = axes.labels  # computed here so a clash is an error before anything runs
    except ValueError as err:
        raise SpaceError(f"arms: {err}") from None


def _plugins(raw: Any) -> tuple[str, ...]:
    """Import each plugin module (it registers its own arms, PTQ methods, models or datasets)."""
    if not isinstance(raw, list) or not all(isinstance(m, str) and m for m in raw):
        raise _err("plugins", raw, "use a list of importable module names, e.g. [my_lab.arms]")
    for i, module in enumerate(raw):
        try:
            import_plugin(module)
        except ImportError as err:
            raise SpaceError(f"plugins[{i}]: cannot import {module!r} ({err}); give a module on the Python path "
                             "that registers arms, PTQ methods, models or datasets") from None
    return tuple(raw)


def import_plugin(module: str) -> None:
    """Import a plugin module once per process (its registrations run at import)."""
    importlib.import_module(module)


def _finetunes(raw: Any, models: list[str]) -> tuple[FinetuneConfig, tuple[tuple[str, FinetuneConfig], ...]]:
    """`finetune:` and its optional `models:` mapping of per-model changes: (the budget, per-model budgets)."""
    if not isinstance(raw, Mapping):
        raise _err("finetune", raw, "use a mapping, e.g. {epochs: 2, lr: 5.0e-5}")
    raw = dict(raw)
    per_model = raw.pop("models", None) or {}
    if not isinstance(per_model, Mapping):
        raise _err("finetune.models", per_model, "map model names to changes, e.g. {vit_fmnist: {lr: 1.0e-4}}")
    stray = [m for m in per_model if m not in models]
    if stray:
        raise _err("finetune.models", dict(per_model), f"{', '.join(map(str, stray))} not in the space's models "
                   f"({', '.join(models)})")
    base = _finetune(raw)
    out = []
    for model, changes in per_model.items():
        if not isinstance(changes, Mapping):
            raise _err(f"finetune.models.{model}", changes, "use a mapping of finetune keys, e.g. {lr: 1.0e-4}")
        try:
            out.append((model, _finetune({**raw, **changes})))
        except SpaceError as err:
            raise SpaceError(f"finetune.models.{model}: {str(err).removeprefix('finetune: ')}") from None
    return base, tuple(out)


def _finetune(raw: Any) -> FinetuneConfig:
    if not isinstance(raw, Mapping):
        raise _err("finetune", raw, "use a mapping, e.g. {epochs: 2, lr: 5.0e-5}")
    valid = [f.name for f in dataclasses.fields(FinetuneConfig)]
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise SpaceError(f"finetune: unknown key(s) {unknown}; valid: {', '.join(valid)}")
    for key, value in raw.items():
        default = FinetuneConfig.__dataclass_fields__[key].default
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))) and value is not None:
            raise _err(f"finetune.{key}", value, f"use a number (default {default})")
    try:
        return FinetuneConfig(**raw)
    except (TypeError, ValueError) as err:
        raise SpaceError(f"finetune: {err}") from None


def _scheduler(raw: Any) -> dict[str, Any]:
    name, params = _named(raw, "scheduler")
    if name not in SCHEDULERS:
        raise _err("scheduler.name", name, f"choose one of {', '.join(SCHEDULERS)}")
    allowed = {"asha": {"grace_period", "reduction_factor", "metric"}, "none": set()}[name]
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise SpaceError(f"scheduler: unknown key(s) {unknown} for {name}; valid: {', '.join(sorted(allowed)) or '-'}")
    for key in ("grace_period", "reduction_factor"):
        if key in params and not (isinstance(params[key], int) and params[key] >= 1 + (key == "reduction_factor")):
            raise _err(f"scheduler.{key}", params[key], "use an integer (grace_period >= 1, reduction_factor >= 2)")
    return {"name": name, **params}


def _resources(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise _err("resources", raw, "use a mapping, e.g. {cpu: 1, gpu: 0.5}")
    unknown = sorted(set(raw) - {"cpu", "gpu", "models"})
    if unknown:
        raise SpaceError(f"resources: unknown key(s) {unknown}; valid: cpu, gpu, models")
    out = _cpu_gpu("resources", {"cpu": raw.get("cpu", 1), "gpu": raw.get("gpu", 0)})
    per_model = raw.get("models") or {}
    if not isinstance(per_model, Mapping):
        raise _err("resources.models", per_model, "map model names to {cpu: ..., gpu: ...}, e.g. {vit_base: {gpu: 1}}")
    models = {}
    for model, res in per_model.items():
        if model not in MODELS:
            raise SpaceError(f"resources.models: {MODELS.unknown_message(model)}")
        if not isinstance(res, Mapping) or set(res) - {"cpu", "gpu"}:
            raise _err(f"resources.models.{model}", res, "use a mapping with cpu and/or gpu")
        models[model] = _cpu_gpu(f"resources.models.{model}", {**out, **res})
    return {**out, "models": models} if models else out


def _cpu_gpu(key: str, res: dict[str, Any]) -> dict[str, Any]:
    for name, value in res.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise _err(f"{key}.{name}", value, "use a number >= 0 (fractions allowed)")
    if res["cpu"] <= 0 and res["gpu"] <= 0:
        raise _err(key, res, "a trial needs some cpu or gpu")
    if res["gpu"] > 1 and res["gpu"] != int(res["gpu"]):
        raise _err(f"{key}.gpu", res["gpu"], "use a fraction below 1 or a whole number of GPUs")
    return res


def _wandb(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _err("wandb", raw, "use a mapping, e.g. {project: arnq-bench, mode: offline}")
    unknown = sorted(set(raw) - {"project", "mode", "entity", "group"})
    if unknown:
        raise SpaceError(f"wandb: unknown key(s) {unknown}; valid: project, mode, entity, group")
    mode = raw.get("mode", "offline")
    if mode not in WANDB_MODES:
        raise _err("wandb.mode", mode, f"choose one of {', '.join(WANDB_MODES)}")
    return {"project": raw.get("project", "arnq-bench"), "mode": mode,
            **{k: raw[k] for k in ("entity", "group") if k in raw}}


def load_space(path: str | Path) -> Space:
    """Read and validate a YAML search space (yaml.safe_load; syntax errors give the line)."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"{path}: no such file; see `arnq ls spaces` for the shipped ones")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpaceError(f"{path}: YAML syntax error{where}: {getattr(err, 'problem', err)}") from None
    return parse_space(raw, str(path))


def space_from_record(record: Mapping[str, Any]) -> Space:
    """The Space a run directory's `space.json` (`Space.to_dict`) records, validated as a YAML space is,
    with the recorded `source_hash` (older records without labels or plugins read as having none)."""
    labels = [tuple(entry) for entry in record.get("labels") or []]
    arms = []
    for arm, params in record.get("arms") or []:
        entry = {"name": arm, **params}
        try:
            points = expand_params(arm, params)
        except (ValueError, TypeError, UnknownNameError):
            points = []  # parse_space names the problem
        named = [label for a, point, label in labels if a == arm and point in points]
        if named:
            entry["label"] = named[0]
        arms.append(entry)
    raw = {key: record[key] for key in TOP_KEYS if key in record and record[key] is not None}
    if record.get("model_bits"):
        raw["bits"] = {model: list(bits) for model, bits in record["model_bits"]}
    if record.get("model_finetune"):  # recorded whole: the recorded values override the base's
        raw["finetune"] = {**record["finetune"], "models": {model: ft for model, ft in record["model_finetune"]}}
    raw |= {"arms": arms, "ptq": [{"name": method, **params} for method, params in record.get("ptq") or []]}
    if "plugins" in raw and not raw["plugins"]:
        del raw["plugins"]
    # two arms that today's defaults make one ran as two (a default changed since): the record stands
    space = parse_space(raw, f"space.json of {record.get('name')!r}", same_arms=True)
    return dataclasses.replace(space, source_hash=record.get("source_hash") or space.source_hash)
