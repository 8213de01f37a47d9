"""The recipe screen of PTQ-aware ARNQ on vit_fmnist W3A3 (PTQ4ViT, RepQ-ViT), from rows.jsonl next to this file.

The rule, fixed before the screen ran: the variant with the highest mean paired difference from the default recipe
over the six (method, seed) pairs of seeds 0-2 is the candidate; it replaces the documented default only if, on seeds
3-5 (the confirmation run, `../recipe_fmnist_confirm/`), its mean paired difference from the default over the six
(method, seed) pairs is positive with p < 0.05 (two-sided paired t-test). Otherwise the default stays.

For each method and variant: ft_acc and q_acc (mean ± sample std over the seeds), the paired difference from plain
fine-tuning + the same method (per seed, p, the share of plain's drop ft_acc − q_acc it recovers) and from the
default recipe. Then each variant's difference from the default over both methods. Writes screen.md next to the
rows (or next to this file):

    .venv/bin/python results/composition/recipe_fmnist/screen.py [ROWS_DIR]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from harness.report.paired import differences, folder_rows, mean_std, paired_diff, paired_p

HERE = Path(__file__).parent
METHODS = ("ptq4vit", "repq_vit")


def _variant(row: dict) -> str:
    """The arm's label: 'plain', 'default' or its changed knobs (rows store them as a JSON string)."""
    if row["arm"] == "plain":
        return "plain"
    params = row.get("arm_params") or "{}"
    params = json.loads(params) if isinstance(params, str) else params
    return ", ".join(f"{k} {v}" for k, v in sorted(params.items())) or "default"


def main() -> None:
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    rows = folder_rows(where)
    cell = {(r["ptq"], _variant(r), r["seed"]): r for r in rows if r["status"] == "ok"}
    seeds = sorted({s for _, _, s in cell})
    variants = sorted({v for _, v, _ in cell} - {"plain", "default"})
    lines = [f"vit_fmnist W3A3 (FP {rows[0]['fp_acc']:.2f}), seeds {', '.join(map(str, seeds))}", ""]
    for method in METHODS:
        pf = [cell[method, "plain", s]["ft_acc"] for s in seeds]
        pq = [cell[method, "plain", s]["q_acc"] for s in seeds]
        drop = statistics.mean(pf) - statistics.mean(pq)
        lines += [f"### {method}: plain ft_acc {mean_std(pf)}, q_acc {mean_std(pq)}, drop {drop:.2f}", "",
                  "| variant | ft_acc | q_acc | − plain q_acc | recovered | − default q_acc |",
                  "|---|---|---|---|---|---|"]
        dq = [cell[method, "default", s]["q_acc"] for s in seeds]
        for variant in ["default", *variants]:
            af = [cell[method, variant, s]["ft_acc"] for s in seeds]
            aq = [cell[method, variant, s]["q_acc"] for s in seeds]
            gain = statistics.mean(aq) - statistics.mean(pq)
            lines.append(f"| {variant} | {mean_std(af)} | {mean_std(aq)} | {paired_diff(aq, pq, sep=', p ')} | {100 * gain / drop:.0f} % | "
                         f"{'' if variant == 'default' else paired_diff(aq, dq, sep=', p ')} |")
        lines.append("")
    lines += ["### Each variant against the default, both methods (six pairs)", "",
              "| variant | − default q_acc (mean ± std over the pairs) | p |", "|---|---|---|"]
    ranked = []
    for variant in variants:
        a = [cell[m, variant, s]["q_acc"] for m in METHODS for s in seeds]
        b = [cell[m, "default", s]["q_acc"] for m in METHODS for s in seeds]
        d = differences(a, b)
        ranked.append((statistics.mean(d), variant, statistics.stdev(d), paired_p(a, b)))
    for mean, variant, std, p in sorted(ranked, reverse=True):
        lines.append(f"| {variant} | {mean:+.2f} ± {std:.2f} | {p:.3f} |")
    (where / "screen.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
