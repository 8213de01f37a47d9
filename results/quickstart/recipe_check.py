"""README's main job before and after PTQ-aware noise lost its ramp, each pair of runs on one CPU, from the rows here.

Two pairs of runs of the same space and seeds, the former default (a linear ramp over the first 20 % of the steps)
against the new one (full strength from the first step):
- on the 2-core Xeon the rows name: `run7/rows.jsonl` (4790e91) against `rows.jsonl` (run 8, c31a40e);
- on the 2-core EPYC of runs 1-6: `run6/rows.jsonl` (9b36e23) against `run9/rows.jsonl` (bbfa18e). Run 6's rows
  predate the `cpu` field; its plain rows equal run 9's to the digit.
For each CPU and model: whether plain fine-tuning gave the same values in both runs (the pipeline outside the arm
did not move), each run's ARNQ + RepQ-ViT against plain + RepQ-ViT (paired by seed, two-sided paired t-test), and
the new recipe against the old one per seed. Writes recipe_check.md next to this file:

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


PAIRS = (("Xeon (runs 7 and 8)", "run7", "."), ("EPYC (runs 6 and 9)", "run6", "run9"))


def main() -> None:
    lines = ["| CPU | model | plain identical in both runs | old recipe: ARNQ q_acc, − plain | new recipe: ARNQ "
             "q_acc, − plain | new − old ARNQ q_acc |", "|---|---|---|---|---|---|"]
    for cpu, old_dir, new_dir in PAIRS:
        old, new = _rows(HERE / old_dir), _rows(HERE / new_dir)
        for model in sorted({m for m, _, _ in new}):
            seeds = sorted(s for m, a, s in new if m == model and a == "plain")
            same = all(old[model, "plain", s]["q_acc"] == new[model, "plain", s]["q_acc"]
                       and old[model, "plain", s]["ft_acc"] == new[model, "plain", s]["ft_acc"] for s in seeds)
            q = {run: {arm: [rows[model, arm, s]["q_acc"] for s in seeds] for arm in ("plain", "arnq")}
                 for run, rows in (("old", old), ("new", new))}
            lines.append(f"| {cpu} | {model} | {'yes' if same else 'no'} | {mean_std(q['old']['arnq'])}, "
                         f"{_diff(q['old']['arnq'], q['old']['plain'])} | {mean_std(q['new']['arnq'])}, "
                         f"{_diff(q['new']['arnq'], q['new']['plain'])} | "
                         f"{_diff(q['new']['arnq'], q['old']['arnq'])} |")
    (HERE / "recipe_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

if __name__ == "__main__":
    main()
