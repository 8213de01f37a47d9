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

It also checks the single numbers in the Markdown tables of the write-ups in `TABLES`
(`table_untraced`). Each table body cell is read for numbers printed with at least one
decimal (a leading +, - or − is kept as a sign; a trailing %, x or unit is ignored;
"a / b", "a -> b", "a, b" and "a (b)" cells give one number each). Skipped: integers, numbers
inside a `mean ± std` pair (the check above covers those), inside `code`, in scientific
notation or in a dotted version, and every cell of a column whose header starts with one of
the write-up's `skip_columns` (row labels carrying recipe parameters such as "p = 0.5").
A number traces when, at the precision printed (|value - printed| <= half a unit of its last
decimal), it equals one of these, taken from the committed files under the write-up's data
folders (`TableSpec.data`, the write-up's own folder unless set; READMEs excluded):

1. a value: a numeric field of a row of a `.csv`, `.jsonl` or `.json` file (nested numbers of
   JSON and of JSON-encoded cells included), or a decimal number printed in a generated
   `.md` or `.txt` file;
2. a seed statistic of a row store, as the pair check computes it: per cell, the mean and
   the sample std over seeds of fp_acc, ft_acc, q_acc, improvement, FP cost, drop and FP drop,
   and each seed's own improvement, FP cost and drops;
3. only in a table whose heading, first column, row label or column header says it prints a
   difference (drop, lose, loss, cost, improvement, gain, differ, Δ, vs): sign-free, the
   difference of two accuracy fields of one row, or of the seed means of one quantity in
   two cells of one row store with the same model and bits;
4. only for a number printed as a ratio (a trailing "x" or "×", or a column named "ratio"):
   the ratio of two numbers rule 3 may subtract.

Context narrows each rule: a value, row or cell whose label (its row's model, bits and PTQ
method; the line of a generated file; the keys above a JSON number) names a model, bit-width
or PTQ method is admissible only if the cell's heading, first-column header, row label or
column header names that one too, wherever they name any. A column whose header is in
seconds ("calib s") takes only fields ending in `_s`; other columns never take them. A number
printed with an explicit sign must match with that sign under rules 1 and 2.
`python scripts/check_writeups.py --false-pass` measures how loose this is: the share of
random numbers of each checked cell's precision and sign in [0, 2|x|], and of its last-digit
neighbours, that would trace too.

    python scripts/check_writeups.py                 # the write-ups the project checks
    python scripts/check_writeups.py results/X.md    # one file
    python scripts/check_writeups.py --false-pass    # how often a wrong table number would pass
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import random
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

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


def seed_series(rows: list[dict]) -> Iterator[tuple[tuple, str, list[float]]]:
    """(cell, quantity, its per-seed values) for each cell of a trial store and each quantity the pairs quote."""
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
    for cell, series in cells.items():
        for key, values in series.items():
            yield cell, key, values


def computed_pairs(rows: list[dict]) -> Iterator[tuple[float, float]]:
    """mean ± sample std over seeds of each cell's accuracies and paired differences."""
    for _, _, values in seed_series(rows):
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


class TableSpec(NamedTuple):
    """Where a write-up's table numbers come from and which of its columns hold no measurements."""

    data: tuple[str, ...]
    skip_columns: tuple[str, ...] = ()


# ARNQ.md's tables report its own runs: its folder, results/, would bring in every other study's rows.
TABLES = {
    "results/ARNQ.md": TableSpec(("results/arnq_research",), skip_columns=("arm",)),
    "results/arms_first/README.md": TableSpec(("results/arms_first",)),
    "results/ptq_methods/README.md": TableSpec(("results/ptq_methods",)),
    "results/vit_fmnist/README.md": TableSpec(("results/vit_fmnist",)),
}
NUMBER = re.compile(r"(?<![\w.])([+\-−]?)(\d+\.\d+)(?![\d.]*\.\d|e[+\-]?\d)(\s?[x×](?![A-Za-z]))?")
SEPARATOR = re.compile(r"^\|[\s:|-]+\|$")
KEYS = ("model", "bits", "ptq")  # the fields a table's context names
DIFFERENCE = re.compile(r"drop|lose|loss|cost|improvement|gain|differ|Δ|\bvs\b", re.IGNORECASE)


class Cell(NamedTuple):
    """One number in a write-up's table: its line, its column, the words around it, how it is printed."""

    line: int
    column: str
    context: tuple[str, ...]
    text: str
    difference: bool
    ratio: bool


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def table_rows(text: str) -> Iterator[tuple[int, str, list[str], list[str]]]:
    """(line number, nearest heading, header cells, body cells) of every Markdown table row outside code fences."""
    lines, fence, heading, i = text.splitlines(), False, "", 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fence = not fence
        elif not fence and lines[i].startswith("#"):
            heading = lines[i]
        elif not fence and lines[i].startswith("|") and i + 1 < len(lines) and SEPARATOR.match(lines[i + 1].strip()):
            header = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                yield i + 1, heading, header, [c.strip() for c in lines[i].strip().strip("|").split("|")]
                i += 1
            continue
        i += 1


def table_numbers(text: str, skip_columns: Iterable[str] = ()) -> Iterator[Cell]:
    """Every number with a decimal in the table cells of a write-up, less pairs, code and skipped columns."""
    skip = tuple(skip_columns)
    for line, heading, header, cells in table_rows(text):
        context = tuple(_norm(t) for t in (heading, header[0], cells[0]))
        for column, cell in zip(header, cells, strict=False):
            if skip and column.startswith(skip):
                continue
            difference = bool(DIFFERENCE.search(" ".join((heading, header[0], cells[0], column))))
            cell = re.sub(r"`[^`]*`", " ", PAIR.sub(" ", cell))
            for sign, digits, times in NUMBER.findall(cell):
                yield Cell(line, column, (*context, _norm(column)), sign.replace("−", "-") + digits,
                           difference, bool(times) or "ratio" in column.lower())


class Support:
    """The numbers a folder's committed files support, each with the words that say what it measures."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, str, str]] = []  # (value, label, kind)
        self.groups: dict[tuple, list[float]] = defaultdict(list)  # accuracies a difference may pair
        self.labels: dict[tuple, str] = {}
        self.known: dict[str, set[str]] = {key: set() for key in KEYS}
        self._mentions: dict[str, dict[str, set[str]]] = {}
        self._cache: dict[tuple, Candidates] = {}

    def add_rows(self, name: str, rows: list[dict]) -> None:
        """A store's rows: their numeric fields (rule 1), seed statistics (2) and the differences they allow (3)."""
        for index, row in enumerate(rows):
            label = " ".join(str(row.get(key, "")) for key in KEYS)
            for key in KEYS:
                if row.get(key):
                    self.known[key].add(_norm(row[key]))
            for field, value in row.items():
                self.entries.extend((x, label, _kind(f"{field} {path}")) for x, path in _keyed_leaves(value))
                x = None if isinstance(value, bool) else _num(value)
                if x is not None and field.endswith("_acc"):
                    self._group(("row", name, index), label, x)
        for cell, key, series in seed_series(rows):
            label = " ".join(map(str, cell[:3]))
            mean = statistics.fmean(series)
            self.entries.extend((x, label, "measure") for x in series)
            self.entries.append((mean, label, "measure"))
            if len(series) >= 2:
                self.entries.append((statistics.stdev(series), label, "measure"))
            if key.endswith("_acc"):
                self._group(("mean", name, cell[0], cell[1], key), f"{cell[0]} {cell[1]}", mean)

    def _group(self, key: tuple, label: str, x: float) -> None:
        self.groups[key].append(x)
        self.labels[key] = label

    def add_file(self, path: Path) -> None:
        """Every number a committed data file supports."""
        if path.suffix in (".csv", ".jsonl"):
            self.add_rows(str(path), _rows(path))
        elif path.suffix == ".json":
            data = json.loads(path.read_text())
            rows = data.get("rows") if isinstance(data, dict) else data
            if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
                self.add_rows(str(path), rows)
            else:
                self.entries.extend((x, keys, _kind(keys)) for x, keys in _keyed_leaves(data))
        elif path.suffix in (".md", ".txt"):
            for line in path.read_text(errors="replace").splitlines():
                self.entries.extend((float(d), line, "any") for _, d, _ in NUMBER.findall(line))

    def for_cell(self, cell: Cell) -> Candidates:
        """The values and differences admissible for a cell: those whose labels name no model, bits or
        PTQ method other than the ones the cell's heading, row and column name (where they name any),
        seconds (fields ending in `_s`) for a column in seconds and no seconds elsewhere."""
        kind = "time" if re.search(r"(^|\W)(s|seconds)(\W|$)", cell.column) else "measure"
        if (cell.context, kind) in self._cache:
            return self._cache[cell.context, kind]
        wanted = {key: {v for v in self.known[key] if any(v in part for part in cell.context)} for key in KEYS}

        def admissible(label: str) -> bool:
            if label not in self._mentions:
                text = _norm(label)
                self._mentions[label] = {key: {v for v in self.known[key] if v in text} for key in KEYS}
            said = self._mentions[label]
            return all(not named or not said[key] or said[key] & named for key, named in wanted.items())

        values = sorted(x for x, label, k in self.entries if k in (kind, "any") and admissible(label))
        groups = [g for key, g in self.groups.items() if kind == "measure" and admissible(self.labels[key])]
        self._cache[cell.context, kind] = Candidates(values, groups)
        return self._cache[cell.context, kind]


class Candidates(NamedTuple):
    """A cell's admissible values and the groups of values it may take differences and ratios within."""

    values: list[float]
    groups: list[list[float]]

    def rule(self, text: str, difference: bool = False, ratio: bool = False) -> str | None:
        """The rule under which a printed number traces ('value', 'difference', 'ratio'), or None."""
        x, tol = float(text), 0.5 * 10 ** -_decimals(text) + 1e-9
        if _near(self.values, x, tol) or (not text.startswith(("+", "-")) and _near(self.values, -x, tol)):
            return "value"
        if difference and any(abs(abs(a - b) - abs(x)) <= tol for g in self.groups for a in g for b in g):
            return "difference"
        if ratio and any(b > 0 and abs(a / b - abs(x)) <= tol for g in self.groups for a in g for b in g):
            return "ratio"
        return None


def _near(values: list[float], x: float, tol: float) -> bool:
    i = bisect.bisect_left(values, x - tol)
    return i < len(values) and values[i] <= x + tol


def _kind(keys: str) -> str:
    """'time' for a number under a key ending in `_s` (seconds), else 'measure'."""
    return "time" if any(k.endswith("_s") for k in keys.split()) else "measure"


def _keyed_leaves(value, path: str = "") -> Iterator[tuple[float, str]]:
    """(numeric leaf, the keys leading to it) of a JSON value, reading JSON-encoded strings too."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        if not math.isnan(value):
            yield float(value), path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _keyed_leaves(v, f"{path} {k}")
    elif isinstance(value, list):
        for v in value:
            yield from _keyed_leaves(v, path)
    elif isinstance(value, str):
        if value[:1] in ("{", "["):
            try:
                yield from _keyed_leaves(json.loads(value), path)
            except ValueError:
                return
        elif (x := _num(value)) is not None:
            yield x, path


def table_support(spec: TableSpec) -> Support:
    """What the committed data files under a write-up's data folders support (hand-written READMEs excluded)."""
    hand = {(ROOT / w).resolve() for w in (*WRITEUPS, *TABLES)}
    support = Support()
    for folder in spec.data:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.resolve() not in hand and path.name != "README.md":
                support.add_file(path)
    return support


def _spec(name: str) -> TableSpec:
    return TABLES.get(name, TableSpec((str(Path(name).parent),)))


def table_untraced(files: Iterable[str] = tuple(TABLES), specs: dict[str, TableSpec] = TABLES) -> dict[str, list[str]]:
    """For each write-up, its table numbers that no rule traces to its data, as 'line N, column: number'."""
    out: dict[str, list[str]] = {}
    for name in files:
        spec = specs.get(name) or _spec(name)
        support = table_support(spec)
        missing = [f"line {c.line}, {c.column[:30]}: {c.text}"
                   for c in table_numbers((ROOT / name).read_text(), spec.skip_columns)
                   if support.for_cell(c).rule(c.text, c.difference, c.ratio) is None]
        if missing:
            out[name] = missing
    return out


def false_pass_rate(name: str, draws: int = 20, seed: int = 0) -> dict[str, float]:
    """How often a wrong number in one write-up's tables would still trace, by decimals printed:
    random numbers of each cell's precision and sign in [0, 2|x|] ('random 2dp') and its
    last-digit neighbours, x ± 1..9 units ('neighbours 2dp')."""
    spec = _spec(name)
    support = table_support(spec)
    rng = random.Random(seed)
    passed: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for cell in table_numbers((ROOT / name).read_text(), spec.skip_columns):
        candidates = support.for_cell(cell)
        x, d = abs(float(cell.text)), _decimals(cell.text)
        sign = cell.text[0] if cell.text.startswith(("+", "-")) else ""
        tries = {"random": [round(rng.uniform(0, 2 * x or 1), d) for _ in range(draws)],
                 "neighbours": [x + k * 10 ** -d for k in range(-9, 10) if k and x + k * 10 ** -d >= 0]}
        for kind, ys in tries.items():
            for y in ys:
                if round(y, d) != round(x, d):
                    tally = passed[f"{kind} {d}dp"]
                    tally[1] += 1
                    tally[0] += candidates.rule(f"{sign}{y:.{d}f}", cell.difference, cell.ratio) is not None
    return {kind: n / total for kind, (n, total) in sorted(passed.items())}


def main(argv: list[str]) -> int:
    if argv == ["--false-pass"]:
        for name in TABLES:
            rates = false_pass_rate(name)
            print(f"{name}: share of wrong numbers that would pass: "
                  + ", ".join(f"{kind} {rate:.1%}" for kind, rate in rates.items()))
        return 0
    files = argv or list(WRITEUPS)
    missing = untraced(files)
    for name, pairs in missing.items():
        print(f"{name}: {len(pairs)} untraced: {', '.join(pairs)}")
    total = sum(len(list(pairs_in((ROOT / f).read_text()))) for f in files)
    print(f"{total - sum(map(len, missing.values()))} of {total} quoted mean ± std pairs trace to committed files")
    tables = [f for f in files if f in TABLES] if argv else list(TABLES)
    missing_cells = table_untraced(tables)
    for name, cells in missing_cells.items():
        print(f"{name}: {len(cells)} untraced table numbers:\n  " + "\n  ".join(cells))
    total = sum(len(list(table_numbers((ROOT / f).read_text(), _spec(f).skip_columns))) for f in tables)
    print(f"{total - sum(map(len, missing_cells.values()))} of {total} table numbers trace to committed files")
    return 1 if missing or missing_cells else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
