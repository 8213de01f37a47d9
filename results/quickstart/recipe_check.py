"""README's main job before and after PTQ-aware noise lost its ramp, on one CPU, from the rows next to this file.

`run7/rows.jsonl` ran the former default (a linear ramp over the first 20 % of the steps) at 4790e91 and
`rows.jsonl` (run 8) the new one (full strength from the first step) at c31a40e, both on the 2-core Xeon the rows
name, same seeds, same space. For each model: whether plain fine-tuning gave the same values in both (the pipeline
outside the arm did not move), each run's ARNQ + RepQ-ViT against plain + RepQ-ViT (paired by seed, two-sided
paired t-test), and the new recipe against the old one per seed. Writes recipe_check.md next to this file:

    .venv/bin/python results/quickstart/recipe_check.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from scipy import stats

HERE = Path(__file__).parent


def _rows(path: Path) -> dict[tuple[str, str, int], dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["model"], r["arm"], r["seed"]): r for r in rows if r["status"] == "ok"}


def _diff(a: list[float], b: list[float]) -> str:
    d = [x - y for x, y in zip(a, b, strict=True)]
    return (f"{statistics.mean(d):+.2f} ± {statistics.stdev(d):.2f} ({', '.join(f'{v:+.2f}' for v in d)}), "
            f"p {stats.ttest_rel(a, b).pvalue:.3f}")


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    old, new = _rows(HERE / "run7" / "rows.jsonl"), _rows(HERE / "rows.jsonl")
    lines = ["| model | plain identical in both runs | old recipe: ARNQ q_acc, − plain | new recipe: ARNQ q_acc, "
             "− plain | new − old ARNQ q_acc |", "|---|---|---|---|---|"]
    for model in sorted({m for m, _, _ in new}):
        seeds = sorted(s for m, a, s in new if m == model and a == "plain")
        same = all(old[model, "plain", s]["q_acc"] == new[model, "plain", s]["q_acc"]
                   and old[model, "plain", s]["ft_acc"] == new[model, "plain", s]["ft_acc"] for s in seeds)
        q = {run: {arm: [rows[model, arm, s]["q_acc"] for s in seeds] for arm in ("plain", "arnq")}
             for run, rows in (("old", old), ("new", new))}
        lines.append(f"| {model} | {'yes' if same else 'no'} | {_ms(q['old']['arnq'])}, "
                     f"{_diff(q['old']['arnq'], q['old']['plain'])} | {_ms(q['new']['arnq'])}, "
                     f"{_diff(q['new']['arnq'], q['new']['plain'])} | {_diff(q['new']['arnq'], q['old']['arnq'])} |")
    (HERE / "recipe_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
