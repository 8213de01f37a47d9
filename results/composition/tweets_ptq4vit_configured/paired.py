"""ARNQ toward PTQ4ViT on minilm_tweets W4A4 with PTQ4ViT run as configured in training, against plain
fine-tuning and against the default arm (PTQ4ViT's cheaper in-training settings, ../tweets_thesis_b).

Plain and ARNQ (ptq_settings: configured) ft_acc and q_acc (mean ± sample std over seeds 0-2), the
paired differences per seed with their two-sided paired t-tests, and the share of plain fine-tuning's
drop recovered. The default arm's rows come from ../tweets_thesis_b; they pair with these where that
sweep's plain fine-tunes are the same as this one's (checked on ft_acc and q_acc per seed). Then the
thesis view on minilm_tweets at W4A4 over the nine methods with this arm's PTQ4ViT cell in place of the
default arm's, and against the best plain methods on this model (../tweets_repq_hadamard). Also the in-training
settings ablation (ptq4vit_shadow_ablation.jsonl next to
../tweets_thesis_b/rows.jsonl). Writes paired.md next to this file:

    .venv/bin/python results/composition/tweets_ptq4vit_configured/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.report.paired import cell_values, folder_rows, mean_gain, mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, PTQ, SEEDS = "minilm_tweets", "W4A4", "ptq4vit", (0, 1, 2)
CONFIGURED = json.dumps({"ptq_settings": "configured"})
NINE = {"tweets_thesis_a": ("minmax", "omse", "smoothquant", "noisyquant"),
        "tweets_thesis_b": ("percentile", "fq_vit", "ptq4vit", "liu2021"),
        "tweets_repq_hadamard": ("repq_vit",)}  # the sweeps of the thesis view's nine methods on minilm_tweets


def _rows(folder: str) -> list[dict]:
    return folder_rows(HERE.parent / folder)


def _values(rows: list[dict], ptq: str, arm: str, key: str, params: str = "{}") -> list[float]:
    """`key` of the ok rows of one (ptq, arm, arm_params) cell, in seed order."""
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params=params)


def main() -> None:
    here, earlier = _rows("tweets_ptq4vit_configured"), _rows("tweets_thesis_b")
    fp = here[0]["fp_acc"]
    cells = {"plain": _values(here, PTQ, "plain", "q_acc"), "configured": _values(here, PTQ, "arnq", "q_acc", CONFIGURED),
             "default (../tweets_thesis_b)": _values(earlier, PTQ, "arnq", "q_acc")}
    ft = {"plain": _values(here, PTQ, "plain", "ft_acc"), "configured": _values(here, PTQ, "arnq", "ft_acc", CONFIGURED),
          "default (../tweets_thesis_b)": _values(earlier, PTQ, "arnq", "ft_acc")}
    same_plain = (ft["plain"] == _values(earlier, PTQ, "plain", "ft_acc")
                  and cells["plain"] == _values(earlier, PTQ, "plain", "q_acc"))
    drop = statistics.mean(ft["plain"]) - statistics.mean(cells["plain"])
    lines = [f"{MODEL} {BITS}, {PTQ}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {fp:.2f})", "",
             f"The plain fine-tunes {'equal' if same_plain else 'DIFFER FROM'} those of ../tweets_thesis_b per seed "
             "(ft_acc and q_acc).", "",
             "| arm | ft_acc | q_acc | − plain q_acc (per seed) | p | share of plain's drop |", "|---|---|---|---|---|---|"]
    for arm, q in cells.items():
        if arm == "plain":
            lines.append(f"| plain | {mean_std(ft[arm])} | {mean_std(q)} | | | drop {drop:.2f} |")
            continue
        gain = statistics.mean(q) - statistics.mean(cells["plain"])
        share = f"{100 * gain / drop:.0f} %" if gain > 0 else "— (a loss)"
        lines.append(f"| arnq, {arm} | {mean_std(ft[arm])} | {mean_std(q)} | {paired_diff(q, cells['plain'])} | {share} |")
    lines += ["", "| comparison (paired by seed) | difference (per seed) | p |", "|---|---|---|",
              f"| arnq configured − arnq default | {paired_diff(cells['configured'], cells['default (../tweets_thesis_b)'])} |"]
    best = _rows("tweets_repq_hadamard")  # the best plain methods on this model, the same plain fine-tunes per seed
    for ptq, label in (("hadamard", "plain + rotation"), ("repq_vit", "plain + RepQ-ViT")):
        lines.append(f"| arnq configured + PTQ4ViT − {label} (../tweets_repq_hadamard, {mean_std(_values(best, ptq, 'plain', 'q_acc'))}) "
                     f"| {paired_diff(cells['configured'], _values(best, ptq, 'plain', 'q_acc'))} |")

    gains = {ptq: mean_gain(_rows(folder), SEEDS, model=MODEL, bits=BITS, ptq=ptq, arm_params="{}")
             for folder, methods in NINE.items() for ptq in methods}
    with_configured = gains | {PTQ: statistics.mean(cells["configured"]) - statistics.mean(cells["plain"])}
    lines += ["", f"Thesis view on {MODEL} {BITS}, the nine methods: ARNQ − plain q_acc per method (mean over seeds)", "",
              "| PTQ4ViT cell | average ± std over methods | positive | PTQ4ViT |", "|---|---|---|---|"]
    for label, per in (("default arm (as ../thesis_view)", gains), ("ptq_settings: configured", with_configured)):
        values = list(per.values())
        lines.append(f"| {label} | {statistics.mean(values):+.2f} ± {statistics.stdev(values):.2f} | "
                     f"{sum(g > 0 for g in values)} of {len(values)} | {per[PTQ]:+.2f} |")

    ablation = [json.loads(line) for line in
                (HERE.parent / "tweets_thesis_b" / "ptq4vit_shadow_ablation.jsonl").read_text().splitlines() if line]
    gap = [json.loads(line) for line in
           (HERE.parent / "tweets_thesis_b" / "ptq4vit_shadow_gap.jsonl").read_text().splitlines() if line]
    lines += ["", "The plain fine-tunes of ../tweets_thesis_b quantized with PTQ4ViT under each setting "
              "(scripts/ptq_checks/shadow_gap.py; ../tweets_thesis_b/ptq4vit_shadow_*.jsonl)", "",
              "| grid, rounds | calibration tweets | q_acc | − as configured (per seed) | p |", "|---|---|---|---|---|"]
    settings = [("20 points, 1 round (in-training)", 64, [g for g in gap if g["arm"] == "plain"])]
    for calib in sorted({a["variant"]["calib"] for a in ablation}):
        for kind, label in (("configured", "100 points, 3 rounds (configured)"), ("in_training", "20 points, 1 round")):
            chosen = [a for a in ablation if a["variant"]["settings"] == kind and a["variant"]["calib"] == calib]
            if chosen:
                settings.append((label, calib, chosen))
    for label, calib, chosen in settings:
        by_seed = sorted(chosen, key=lambda g: g["seed"])
        q = [g["q_acc_in_training_settings"] for g in by_seed]
        configured = [g["q_acc_configured"] for g in by_seed]
        if len(by_seed) >= 3:
            lines.append(f"| {label} | {calib} | {mean_std(q)} | {paired_diff(q, configured)} |")
        else:  # a check on fewer seeds: each value as it is
            seeds = ", ".join(f"seed {g['seed']}: {g['q_acc_in_training_settings']:.2f}" for g in by_seed)
            diffs = ", ".join(f"{a - b:+.2f}" for a, b in zip(q, configured, strict=True))
            lines.append(f"| {label} | {calib} | {seeds} | {diffs} | |")
    lines.append("| 100 points, 3 rounds (configured, the sweep's q_acc) | 256 | "
                 f"{mean_std([g['q_acc_configured'] for g in sorted(gap, key=lambda g: g['seed']) if g['arm'] == 'plain'])}"
                 " | | |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
