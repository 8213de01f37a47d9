"""Six seeds of the W4A4 rotation cell: seeds 0-2 from ../hadamard_aware/rows.jsonl, seeds 3-5 from
rows.jsonl next to this file.

For each group: plain and PTQ-aware ARNQ q_acc and ft_acc (mean ± sample std), the paired
difference per seed with its two-sided paired t-test, plain fine-tuning's quantization drop
(ft_acc − q_acc). Writes six_seeds.md next to this file:

    .venv/bin/python results/composition/hadamard_w4a4_replication/six_seeds.py
"""

from __future__ import annotations

import statistics
from pathlib import Path

from harness.report.paired import folder_rows, mean_std, paired_diff

HERE = Path(__file__).parent
SOURCES = (HERE.parent / "hadamard_aware", HERE)
GROUPS = {"seeds 0-2": (0, 1, 2), "seeds 3-5": (3, 4, 5), "seeds 0-5": (0, 1, 2, 3, 4, 5)}


def main() -> None:
    rows = [row for folder in SOURCES for row in folder_rows(folder)]
    cell = {(r["arm"], r["seed"]): r for r in rows
            if (r["model"], r["bits"], r["ptq"], r["status"]) == ("minilm_rt", "W4A4", "hadamard", "ok")}
    lines = ["| minilm_rt W4A4 hadamard | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | "
             "ARNQ − plain q_acc (per seed) | p | plain drop |",
             "|---|---|---|---|---|---|---|---|"]
    for name, seeds in GROUPS.items():
        pf = [cell["plain", s]["ft_acc"] for s in seeds]
        pq = [cell["plain", s]["q_acc"] for s in seeds]
        af = [cell["arnq", s]["ft_acc"] for s in seeds]
        aq = [cell["arnq", s]["q_acc"] for s in seeds]
        drop = statistics.mean(pf) - statistics.mean(pq)
        lines.append(f"| {name} | {mean_std(pf)} | {mean_std(pq)} | {mean_std(af)} | {mean_std(aq)} | "
                     f"{paired_diff(aq, pq)} | {drop:.2f} |")
    (HERE / "six_seeds.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
