"""Check that every `mean ± std` a results write-up quotes traces to its committed data.

A write-up's spread figures (`+8.42 ± 0.57`, `80.20 ± 0.39`) are the claims a reader takes
away. This script collects every such pair the committed files support:

- the pairs printed in the generated tables and reports under `results/` (every `.md` other
  than the hand-written write-ups, `.csv` cells), and
- the pairs recomputed from every committed trial store (`results.csv`, `*_results.csv`,
  `rows.jsonl`): for each (model, bits, PTQ method, arm and parameters) over its seeds, the
  mean ± sample std of fp_acc, ft_acc, q_acc, the improvement over the plain arm of the same
  seed (q_acc), the FP cost (ft_acc against plain), the drop (ft_acc - q_acc) and the plain
  arm's own drop;

and reports every pair in a write-up that matches none of them at the precision the
write-up prints (a sign-free match counts: "loses 2.24 ± 0.99" quotes -2.24). Exit 1 if
any pair is untraced.

    python scripts/check_writeups.py                 # the write-ups the project checks
    python scripts/check_writeups.py results/X.md    # one file
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
WRITEUPS = ("results/ARNQ.md", "results/COMPOSITION.md", "results/arms_first/README.md",
            "results/ptq_methods/README.md", "results/quickstart/README.md", "results/vit_fmnist/README.md")
PAIR = re.compile(r"([+\-−]?\d+(?:\.\d+)?) ± (\d+(?:\.\d+)?)")


def pairs_in(text: str) -> Iterator[tuple[str, str]]:
    """Every 'a ± b' in a text, as printed (a Unicode minus read as '-')."""
    for mean, std in PAIR.findall(text):
        yield mean.replace("−", "-"), std


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def computed_pairs(rows: list[dict]) -> Iterator[tuple[float, float]]:
    """mean ± sample std over seeds of each cell's accuracies and paired differences."""
    rows = [r for r in rows if r.get("status", "ok") == "ok" and "seed" in r and "q_acc" in r]
    plain = {(r["model"], r["bits"], r["ptq"], str(r.get("ptq_params", "")), r["seed"]): r
             for r in rows if r.get("arm", "plain") == "plain"}
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        cell = (r["model"], r["bits"], r["ptq"], str(r.get("ptq_params", "")), r.get("arm", "plain"),
                str(r.get("arm_params", "")))
        values = {k: _num(r.get(k)) for k in ("fp_acc", "ft_acc", "q_acc")}
        base = plain.get((r["model"], r["bits"], r["ptq"], str(r.get("ptq_params", "")), r["seed"]))
        if base is not None:
            values["improvement"] = _diff(values["q_acc"], _num(base.get("q_acc")))
            values["ft_change"] = _diff(values["ft_acc"], _num(base.get("ft_acc")))
        values["drop"] = _diff(values["ft_acc"], values["q_acc"]) if values["ft_acc"] is not None else None
        values["fp_drop"] = _diff(values["fp_acc"], values["q_acc"])
        for key, value in values.items():
            if value is not None:
                cells[cell][key].append(value)
    for series in cells.values():
        for values in series.values():
            if len(values) >= 2:
                yield statistics.fmean(values), statistics.stdev(values)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def supported_pairs(root: Path = RESULTS, writeups: Iterable[str] = WRITEUPS) -> tuple[set, list]:
    """(pairs printed in generated files, pairs computed from trial stores)."""
    hand = {(ROOT / w).resolve() for w in writeups} | {p.resolve() for p in root.rglob("README.md")}
    printed: set[tuple[str, str]] = set()
    computed: list[tuple[float, float]] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.resolve() in hand:
            continue
        if path.suffix in (".md", ".csv", ".json", ".html"):
            printed.update(pairs_in(path.read_text(errors="replace")))
        if path.name in ("results.csv", "rows.jsonl") or path.name.endswith("_results.csv"):
            computed.extend(computed_pairs(_rows(path)))
    return printed, computed


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def traced(pair: tuple[str, str], printed: set, computed: list) -> bool:
    """Whether a quoted pair is printed in a generated file or rounds from a computed one (sign-free allowed)."""
    mean, std = pair
    if pair in printed or (mean.lstrip("+-"), std) in {(m.lstrip("+-"), s) for m, s in printed}:
        return True
    m, s, dm, ds = float(mean), float(std), _decimals(mean), _decimals(std)
    tol_m, tol_s = 0.5 * 10 ** -dm + 1e-9, 0.5 * 10 ** -ds + 1e-9
    return any(abs(abs(cm) - abs(m)) <= tol_m and abs(cs - s) <= tol_s and (m == 0 or cm == 0 or
               math.copysign(1, cm) == math.copysign(1, m) or not mean.startswith(("+", "-")))
               for cm, cs in computed)


def untraced(files: Iterable[str]) -> dict[str, list[str]]:
    printed, computed = supported_pairs()
    printed_norm = printed | {(m.replace("−", "-"), s) for m, s in printed}
    out: dict[str, list[str]] = {}
    for name in files:
        text = (ROOT / name).read_text()
        missing = [f"{m} ± {s}" for m, s in dict.fromkeys(pairs_in(text)) if not traced((m, s), printed_norm, computed)]
        if missing:
            out[name] = missing
    return out


def main(argv: list[str]) -> int:
    files = argv or list(WRITEUPS)
    missing = untraced(files)
    for name, pairs in missing.items():
        print(f"{name}: {len(pairs)} untraced: {', '.join(pairs)}")
    total = sum(len(list(pairs_in((ROOT / f).read_text()))) for f in files)
    print(f"{total - sum(map(len, missing.values()))} of {total} quoted mean ± std pairs trace to committed files")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
