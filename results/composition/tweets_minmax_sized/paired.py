"""The min-max-sized ARNQ arm against plain fine-tuning and against PTQ-aware ARNQ, method by method, on minilm_tweets W4A4.

For each of the five methods of this sweep: plain q_acc, the min-max-sized arm's ft_acc and q_acc (mean ± sample std
over seeds 0-2) and its paired difference per seed against plain (two-sided paired t-test); then against the
PTQ-aware arm toward the same method from the earlier sweeps at the same budget and seeds (PTQ_AWARE below), paired
by seed. Whether this sweep's plain rows equal those of each earlier sweep (the same fine-tunes and quantizations
rebuilt from an empty cache at a later commit) is checked method by method. Then the space's decision rule: the
mean improvement of each arm over plain across the five methods, and under how many methods PTQ-aware is ahead.
Writes paired.md next to this file:

    .venv/bin/python results/composition/tweets_minmax_sized/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.report.paired import cell_values, folder_rows, mean_std, paired_diff, spread_row

HERE = Path(__file__).parent
MODEL, BITS, SEEDS = "minilm_tweets", "W4A4", (0, 1, 2)
SIZED = json.dumps({"delta_observer": "minmax"})
#: the PTQ-aware arm toward each method: (folder, its arm_params, the recipe it ran)
PTQ_AWARE = {
    "omse": ("tweets_thesis_a", "{}", "no ramp"),
    "repq_vit": ("tweets_repq_hadamard", "{}", "0.2 ramp"),
    "ptq4vit": ("tweets_ptq4vit_configured", json.dumps({"ptq_settings": "configured"}), "no ramp, PTQ4ViT as configured"),
    "liu2021": ("tweets_thesis_b", "{}", "no ramp"),
    "hadamard": ("tweets_repq_hadamard", "{}", "0.2 ramp"),
}


def _values(rows: list[dict], ptq: str, arm: str, key: str = "q_acc", params: str = "{}") -> list[float]:
    """`key` of the ok rows of one (ptq, arm, arm_params) cell, in seed order."""
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params=params)


def main() -> None:
    here = folder_rows(HERE)
    lines = [f"{MODEL} {BITS}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {here[0]['fp_acc']:.2f})", "",
             "| PTQ | plain q_acc | PTQ-aware ARNQ q_acc (folder, recipe) | min-max-sized ft_acc | min-max-sized q_acc | "
             "min-max-sized − plain (per seed) | p | PTQ-aware − min-max-sized (per seed) | p |",
             "|---|---|---|---|---|---|---|---|---|"]
    sized_gain, aware_gain, same, ahead = {}, {}, [], []
    for ptq, (folder, params, recipe) in PTQ_AWARE.items():
        earlier = folder_rows(HERE.parent / folder)
        plain, sized = _values(here, ptq, "plain"), _values(here, ptq, "arnq", params=SIZED)
        aware = _values(earlier, ptq, "arnq", params=params)
        same.append((ptq, folder, _values(earlier, ptq, "plain", "ft_acc") == _values(here, ptq, "plain", "ft_acc"),
                     _values(earlier, ptq, "plain") == plain))
        lines.append(f"| {ptq} | {mean_std(plain)} | {mean_std(aware)} ({folder}, {recipe}) | "
                     f"{mean_std(_values(here, ptq, 'arnq', 'ft_acc', SIZED))} | {mean_std(sized)} | "
                     f"{paired_diff(sized, plain)} | {paired_diff(aware, sized)} |")
        sized_gain[ptq] = statistics.mean(sized) - statistics.mean(plain)
        aware_gain[ptq] = statistics.mean(aware) - statistics.mean(_values(earlier, ptq, "plain"))
        ahead.append(statistics.mean(aware) > statistics.mean(sized))
    lines += ["", "This sweep's plain rows against those of the PTQ-aware arm's sweep, per method: "
              + "; ".join(f"{ptq} ({folder}) ft_acc {'equal' if ft else 'DIFFER'}, q_acc {'equal' if q else 'differ'}"
                          for ptq, folder, ft, q in same) + ".",
              "", f"Thesis view on {MODEL} {BITS} over these five methods: each arm's q_acc − plain q_acc per method "
              "(mean over seeds; each arm against the plain rows of its own sweep), averaged over methods", "",
              "| arm | average ± std over methods | positive | per method |", "|---|---|---|---|"]
    for label, per in (("PTQ-aware ARNQ", aware_gain), ("min-max-sized ARNQ", sized_gain)):
        lines.append(spread_row(label, per))
    better = statistics.mean(aware_gain.values()) > statistics.mean(sized_gain.values()) and sum(ahead) >= 4
    lines += ["", f"Decision rule of the space: PTQ-aware is ahead of min-max-sized (mean over seeds) under {sum(ahead)} "
              f"of {len(ahead)} methods, and its mean improvement is {statistics.mean(aware_gain.values()):+.2f} against "
              f"{statistics.mean(sized_gain.values()):+.2f}: "
              + ("PTQ-aware noise is the better arm on this model." if better
                 else "the two arms are not separated on this model by the rule.")]
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
