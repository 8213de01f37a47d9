"""ARNQ toward ERQ with the weight error frozen between ERQ's in-training runs, on minilm_rt at W4A4.

Plain and ARNQ (weight_error: frozen) ft_acc and q_acc (mean ± sample std over seeds 0-2), the paired
differences per seed with their two-sided paired t-tests, and the share of plain fine-tuning's drop
recovered; the default arm of ../minilm_rt_new_methods against that sweep's own plain rows (ERQ's final
run quantizes the same plain fine-tunes a little differently at the two commits). Rows of earlier sweeps pair with these where their plain fine-tunes are the same as this
one's (checked on ft_acc per seed): the default arm toward ERQ (weight_error: requantized,
../minilm_rt_new_methods), plain + rotation (../hadamard_aware) and plain + AdaLog
(../minilm_rt_new_methods). Then the thesis view on minilm_rt at W4A4 over the twelve methods of
../minilm_rt_new_methods/paired.md, with this arm's ERQ cell in place of the default arm's. Writes
paired.md next to this file:

    .venv/bin/python results/composition/minilm_rt_erq_frozen/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.report.paired import cell_values, folder_rows, mean_gain, mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, PTQ, SEEDS = "minilm_rt", "W4A4", "erq", (0, 1, 2)
FROZEN = json.dumps({"weight_error": "frozen"})
BEST_PLAIN = {"hadamard": "hadamard_aware", "adalog": "minilm_rt_new_methods"}  # the best plain methods on minilm_rt
TWELVE = {"minilm_w4a4": ("minmax", "percentile", "omse", "smoothquant", "noisyquant", "fq_vit", "repq_vit"),
          "minilm_rt_ptq4vit_configured": ("ptq4vit",), "minilm_liu2021": ("liu2021",),
          "minilm_rt_new_methods": ("os_plus", "erq", "adalog")}  # each method's cell from the sweep that holds it


def _rows(folder: str) -> list[dict]:
    return folder_rows(HERE.parent / folder)


def _values(rows: list[dict], ptq: str, arm: str, key: str, params: str = "{}") -> list[float]:
    """`key` of the ok rows of one (ptq, arm, arm_params) cell, in seed order."""
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params=params)


def main() -> None:
    here, earlier = _rows("minilm_rt_erq_frozen"), _rows("minilm_rt_new_methods")
    fp = here[0]["fp_acc"]
    plain_ft = _values(here, PTQ, "plain", "ft_acc")
    q = {"plain": _values(here, PTQ, "plain", "q_acc"), "frozen": _values(here, PTQ, "arnq", "q_acc", FROZEN),
         "requantized (../minilm_rt_new_methods)": _values(earlier, PTQ, "arnq", "q_acc")}
    ft = {"plain": plain_ft, "frozen": _values(here, PTQ, "arnq", "ft_acc", FROZEN),
          "requantized (../minilm_rt_new_methods)": _values(earlier, PTQ, "arnq", "ft_acc")}
    same_plain = plain_ft == _values(earlier, PTQ, "plain", "ft_acc")
    drop = statistics.mean(plain_ft) - statistics.mean(q["plain"])
    lines = [f"{MODEL} {BITS}, {PTQ}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {fp:.2f})", "",
             f"The plain fine-tunes {'equal' if same_plain else 'DIFFER FROM'} those of ../minilm_rt_new_methods per "
             f"seed (ft_acc); plain + ERQ there: {mean_std(_values(earlier, PTQ, 'plain', 'q_acc'))}.", "",
             "| arm | ft_acc | q_acc | − its sweep's plain q_acc (per seed) | p | share of plain's drop |",
             "|---|---|---|---|---|---|"]
    # each ARNQ arm against the plain rows of its own sweep: ERQ's final run differs a little between the commits
    baseline = {"frozen": q["plain"], "requantized (../minilm_rt_new_methods)": _values(earlier, PTQ, "plain", "q_acc")}
    for arm, values in q.items():
        if arm == "plain":
            lines.append(f"| plain | {mean_std(ft[arm])} | {mean_std(values)} | | | drop {drop:.2f} |")
            continue
        gain = statistics.mean(values) - statistics.mean(baseline[arm])
        share = f"{100 * gain / drop:.0f} %" if gain > 0 else "— (a loss)"
        lines.append(f"| arnq, weight_error {arm} | {mean_std(ft[arm])} | {mean_std(values)} | "
                     f"{paired_diff(values, baseline[arm])} | {share} |")
    lines += ["", "| comparison (paired by seed) | difference (per seed) | p |", "|---|---|---|"]
    if same_plain:
        lines.append(f"| arnq frozen − arnq requantized (ERQ's final run at two commits) | "
                     f"{paired_diff(q['frozen'], q['requantized (../minilm_rt_new_methods)'])} |")
    for ptq, folder in BEST_PLAIN.items():
        rows = _rows(folder)
        if _values(rows, ptq, "plain", "ft_acc") != plain_ft:
            lines.append(f"| (plain fine-tunes of ../{folder} differ from this sweep's: not paired) | | |")
            continue
        reference = _values(rows, ptq, "plain", "q_acc")
        lines.append(f"| arnq frozen + ERQ − plain + {ptq} ({mean_std(reference)}, ../{folder}) | "
                     f"{paired_diff(q['frozen'], reference)} |")

    gains = {ptq: mean_gain(_rows(folder), SEEDS, model=MODEL, bits=BITS, ptq=ptq, arm_params="{}")
             for folder, methods in TWELVE.items() for ptq in methods if ptq != "ptq4vit"}
    gains["ptq4vit"] = mean_gain(_rows("minilm_rt_ptq4vit_configured"), SEEDS,  # its plain arm names no params
                                 arm_match={"arm_params": json.dumps({"ptq_settings": "configured"})},
                                 model=MODEL, bits=BITS, ptq="ptq4vit", arm_params="{}")
    frozen = gains | {PTQ: statistics.mean(q["frozen"]) - statistics.mean(q["plain"])}
    lines += ["", f"Thesis view on {MODEL} {BITS} over twelve methods (the nine of ../thesis_view with PTQ4ViT as "
              "configured in training, OS+, ERQ, AdaLog): ARNQ − plain q_acc per method (mean over seeds)", "",
              "| ERQ cell | average ± std over methods | positive | ERQ |", "|---|---|---|---|"]
    for label, per in (("weight_error: requantized (../minilm_rt_new_methods)", gains),
                       ("weight_error: frozen", frozen)):
        values = list(per.values())
        lines.append(f"| {label} | {statistics.mean(values):+.2f} ± {statistics.stdev(values):.2f} | "
                     f"{sum(g > 0 for g in values)} of {len(values)} | {per[PTQ]:+.2f} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
