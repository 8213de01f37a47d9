"""The paired comparisons of the tweets thesis-view slice, from rows.jsonl next to this file.

For each PTQ method of this slice (min-max, OMSE, SmoothQuant, NoisyQuant): plain and PTQ-aware
ARNQ ft_acc and q_acc (mean ± sample std over seeds 0-2), ARNQ's paired difference per seed
with its two-sided paired t-test, plain fine-tuning's quantization drop (ft_acc − q_acc) and the
share of it ARNQ recovers. Then the thesis view on minilm_tweets at W4A4: ARNQ's mean paired
improvement per method and its average over methods, for this slice's four methods and with
RepQ-ViT (and the Hadamard rotation) from ../tweets_repq_hadamard/rows.jsonl, each method
paired against the plain fine-tunes of its own sweep. Writes paired.md next to this file:

    .venv/bin/python results/composition/tweets_thesis_a/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.report.paired import mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, SEEDS = "minilm_tweets", "W4A4", (0, 1, 2)
METHODS = ("minmax", "omse", "smoothquant", "noisyquant")
EARLIER = HERE.parent / "tweets_repq_hadamard" / "rows.jsonl"  # RepQ-ViT and the rotation, same budget and seeds


def _cells(path: Path) -> dict[tuple[str, str, int], dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["ptq"], r["arm"], r["seed"]): r for r in rows
            if (r["model"], r["bits"], r["status"]) == (MODEL, BITS, "ok")}


def main() -> None:
    here, earlier = _cells(HERE / "rows.jsonl"), _cells(EARLIER)

    def values(cell: dict, ptq: str, arm: str, key: str) -> list[float]:
        return [cell[ptq, arm, s][key] for s in SEEDS]

    fp = next(iter(here.values()))["fp_acc"]
    lines = [f"{MODEL} {BITS}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {fp:.2f})", "",
             "| PTQ | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc (per seed) | p | "
             "plain drop | recovered |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ptq in METHODS:
        pf, pq = values(here, ptq, "plain", "ft_acc"), values(here, ptq, "plain", "q_acc")
        af, aq = values(here, ptq, "arnq", "ft_acc"), values(here, ptq, "arnq", "q_acc")
        drop = statistics.mean(pf) - statistics.mean(pq)
        gain = statistics.mean(aq) - statistics.mean(pq)
        share = f"{100 * gain / drop:.0f} %" if drop >= 0.5 else "— (drop under 0.5)"
        lines.append(f"| {ptq} | {mean_std(pf)} | {mean_std(pq)} | {mean_std(af)} | {mean_std(aq)} | {paired_diff(aq, pq)} | {drop:.2f} | "
                     f"{share} |")

    def gain(cell: dict, ptq: str) -> float:
        return statistics.mean(values(cell, ptq, "arnq", "q_acc")) - statistics.mean(values(cell, ptq, "plain", "q_acc"))

    gains = {**{ptq: gain(here, ptq) for ptq in METHODS}, **{ptq: gain(earlier, ptq) for ptq in ("repq_vit", "hadamard")}}
    same_plain = values(here, "minmax", "plain", "ft_acc") == values(earlier, "repq_vit", "plain", "ft_acc")
    lines += ["", "Thesis view: ARNQ − plain q_acc per method (mean over seeds), averaged over methods "
              f"(RepQ-ViT and the rotation from ../tweets_repq_hadamard; its plain fine-tunes "
              f"{'equal' if same_plain else 'differ from'} this slice's per seed in ft_acc)", "",
              "| methods | per method | average ± std over methods | positive |", "|---|---|---|---|"]
    for label, methods in (("this slice's four", METHODS), ("the four + repq_vit", (*METHODS, "repq_vit")),
                           ("the four + repq_vit + hadamard", (*METHODS, "repq_vit", "hadamard"))):
        per = [gains[m] for m in methods]
        lines.append(f"| {label} | {', '.join(f'{m} {gains[m]:+.2f}' for m in methods)} | "
                     f"{statistics.mean(per):+.2f} ± {statistics.stdev(per):.2f} | "
                     f"{sum(g > 0 for g in per)} of {len(per)} |")

    best_plain = max(METHODS, key=lambda ptq: statistics.mean(values(here, ptq, "plain", "q_acc")))
    best = max(METHODS, key=lambda ptq: statistics.mean(values(here, ptq, "arnq", "q_acc")))
    lines += ["", "| comparison within this slice (paired by seed) | difference (per seed) | p |", "|---|---|---|",
              f"| best ARNQ combination (arnq + {best}) − best plain PTQ (plain + {best_plain}) | "
              f"{paired_diff(values(here, best, 'arnq', 'q_acc'), values(here, best_plain, 'plain', 'q_acc'))} |"]
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
