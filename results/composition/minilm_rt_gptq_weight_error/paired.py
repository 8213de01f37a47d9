"""PTQ-aware ARNQ toward GPTQ at W2A16 on minilm_rt: the requantized weight error (GPTQ's handler default)
against the error frozen between the target's runs, each against plain fine-tuning.

Per arm: ft_acc and q_acc (mean ± sample std over seeds 0-2), the paired difference against plain
fine-tuning per seed with its two-sided paired t-test, plain fine-tuning's drop (ft_acc − q_acc) and the
share recovered; then frozen against requantized, paired by seed. Writes paired.md next to this file:

    .venv/bin/python results/composition/minilm_rt_gptq_weight_error/paired.py
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.report.paired import arm_row, cell_values, folder_rows, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, PTQ, SEEDS = "minilm_rt", "W2A16", "gptq", (0, 1, 2)
REQUANTIZED = json.dumps({"target": "W"})  # weight_error unset: GPTQ's handler default, requantized
FROZEN = json.dumps({"target": "W", "weight_error": "frozen"})


def _cell(rows: list[dict], arm: str, params: str, key: str = "q_acc") -> list[float]:
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=PTQ, arm=arm, arm_params=params)


def main() -> None:
    rows = folder_rows(HERE)
    plain_ft, plain_q = _cell(rows, "plain", "{}", "ft_acc"), _cell(rows, "plain", "{}")
    lines = [f"{MODEL} {BITS}, {PTQ}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {rows[0]['fp_acc']:.2f})", "",
             "| ARNQ weight error | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc "
             "(per seed) | p | plain drop | recovered |", "|---|---|---|---|---|---|---|---|---|"]
    for label, params in (("requantized", REQUANTIZED), ("frozen", FROZEN)):
        lines.append(arm_row(label, plain_ft, plain_q, _cell(rows, "arnq", params, "ft_acc"),
                             _cell(rows, "arnq", params)))
    lines += ["", "| frozen − requantized (paired by seed) | difference (per seed) | p |", "|---|---|---|"]
    for key in ("ft_acc", "q_acc"):
        lines.append(f"| {key} | {paired_diff(_cell(rows, 'arnq', FROZEN, key), _cell(rows, 'arnq', REQUANTIZED, key))} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
