"""The rotation's harder bit-width (minilm_rt W4A3) at lr 5e-5: plain fine-tuning against PTQ-aware ARNQ, and
both against the same arms at lr 2e-4 (../hadamard_w4a3, seeds 0-2 of its six), paired by seed.

Per learning rate: plain and ARNQ ft_acc and q_acc (mean ± sample std over seeds 0-2), ARNQ − plain per seed
with its two-sided paired t-test, plain fine-tuning's drop and the share of it recovered (the goal: half). Then
each arm at lr 5e-5 against the same arm at lr 2e-4. Writes paired.md next to this file:

    .venv/bin/python results/composition/hadamard_w4a3_lr5e5/paired.py
"""

from __future__ import annotations

from pathlib import Path

from harness.report.paired import arm_row, cell_values, folder_rows, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, PTQ, SEEDS = "minilm_rt", "W4A3", "hadamard", (0, 1, 2)
AT_2E4 = HERE.parent / "hadamard_w4a3"


def _cell(rows: list[dict], arm: str, key: str = "q_acc") -> list[float]:
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=PTQ, arm=arm, arm_params="{}")


def main() -> None:
    runs = {"lr 5e-5 (here)": folder_rows(HERE), f"lr 2e-4 (../{AT_2E4.name})": folder_rows(AT_2E4)}
    lines = [f"{MODEL} {BITS} {PTQ}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {runs['lr 5e-5 (here)'][0]['fp_acc']:.2f})",
             "", "| learning rate | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc "
             "(per seed) | p | plain drop | recovered |", "|---|---|---|---|---|---|---|---|---|"]
    for label, rows in runs.items():
        lines.append(arm_row(label, _cell(rows, "plain", "ft_acc"), _cell(rows, "plain"), _cell(rows, "arnq", "ft_acc"),
                             _cell(rows, "arnq")))
    here, old = runs.values()
    lines += ["", "| lr 5e-5 − lr 2e-4, same arm (paired by seed) | q_acc difference (per seed) | p |", "|---|---|---|"]
    for arm in ("plain", "arnq"):
        lines.append(f"| {arm} | {paired_diff(_cell(here, arm), _cell(old, arm))} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
