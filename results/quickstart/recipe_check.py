"""README's main job before and after PTQ-aware noise lost its ramp, on one CPU, from the rows next to this file.

`run7/rows.jsonl` ran the former default (a linear ramp over the first 20 % of the steps) at 4790e91 and
`rows.jsonl` (run 8) the new one (full strength from the first step) at c31a40e, both on the 2-core Xeon the rows
name, same seeds, same space. For each model: whether plain fine-tuning gave the same values in both (the pipeline
outside the arm did not move), each run's ARNQ + RepQ-ViT against plain + RepQ-ViT (paired by seed, two-sided
paired t-test), and the new recipe against the old one per seed. Writes recipe_check.md next to this file:

    .venv/bin/python results/quickstart/recipe_check.py
"""

from __future__ import annotations

from pathlib import Path

from harness.report.paired import folder_rows, mean_std, paired_diff

HERE = Path(__file__).parent


def _rows(folder: Path) -> dict[tuple[str, str, int], dict]:
    return {(r["model"], r["arm"], r["seed"]): r for r in folder_rows(folder) if r["status"] == "ok"}


def _diff(a: list[float], b: list[float]) -> str:
    return paired_diff(a, b, sep=", p ")


def main() -> None:
    old, new = _rows(HERE / "run7"), _rows(HERE)
    lines = ["| model | plain identical in both runs | old recipe: ARNQ q_acc, − plain | new recipe: ARNQ q_acc, "
             "− plain | new − old ARNQ q_acc |", "|---|---|---|---|---|"]
    for model in sorted({m for m, _, _ in new}):
        seeds = sorted(s for m, a, s in new if m == model and a == "plain")
        same = all(old[model, "plain", s]["q_acc"] == new[model, "plain", s]["q_acc"]
                   and old[model, "plain", s]["ft_acc"] == new[model, "plain", s]["ft_acc"] for s in seeds)
        q = {run: {arm: [rows[model, arm, s]["q_acc"] for s in seeds] for arm in ("plain", "arnq")}
             for run, rows in (("old", old), ("new", new))}
        lines.append(f"| {model} | {'yes' if same else 'no'} | {mean_std(q['old']['arnq'])}, "
                     f"{_diff(q['old']['arnq'], q['old']['plain'])} | {mean_std(q['new']['arnq'])}, "
                     f"{_diff(q['new']['arnq'], q['new']['plain'])} | {_diff(q['new']['arnq'], q['old']['arnq'])} |")
    (HERE / "recipe_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
