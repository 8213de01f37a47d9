"""Paired comparisons for section 13 of results/COMPOSITION.md (Liu 2021 as a target).

Each arm against plain fine-tuning on the same seed (minilm_rt W4A4, Liu 2021, seeds 0-2),
a check that the plain fine-tunes are the ones of section 4 (same FP accuracy per seed), and
the thesis view of section 4 with Liu 2021 as its ninth method. Writes paired.md next to this
file:

    .venv/bin/python results/composition/minilm_liu2021/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from scipy import stats

HERE = Path(__file__).parent
SECTION4 = HERE.parent / "minilm_w4a4" / "rows.jsonl"
SEEDS = (0, 1, 2)
ARMS = [  # (label, arm, arm_params)
    ("PTQ-aware ARNQ", "arnq", {}),
    ("min-max-sized ARNQ", "arnq", {"delta_observer": "minmax"}),
    ("PTQ-aware ARNQ+QuantTune", "arnq_quanttune", {}),
]


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cell(rows: list[dict], ptq: str, arm: str, params: dict, key: str = "q_acc") -> list[float]:
    by_seed = {r["seed"]: r[key] for r in rows
               if (r["model"], r["bits"], r["ptq"], r["arm"]) == ("minilm_rt", "W4A4", ptq, arm)
               and json.loads(r["arm_params"]) == params and r["status"] == "ok"}
    return [by_seed[s] for s in SEEDS]


def ms(x: list[float]) -> str:
    return f"{statistics.mean(x):.2f} ± {statistics.stdev(x):.2f}"


def main() -> None:
    rows, sec4 = load(HERE / "rows.jsonl"), load(SECTION4)
    plain = cell(rows, "liu2021", "plain", {})
    lines = ["| minilm_rt W4A4, Liu 2021, seeds 0-2 | ft_acc | q_acc | − plain (per seed) | paired t-test p |",
             "|---|---|---|---|---|",
             f"| plain | {ms(cell(rows, 'liu2021', 'plain', {}, 'ft_acc'))} | {ms(plain)} | | |"]
    for label, arm, params in ARMS:
        q = cell(rows, "liu2021", arm, params)
        d = [a - b for a, b in zip(q, plain, strict=True)]
        lines.append(f"| {label} | {ms(cell(rows, 'liu2021', arm, params, 'ft_acc'))} | {ms(q)} | "
                     f"{statistics.mean(d):+.2f} ± {statistics.stdev(d):.2f} "
                     f"({', '.join(f'{v:+.2f}' for v in d)}) | {stats.ttest_rel(q, plain).pvalue:.3f} |")

    ours = cell(rows, "liu2021", "plain", {}, "ft_acc")
    theirs = cell(sec4, "repq_vit", "plain", {}, "ft_acc")
    lines += ["", f"Plain fine-tunes' FP accuracy per seed: here {ours}, section 4 {theirs} "
              f"({'identical' if ours == theirs else 'DIFFERENT'})."]

    methods = sorted({r["ptq"] for r in sec4 if r["bits"] == "W4A4" and r["ptq"] != "liu2021"})
    gains = {m: statistics.mean(a - b for a, b in zip(cell(sec4, m, "arnq", {}), cell(sec4, m, "plain", {}),
                                                      strict=True)) for m in methods}
    eight = list(gains.values())
    gains["liu2021"] = statistics.mean(a - b for a, b in zip(cell(rows, "liu2021", "arnq", {}), plain, strict=True))
    nine = list(gains.values())
    lines += ["", "Thesis view on minilm_rt W4A4 (PTQ-aware ARNQ minus plain, mean over seeds 0-2, then over "
              "methods; ± across methods):", "",
              "| methods | mean improvement | positive |", "|---|---|---|",
              f"| section 4's eight | {statistics.mean(eight):+.2f} ± {statistics.stdev(eight):.2f} | "
              f"{sum(g > 0 for g in eight)} of {len(eight)} |",
              f"| the eight and Liu 2021 | {statistics.mean(nine):+.2f} ± {statistics.stdev(nine):.2f} | "
              f"{sum(g > 0 for g in nine)} of {len(nine)} |",
              "", "Per method: " + ", ".join(f"{m} {g:+.2f}" for m, g in gains.items()) + "."]
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
