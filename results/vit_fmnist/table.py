"""The training-length table of results/vit_fmnist (drops.md, drops.csv) from what run.sh writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from timm.models.vision_transformer import VisionTransformer

from arnq.models.registry import MODELS
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


SIZE_PTQ = ("minmax", "repq_vit", "ptq4vit")
SIZE_BITS = ("W8A8", "W4A4", "W3A3")
SHIPPED = HERE.parent / "ptq_methods" / "vit_fmnist"  # the shipped 128x6 model's PTQ table


def sizes_table(lines: list[str], flat: list[dict]) -> None:
    runs = sorted((HERE / "sizes").glob("vit_fmnist_*/"))
    if not runs:
        return
    entries = []
    for run in runs:
        width, depth = (int(v) for v in run.name.removeprefix("vit_fmnist_").split("x"))
        train = json.loads((run / "fp_train.json").read_text())
        entries.append((width, depth, train["parameters"], train["train_seconds"], _rows(run)))
    if (SHIPPED / ROWS).exists():
        manifest = json.loads((HERE.parents[1] / "arnq/models/checkpoints/vit_fmnist-seed0.json").read_text())
        params = sum(p.numel() for p in VisionTransformer(**MODELS.get("vit_fmnist").arch).parameters())
        entries.append((128, 6, params, manifest["train"]["train_seconds"], _rows(SHIPPED)))
    entries.sort(key=lambda e: (e[0] * e[0] * e[1], e[0]))
    cols = [f"{m} {b}" for b in SIZE_BITS for m in SIZE_PTQ]
    lines += [
        "## PTQ drop by model size (15-epoch recipe, seed 0; drops in points)",
        "",
        "| width x depth | params | FP train s | FP | " + " | ".join(cols) + " |",
        "|---|---|---|---|" + "---|" * len(cols),
    ]
    for width, depth, params, seconds, rows in entries:
        cell = {(r["ptq"], r["bits"]): r for r in rows}
        fp = rows[0]["fp_acc"]
        drops = [
            f"{fp - cell[(m, b)]['q_acc']:.2f}" if (m, b) in cell else "-"
            for b in SIZE_BITS
            for m in SIZE_PTQ
        ]
        lines.append(
            f"| {width} x {depth} | {params / 1e6:.2f}M | {seconds:.0f} | {fp:.2f} | "
            + " | ".join(drops)
            + " |"
        )
        for (m, b), r in sorted(cell.items()):
            if m in SIZE_PTQ and b in SIZE_BITS:
                flat.append(
                    {
                        "table": "sizes",
                        "width": width,
                        "depth": depth,
                        "ptq": m,
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
    sizes_table(lines, flat)
    (HERE / "drops.md").write_text("\n".join(lines))
    with (HERE / "drops.csv").open("w", newline="") as f:
        fields = list(dict.fromkeys(key for row in flat for key in row)) or ["table"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)


if __name__ == "__main__":
    main()
