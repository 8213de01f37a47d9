"""The replication on seeds 3-5 of ARNQ toward ERQ with the weight error frozen (minilm_rt W4A4), and all six seeds.

Plain and ARNQ (weight_error: frozen) ft_acc and q_acc (mean ± sample std), the paired difference per seed
with its two-sided paired t-test and the share of plain fine-tuning's drop recovered, for seeds 3-5 (this
folder), seeds 0-2 (../minilm_rt_erq_frozen) and the six together. Writes paired.md next to this file:

    .venv/bin/python results/composition/minilm_rt_erq_frozen_replication/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.report.paired import cell_values, folder_rows, mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, PTQ = "minilm_rt", "W4A4", "erq"
FROZEN = json.dumps({"weight_error": "frozen"})
GROUPS = {"seeds 0-2 (../minilm_rt_erq_frozen)": (0, 1, 2), "seeds 3-5 (this folder)": (3, 4, 5),
          "seeds 0-5": (0, 1, 2, 3, 4, 5)}


def main() -> None:
    rows = folder_rows(HERE.parent / "minilm_rt_erq_frozen") + folder_rows(HERE)
    lines = [f"{MODEL} {BITS}, {PTQ} (FP {rows[0]['fp_acc']:.2f})", "",
             "| seeds | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc (per seed) | p | "
             "plain drop | recovered |", "|---|---|---|---|---|---|---|---|---|"]
    for label, seeds in GROUPS.items():
        def cell(arm: str, key: str, params: str = "{}", seeds: tuple[int, ...] = seeds) -> list[float]:
            return cell_values(rows, seeds, key, model=MODEL, bits=BITS, ptq=PTQ, arm=arm, arm_params=params)

        pf, pq = cell("plain", "ft_acc"), cell("plain", "q_acc")
        af, aq = cell("arnq", "ft_acc", FROZEN), cell("arnq", "q_acc", FROZEN)
        drop = statistics.mean(pf) - statistics.mean(pq)
        gain = statistics.mean(aq) - statistics.mean(pq)
        lines.append(f"| {label} | {mean_std(pf)} | {mean_std(pq)} | {mean_std(af)} | {mean_std(aq)} | "
                     f"{paired_diff(aq, pq)} | {drop:.2f} | {100 * gain / drop:.0f} % |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
