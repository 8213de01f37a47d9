"""The `arnq` command line: quantize, sweep, validate, report, reproduce and ls."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

DEFAULT_BITS = ("W8A8", "W6A6", "W4A4")
LISTINGS = ("models", "datasets", "ptq", "arms", "schedules", "spaces")
MODEL_COMMANDS = ("quantize", "sweep", "validate", "reproduce")  # the commands that load models (and timm)


def spaces_dir() -> Path:
    """The folder of the shipped spaces: package data, so an installed `arnq` has them (pip installs it unpacked)."""
    return Path(str(resources.files("search_spaces")))


def _space_path(arg: str | None) -> Path:
    """A space argument: an existing file, else a shipped space named `search_spaces/NAME.yaml`, `NAME.yaml` or `NAME`."""
    if arg is None:
        names = ", ".join(sorted(p.stem for p in spaces_dir().glob("*.yaml")))
        raise ValueError(f"give a search space: a YAML file or a shipped space's name, e.g. quickstart "
                         f"(README's main job). Shipped spaces: {names} (details: arnq ls spaces)")
    path = Path(arg)
    if path.is_file():
        return path
    folder = spaces_dir()
    shipped = sorted(p.stem for p in folder.glob("*.yaml"))
    if path.parent in (Path("."), Path(folder.name)) and path.suffix in ("", ".yaml") and path.stem in shipped:
        return folder / f"{path.stem}.yaml"
    close = difflib.get_close_matches(path.stem, shipped, n=1)
    hint = f"Did you mean '{close[0]}'? " if close else ""
    raise FileNotFoundError(f"{arg}: no such file and no shipped space of that name. {hint}"
                            f"Shipped spaces: {', '.join(shipped)}")


def _console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)  # logs and pipes: no wrapping


def _table(title: str, rows: list[dict], columns: Sequence[str] | None = None):
    from rich.table import Table

    columns = list(columns or (rows[0].keys() if rows else []))
    table = Table(title=title, show_lines=False)
    for i, col in enumerate(columns):
        if i == 0:  # the name a user copies into a command: never folded, the other columns wrap around it
            width = max([len(col)] + [len(str(row.get(col, ""))) for row in rows])
            table.add_column(col, no_wrap=True, min_width=width)
        else:
            table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    return table


def cmd_ls(args: argparse.Namespace) -> int:
    console = _console()
    if args.what == "models":
        from arnq.models import describe_models

        console.print(_table("models", describe_models()))
    elif args.what == "datasets":
        from arnq.data import describe_datasets

        console.print(_table("datasets", describe_datasets()))
    elif args.what == "ptq":
        from arnq.ptq import PTQ_METHODS

        console.print(_table("PTQ methods", [m.describe() for _, m in PTQ_METHODS.items()]))
    elif args.what == "arms":
        from arnq.arms import ARMS

        console.print(_table("fine-tuning arms", [a.describe() for _, a in ARMS.items()]))
    elif args.what == "schedules":
        from arnq.arms.schedules import describe_schedules, plot_schedules

        console.print(_table("noise schedules alpha(t)", describe_schedules()))
        if args.plot:
            console.print(f"plot: {plot_schedules(args.plot)}")
    elif args.what == "spaces":
        from harness.space import load_space

        folder = spaces_dir()
        rows = []
        for path in sorted(folder.glob("*.yaml")):
            space = load_space(path)
            rows.append({"space": str(path.relative_to(folder.parent)), "name": space.name,
                         "models": ",".join(space.models), "bits": ",".join(space.bits),
                         "trials": len(space.trials())})
        console.print(_table("search spaces", rows))
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from arnq.models import MODELS
    from arnq.ptq import CALIBRATORS
    from harness.quantize import QuantizeJob, quantize_into

    embedded = [name for name, spec in MODELS.items() if spec.embedded]
    job = QuantizeJob(  # validates names and bit strings before anything is loaded
        models=args.model or embedded, ptq=args.ptq or list(CALIBRATORS), bits=args.bits, seed=args.seed,
        calib_size=args.calib_size, device=args.device, threads=args.threads, weights=args.weights, data_root=args.data_root,
        ptq_params=_ptq_params(args.param),
    )
    console = _console()
    warn_if_dirty(console)
    start = time.perf_counter()
    columns = ("model", "bits", "ptq", "fp_acc", "q_acc", "calib_s", "eval_s")

    def show(row: dict) -> None:
        console.print("  ".join(f"{c}={row[c]}" for c in columns))

    run_dir = Path(args.out)
    rows = quantize_into(job, run_dir, on_row=show)
    return _finish_run(rows, run_dir, run_dir.name, start)


def _ptq_params(items: list[str]) -> dict[str, dict[str, object]]:
    """['noisyquant.noise=gaussian', 'gptq.group_size=128'] -> {'noisyquant': {'noise': 'gaussian'}, ...}."""
    import yaml

    params: dict[str, dict[str, object]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not (eq and dot and method and name):
            raise ValueError(f"--param {item!r}: write METHOD.NAME=VALUE, e.g. --param gptq.group_size=128")
        params.setdefault(method, {})[name] = yaml.safe_load(value)
    return params


def _finish_run(rows: list[dict], run_dir: Path, name: str, start: float, wandb: bool = False,
                total: int | None = None) -> int:
    """Write the run's report (run_dir/report), print its leaderboard, the failed trials and a summary
    line; non-zero exit if a trial failed."""
    from harness.report import read_report, save_report

    report = read_report(run_dir)
    paths = save_report(report, run_dir, wandb=wandb)
    console = _console()
    console.print(_table(f"{name}: leaderboard (mean ± std over seeds)", report.views["leaderboard"].to_dict("records")))
    failed = [row for row in rows if row.get("status") == "failed"]
    for row in failed:
        where = f" (traceback: less {run_dir / row['error_file']})" if row.get("error_file") else ""
        console.print(f"failed: {row['model']} {row['bits']} {row['ptq']} {row['arm']} seed {row['seed']}: "
                      f"{row.get('error') or 'no error recorded'}{where}", soft_wrap=True)
    console.print(f"report: {paths['report.md'].resolve()} (also {paths['report.html'].name}, CSV, plots)")
    wandb_dir = (run_dir / "wandb" / "wandb").resolve()
    offline = list(wandb_dir.glob("offline-run-*"))
    if offline:  # the per-trial runs are silent; say once where they are and how to upload them
        console.print(f"W&B: {len(offline)} offline runs in {wandb_dir} (upload: wandb sync {wandb_dir}/offline-run-*)")
    from harness.report.tables import answer_lines

    for line in answer_lines(report):
        console.print(line, soft_wrap=True)
    console.print(summary_line(rows, time.perf_counter() - start, total), soft_wrap=True)
    return 0 if not failed else 1


def summary_line(rows: Sequence[dict], seconds: float, total: int | None = None) -> str:
    """'72 trials: 70 ok, 2 stopped early by ASHA, 0 failed in 24 min 10 s' (trials = `total`, else the rows)."""
    from collections import Counter

    counts = Counter(row.get("status", "ok") for row in rows)
    parts = [f"{counts.pop('ok', 0)} ok", f"{counts.pop('stopped', 0)} stopped early by ASHA",
             f"{counts.pop('failed', 0)} failed", *(f"{n} {status}" for status, n in sorted(counts.items()))]
    missing = (total or len(rows)) - len(rows)
    if missing > 0:
        parts.append(f"{missing} not run")
    return f"{total or len(rows)} trials: {', '.join(parts)} in {duration_text(seconds)}"


def duration_text(seconds: float) -> str:
    """'42 s', '24 min 10 s', '2 h 05 min'."""
    seconds = int(round(max(seconds, 0)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def warn_if_dirty(console) -> None:
    """Say, before any work, that rows of this run cannot be traced to a commit (they record git_dirty)."""
    from harness.store import git_dirty

    if git_dirty():
        console.print("warning: the working tree has uncommitted changes; the rows will record git_dirty=true and "
                      "cannot be regenerated from a commit. Commit first for results you will publish.", soft_wrap=True)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from harness import reproduce as rp

    result = rp.select(rp.load_result(args.result_dir), cells=args.cells, seeds=args.seeds)
    tol, tol_text = rp.tolerance(result, args.tolerance)
    console = _console()
    name = result.name
    out = Path(args.out or f"results/runs/reproduce/{name}")
    from harness.store import dirty_rows

    dirty = dirty_rows(result.rows)
    console.print(f"{args.result_dir}: {result.kind} '{name}', {len(result.rows)} committed rows to reproduce"
                  + (f" ({dirty} from a tree with uncommitted changes: their code is not in any commit)" if dirty else "")
                  + f"; tolerance {tol_text}", soft_wrap=True)
    if not result.rows:
        raise rp.ReproduceError("the selection holds no committed rows; widen --cells / --seeds")
    changes = rp.changed_settings(result)
    changed, committed = changes.lines(), None
    if changed and not args.allow_changed_settings:
        committed = rp.as_committed(result, changes)
        if committed is None:
            raise rp.ReproduceError(
                f"{len(changed)} committed row(s) would now run with other settings than they did (a default "
                "changed since), and no arm setting re-creates them:\n  " + "\n  ".join(changed[:10])
                + ("\n  ..." if len(changed) > 10 else "")
                + "\npass --allow-changed-settings to run today's defaults and measure the change against them")
        overridden = [f"{name} {json.dumps(params, sort_keys=True)}" for (name, params), (_, before)
                      in zip(committed[0].arms, result.spec.arms, strict=True) if params != before]
        console.print(f"{len(changed)} committed row(s) ran with settings that are no longer the defaults (e.g. "
                      f"{changed[0]}); re-running them as they ran, with the arm(s) {'; '.join(overridden)} "
                      "(--allow-changed-settings runs today's defaults instead)", soft_wrap=True)
    elif changed:
        console.print(f"{len(changed)} row(s) now run with other settings (--allow-changed-settings): their "
                      "differences measure that change", soft_wrap=True)
    if changes.unchecked:
        console.print(f"{changes.unchecked} committed row(s) cannot be checked for changed settings (no recorded "
                      "config, a cell the space no longer builds, or an arm's target not recorded)", soft_wrap=True)
    warn_if_dirty(console)
    start = time.perf_counter()
    new = rp.run(result, out, Path(args.cache) if args.cache else None, space=committed[0] if committed else None)
    if committed:
        new = rp.mapped_back(new, committed[1])
    lines = rp.compare(result.rows, new, tol)
    columns = ("model", "bits", "ptq", "arm", "seed", "metric", "committed", "new", "diff", "within", "note")
    console.print(_table(f"{name}: committed vs reproduced", lines, columns))
    import csv

    with (out / "reproduce.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(lines)
    means = rp.cell_means(result.rows, new)
    if any(line["seeds"] > 1 for line in means):
        console.print(_table(f"{name}: q_acc per cell over its seeds", means,
                             ("model", "bits", "ptq", "arm", "seeds", "committed", "new", "diff")))
    console.print(f"rows: {out / 'run' / 'rows.jsonl'}; comparison: {out / 'reproduce.csv'}; "
                  f"took {duration_text(time.perf_counter() - start)}", soft_wrap=True)
    console.print(rp.summary(lines, tol_text), soft_wrap=True)
    return 0 if all(line["within"] for line in lines) else 1


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import write_report

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    paths = write_report(args.run_dir, formats=formats, wandb=args.wandb, out_dir=args.out, name=args.name,
                         ptqs=args.ptq)
    console = _console()
    for key, path in paths.items():
        if not key.startswith("plots/"):
            console.print(f"{key}: {path}")
    return 0


def _local_nodes() -> list[dict]:
    import torch

    return [{"Alive": True, "Resources": {"CPU": os.cpu_count() or 1, "GPU": torch.cuda.device_count()}}]


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.plan import make_plan
    from harness.space import SpaceError, load_space
    from harness.sweep import check_resources

    space = load_space(_space_path(args.space))
    console = _console()
    console.print(f"{args.space}: valid space '{space.name}' (hash {space.source_hash})")
    address = args.address or os.environ.get("RAY_ADDRESS")
    slots = None
    if address:
        import ray

        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        nodes = ray.nodes()
        slots = int(sum(n["Resources"].get("CPU", 0) for n in nodes if n["Alive"]) // max(space.resources["cpu"], 1))
        check_resources(space, nodes)  # an error on the cluster that will run it
    else:
        try:
            check_resources(space, _local_nodes())
        except SpaceError as err:
            console.print(f"warning: this machine cannot run it: {err} (check a cluster with --address)")
    for line in make_plan(space, slots=slots, measure=not address).lines():  # a cluster is not this machine
        console.print(line)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import shlex

    from harness.plan import make_plan
    from harness.space import load_space
    from harness.store import ROWS, finished_ids
    from harness.sweep import SweepInterrupted, run_sweep

    space = load_space(_space_path(args.space))  # validated before Ray starts
    if args.smoke:
        space = smoke_space(space)
    run_dir = Path(args.out or f"results/runs/{space.name}")
    console = _console()
    for line in make_plan(space, measure=not (args.address or os.environ.get("RAY_ADDRESS"))).lines():
        console.print(line)
    warn_if_dirty(console)
    start = time.perf_counter()
    wandb = bool(space.wandb) and space.wandb["mode"] != "disabled"
    command = " ".join(["arnq sweep", shlex.quote(args.space), *(["--out", shlex.quote(args.out)] if args.out else []),
                        *(["--smoke"] if args.smoke else []), "--resume"])
    try:
        rows = run_sweep(space, run_dir, resume=args.resume, address=args.address, own_tempdir=True)
    except SweepInterrupted as stop:
        if stop.rows:
            _finish_run(stop.rows, run_dir, space.name, start, wandb=wandb, total=stop.total)
        done = len(finished_ids(run_dir / ROWS))
        console.print(f"interrupted: {done} of {stop.total} trials done; resume with: {command}", soft_wrap=True)
        return stop.exit_code
    total = len(space.trials())
    code = _finish_run(rows, run_dir, space.name, start, wandb=wandb, total=total)
    missing = total - len(rows)  # the store keeps one row per trial, so these trials have none
    if missing > 0:  # Ray ended the experiment before these trials ran (a lost head node, a killed Ray instance)
        console.print(f"error: {missing} of {total} trials never ran (the Ray experiment ended without them); "
                      f"resume with: {command}", soft_wrap=True)
        return 1
    return code


def smoke_space(space):
    """A minutes-long slice of a space: first model, bits and PTQ method, seed 0, one short epoch."""
    import dataclasses

    def short(ft):
        return dataclasses.replace(ft, epochs=1, train_subset=256, val_size=64, diagnostics_batches=1)

    first = space.narrowed(models=space.models[:1])
    first = first.narrowed(bits=first.bits_of(first.models[0])[:1])
    return dataclasses.replace(first, name=f"{space.name}-smoke", ptq=space.ptq[:1], arms=space.arms[:2],
                               seeds=space.seeds[:1], finetune=short(space.finetune), calib_size=64,
                               model_finetune=tuple((m, short(ft)) for m, ft in first.model_finetune))


class _Parser(argparse.ArgumentParser):
    """argparse with a 'Did you mean ...?' for a mistyped command or choice (Python 3.11 has none)."""

    def error(self, message: str):  # type: ignore[override]
        import re

        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if found:
            choices = re.findall(r"'([^']*)'", found.group(2))
            close = difflib.get_close_matches(found.group(1), choices, n=1)
            if close:
                message += f". Did you mean '{close[0]}'?"
        super().error(message)


EXAMPLES = {
    "arnq": """examples:
  arnq sweep quickstart                      # the main job: plain vs PTQ-aware ARNQ fine-tuning, 3 seeds, here
  arnq validate quickstart                   # trial count and cost estimate, nothing runs
  arnq quantize --model vit_mnist --ptq minmax repq_vit --bits W8A8 W4A4
  arnq report results/runs/quickstart        # rebuild a run's report
  arnq ls ptq                                # what can be named (models, datasets, ptq, arms, schedules, spaces)

`arnq COMMAND --help` for each command.""",
    "quantize": """examples:
  arnq quantize --model vit_mnist --ptq minmax percentile --bits W8A8 W4A4
  arnq quantize --model deit_small --weights deit_small.pth --data-root /data/imagenet --ptq repq_vit --bits W4A4""",
    "sweep": """examples:
  arnq sweep quickstart                                  # a shipped space, by name
  arnq sweep my_space.yaml --out runs/mine               # your own space
  arnq sweep my_space.yaml --out runs/mine --resume      # after Ctrl-C: runs only what is missing
  arnq sweep thesis_grid --address HEAD_IP:6379          # on a Ray cluster""",
    "validate": """examples:
  arnq validate quickstart
  arnq validate thesis_grid --address HEAD_IP:6379       # check resources against a cluster""",
    "report": """examples:
  arnq report results/runs/quickstart
  arnq report results/runs/quickstart --format md --out /tmp/report
  arnq report RUN_A RUN_B RUN_C --out results/thesis_view   # one report over several runs""",
    "reproduce": """examples:
  arnq reproduce results/composition/fmnist_core                       # every cell, from an empty cache
  arnq reproduce results/quickstart --cells vit_fmnist --seeds 0       # a subset
  arnq reproduce results/ptq_methods/vit_fmnist --cells W4A4 repq_vit  # a quantize job's cells""",
    "ls": """examples:
  arnq ls spaces
  arnq ls schedules --plot schedules.png""",
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="arnq", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Quantization-friendly fine-tuning benchmark harness: fine-tuning arms (ARNQ noise, QuantTune) "
                    "x PTQ methods x bit-widths, on Ray Tune.",
        epilog=EXAMPLES["arnq"])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    q = sub.add_parser("quantize", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES["quantize"],
                           help="calibrate, quantize and evaluate models (FP vs quantized accuracy)")
    q.add_argument("--model", nargs="+", default=None,
                   help="model name(s); see `arnq ls models` (default: every embedded model)")
    q.add_argument("--ptq", nargs="+", default=None, help="PTQ method(s); see `arnq ls ptq` (default: the calibrators)")
    q.add_argument("--bits", nargs="+", default=list(DEFAULT_BITS), help="bit-width(s) as WxAy, e.g. W8A8 W4A16")
    q.add_argument("--seed", type=int, default=0, help="seed of the FP model and the calibration subset")
    q.add_argument("--calib-size", type=int, default=None, help="calibration examples (default: the method's)")
    q.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    q.add_argument("--weights", default=None, help="local weights file/folder for a single model (offline clusters)")
    q.add_argument("--data-root", default=None, help="local dataset folder (e.g. ImageNet ImageFolder, GLUE jsonl)")
    q.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="a PTQ method parameter (repeatable), e.g. noisyquant.noise=gaussian")
    q.add_argument("--out", default="results/runs/quantize",
                   help="run directory: rows.jsonl, job.json and the report (an earlier run there is moved aside)")
    q.set_defaults(func=cmd_quantize)

    sw = sub.add_parser("sweep", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES["sweep"],
                           help="run a search space on Ray Tune (local, or a cluster with --address)")
    sw.add_argument("space", nargs="?", help="search-space YAML file, or a shipped space's name (see `arnq ls spaces`)")
    sw.add_argument("--out", default=None, help="run directory (default results/runs/<name>)")
    sw.add_argument("--resume", action="store_true", help="continue an interrupted sweep in the same run directory")
    sw.add_argument("--smoke", action="store_true", help="a minutes-long slice of the space")
    sw.add_argument("--address", default=None, help="Ray cluster address, or 'auto' for the cluster `ray start` started on this machine "
                    "(default: $RAY_ADDRESS, else a new local Ray instance)")
    sw.set_defaults(func=cmd_sweep)

    v = sub.add_parser("validate", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES["validate"],
                           help="check a search space and print its trial count and cost estimate")
    v.add_argument("space", nargs="?", help="search-space YAML file, or a shipped space's name (see `arnq ls spaces`)")
    v.add_argument("--address", default=None, help="check resources against this Ray cluster (default: $RAY_ADDRESS)")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("report", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES["report"],
                           help="leaderboards (Markdown, CSV, HTML), plots and W&B from a run's results store")
    r.add_argument("run_dir", nargs="+",
                   help="run directory holding rows.jsonl (e.g. results/runs/quickstart); several give one report "
                        "over all of them (each (model, bits, PTQ method) from one run; needs --out)")
    r.add_argument("--format", default="md,csv,html", help="comma-separated: md, csv, html")
    r.add_argument("--out", default=None, help="write the report here instead of RUN_DIR/report")
    r.add_argument("--name", default=None, help="the report's title (default: the space's name, or the runs')")
    r.add_argument("--ptq", nargs="+", default=None, metavar="METHOD",
                   help="report only these PTQ methods (e.g. a thesis view over the activation-quantizing ones)")
    r.add_argument("--wandb", action="store_true", help="also log a W&B reporter run (offline unless WANDB_MODE=online)")
    r.set_defaults(func=cmd_report)

    rp = sub.add_parser("reproduce", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES["reproduce"],
                        help="re-run a committed results folder from an empty cache and compare every value")
    rp.add_argument("result_dir", help="a results folder holding rows.jsonl and space.json (a sweep) or job.json "
                                       "(a quantize job)")
    rp.add_argument("--cells", nargs="+", default=[], metavar="NAME",
                    help="only these models, bit-widths, PTQ methods or arms (same kind: any of them; "
                         "different kinds: all of them), e.g. --cells vit_fmnist W4A4")
    rp.add_argument("--seeds", nargs="+", type=int, default=[], help="only these seeds")
    rp.add_argument("--tolerance", type=float, default=None,
                    help="largest accepted |new - committed| in accuracy points (default: 0 when the code, library "
                         "versions and CPU device match the committed rows, else 1)")
    rp.add_argument("--allow-changed-settings", "--allow-changed-targets", dest="allow_changed_settings",
                    action="store_true",
                    help="re-run rows that the space would now run with other settings than they did (a PTQ "
                         "method's, arm's or fine-tune's default changed since) instead of refusing; the "
                         "comparison then measures that change")
    rp.add_argument("--out", default=None, help="where the new run goes (default results/runs/reproduce/<name>)")
    rp.add_argument("--cache", default=None,
                    help="cache folder (default: a new, empty OUT/cache, so nothing computed earlier is reused)")
    rp.set_defaults(func=cmd_reproduce)

    ls = sub.add_parser("ls", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES["ls"],
                           help="list registered models, datasets or PTQ methods")
    ls.add_argument("what", choices=LISTINGS)
    ls.add_argument("--plot", default=None, help="with `schedules`: also write a PNG of every schedule here")
    ls.set_defaults(func=cmd_ls)
    return parser


def _setup_logging(verbose: bool) -> None:
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", datefmt="[%X]",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
    )
    for noisy in ("httpx", "urllib3", "filelock", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")
    args = build_parser().parse_args(argv)
    if args.command in MODEL_COMMANDS:
        from arnq.cache import cache_root

        # importing timm makes torch's compile cache folder at once, in the temp directory unless told where:
        # keep it with the other caches, out of the system temp directory (this process and its Ray workers)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "torchinductor"))
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except (ValueError, OSError) as err:
        print(f"arnq {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
