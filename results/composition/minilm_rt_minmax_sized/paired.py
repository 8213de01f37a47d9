"""The min-max-sized ARNQ arm against plain fine-tuning and against PTQ-aware ARNQ, method by method, on minilm_rt W4A4.

For each of the eight methods of this sweep: plain q_acc, the min-max-sized arm's ft_acc and q_acc (mean ± sample
std over seeds 0-2) and its paired difference per seed against plain (two-sided paired t-test); then against the
PTQ-aware arm of ../minilm_w4a4 (section 4's recipe, same budget and seeds), paired by seed. Whether this sweep's
plain rows equal those of ../minilm_w4a4 (the same fine-tunes and quantizations rebuilt from an empty cache at a
later commit) is checked cell by cell. Then the thesis view of both arms over ten methods: these eight, the
rotation (../hadamard_minmax_sized and ../hadamard_aware) and Liu 2021 (../minilm_liu2021). Writes paired.md
next to this file:

    .venv/bin/python results/composition/minilm_rt_minmax_sized/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.report.paired import cell_values, folder_rows, mean_gain, mean_std, paired_diff, spread_row

HERE = Path(__file__).parent
MODEL, BITS, SEEDS = "minilm_rt", "W4A4", (0, 1, 2)
METHODS = ("minmax", "percentile", "omse", "smoothquant", "noisyquant", "fq_vit", "repq_vit", "ptq4vit")
SIZED = json.dumps({"delta_observer": "minmax"})
# the other sweeps that hold both arms toward a method: {method: (min-max-sized folder, PTQ-aware folder)}
OTHERS = {"hadamard": ("hadamard_minmax_sized", "hadamard_aware"), "liu2021": ("minilm_liu2021", "minilm_liu2021")}


def _rows(folder: str) -> list[dict]:
    return folder_rows(HERE.parent / folder)


def _values(rows: list[dict], ptq: str, arm: str, key: str = "q_acc", params: str = "{}") -> list[float]:
    """`key` of the ok rows of one (ptq, arm, arm_params) cell, in seed order."""
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params=params)


def main() -> None:
    here, aware = _rows("minilm_rt_minmax_sized"), _rows("minilm_w4a4")
    lines = [f"{MODEL} {BITS}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {here[0]['fp_acc']:.2f})", "",
             "| PTQ | plain q_acc | PTQ-aware ARNQ q_acc (../minilm_w4a4) | min-max-sized ft_acc | min-max-sized q_acc | "
             "min-max-sized − plain (per seed) | p | min-max-sized − PTQ-aware (per seed) | p |",
             "|---|---|---|---|---|---|---|---|---|"]
    sized_gain, aware_gain, same = {}, {}, []
    for ptq in METHODS:
        plain, sized = _values(here, ptq, "plain"), _values(here, ptq, "arnq", params=SIZED)
        ptq_aware = _values(aware, ptq, "arnq")
        same.append((ptq, _values(aware, ptq, "plain", "ft_acc") == _values(here, ptq, "plain", "ft_acc"),
                     _values(aware, ptq, "plain") == plain))
        lines.append(f"| {ptq} | {mean_std(plain)} | {mean_std(ptq_aware)} | "
                     f"{mean_std(_values(here, ptq, 'arnq', 'ft_acc', SIZED))} | {mean_std(sized)} | "
                     f"{paired_diff(sized, plain)} | {paired_diff(sized, ptq_aware)} |")
        sized_gain[ptq] = statistics.mean(sized) - statistics.mean(plain)
        aware_gain[ptq] = mean_gain(aware, SEEDS, model=MODEL, bits=BITS, ptq=ptq, arm_params="{}")
    lines += ["", "This sweep's plain rows against those of ../minilm_w4a4, per method: "
              + "; ".join(f"{ptq} ft_acc {'equal' if ft else 'DIFFER'}, q_acc {'equal' if q else 'differ'}"
                          for ptq, ft, q in same) + "."]
    for ptq, (sized_folder, aware_folder) in OTHERS.items():
        sized_gain[ptq] = mean_gain(_rows(sized_folder), SEEDS, arm_match={"arm_params": SIZED}, model=MODEL, bits=BITS,
                                    ptq=ptq, arm_params="{}")
        aware_gain[ptq] = mean_gain(_rows(aware_folder), SEEDS, model=MODEL, bits=BITS, ptq=ptq, arm_params="{}")
    lines += ["", f"Thesis view on {MODEL} {BITS} over ten methods (these eight, the rotation, Liu 2021): each arm's "
              "q_acc − plain q_acc per method (mean over seeds), averaged over methods", "",
              "| arm | average ± std over methods | positive | per method |", "|---|---|---|---|"]
    for label, per in (("PTQ-aware ARNQ (section 4's recipe)", aware_gain), ("min-max-sized ARNQ", sized_gain)):
        lines.append(spread_row(label, per))
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
