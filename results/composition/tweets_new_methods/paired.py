"""OS+ as a PTQ-aware ARNQ target on minilm_tweets at W4A4, and the eleven-method thesis view there.

For OS+: plain and PTQ-aware ARNQ ft_acc and q_acc (mean ± sample std over seeds 0-2), ARNQ's paired
difference per seed with its two-sided paired t-test, plain fine-tuning's drop (ft_acc − q_acc) and the share
ARNQ recovers. Then each combination against the best plain methods on this model (plain + rotation and plain
+ RepQ-ViT, ../tweets_repq_hadamard), paired by seed where the plain fine-tunes are the same (checked on
ft_acc). Then the thesis view on minilm_tweets at W4A4: the nine methods of ../thesis_view with PTQ4ViT as
configured in training (../tweets_ptq4vit_configured), and the eleven with ERQ (../tweets_erq, ERQ's default
frozen weight error) and OS+. Writes paired.md next to this file:

    .venv/bin/python results/composition/tweets_new_methods/paired.py
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.report.paired import (
    arm_row,
    cell_values,
    folder_rows,
    mean_gain,
    mean_std,
    paired_diff,
    spread_row,
)

HERE = Path(__file__).parent
MODEL, BITS, SEEDS = "minilm_tweets", "W4A4", (0, 1, 2)
METHODS = ("os_plus",)
BEST_PLAIN = ("hadamard", "repq_vit")  # the best plain methods on minilm_tweets (../tweets_repq_hadamard)
NINE = {"tweets_thesis_a": ("minmax", "omse", "smoothquant", "noisyquant"),
        "tweets_thesis_b": ("percentile", "fq_vit", "liu2021"), "tweets_repq_hadamard": ("repq_vit",)}
CONFIGURED = json.dumps({"ptq_settings": "configured"})  # the PTQ4ViT arm of ../tweets_ptq4vit_configured


def _rows(folder: str) -> list[dict]:
    return folder_rows(HERE.parent / folder)


def _values(rows: list[dict], ptq: str, arm: str, key: str, params: str = "{}") -> list[float]:
    """`key` of the ok rows of one (ptq, arm, arm_params) cell, in seed order."""
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params=params)


def _gain(rows: list[dict], ptq: str) -> float:
    return mean_gain(rows, SEEDS, model=MODEL, bits=BITS, ptq=ptq, arm_params="{}")


def main() -> None:
    here = _rows("tweets_new_methods")

    def cell(ptq: str, arm: str, key: str) -> list[float]:
        return _values(here, ptq, arm, key)

    lines = [f"{MODEL} {BITS}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {here[0]['fp_acc']:.2f})", "",
             "| PTQ | plain ft_acc | plain q_acc | ARNQ ft_acc | ARNQ q_acc | ARNQ − plain q_acc (per seed) | p | "
             "plain drop | recovered |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ptq in METHODS:
        pf, pq, af, aq = (cell(ptq, arm, key) for arm, key in
                          (("plain", "ft_acc"), ("plain", "q_acc"), ("arnq", "ft_acc"), ("arnq", "q_acc")))
        lines.append(arm_row(ptq, pf, pq, af, aq))

    plain_ft = cell(METHODS[0], "plain", "ft_acc")
    best = _rows("tweets_repq_hadamard")
    lines += ["", "| this sweep's combination − best plain method (paired by seed) | difference (per seed) | p |",
              "|---|---|---|"]
    for method in BEST_PLAIN:
        if _values(best, method, "plain", "ft_acc") != plain_ft:
            lines.append(f"| (plain fine-tunes of ../tweets_repq_hadamard differ from this sweep's: {method} not "
                         "paired) | | |")
            continue
        reference = _values(best, method, "plain", "q_acc")
        for ptq in METHODS:
            for arm in ("plain", "arnq"):
                lines.append(f"| {arm} + {ptq} − plain + {method} ({mean_std(reference)}, ../tweets_repq_hadamard) | "
                             f"{paired_diff(cell(ptq, arm, 'q_acc'), reference)} |")

    gains = {ptq: _gain(_rows(folder), ptq) for folder, methods in NINE.items() for ptq in methods}
    configured = _rows("tweets_ptq4vit_configured")  # its ARNQ arm names ptq_settings, its plain arm nothing
    gains["ptq4vit"] = mean_gain(configured, SEEDS, model=MODEL, bits=BITS, ptq="ptq4vit", arm_params="{}",
                                 arm_match={"arm_params": CONFIGURED})
    nine = dict(gains)
    gains["erq"] = _gain(_rows("tweets_erq"), "erq")
    gains |= {ptq: _gain(here, ptq) for ptq in METHODS}
    lines += ["", f"Thesis view on {MODEL} {BITS}: ARNQ − plain q_acc per method (mean over seeds), averaged over "
              "methods (PTQ4ViT as configured in training, ../tweets_ptq4vit_configured)", "",
              "| methods | average ± std over methods | positive | per method |", "|---|---|---|---|"]
    for label, per in (("the nine of ../thesis_view", nine), ("eleven: the nine, ERQ (../tweets_erq), OS+", gains),
                       ("the two newer methods", {p: gains[p] for p in ("erq", *METHODS)})):
        lines.append(spread_row(label, per))
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
