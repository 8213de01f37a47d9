"""Tables and figures of the ARNQ research sweeps (results/ARNQ.md), from run directories.

    .venv/bin/python scripts/arnq_research.py tables RUN_DIR [RUN_DIR ...] --out results/arnq_research [--sites]
    .venv/bin/python scripts/arnq_research.py sensitivity --model minilm_rt --bits W4A4 --seed 0 --out DIR

Every arm is paired by seed with the plain arm of the same (model, bits, PTQ, seed) in
the same run, which had the same fine-tuning budget. Per arm setting: ft_acc (noise
off) and its cost against plain, q_acc and the improvement, mean +- sample std (n).
`--sites` also loads each fine-tuned checkpoint from the cache and measures max|A|/sigma
of every Linear input on calibration batches (per Linear kind and layer), the
diagnostic behind the write-up's "why".
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.store import read_rows

KEY = ("model", "bits", "ptq", "seed")


def label(row: dict[str, Any]) -> str:
    """The arm and its non-default params, compact (the row's arm_params holds only what the space set)."""
    params = json.loads(row.get("arm_params") or "{}")
    if not params:
        return row["arm"]
    inner = ", ".join(f"{k}={'+'.join(v) if isinstance(v, list) else v}" for k, v in sorted(params.items()))
    return f"{row['arm']}({inner})"


def _ms(values: list[float], sign: str = "") -> str:
    """'mean ± std (n=k)' (just the value for n=1); sign="+" prints the sign of improvements and costs."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:{sign}.2f} (n=1)"
    return f"{statistics.mean(values):{sign}.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def paired(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, dict[str, list[float]]]]:
    """{(model, bits, ptq): {arm label: {q_acc, ft_acc, improvement, ft_cost: [...per seed]}}}."""
    plain = {tuple(r[k] for k in KEY): r for r in rows if r["arm"] == "plain" and r.get("status") == "ok"}
    cells: dict[tuple, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        if r.get("status") != "ok":
            continue
        base = plain.get(tuple(r[k] for k in KEY))
        if base is None:
            continue
        entry = cells[(r["model"], r["bits"], r["ptq"])][label(r)]
        entry["q_acc"].append(r["q_acc"])
        entry["ft_acc"].append(r["ft_acc"])
        entry["improvement"].append(r["q_acc"] - base["q_acc"])
        entry["ft_cost"].append(r["ft_acc"] - base["ft_acc"])
        entry["seeds"].append(r["seed"])
    return cells


def stopped(rows: list[dict[str, Any]]) -> dict[tuple, list[str]]:
    out: dict[tuple, list[str]] = defaultdict(list)
    for r in rows:
        if r.get("status") in ("stopped", "failed"):
            out[(r["model"], r["bits"], r["ptq"])].append(f"{label(r)} seed {r['seed']} ({r['status']})")
    return out


def markdown(cells: dict, halted: dict) -> str:
    lines = []
    for cell in sorted(cells):
        model, bits, ptq = cell
        arms = cells[cell]
        plain_q = arms.get("plain", {}).get("q_acc", [])
        plain_ft = arms.get("plain", {}).get("ft_acc", [])
        lines += [f"### {model} {bits} {ptq}", "",
                  f"plain: ft_acc {_ms(plain_ft)}, q_acc {_ms(plain_q)}", "",
                  "| arm | ft_acc | FP cost vs plain | q_acc | improvement |", "|---|---|---|---|---|"]
        ranked = sorted((a for a in arms if a != "plain"), key=lambda a: -statistics.mean(arms[a]["improvement"]))
        for arm in ranked:
            e = arms[arm]
            lines.append(f"| `{arm}` | {_ms(e['ft_acc'])} | {_ms(e['ft_cost'], '+')} | {_ms(e['q_acc'])} "
                         f"| {_ms(e['improvement'], '+')} |")
        if halted.get(cell):
            lines += ["", "Stopped by ASHA or failed (not averaged): " + "; ".join(halted[cell]) + "."]
        lines.append("")
    return "\n".join(lines)


LAYER = re.compile(r"\.layer\.(\d+)\.|blocks\.(\d+)\.")
BERT_KINDS = {"attention.self.query": "qkv_in", "attention.output.dense": "attn_out_in",
              "intermediate.dense": "fc1_in", "output.dense": "fc2_in"}
VIT_KINDS = {"attn.qkv": "qkv_in", "attn.proj": "attn_out_in", "mlp.fc1": "fc1_in", "mlp.fc2": "fc2_in"}


def linear_kind(name: str) -> tuple[str, int] | None:
    """('fc1_in', layer) for a 'linear_in/<module>' site; None for q/k duplicates, head and pooler."""
    m = LAYER.search(name)
    if not m:
        return None
    layer = int(m.group(1) or m.group(2))
    for suffix, kind in {**BERT_KINDS, **VIT_KINDS}.items():
        if name.endswith(suffix) and not (suffix == "output.dense" and name.endswith("attention.output.dense")):
            return kind, layer
    return None


def site_stats(rows: list[dict[str, Any]], batches: int = 4) -> dict[str, dict[str, dict[str, float]]]:
    """{arm label: {'fc1_in/3': mean max/sigma over seeds, ...}} from the cached fine-tunes (+ 'FP checkpoint')."""
    from arnq.arms.diagnostics import linear_input_stats
    from arnq.finetune import CALIB_BATCH, fp_copy, make_splits
    from arnq.train import make_loader
    from harness.pipeline import TrialSpec, _loaded, cached_finetune

    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    done = set()
    for r in rows:
        if r.get("status") != "ok" or not r.get("config"):
            continue
        config = json.loads(r["config"])  # TrialSpec.resolved(): the spec's fields plus the fine-tune's cache key
        spec = TrialSpec.from_dict(config)
        key = (label(r), config["finetune_key"])  # one measurement per fine-tune, however many PTQ cells used it
        if key in done:
            continue
        done.add(key)
        loaded = _loaded(spec.model, spec.fp_seed, "cpu", None)
        state, _, _ = cached_finetune(spec, loaded)
        splits = make_splits(loaded, spec.finetune, spec.seed, spec.ptq.resolved_calib_size)
        calib = make_loader(splits.calib, loaded.collate, CALIB_BATCH, shuffle=False,
                            length_bucketing=loaded.data.modality == "text")
        models = [(f"{spec.model}: {label(r)}", fp_copy(loaded, state))]
        if (spec.model, "fp", spec.seed) not in done:
            done.add((spec.model, "fp", spec.seed))
            models.append((f"{spec.model}: FP checkpoint", loaded.model))
        for name, model in models:
            for site, s in linear_input_stats(model, calib, max_batches=batches).items():
                kind = linear_kind(site)
                if kind:
                    out[name][f"{kind[0]}/{kind[1]}"].append(s["max_over_sigma"])
    return {arm: {site: statistics.mean(v) for site, v in sites.items()} for arm, sites in out.items()}


def plot_tradeoff(cells: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(cells)
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 5), squeeze=False)
    for ax, cell in zip(axes[0], sorted(cells), strict=True):
        for arm, e in cells[cell].items():
            if arm == "plain" or len(e["improvement"]) < 2:
                continue
            x, y = statistics.mean(e["ft_cost"]), statistics.mean(e["improvement"])
            ax.errorbar(x, y, xerr=statistics.stdev(e["ft_cost"]), yerr=statistics.stdev(e["improvement"]),
                        fmt="o", capsize=3)
            ax.annotate(arm.replace(", ", ",\n"), (x, y), fontsize=6, xytext=(4, 4), textcoords="offset points")
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel("FP cost: ft_acc - plain ft_acc (points)")
        ax.set_ylabel("improvement: q_acc - plain q_acc (points)")
        ax.set_title(" ".join(cell) + " (mean ± std, paired by seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sites(stats: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ("qkv_in", "attn_out_in", "fc1_in", "fc2_in")
    fig, axes = plt.subplots(1, len(kinds), figsize=(18, 4.5), sharey=False)
    for ax, kind in zip(axes, kinds, strict=True):
        for arm, sites in sorted(stats.items()):
            layers = sorted(int(s.split("/")[1]) for s in sites if s.startswith(kind + "/"))
            if layers:
                ax.plot(layers, [sites[f"{kind}/{i}"] for i in layers], marker="o", label=arm)
        ax.set_title(f"{kind}: max|A| / sigma")
        ax.set_xlabel("layer")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SENSITIVITY_FT = {"epochs": 2, "lr": 5.0e-5, "batch_size": 32, "train_subset": 2000, "val_size": 500}
ALL_POINTS = ("weight", "linear_in", "attn_q", "attn_k", "attn_v", "attn_probs")
BERT_GROUPS = {"qkv_in": ("*attention.self.query", "*attention.self.key", "*attention.self.value"),
               "attn_out_in": ("*attention.output.dense",), "fc1_in": ("*intermediate.dense",),
               "fc2_in": ("*layer.[0-9].output.dense", "*layer.[0-9][0-9].output.dense")}
VIT_GROUPS = {"qkv_in": ("*attn.qkv",), "attn_out_in": ("*attn.proj",), "fc1_in": ("*mlp.fc1",),
              "fc2_in": ("*mlp.fc2",)}


def sensitivity(model_name: str, bits: str, seed: int, finetune: dict[str, Any], lr: float | None = None,
                observer: str = "minmax") -> list[tuple[str, float]]:
    """(variant, accuracy %) of the plain fine-tune under PTQ with one group of points kept in FP."""
    from arnq.finetune import CALIB_BATCH, EVAL_BATCH, FinetuneConfig, fp_copy, make_splits
    from arnq.ptq import ptq_config
    from arnq.quant import QuantConfig, calibrate, convert, detect_family, prepare
    from arnq.train import evaluate, make_loader
    from harness.pipeline import TrialSpec, _loaded, cached_finetune

    ft = FinetuneConfig(**{**finetune, **({"lr": lr} if lr else {})})
    target = ptq_config(observer, bits, calib_size=256)
    spec = TrialSpec(model=model_name, ptq=target, seed=seed, finetune=ft)
    loaded = _loaded(model_name, 0, "cpu", None)
    state, record, _ = cached_finetune(spec, loaded)
    text = loaded.data.modality == "text"
    splits = make_splits(loaded, ft, seed, 256)
    calib = make_loader(splits.calib, loaded.collate, CALIB_BATCH, shuffle=False, length_bucketing=text)
    test = make_loader(splits.test, loaded.collate, EVAL_BATCH, shuffle=False, length_bucketing=text)
    w_bits, a_bits = target.w_bits, target.a_bits
    family = detect_family(loaded.model)
    groups = BERT_GROUPS if family == "bert" else VIT_GROUPS
    variants: list[tuple[str, dict[str, Any]]] = [
        ("FP (fine-tuned)", {}), (f"{bits}, every point", {}),
        ("Linear inputs in FP", {"points": tuple(p for p in ALL_POINTS if p != "linear_in")}),
        ("softmax output in FP", {"points": tuple(p for p in ALL_POINTS if p != "attn_probs")}),
        ("q/k/v in FP", {"points": ("weight", "linear_in", "attn_probs")}),
        (f"W8A{a_bits}", {"w_bits": 8}), (f"W{w_bits}A8", {"a_bits": 8}),
    ]
    for kind, patterns in groups.items():
        variants.append((f"{kind} Linears in FP", {"skip": patterns}))
        others = tuple(p for k, ps in groups.items() if k != kind for p in ps)
        variants.append((f"only {kind} Linears quantized", {"skip": others}))
    out = []
    for name, params in variants:
        if name.startswith("FP"):
            out.append((name, 100 * record["ft_acc"]))
            continue
        model = fp_copy(loaded, state)
        qcfg = QuantConfig(w_bits=params.get("w_bits", w_bits), a_bits=params.get("a_bits", a_bits), edge_bits=8,
                           a_observer=observer, points=params.get("points", ALL_POINTS), skip=params.get("skip", ()))
        prepare(model, qcfg, family)
        calibrate(model, calib, device="cpu")
        convert(model)
        out.append((name, 100 * evaluate(model, test, "cpu")))
        print(f"{name:36s} {out[-1][1]:.2f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tables = sub.add_parser("tables", help="paired tables, trade-off plot (and per-site max/sigma) per run")
    tables.add_argument("runs", nargs="+", type=Path)
    tables.add_argument("--out", type=Path, required=True)
    tables.add_argument("--sites", action="store_true", help="measure per-Linear-input max/sigma from the cache")
    sens = sub.add_parser("sensitivity", help="accuracy with one group of quantization points kept in FP")
    sens.add_argument("--model", default="minilm_rt")
    sens.add_argument("--bits", default="W4A4")
    sens.add_argument("--seed", type=int, default=0)
    sens.add_argument("--lr", type=float, default=None, help="fine-tune lr (default: the research budget's 5e-5)")
    sens.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "sensitivity":
        ft = dict(SENSITIVITY_FT)
        if args.model == "vit_mnist":
            ft.update(lr=1.0e-4, batch_size=64)
        rows = sensitivity(args.model, args.bits, args.seed, ft, args.lr)
        lines = [f"<!-- scripts/arnq_research.py sensitivity --model {args.model} --bits {args.bits} "
                 f"--seed {args.seed} -->", "", "| quantized (min-max PTQ) | accuracy |", "|---|---|"]
        lines += [f"| {name} | {acc:.2f} |" for name, acc in rows]
        path = args.out / f"sensitivity_{args.model}_{args.bits}_s{args.seed}.md"
        path.write_text("\n".join(lines) + "\n")
        print(path)
        return
    for run in args.runs:
        rows = read_rows(run / "rows.jsonl")
        cells = paired(rows)
        text = markdown(cells, stopped(rows))
        (args.out / f"{run.name}.md").write_text(f"<!-- scripts/arnq_research.py tables {run} -->\n\n" + text)
        print(text)
        plot_tradeoff(cells, args.out / f"{run.name}_tradeoff.png")
        if args.sites:
            stats = site_stats(rows)
            (args.out / f"{run.name}_sites.json").write_text(json.dumps(stats, indent=1, sort_keys=True))
            plot_sites(stats, args.out / f"{run.name}_sites.png")


if __name__ == "__main__":
    main()
