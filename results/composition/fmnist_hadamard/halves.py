"""Seeds 0-2, seeds 3-5 and all six of the vit_fmnist W3A3 rotation sweep, from rows.jsonl next to this file.

For each ARNQ arm (PTQ-aware, min-max-sized, PTQ-aware ARNQ+QuantTune) and each group of seeds: the arm's ft_acc
and q_acc (mean ± sample std), its paired difference from plain fine-tuning + the rotation per seed with the
two-sided paired t-test, and the share of plain fine-tuning's quantization drop (ft_acc − q_acc) it recovers.
Writes halves.md next to this file:

    .venv/bin/python results/composition/fmnist_hadamard/halves.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.report.paired import differences, folder_rows, mean_std, paired_diff

HERE = Path(__file__).parent
GROUPS = {"seeds 0-2": (0, 1, 2), "seeds 3-5": (3, 4, 5), "seeds 0-5": (0, 1, 2, 3, 4, 5)}
ARMS = {"PTQ-aware ARNQ": ("arnq", False), "min-max-sized ARNQ": ("arnq", True),
        "PTQ-aware ARNQ+QuantTune": ("arnq_quanttune", False)}


def _key(row: dict) -> tuple[str, bool]:
    """(arm, min-max-sized): rows store the arm's parameters as a JSON string."""
    params = row.get("arm_params") or "{}"
    params = json.loads(params) if isinstance(params, str) else params
    return row["arm"], params.get("delta_observer") is not None


def main() -> None:
    rows = folder_rows(HERE)
    cell = {(*_key(r), r["seed"]): r for r in rows
            if (r["model"], r["bits"], r["ptq"], r["status"]) == ("vit_fmnist", "W3A3", "hadamard", "ok")}
    lines = [f"vit_fmnist W3A3 hadamard (FP {rows[0]['fp_acc']:.2f})", "",
             "| seeds | plain ft_acc | plain q_acc | plain drop |", "|---|---|---|---|"]
    for name, seeds in GROUPS.items():
        pf = [cell["plain", False, s]["ft_acc"] for s in seeds]
        pq = [cell["plain", False, s]["q_acc"] for s in seeds]
        lines.append(f"| {name} | {mean_std(pf)} | {mean_std(pq)} | {statistics.mean(pf) - statistics.mean(pq):.2f} |")
    lines += ["", "| arm | seeds | ft_acc | q_acc | − plain q_acc (per seed) | p | recovered |",
              "|---|---|---|---|---|---|---|"]
    for label, key in ARMS.items():
        for name, seeds in GROUPS.items():
            pf = [cell["plain", False, s]["ft_acc"] for s in seeds]
            pq = [cell["plain", False, s]["q_acc"] for s in seeds]
            af = [cell[(*key, s)]["ft_acc"] for s in seeds]
            aq = [cell[(*key, s)]["q_acc"] for s in seeds]
            drop = statistics.mean(pf) - statistics.mean(pq)
            lines.append(f"| {label} | {name} | {mean_std(af)} | {mean_std(aq)} | {paired_diff(aq, pq)} | "
                         f"{100 * statistics.mean(differences(aq, pq)) / drop:.0f} % |")
    (HERE / "halves.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
