"""ARNQ toward QDrop as configured in training against plain and against the in-training settings, vit_mnist W3A3.

This sweep's plain and `ptq_settings: configured` ARNQ rows, and the in-training ARNQ rows of
../vit_mnist_reconstruction (same budget, seeds 0-2), paired by seed: each arm's ft_acc and q_acc (mean ± sample
std), the paired q_acc differences (two-sided paired t-test) and the space's rule (positive on every seed and above
twice the paired std). Also whether this sweep's plain rows equal the earlier sweep's. Writes paired.md next to
this file:

    .venv/bin/python results/composition/vit_mnist_qdrop_configured/paired.py
"""

from __future__ import annotations

import json
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
EARLIER = HERE.parent / "vit_mnist_reconstruction"
CELL = {"model": "vit_mnist", "bits": "W3A3", "ptq": "qdrop"}
SEEDS = (0, 1, 2)
CONFIGURED = json.dumps({"ptq_settings": "configured"})


def main() -> None:
    here, earlier = folder_rows(HERE), folder_rows(EARLIER)
    arms = {"plain": (here, "plain", "{}"), "ARNQ, in-training settings (earlier sweep)": (earlier, "arnq", "{}"),
            "ARNQ, QDrop as configured": (here, "arnq", CONFIGURED)}
    values = {label: {key: cell_values(rows, SEEDS, key, arm=arm, arm_params=params, **CELL)
                      for key in ("ft_acc", "q_acc")} for label, (rows, arm, params) in arms.items()}
    lines = ["vit_mnist W3A3, QDrop, seeds 0-2", "", "| arm | ft_acc | q_acc |", "|---|---|---|"]
    lines += [f"| {label} | {mean_std(v['ft_acc'])} | {mean_std(v['q_acc'])} |" for label, v in values.items()]
    configured, in_training = values["ARNQ, QDrop as configured"]["q_acc"], values[
        "ARNQ, in-training settings (earlier sweep)"]["q_acc"]
    plain = values["plain"]["q_acc"]
    lines += ["", "| paired q_acc difference | per seed | p | rule |", "|---|---|---|---|",
              f"| configured − in-training | {paired_diff(configured, in_training)} | "
              f"{two_std_verdict(differences(configured, in_training), 'better', 'worse')} |",
              f"| configured − plain | {paired_diff(configured, plain)} | {two_std_verdict(differences(configured, plain), 'better', 'worse')} |",
              "", "This sweep's plain rows against the earlier sweep's: ft_acc "
              + ("equal" if values["plain"]["ft_acc"] == cell_values(earlier, SEEDS, "ft_acc", arm="plain", **CELL)
                 else "DIFFER")
              + ", q_acc " + ("equal" if plain == cell_values(earlier, SEEDS, "q_acc", arm="plain", **CELL) else "DIFFER")
              + "."]
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
