"""The training-length table of results/vit_fmnist (drops.md, drops.csv) from what run.sh writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from harness.store import ROWS, read_rows

HERE = Path(__file__).parent


def _rows(run: Path) -> list[dict]:
    return [r for r in read_rows(run / ROWS) if r.get("status") == "ok"]


def epochs_table(lines: list[str], flat: list[dict]) -> None:
    runs = sorted((HERE / "epochs").glob("epoch*/"))
    if not runs:
        return
    outliers = {}
    if (HERE / "epochs" / "outliers.jsonl").exists():
        for line in (HERE / "epochs" / "outliers.jsonl").read_text().splitlines():
            record = json.loads(line)
            outliers[record["checkpoint"].removesuffix(".safetensors")] = record["sites"]
    bits = ["W8A8", "W6A6", "W4A8", "W8A4", "W4A4", "W3A3"]
    kinds = ["linear_in", "fc2_in", "post_ln"]
    lines += [
        "## Min-max drop by training length (points; FP and W4A4 accuracy in %)",
        "",
        "| epoch | FP | "
        + " | ".join(bits)
        + " | W4A4 acc | max/sigma: Linear inputs mean / max | fc2 inputs | post-LN |",
        "|---|---|" + "---|" * len(bits) + "---|---|---|---|",
    ]
    for run in runs:
        rows = {r["bits"]: r for r in _rows(run) if r["ptq"] == "minmax"}
        fp = next(iter(rows.values()))["fp_acc"]
        drops = [f"{fp - rows[b]['q_acc']:.2f}" if b in rows else "-" for b in bits]
        sites = outliers.get(run.name, {})
        stat = " | ".join(
            f"{sites[k]['max_over_sigma_mean']:.1f} / {sites[k]['max_over_sigma_max']:.1f}"
            if k in sites
            else "-"
            for k in kinds
        )
        w4a4 = f"{rows['W4A4']['q_acc']:.2f}" if "W4A4" in rows else "-"
        lines.append(f"| {int(run.name[5:])} | {fp:.2f} | " + " | ".join(drops) + f" | {w4a4} | {stat} |")
        for b, r in rows.items():
            flat.append(
                {
                    "table": "epochs",
                    "epoch": int(run.name[5:]),
                    "ptq": "minmax",
                    "bits": b,
                    "fp_acc": fp,
                    "q_acc": r["q_acc"],
                    "drop": round(fp - r["q_acc"], 2),
                    "calib_size": r["calib_size"],
                    "calib_s": r["calib_s"],
                }
            )
    lines.append("")


def main() -> None:
    lines = ["# vit_fmnist PTQ drops (written by table.py from the run directories here)", ""]
    flat: list[dict] = []
    epochs_table(lines, flat)
    (HERE / "drops.md").write_text("\n".join(lines))
    with (HERE / "drops.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]) if flat else ["table"])
        writer.writeheader()
        writer.writerows(flat)


if __name__ == "__main__":
    main()
