"""The composition question on minilm_rt at W4A4 at lr 5e-5: plain fine-tuning against PTQ-aware ARNQ under
RepQ-ViT and the Hadamard rotation, and every combination against the best plain one at either learning rate.

Per method: plain and ARNQ ft_acc and q_acc (mean ± sample std over seeds 0-2), the paired difference per seed
with its two-sided paired t-test, plain fine-tuning's drop and the share recovered. Then each combination of
this sweep against the best plain combination of this sweep and against plain + rotation at lr 2e-4
(../minilm_rt_quanttune, the latest run of that cell), paired by seed: the same seed draws the same training
subset and order at both learning rates, but the fine-tunes differ. Writes paired.md next to this file:

    .venv/bin/python results/composition/minilm_rt_lr5e5/paired.py
"""

from __future__ import annotations

import statistics
from pathlib import Path

from harness.report.paired import arm_row, cell_values, folder_rows, mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, SEEDS = "minilm_rt", "W4A4", (0, 1, 2)
METHODS = ("repq_vit", "hadamard")
AT_2E4 = HERE.parent / "minilm_rt_quanttune"  # plain + rotation / RepQ-ViT at lr 2e-4, the same seeds


def _cell(rows: list[dict], ptq: str, arm: str, key: str = "q_acc") -> list[float]:
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params="{}")


def main() -> None:
    here = folder_rows(HERE)
    lines = [f"{MODEL} {BITS}, lr 5e-5, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {here[0]['fp_acc']:.2f})", "",
             "| PTQ | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc (per seed) | p | "
             "plain drop | recovered |", "|---|---|---|---|---|---|---|---|---|"]
    for ptq in METHODS:
        lines.append(arm_row(ptq, *(_cell(here, ptq, arm, key) for arm, key in
                                    (("plain", "ft_acc"), ("plain", "q_acc"), ("arnq", "ft_acc"),
                                     ("arnq", "q_acc")))))

    old = folder_rows(AT_2E4)
    cells = {f"{arm} + {ptq}, lr 5e-5": (here, ptq, arm) for arm in ("plain", "arnq") for ptq in METHODS}
    cells |= {f"plain + {ptq}, lr 2e-4 (../{AT_2E4.name})": (old, ptq, "plain") for ptq in METHODS}
    q = {label: _cell(*cell) for label, cell in cells.items()}
    combos = [label for label, (rows, _, _) in cells.items() if rows is here]
    best_here = max((k for k in combos if cells[k][2] == "plain"), key=lambda k: statistics.mean(q[k]))
    best_old = max((k for k in cells if cells[k][0] is old), key=lambda k: statistics.mean(q[k]))
    lines += ["", "| combination | q_acc | ft_acc |", "|---|---|---|"]
    for label, cell in cells.items():
        lines.append(f"| {label} | {mean_std(q[label])} | {mean_std(_cell(*cell, 'ft_acc'))} |")
    for best in (best_here, best_old):
        lines += ["", f"| combination − best plain: {best} ({mean_std(q[best])}; paired by seed) | "
                  "difference (per seed) | p |", "|---|---|---|"]
        lines += [f"| {label} | {paired_diff(q[label], q[best])} |" for label in combos if label != best]
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
