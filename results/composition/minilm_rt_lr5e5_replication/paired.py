"""The lr 5e-5 composition run on minilm_rt at W4A4 replicated on seeds 3-5, and pooled with seeds 0-2.

Per method and seed set (3-5 here; 0-2 from ../minilm_rt_lr5e5; 0-5 both): plain and PTQ-aware ARNQ ft_acc and
q_acc (mean ± sample std), the paired difference per seed with its two-sided paired t-test, plain fine-tuning's
drop and the share recovered. Then ARNQ + rotation against plain + rotation at the same rate and against plain +
rotation at lr 2e-4 on the same seeds (seeds 3-5: ../hadamard_w4a4_replication, code of its commit; seeds 0-2:
../minilm_rt_quanttune), paired by seed. Writes paired.md next to this file:

    .venv/bin/python results/composition/minilm_rt_lr5e5_replication/paired.py
"""

from __future__ import annotations

from pathlib import Path

from harness.report.paired import arm_row, cell_values, folder_rows, mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS = "minilm_rt", "W4A4"
METHODS = ("repq_vit", "hadamard")
SEED_SETS = {"3-5": (3, 4, 5), "0-2": (0, 1, 2), "0-5": (0, 1, 2, 3, 4, 5)}
AT_2E4 = {(3, 4, 5): HERE.parent / "hadamard_w4a4_replication", (0, 1, 2): HERE.parent / "minilm_rt_quanttune"}


def _cell(rows: list[dict], seeds: tuple[int, ...], ptq: str, arm: str, key: str = "q_acc") -> list[float]:
    return cell_values(rows, seeds, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params="{}")


def main() -> None:
    rows = folder_rows(HERE) + folder_rows(HERE.parent / "minilm_rt_lr5e5")
    lines = [f"{MODEL} {BITS}, lr 5e-5 (FP {rows[0]['fp_acc']:.2f})", "",
             "| PTQ, seeds | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc (per seed) | p | "
             "plain drop | recovered |", "|---|---|---|---|---|---|---|---|---|"]
    for ptq in METHODS:
        for name, seeds in SEED_SETS.items():
            lines.append(arm_row(f"{ptq}, seeds {name}", *(_cell(rows, seeds, ptq, arm, key) for arm, key in
                                                            (("plain", "ft_acc"), ("plain", "q_acc"),
                                                             ("arnq", "ft_acc"), ("arnq", "q_acc")))))
    lines += ["", "| ARNQ + rotation, lr 5e-5 − plain + rotation at lr 2e-4 (paired by seed) | plain q_acc at 2e-4 | "
              "difference (per seed) | p |", "|---|---|---|---|"]
    pooled_arnq, pooled_old = [], []
    for seeds, folder in AT_2E4.items():
        old = _cell(folder_rows(folder), seeds, "hadamard", "plain")
        arnq = _cell(rows, seeds, "hadamard", "arnq")
        pooled_arnq += arnq
        pooled_old += old
        lines.append(f"| seeds {seeds[0]}-{seeds[-1]} (../{folder.name}) | {mean_std(old)} | {paired_diff(arnq, old)} |")
    lines.append(f"| seeds 3-5 and 0-2 | {mean_std(pooled_old)} | {paired_diff(pooled_arnq, pooled_old)} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
