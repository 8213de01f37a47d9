"""ARNQ+QuantTune under the two best minilm_rt W4A4 methods (RepQ-ViT, the Hadamard rotation), against plain
fine-tuning and against PTQ-aware ARNQ alone.

Per method: plain and ARNQ+QuantTune ft_acc and q_acc (mean ± sample std over seeds 0-2), the paired
difference per seed with its two-sided paired t-test, plain fine-tuning's drop and the share recovered. Then
ARNQ+QuantTune against PTQ-aware ARNQ alone toward the same method (RepQ-ViT: the main job's latest run,
../../quickstart; the rotation: ../hadamard_aware), and every combination against the best plain method, plain
+ rotation of this sweep, each paired by seed only where the other store's plain fine-tunes are this sweep's
(checked on ft_acc). The other stores' PTQ ran on older code: their plain q_acc, shown beside this sweep's,
differ where the method changed since. Writes paired.md next to this file:

    .venv/bin/python results/composition/minilm_rt_quanttune/paired.py
"""

from __future__ import annotations

from pathlib import Path

from harness.report.paired import arm_row, cell_values, folder_rows, mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, SEEDS = "minilm_rt", "W4A4", (0, 1, 2)
METHODS = ("repq_vit", "hadamard")
ARNQ_ALONE = {"repq_vit": HERE.parents[1] / "quickstart", "hadamard": HERE.parent / "hadamard_aware"}
BEST_PLAIN = "hadamard"


def _cell(rows: list[dict], ptq: str, arm: str, key: str = "q_acc") -> list[float]:
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params="{}")


def main() -> None:
    here = folder_rows(HERE)
    plain_ft = _cell(here, METHODS[0], "plain", "ft_acc")
    lines = [f"{MODEL} {BITS}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {here[0]['fp_acc']:.2f})", "",
             "| PTQ | plain ft_acc | plain q_acc | ARNQ+QuantTune ft_acc | ARNQ+QuantTune q_acc | "
             "ARNQ+QuantTune − plain q_acc (per seed) | p | plain drop | recovered |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ptq in METHODS:
        lines.append(arm_row(ptq, *(_cell(here, ptq, arm, key) for arm, key in
                                    (("plain", "ft_acc"), ("plain", "q_acc"), ("arnq_quanttune", "ft_acc"),
                                     ("arnq_quanttune", "q_acc")))))

    best = _cell(here, BEST_PLAIN, "plain")
    combos = {f"arnq_quanttune + {ptq}": _cell(here, ptq, "arnq_quanttune") for ptq in METHODS}
    combos[f"plain + {METHODS[0]}"] = _cell(here, METHODS[0], "plain")
    lines += ["", "| ARNQ+QuantTune − PTQ-aware ARNQ alone (paired by seed) | plain q_acc there (here) | "
              "ARNQ alone q_acc | difference (per seed) | p |", "|---|---|---|---|---|"]
    for ptq, folder in ARNQ_ALONE.items():
        rows = folder_rows(folder)
        name = f"../{folder.name}" if folder.parent == HERE.parent else f"../../{folder.name}"
        if _cell(rows, ptq, "plain", "ft_acc") != plain_ft:
            lines.append(f"| {ptq}: the plain fine-tunes of {name} differ from this sweep's, not paired | | | | |")
            continue
        alone = _cell(rows, ptq, "arnq")
        combos[f"arnq + {ptq} ({name})"] = alone
        lines.append(f"| {ptq} (ARNQ alone: {name}) | {mean_std(_cell(rows, ptq, 'plain'))} "
                     f"({mean_std(_cell(here, ptq, 'plain'))}) | {mean_std(alone)} | "
                     f"{paired_diff(_cell(here, ptq, 'arnq_quanttune'), alone)} |")

    lines += ["", f"| combination − plain + {BEST_PLAIN} ({mean_std(best)}, this sweep; paired by seed) | q_acc | "
              "difference (per seed) | p |", "|---|---|---|---|"]
    for label, values in combos.items():
        lines.append(f"| {label} | {mean_std(values)} | {paired_diff(values, best)} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
