"""The frozen weight error toward GPTQ at W2A16 on minilm_rt, on fresh seeds (3-5): plain fine-tuning against
PTQ-aware ARNQ on the weights with the error frozen between GPTQ's runs.

ft_acc and q_acc (mean ± sample std over seeds 3-5), ARNQ's paired difference per seed with its two-sided
paired t-test, plain fine-tuning's drop and the share recovered; then the same for seeds 0-2
(../minilm_rt_gptq_weight_error, where the setting was chosen) and for all six seeds. Writes paired.md next
to this file:

    .venv/bin/python results/composition/minilm_rt_gptq_weight_error_replication/paired.py
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.report.paired import arm_row, cell_values, folder_rows

HERE = Path(__file__).parent
MODEL, BITS, PTQ = "minilm_rt", "W2A16", "gptq"
FROZEN = json.dumps({"target": "W", "weight_error": "frozen"})


def _cell(rows: list[dict], seeds: tuple[int, ...], arm: str, params: str, key: str) -> list[float]:
    return cell_values(rows, seeds, key, model=MODEL, bits=BITS, ptq=PTQ, arm=arm, arm_params=params)


def main() -> None:
    here, first = folder_rows(HERE), folder_rows(HERE.parent / "minilm_rt_gptq_weight_error")
    lines = [f"{MODEL} {BITS}, {PTQ}, ARNQ with the frozen weight error (FP {here[0]['fp_acc']:.2f})", "",
             "| seeds | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc (per seed) | p | "
             "plain drop | recovered |", "|---|---|---|---|---|---|---|---|---|"]
    both = here + first
    for label, rows, seeds in (("3-5 (this sweep)", here, (3, 4, 5)),
                               ("0-2 (../minilm_rt_gptq_weight_error)", first, (0, 1, 2)),
                               ("0-5", both, (0, 1, 2, 3, 4, 5))):
        lines.append(arm_row(label, *(_cell(rows, seeds, arm, params, key) for arm, params, key in
                                      (("plain", "{}", "ft_acc"), ("plain", "{}", "q_acc"),
                                       ("arnq", FROZEN, "ft_acc"), ("arnq", FROZEN, "q_acc")))))
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
