"""The paired comparisons of the second tweets thesis-view slice, and the thesis view on minilm_tweets.

For each PTQ method of this slice (percentile, FQ-ViT, PTQ4ViT, Liu 2021): plain and PTQ-aware
ARNQ ft_acc and q_acc (mean ± sample std over seeds 0-2), ARNQ's paired difference per seed
with its two-sided paired t-test, plain fine-tuning's quantization drop (ft_acc − q_acc) and the
share of it ARNQ recovers. Then the thesis view on minilm_tweets at W4A4: ARNQ's mean paired
improvement per method and its average over the study's nine activation-quantizing methods
(this slice, ../tweets_thesis_a and ../tweets_repq_hadamard), and with the Hadamard rotation as a
tenth. Each method is paired against the plain fine-tunes of its own sweep. The view over the
three models is ../thesis_view (one `arnq report` over their sweeps). Writes paired.md next to
this file:

    .venv/bin/python results/composition/tweets_thesis_b/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.report.paired import cell_values, folder_rows, mean_gain, mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, SEEDS = "minilm_tweets", "W4A4", (0, 1, 2)
METHODS = ("percentile", "fq_vit", "ptq4vit", "liu2021")
NINE = ("minmax", "percentile", "omse", "smoothquant", "noisyquant", "fq_vit", "repq_vit", "ptq4vit", "liu2021")
SWEEPS = ("tweets_thesis_b", "tweets_thesis_a", "tweets_repq_hadamard")  # each with its own plain fine-tunes


def _rows(folder: str) -> list[dict]:
    return folder_rows(HERE.parent / folder)


def _values(rows: list[dict], ptq: str, arm: str, key: str) -> list[float]:
    """`key` of the ok rows of one (ptq, arm) cell with default arm params, in seed order."""
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params="{}")


def _gains() -> dict[str, float]:
    """ARNQ − plain q_acc (mean over seeds) per method of the three sweeps, each from the sweep that holds it."""
    gains = {}
    for folder in SWEEPS:
        rows = _rows(folder)
        for ptq in dict.fromkeys(r["ptq"] for r in rows):
            gains[ptq] = mean_gain(rows, SEEDS, model=MODEL, bits=BITS, ptq=ptq, arm_params="{}")
    return gains


def main() -> None:
    here = _rows("tweets_thesis_b")

    def cell(ptq: str, arm: str, key: str) -> list[float]:
        return _values(here, ptq, arm, key)

    fp = here[0]["fp_acc"]
    lines = [f"{MODEL} {BITS}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {fp:.2f})", "",
             "| PTQ | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc (per seed) | p | "
             "plain drop | recovered |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ptq in METHODS:
        pf, pq, af, aq = (cell(ptq, arm, key) for arm, key in
                          (("plain", "ft_acc"), ("plain", "q_acc"), ("arnq", "ft_acc"), ("arnq", "q_acc")))
        drop = statistics.mean(pf) - statistics.mean(pq)
        gain = statistics.mean(aq) - statistics.mean(pq)
        share = f"{100 * gain / drop:.0f} %" if drop >= 0.5 else "— (drop under 0.5)"
        lines.append(f"| {ptq} | {mean_std(pf)} | {mean_std(pq)} | {mean_std(af)} | {mean_std(aq)} | {paired_diff(aq, pq)} | {drop:.2f} | "
                     f"{share} |")

    earlier = _rows("tweets_thesis_a")
    same_plain = cell("percentile", "plain", "ft_acc") == _values(earlier, "minmax", "plain", "ft_acc")
    gains = _gains()
    lines += ["", f"The plain fine-tunes {'equal' if same_plain else 'differ from'} those of ../tweets_thesis_a "
              "per seed in ft_acc.", "",
              f"Thesis view on {MODEL} {BITS}: ARNQ − plain q_acc per method (mean over seeds), averaged over methods "
              f"(from {', '.join(SWEEPS)})", "",
              "| methods | per method | average ± std over methods | positive |", "|---|---|---|---|"]
    for label, methods in (("the nine", NINE), ("the nine + hadamard", (*NINE, "hadamard"))):
        per = [gains[m] for m in methods]
        lines.append(f"| {label} | {', '.join(f'{m} {gains[m]:+.2f}' for m in methods)} | "
                     f"{statistics.mean(per):+.2f} ± {statistics.stdev(per):.2f} | "
                     f"{sum(g > 0 for g in per)} of {len(per)} |")

    best_plain = max(METHODS, key=lambda ptq: statistics.mean(cell(ptq, "plain", "q_acc")))
    best = max(METHODS, key=lambda ptq: statistics.mean(cell(ptq, "arnq", "q_acc")))
    lines += ["", "| comparison within this slice (paired by seed) | difference (per seed) | p |", "|---|---|---|",
              f"| best ARNQ combination (arnq + {best}) − best plain PTQ (plain + {best_plain}) | "
              f"{paired_diff(cell(best, 'arnq', 'q_acc'), cell(best_plain, 'plain', 'q_acc'))} |"]
    gap = [json.loads(line) for line in (HERE / "ptq4vit_shadow_gap.jsonl").read_text().splitlines() if line.strip()]
    lines += ["", "PTQ4ViT's fine-tunes quantized with the settings ARNQ trained against (ptq4vit_shadow_gap.jsonl, "
              "from scripts/ptq_checks/shadow_gap.py): a 20-point grid, 1 round, the first 64 calibration "
              "tweets, against the method as configured (100 points, 3 rounds, 256 tweets)", "",
              "| fine-tune | q_acc as configured | q_acc, in-training settings | difference (per seed) | p |",
              "|---|---|---|---|---|"]
    for arm in ("plain", "arnq"):
        by_seed = sorted((g for g in gap if g["arm"] == arm), key=lambda g: g["seed"])
        configured = [g["q_acc_configured"] for g in by_seed]
        in_training = [g["q_acc_in_training_settings"] for g in by_seed]
        lines.append(f"| {arm} | {mean_std(configured)} | {mean_std(in_training)} | {paired_diff(in_training, configured)} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
