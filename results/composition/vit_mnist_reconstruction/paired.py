"""PTQ-aware ARNQ against plain fine-tuning with BRECQ and QDrop as targets, on vit_mnist W3A3, and the space's rule.

Per method: plain and ARNQ ft_acc and q_acc (mean ± sample std over seeds 0-2), ARNQ's paired q_acc difference per
seed (two-sided paired t-test), and the decision rule fixed in the space's description before the run: ARNQ composes
with a method where its lead is positive on every seed and its mean above twice the paired std; a loss where the
mean is below zero by that margin; otherwise within noise. Also the quantized accuracy of the FP checkpoint under
each method (results/ptq_methods/vit_mnist_w3a3), to show what fine-tuning of either kind adds. Writes paired.md
next to this file:

    .venv/bin/python results/composition/vit_mnist_reconstruction/paired.py
"""

from __future__ import annotations

from pathlib import Path

from harness.report.paired import (
    cell_values,
    differences,
    folder_rows,
    mean_std,
    paired_diff,
    two_std_verdict,
)

HERE = Path(__file__).parent
FP_PTQ = HERE.parents[1] / "ptq_methods" / "vit_mnist_w3a3"
MODEL, BITS, SEEDS, METHODS = "vit_mnist", "W3A3", (0, 1, 2), ("brecq", "qdrop")


def main() -> None:
    rows = folder_rows(HERE)
    fp_rows = {r["ptq"]: r["q_acc"] for r in folder_rows(FP_PTQ)}
    lines = [f"{MODEL} {BITS}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {rows[0]['fp_acc']:.2f}; 1,000 test digits, "
             "0.1 point each)", "",
             "| PTQ | on the FP checkpoint | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | "
             "ARNQ − plain (per seed) | p | rule |", "|---|---|---|---|---|---|---|---|---|"]
    for ptq in METHODS:
        cell = {(arm, key): cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm)
                for arm in ("plain", "arnq") for key in ("ft_acc", "q_acc")}
        d = differences(cell["arnq", "q_acc"], cell["plain", "q_acc"])
        lines.append(f"| {ptq} | {fp_rows[ptq]:.2f} | {mean_std(cell['plain', 'ft_acc'])} | "
                     f"{mean_std(cell['plain', 'q_acc'])} | {mean_std(cell['arnq', 'ft_acc'])} | "
                     f"{mean_std(cell['arnq', 'q_acc'])} | {paired_diff(cell['arnq', 'q_acc'], cell['plain', 'q_acc'])} | "
                     f"{two_std_verdict(d, 'composes', 'loses')} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
