"""Paired comparisons across the committed row stores of section 7 of results/COMPOSITION.md.

Same seeds, same plain fine-tunes: the rows differ only in the PTQ method or the arm. ARNQ + RepQ-ViT
comes from the main job's run 6 (the recipe of section 7's time), run 8 (the folder's top level, today's recipe,
section 12) and run 9 (today's recipe again). Runs 6 and 9 ran on the 2-core EPYC of the rotation's rows (their
plain RepQ-ViT rows equal hadamard_minmax_sized's to the digit); run 8 on a Xeon, whose ARNQ fine-tunes follow its
own rounding (results/quickstart/README.md, run 9). Writes paired.md next to this file:

    .venv/bin/python results/composition/hadamard_aware/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from scipy import stats

HERE = Path(__file__).parent
STORES = {"hadamard_minmax_sized": HERE.parent / "hadamard_minmax_sized" / "rows.jsonl",
          "quickstart run6": HERE.parents[1] / "quickstart" / "run6" / "rows.jsonl",
          "quickstart": HERE.parents[1] / "quickstart" / "rows.jsonl",
          "quickstart run9": HERE.parents[1] / "quickstart" / "run9" / "rows.jsonl"}
COMPARISONS = [  # (label, (store, ptq, arm), (store, ptq, arm)), all minilm_rt W4A4, seeds 0-2
    ("plain + hadamard vs plain + repq_vit",
     ("hadamard_minmax_sized", "hadamard", "plain"), ("hadamard_minmax_sized", "repq_vit", "plain")),
    ("PTQ-aware ARNQ + repq_vit vs plain + hadamard",
     ("quickstart run6", "repq_vit", "arnq"), ("hadamard_minmax_sized", "hadamard", "plain")),
    ("PTQ-aware ARNQ (today's recipe, ../../quickstart, a Xeon) + repq_vit vs plain + hadamard",
     ("quickstart", "repq_vit", "arnq"), ("hadamard_minmax_sized", "hadamard", "plain")),
    ("PTQ-aware ARNQ (today's recipe, ../../quickstart/run9, the rotation's CPU) + repq_vit vs plain + hadamard",
     ("quickstart run9", "repq_vit", "arnq"), ("hadamard_minmax_sized", "hadamard", "plain")),
]


def q_acc(store: str, ptq: str, arm: str) -> list[float]:
    rows = [json.loads(line) for line in STORES[store].read_text().splitlines() if line.strip()]
    cell = {r["seed"]: r["q_acc"] for r in rows
            if (r["model"], r["bits"], r["ptq"], r["arm"]) == ("minilm_rt", "W4A4", ptq, arm)}
    return [cell[s] for s in (0, 1, 2)]


def main() -> None:
    lines = ["| minilm_rt W4A4, seeds 0-2 | a | b | a − b (per seed) | paired t-test p |", "|---|---|---|---|---|"]
    for label, a, b in COMPARISONS:
        x, y = q_acc(*a), q_acc(*b)
        d = [u - v for u, v in zip(x, y, strict=True)]
        lines.append(f"| {label} | {statistics.mean(x):.2f} ± {statistics.stdev(x):.2f} | "
                     f"{statistics.mean(y):.2f} ± {statistics.stdev(y):.2f} | "
                     f"{statistics.mean(d):+.2f} ± {statistics.stdev(d):.2f} ({', '.join(f'{v:+.2f}' for v in d)}) | "
                     f"{stats.ttest_rel(x, y).pvalue:.2f} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
