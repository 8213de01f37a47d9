"""The paired comparisons of OS+, ERQ and AdaLog as PTQ-aware ARNQ targets on minilm_rt at W4A4.

For each method: plain and PTQ-aware ARNQ ft_acc and q_acc (mean ± sample std over seeds 0-2),
ARNQ's paired difference per seed with its two-sided paired t-test, plain fine-tuning's
quantization drop (ft_acc − q_acc) and the share of it ARNQ recovers. Then each combination of
this sweep against the best plain method of the earlier sweeps on the same seeds and budget
(plain + Hadamard rotation, ../hadamard_aware; plain + RepQ-ViT, ../minilm_w4a4), paired by seed
where the plain fine-tunes are the same (checked on their ft_acc), and the thesis view on
minilm_rt at W4A4 with these three methods added to the nine of ../thesis_view. Writes paired.md
next to this file:

    .venv/bin/python results/composition/minilm_rt_new_methods/paired.py
"""

from __future__ import annotations

from pathlib import Path

from harness.report.paired import (
    arm_row,
    cell_values,
    folder_rows,
    mean_gain,
    mean_std,
    paired_diff,
    spread_row,
)

HERE = Path(__file__).parent
MODEL, BITS, SEEDS = "minilm_rt", "W4A4", (0, 1, 2)
METHODS = ("os_plus", "erq", "adalog")
EARLIER = {"hadamard": "hadamard_aware", "repq_vit": "minilm_w4a4"}  # the best plain methods of earlier sweeps
NINE = {"minilm_w4a4": ("minmax", "percentile", "omse", "smoothquant", "noisyquant", "fq_vit", "repq_vit", "ptq4vit"),
        "minilm_liu2021": ("liu2021",)}  # the sweeps of the thesis view's nine methods on minilm_rt


def _rows(folder: str) -> list[dict]:
    return folder_rows(HERE.parent / folder)


def _values(rows: list[dict], ptq: str, arm: str, key: str) -> list[float]:
    """`key` of the ok rows of one (ptq, arm) cell with default arm params, in seed order."""
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params="{}")


def _gain(rows: list[dict], ptq: str) -> float:
    return mean_gain(rows, SEEDS, model=MODEL, bits=BITS, ptq=ptq, arm_params="{}")


def main() -> None:
    here = _rows("minilm_rt_new_methods")

    def cell(ptq: str, arm: str, key: str) -> list[float]:
        return _values(here, ptq, arm, key)

    fp = here[0]["fp_acc"]
    lines = [f"{MODEL} {BITS}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {fp:.2f})", "",
             "| PTQ | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc (per seed) | p | "
             "plain drop | recovered |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ptq in METHODS:
        pf, pq, af, aq = (cell(ptq, arm, key) for arm, key in
                          (("plain", "ft_acc"), ("plain", "q_acc"), ("arnq", "ft_acc"), ("arnq", "q_acc")))
        lines.append(arm_row(ptq, pf, pq, af, aq))

    plain_ft = cell(METHODS[0], "plain", "ft_acc")
    lines += ["", "| this sweep's combination − earlier best plain method (paired by seed) | difference (per seed) | p |",
              "|---|---|---|"]
    for method, folder in EARLIER.items():
        earlier = _rows(folder)
        if _values(earlier, method, "plain", "ft_acc") != plain_ft:
            lines.append(f"| (plain fine-tunes of ../{folder} differ from this sweep's: not paired) | | |")
            continue
        reference = _values(earlier, method, "plain", "q_acc")
        for ptq in METHODS:
            for arm in ("plain", "arnq"):
                lines.append(f"| {arm} + {ptq} − plain + {method} ({mean_std(reference)}, ../{folder}) | "
                             f"{paired_diff(cell(ptq, arm, 'q_acc'), reference)} |")

    gains = {ptq: _gain(_rows(folder), ptq) for folder, methods in NINE.items() for ptq in methods}
    gains |= {ptq: _gain(here, ptq) for ptq in METHODS}
    lines += ["", f"Thesis view on {MODEL} {BITS}: ARNQ − plain q_acc per method (mean over seeds), averaged over "
              "methods", "", "| methods | average ± std over methods | positive |", "|---|---|---|"]
    for label, methods in (("the nine (../thesis_view)", [m for ms in NINE.values() for m in ms]),
                           ("these three", list(METHODS)), ("the nine + these three", list(gains))):
        lines.append(spread_row(label, {m: gains[m] for m in methods}, itemise=False))
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
