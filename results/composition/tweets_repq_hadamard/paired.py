"""The tweets composition sweep's paired comparisons, from rows.jsonl next to this file.

For each PTQ method (RepQ-ViT, the Hadamard rotation): plain and PTQ-aware ARNQ ft_acc and
q_acc (mean ± sample std over seeds 0-2), ARNQ's paired difference per seed with its
two-sided paired t-test, plain fine-tuning's quantization drop (ft_acc − q_acc) and the share
of it ARNQ recovers; then the rotation against RepQ-ViT after plain fine-tuning (the same
fine-tunes), and the best ARNQ combination against the best PTQ method after plain fine-tuning.
Writes paired.md next to this file:

    .venv/bin/python results/composition/tweets_repq_hadamard/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.report.paired import mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, METHODS, SEEDS = "minilm_tweets", "W4A4", ("repq_vit", "hadamard"), (0, 1, 2)


def main() -> None:
    rows = [json.loads(line) for line in (HERE / "rows.jsonl").read_text().splitlines() if line.strip()]
    cell = {(r["ptq"], r["arm"], r["seed"]): r for r in rows
            if (r["model"], r["bits"], r["status"]) == (MODEL, BITS, "ok")}

    def values(ptq: str, arm: str, key: str) -> list[float]:
        return [cell[ptq, arm, s][key] for s in SEEDS]

    lines = [f"{MODEL} {BITS}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {rows[0]['fp_acc']:.2f})", "",
             "| PTQ | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc (per seed) | p | "
             "plain drop | recovered |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ptq in METHODS:
        pf, pq = values(ptq, "plain", "ft_acc"), values(ptq, "plain", "q_acc")
        af, aq = values(ptq, "arnq", "ft_acc"), values(ptq, "arnq", "q_acc")
        drop = statistics.mean(pf) - statistics.mean(pq)
        gain = statistics.mean(aq) - statistics.mean(pq)
        share = f"{100 * gain / drop:.0f} %" if drop >= 0.5 else "— (drop under 0.5)"
        lines.append(f"| {ptq} | {mean_std(pf)} | {mean_std(pq)} | {mean_std(af)} | {mean_std(aq)} | {paired_diff(aq, pq)} | {drop:.2f} | "
                     f"{share} |")
    lines += ["", "| comparison (paired by seed) | difference (per seed) | p |", "|---|---|---|",
              f"| plain + hadamard − plain + repq_vit | "
              f"{paired_diff(values('hadamard', 'plain', 'q_acc'), values('repq_vit', 'plain', 'q_acc'))} |"]
    means = {(ptq, arm): statistics.mean(values(ptq, arm, "q_acc")) for ptq in METHODS for arm in ("plain", "arnq")}
    best_plain = max(METHODS, key=lambda ptq: means[ptq, "plain"])
    best = max(METHODS, key=lambda ptq: means[ptq, "arnq"])
    lines.append(f"| best ARNQ combination (arnq + {best}) − best plain PTQ (plain + {best_plain}) | "
                 f"{paired_diff(values(best, 'arnq', 'q_acc'), values(best_plain, 'plain', 'q_acc'))} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
