"""ARNQ toward PTQ4ViT on minilm_rt W4A4 with PTQ4ViT run as configured in training, against plain fine-tuning,
against the default arm of ../minilm_w4a4 and against the best plain methods on this model.

Plain and ARNQ (ptq_settings: configured) ft_acc and q_acc (mean ± sample std over seeds 0-2), the paired
differences per seed with their two-sided paired t-tests, and the share of plain fine-tuning's drop recovered.
Rows of earlier sweeps pair with these where their plain fine-tunes are the same as this one's (checked on ft_acc
per seed): the default arm toward PTQ4ViT (../minilm_w4a4, run with the arm's former ramp recipe), plain + rotation
(../hadamard_aware), plain + AdaLog (../minilm_rt_new_methods). Then the thesis view on minilm_rt at W4A4 over the
nine methods of ../thesis_view and over twelve (with OS+, ERQ and AdaLog), with this arm's PTQ4ViT cell in place
of the default arm's. Writes paired.md next to this file:

    .venv/bin/python results/composition/minilm_rt_ptq4vit_configured/paired.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.report.paired import cell_values, folder_rows, mean_gain, mean_std, paired_diff

HERE = Path(__file__).parent
MODEL, BITS, PTQ, SEEDS = "minilm_rt", "W4A4", "ptq4vit", (0, 1, 2)
CONFIGURED = json.dumps({"ptq_settings": "configured"})
BEST_PLAIN = {"hadamard": "hadamard_aware", "adalog": "minilm_rt_new_methods"}  # the best plain methods on minilm_rt
NINE = {"minilm_w4a4": ("minmax", "percentile", "omse", "smoothquant", "noisyquant", "fq_vit", "repq_vit", "ptq4vit"),
        "minilm_liu2021": ("liu2021",)}  # the sweeps of the thesis view's nine methods on minilm_rt
NEWER = {"minilm_rt_new_methods": ("os_plus", "erq", "adalog")}


def _rows(folder: str) -> list[dict]:
    return folder_rows(HERE.parent / folder)


def _values(rows: list[dict], ptq: str, arm: str, key: str, params: str = "{}") -> list[float]:
    """`key` of the ok rows of one (ptq, arm, arm_params) cell, in seed order."""
    return cell_values(rows, SEEDS, key, model=MODEL, bits=BITS, ptq=ptq, arm=arm, arm_params=params)


def _gain(rows: list[dict], ptq: str) -> float:
    return mean_gain(rows, SEEDS, model=MODEL, bits=BITS, ptq=ptq, arm_params="{}")


def main() -> None:
    here, earlier = _rows("minilm_rt_ptq4vit_configured"), _rows("minilm_w4a4")
    fp = here[0]["fp_acc"]
    plain_ft = _values(here, PTQ, "plain", "ft_acc")
    cells = {"plain": _values(here, PTQ, "plain", "q_acc"), "configured": _values(here, PTQ, "arnq", "q_acc", CONFIGURED),
             "default, ramp (../minilm_w4a4)": _values(earlier, PTQ, "arnq", "q_acc")}
    ft = {"plain": plain_ft, "configured": _values(here, PTQ, "arnq", "ft_acc", CONFIGURED),
          "default, ramp (../minilm_w4a4)": _values(earlier, PTQ, "arnq", "ft_acc")}
    same_plain = plain_ft == _values(earlier, PTQ, "plain", "ft_acc")
    drop = statistics.mean(plain_ft) - statistics.mean(cells["plain"])
    lines = [f"{MODEL} {BITS}, {PTQ}, seeds {SEEDS[0]}-{SEEDS[-1]} (FP {fp:.2f})", "",
             f"The plain fine-tunes {'equal' if same_plain else 'DIFFER FROM'} those of ../minilm_w4a4 per seed (ft_acc); "
             f"plain + PTQ4ViT there: {mean_std(_values(earlier, PTQ, 'plain', 'q_acc'))}.", "",
             "| arm | ft_acc | q_acc | − plain q_acc (per seed) | p | share of plain's drop |", "|---|---|---|---|---|---|"]
    for arm, q in cells.items():
        if arm == "plain":
            lines.append(f"| plain | {mean_std(ft[arm])} | {mean_std(q)} | | | drop {drop:.2f} |")
            continue
        gain = statistics.mean(q) - statistics.mean(cells["plain"])
        share = f"{100 * gain / drop:.0f} %" if gain > 0 else "— (a loss)"
        lines.append(f"| arnq, {arm} | {mean_std(ft[arm])} | {mean_std(q)} | {paired_diff(q, cells['plain'])} | {share} |")
    lines += ["", "| comparison (paired by seed) | difference (per seed) | p |", "|---|---|---|",
              f"| arnq configured − arnq default, ramp | {paired_diff(cells['configured'], cells['default, ramp (../minilm_w4a4)'])} |"]
    for ptq, folder in BEST_PLAIN.items():
        rows = _rows(folder)
        if _values(rows, ptq, "plain", "ft_acc") != plain_ft:
            lines.append(f"| (plain fine-tunes of ../{folder} differ from this sweep's: not paired) | | |")
            continue
        reference = _values(rows, ptq, "plain", "q_acc")
        lines.append(f"| arnq configured + PTQ4ViT − plain + {ptq} ({mean_std(reference)}, ../{folder}) | "
                     f"{paired_diff(cells['configured'], reference)} |")

    gains = {ptq: _gain(_rows(folder), ptq) for folder, methods in (NINE | NEWER).items() for ptq in methods}
    configured = gains | {PTQ: statistics.mean(cells["configured"]) - statistics.mean(cells["plain"])}
    nine = [m for ms in NINE.values() for m in ms]
    lines += ["", f"Thesis view on {MODEL} {BITS}: ARNQ − plain q_acc per method (mean over seeds), averaged over "
              "methods", "", "| methods | PTQ4ViT cell | average ± std over methods | positive | PTQ4ViT |",
              "|---|---|---|---|---|"]
    for label, methods in (("the nine (../thesis_view)", nine), ("the nine + OS+, ERQ, AdaLog", list(gains))):
        for cell_label, per in (("default arm, ramp", gains), ("ptq_settings: configured", configured)):
            values = [per[m] for m in methods]
            lines.append(f"| {label} | {cell_label} | {statistics.mean(values):+.2f} ± {statistics.stdev(values):.2f} | "
                         f"{sum(g > 0 for g in values)} of {len(values)} | {per[PTQ]:+.2f} |")
    (HERE / "paired.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
