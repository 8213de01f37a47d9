"""ARNQ toward ERQ on minilm_tweets at W4A4 with ERQ's default frozen weight error, against plain fine-tuning.

Plain and ARNQ ft_acc and q_acc (mean ± sample std over seeds 0-2), the paired difference per seed with its
two-sided paired t-test and the share of plain fine-tuning's drop recovered; then ARNQ + ERQ against the best
plain methods on this model (../tweets_repq_hadamard), paired by seed where the plain fine-tunes are the same
(checked on ft_acc). Writes paired.md next to this file:

    .venv/bin/python results/composition/tweets_erq/paired.py
"""

from __future__ import annotations

import statistics
from pathlib import Path

from harness.report.paired import cell_values, folder_rows, mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, PTQ, SEEDS = "minilm_tweets", "W4A4", "erq", (0, 1, 2)


def _values(rows: list[dict], ptq: str, arm: str, key: str) -> list[float]:
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params="{}")


def main() -> None:
    here = folder_rows(HERE)
    pf, pq = _values(here, PTQ, "plain", "ft_acc"), _values(here, PTQ, "plain", "q_acc")
    af, aq = _values(here, PTQ, "arnq", "ft_acc"), _values(here, PTQ, "arnq", "q_acc")
    drop = statistics.mean(pf) - statistics.mean(pq)
    gain = statistics.mean(aq) - statistics.mean(pq)
    share = f"{100 * gain / drop:.0f} %" if gain > 0 else "— (a loss)"
    lines = [f"{MODEL} {BITS}, {PTQ}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {here[0]['fp_acc']:.2f})", "",
             "| arm | ft_acc | q_acc | − plain q_acc (per seed) | p | share of plain's drop |", "|---|---|---|---|---|---|",
             f"| plain | {mean_std(pf)} | {mean_std(pq)} | | | drop {drop:.2f} |",
             f"| arnq (frozen weight error) | {mean_std(af)} | {mean_std(aq)} | {paired_diff(aq, pq)} | {share} |", "",
             "| comparison (paired by seed) | difference (per seed) | p |", "|---|---|---|"]
    best = folder_rows(HERE.parent / "tweets_repq_hadamard")
    for ptq in ("hadamard", "repq_vit"):
        if _values(best, ptq, "plain", "ft_acc") != pf:
            lines.append(f"| (plain fine-tunes of ../tweets_repq_hadamard differ from this sweep's: {ptq} not paired) | | |")
            continue
        reference = _values(best, ptq, "plain", "q_acc")
        lines.append(f"| arnq + ERQ − plain + {ptq} ({mean_std(reference)}, ../tweets_repq_hadamard) | "
                     f"{paired_diff(aq, reference)} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
