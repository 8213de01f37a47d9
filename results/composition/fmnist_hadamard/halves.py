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

from scipy import stats

HERE = Path(__file__).parent
GROUPS = {"seeds 0-2": (0, 1, 2), "seeds 3-5": (3, 4, 5), "seeds 0-5": (0, 1, 2, 3, 4, 5)}
ARMS = {"PTQ-aware ARNQ": ("arnq", False), "min-max-sized ARNQ": ("arnq", True),
        "PTQ-aware ARNQ+QuantTune": ("arnq_quanttune", False)}


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _key(row: dict) -> tuple[str, bool]:
    """(arm, min-max-sized): rows store the arm's parameters as a JSON string."""
    params = row.get("arm_params") or "{}"
    params = json.loads(params) if isinstance(params, str) else params
    return row["arm"], params.get("delta_observer") is not None


def main() -> None:
    rows = [json.loads(line) for line in (HERE / "rows.jsonl").read_text().splitlines() if line.strip()]
    cell = {(*_key(r), r["seed"]): r for r in rows
            if (r["model"], r["bits"], r["ptq"], r["status"]) == ("vit_fmnist", "W3A3", "hadamard", "ok")}
    lines = [f"vit_fmnist W3A3 hadamard (FP {rows[0]['fp_acc']:.2f})", "",
             "| seeds | plain ft_acc | plain q_acc | plain drop |", "|---|---|---|---|"]
    for name, seeds in GROUPS.items():
        pf = [cell["plain", False, s]["ft_acc"] for s in seeds]
        pq = [cell["plain", False, s]["q_acc"] for s in seeds]
        lines.append(f"| {name} | {_ms(pf)} | {_ms(pq)} | {statistics.mean(pf) - statistics.mean(pq):.2f} |")
    lines += ["", "| arm | seeds | ft_acc | q_acc | − plain q_acc (per seed) | p | recovered |",
              "|---|---|---|---|---|---|---|"]
    for label, key in ARMS.items():
        for name, seeds in GROUPS.items():
            pf = [cell["plain", False, s]["ft_acc"] for s in seeds]
            pq = [cell["plain", False, s]["q_acc"] for s in seeds]
            af = [cell[(*key, s)]["ft_acc"] for s in seeds]
            aq = [cell[(*key, s)]["q_acc"] for s in seeds]
            d = [a - p for a, p in zip(aq, pq, strict=True)]
            drop = statistics.mean(pf) - statistics.mean(pq)
            lines.append(f"| {label} | {name} | {_ms(af)} | {_ms(aq)} | {statistics.mean(d):+.2f} ± "
                         f"{statistics.stdev(d):.2f} ({', '.join(f'{v:+.2f}' for v in d)}) | "
                         f"{stats.ttest_rel(aq, pq).pvalue:.3f} | {100 * statistics.mean(d) / drop:.0f} % |")
    (HERE / "halves.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
