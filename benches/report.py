#!/usr/bin/env python3
"""Tables of the request benches: per-request figures, what each configuration adds over
bare, and the ratios the performance contract sets targets for.

  benches/report.py time [--baseline NAME] [--new NAME]
      criterion's medians of `cargo bench --bench request_paths` (target/criterion), in ns
      per request; with --baseline, the run saved with `-- --save-baseline NAME` beside
      the latest one.

  benches/report.py time --interleaved NAME [--against OTHER]
      the interleaved rounds of `cargo bench --bench request_paths -- --interleaved NAME`
      (target/request_paths/NAME.json): medians over the rounds, and the median and
      spread (min–max) over the rounds of ours' ratios; with --against, another such run
      beside it.

  benches/report.py instructions RUN.jsonl [--baseline FILE] [--update FILE] [--save FILE]
      instructions per request from gungraun's JSON output of
      `cargo bench --bench request_instructions -- --output-format=json`; with
      --baseline, compared with a baseline file, exit status 1 when a scenario grew by
      more than --threshold percent (3), when what one of ours adds over bare divided by
      what its floor adds grew by more than --ratio-threshold (0.05), or when a scenario
      is missing from either side. --update and
      --save write this run as a baseline file. scripts/instructions.sh drives this.

  benches/report.py markdown [--instructions FILE] [--interleaved NAME] [--criterion NAME]
      the tables of benches/README.md: per configuration and scenario, the figure per
      request and what it adds over bare, from a baseline file (default
      benches/instructions.baseline), an interleaved run, a criterion run.

  benches/report.py functions SCENARIO OTHER [--top N]
      where the instructions of SCENARIO go beside OTHER, per function and per request
      (callgrind_annotate of the last run of scripts/instructions.sh), sorted by the
      difference: e.g. `functions axum_router/1_thread/tower_prometheus
      axum_router/1_thread/floor_body_sizes`.
"""

import argparse
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["axum_router", "hyper_server"]
THREADS = ["1_thread", "2_threads"]
# The order of benches/scenarios/mod.rs's Config::ALL.
CONFIGS = [
    "bare",
    "floor",
    "floor_traced",
    "floor_body_sizes",
    "floor_shared",
    "tower_prometheus",
    "tower_prometheus_duration_only",
    "tower_prometheus_full_options",
    # With --features task-metrics only.
    "tower_prometheus_task_metrics",
    # With --features protobuf only.
    "tower_prometheus_native_exemplars",
    "tower_prometheus_axum_preset",
    "axum_prometheus",
    "hand_written_prometheus_client",
]
# Ours and the floor doing the same metrics (Config::floor).
FLOOR_OF = {
    "tower_prometheus": "floor_body_sizes",
    "tower_prometheus_duration_only": "floor",
    "tower_prometheus_full_options": "floor_body_sizes",
    "tower_prometheus_axum_preset": "floor_body_sizes",
    # The floor sent the same requests, a sampled `traceparent` included.
    "tower_prometheus_native_exemplars": "floor_traced",
}


def scenarios():
    for path in PATHS:
        for threads in THREADS:
            yield path, threads


def overheads(figures, unit, digits):
    """Prints, per path and thread count, each configuration's figure, what it adds over
    bare, and the ratios of ours: to the floor of the same metrics, to the duration-only
    floor (the issue's comparison) and to axum-prometheus."""
    fmt = f"{{:,.{digits}f}}"
    for path, threads in scenarios():
        row = {c: figures.get(f"{path}/{threads}/{c}") for c in CONFIGS}
        if row["bare"] is None:
            continue
        bare = row["bare"]
        added = {c: (v - bare if v is not None else None) for c, v in row.items()}
        print(f"\n{path}, {threads.replace('_', ' ')} ({unit} per request)")
        print(f"  {'configuration':<32} {unit:>12} {'added':>10} {'÷ its floor':>12} "
              f"{'÷ floor':>9} {'÷ axum-prom.':>13}")
        for config in CONFIGS:
            value = row[config]
            if value is None:
                continue
            signed = f"{{:+,.{digits}f}}".format(added[config])
            cells = [f"  {config:<32} {fmt.format(value):>12}",
                     f"{'—' if config == 'bare' else signed:>10}"]
            if config in FLOOR_OF:
                own = added.get(FLOOR_OF[config])
                cells.append(ratio(added[config], own, "×"))
                cells.append(ratio(added[config], added.get("floor"), "×", 9))
                cells.append(ratio(added[config], added.get("axum_prometheus"), "", 13))
            print(" ".join(cells))
    print("\n  added: the configuration minus bare. ÷ its floor: ours' added over the added of")
    print("  the floor doing the same metrics (target ≤ 1.3× with default options); ÷ floor:")
    print("  over the duration-only floor's; ÷ axum-prom.: over axum-prometheus's (target ≤ 0.125).")


def ratio(value, over, suffix, width=12):
    if value is None or not over:
        return f"{'':>{width}}"
    return f"{value / over:>{width - len(suffix)}.2f}{suffix}"


# --- time (criterion) -------------------------------------------------------------------

def criterion_medians(name):
    figures = {}
    for path, threads in scenarios():
        for config in CONFIGS:
            estimates = (ROOT / "target" / "criterion" / f"{path}_{threads}" / config / name
                         / "estimates.json")
            if estimates.exists():
                median = json.loads(estimates.read_text())["median"]["point_estimate"]
                figures[f"{path}/{threads}/{config}"] = median
    return figures


def interleaved_run(name):
    path = ROOT / "target" / "request_paths" / f"{name}.json"
    if not path.exists():
        sys.exit(f"no {path}: run `cargo bench --bench request_paths -- --interleaved {name}`")
    return json.loads(path.read_text())


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def round_ratios(run):
    """Per path and thread count, ours' ratios computed within each round, then their
    median and spread."""
    rounds = run["figures"]
    print(f"\nratios computed within each round ({run['rounds']} rounds of "
          f"{run['requests']:,} requests; load average {run['load_average_start']} at the "
          f"start, {run['load_average_end']} at the end): median [min to max]")
    for path, threads in scenarios():
        get = lambda config: rounds.get(f"{path}/{threads}/{config}")
        bare = get("bare")
        if bare is None:
            continue
        print(f"  {path}, {threads.replace('_', ' ')}")
        for config, floor in FLOOR_OF.items():
            ours = get(config)
            overs = [floor] + (["floor"] if floor != "floor" else []) + ["axum_prometheus"]
            for over_name in overs:
                over = get(over_name)
                if ours is None or over is None:
                    continue
                values = [(o - b) / (f - b) if f != b else float("nan")
                          for o, f, b in zip(ours, over, bare)]
                print(f"    {config:<32} ÷ {over_name:<18} {median(values):6.2f} "
                      f"[{min(values):.2f} to {max(values):.2f}]")


def time_report(args):
    if args.interleaved:
        run = interleaved_run(args.interleaved)
        new = {key: median(values) for key, values in run["figures"].items()}
        if args.against:
            other = interleaved_run(args.against)
            old = {key: median(values) for key, values in other["figures"].items()}
            side_by_side(old, new, "ns", 1, args.against, args.interleaved)
            print(f"\n=== {args.against}")
            overheads(old, "ns", 1)
            round_ratios(other)
            print(f"\n=== {args.interleaved}")
        overheads(new, "ns", 1)
        round_ratios(run)
        return
    new = criterion_medians(args.new)
    if not new:
        sys.exit(f"no criterion results named {args.new!r} under target/criterion: "
                 "run `cargo bench --bench request_paths` first")
    if args.baseline:
        old = criterion_medians(args.baseline)
        if not old:
            sys.exit(f"no criterion baseline {args.baseline!r} under target/criterion")
        side_by_side(old, new, "ns", 1, args.baseline, args.new)
        print(f"\n=== {args.baseline}")
        overheads(old, "ns", 1)
        print(f"\n=== {args.new}")
    overheads(new, "ns", 1)


def side_by_side(old, new, unit, digits, old_name, new_name):
    fmt = f"{{:,.{digits}f}}"
    print(f"{'scenario':<56} {old_name:>12} {new_name:>12} {'change':>8}")
    for key in sorted(set(old) | set(new), key=order):
        a, b = old.get(key), new.get(key)
        change = f"{100 * (b - a) / a:+.1f}%" if a and b is not None else ""
        print(f"{key:<56} {fmt.format(a) if a is not None else '—':>12} "
              f"{fmt.format(b) if b is not None else '—':>12} {change:>8}")


def order(key):
    path, threads, config = key.split("/")
    rank = lambda items, item: items.index(item) if item in items else len(items)
    return (rank(PATHS, path), rank(THREADS, threads), rank(CONFIGS, config), key)


# --- instructions (gungraun) ------------------------------------------------------------

def requests_per_thread():
    source = (ROOT / "benches" / "request_instructions.rs").read_text()
    match = re.search(r"pub const REQUESTS: u64 = ([\d_]+);", source)
    if not match:
        sys.exit("benches/request_instructions.rs: no `pub const REQUESTS: u64 = N;`")
    return int(match.group(1).replace("_", ""))


def gungraun_run(path):
    """Instructions per request of each benchmark of a gungraun JSON output."""
    per_thread = requests_per_thread()
    figures = {}
    for line in Path(path).read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        function = record["function_name"]  # e.g. axum_router_2_threads
        match = re.fullmatch(r"(\w+?)_(1_thread|2_threads)", function)
        if not match:
            sys.exit(f"unexpected benchmark function {function!r}")
        threads = 1 if match.group(2) == "1_thread" else 2
        callgrind = [p for p in record["profiles"] if p["tool"] == "Callgrind"]
        instructions = callgrind[0]["data"]["total"]["metrics"]["Ir"]["values"]["new"]
        key = f"{match.group(1)}/{match.group(2)}/{record['id']}"
        figures[key] = instructions / (per_thread * threads)
    if not figures:
        sys.exit(f"{path}: no benchmark in gungraun's output")
    return figures


RECORDED_WITH = "# recorded with: "


def recorded_with(path):
    for line in Path(path).read_text().splitlines():
        if line.startswith(RECORDED_WITH):
            return line[len(RECORDED_WITH):]
    return None


def read_baseline(path):
    figures = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, value = line.split()
            figures[key] = float(value)
    return figures


def write_baseline(path, figures, environment):
    lines = [
        "# Instructions per request (callgrind, through gungraun), of",
        "# benches/request_instructions.rs: see benches/README.md.",
        "# Written by `scripts/instructions.sh --update`; scripts/test.sh fails when a",
        "# scenario grows by more than 3% over it. Changing it is a commit that says why.",
        f"{RECORDED_WITH}{environment or 'unknown'}",
        f"# {'scenario':<58} instructions/request",
    ]
    lines += [f"{key:<60} {figures[key]:.1f}" for key in sorted(figures, key=order)]
    Path(path).write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def instructions_report(args):
    new = gungraun_run(args.run)
    failed = False
    if args.baseline:
        old = read_baseline(args.baseline)
        print(f"instructions per request: {args.baseline} → this run "
              f"(fails above +{args.threshold:g}%)")
        then = recorded_with(args.baseline)
        if args.environment and then and then != args.environment:
            print(f"note: the baseline was recorded with {then};\n"
                  f"      this run uses {args.environment}:\n"
                  "      another compiler, allocator or valgrind moves the counts too.")
        print()
        print(f"{'scenario':<56} {'baseline':>10} {'now':>10} {'change':>8} "
              f"{'added over bare':>22}")
        for key in sorted(set(old) | set(new), key=order):
            a, b = old.get(key), new.get(key)
            if a is None or b is None:
                verdict = "NOT IN THE BASELINE" if a is None else "NOT RUN"
                failed = True
                cell = lambda v: "—" if v is None else f"{v:,.0f}"
                print(f"{key:<56} {cell(a):>10} {cell(b):>10} {'':>8} {'':>22}  {verdict}")
                continue
            change = 100 * (b - a) / a
            verdict = ""
            if change > args.threshold:
                verdict, failed = "REGRESSED", True
            elif change < -args.threshold:
                verdict = "improved (update the baseline to keep it)"
            # What the configuration adds over bare, before → now: informative (only the
            # total of a scenario fails the check), and what a change of a layer moves.
            bare = key.rsplit("/", 1)[0] + "/bare"
            added = ""
            if not key.endswith("/bare") and bare in old and bare in new:
                added = f"{a - old[bare]:+,.0f} → {b - new[bare]:+,.0f}"
            print(f"{key:<56} {a:>10,.0f} {b:>10,.0f} {change:>+7.2f}% {added:>22}  {verdict}")
        failed |= ratio_gate(old, new, args.ratio_threshold)
    overheads(new, "instructions", 0)
    for path in (args.save, args.update):
        if path:
            write_baseline(path, new, args.environment)
    if failed and not args.update:
        print(f"\nFAILED: a scenario grew by more than {args.threshold:g}% over "
              f"{args.baseline}, a ratio to its floor by more than {args.ratio_threshold:g}, "
              "or the scenarios changed.")
        print("If the change is intended, update the baseline deliberately:")
        print("  scripts/instructions.sh --update")
        print("and commit benches/instructions.baseline with a message that says why.")
        sys.exit(1)


def floor_ratios(figures):
    """Per scenario of ours: what it adds over bare divided by what its floor adds."""
    ratios = {}
    for path, threads in scenarios():
        prefix = f"{path}/{threads}/"
        bare = figures.get(prefix + "bare")
        if bare is None:
            continue
        for config, floor in FLOOR_OF.items():
            ours, own = figures.get(prefix + config), figures.get(prefix + floor)
            if ours is not None and own is not None and own != bare:
                ratios[prefix + config] = ((ours - bare) / (own - bare), floor)
    return ratios


def ratio_gate(old, new, threshold):
    """The gate on the ratios the performance contract sets: a scenario's total can stay
    within its 3% while what ours adds grows by far more (the whole request is ten times
    what the layer adds). Fails when a ratio to its floor exceeds the baseline's by more
    than `threshold`, and says which."""
    before, now = floor_ratios(old), floor_ratios(new)
    print(f"\nadded over bare ÷ its floor's added: baseline → this run "
          f"(fails above +{threshold:g})")
    failed = False
    for key in sorted(now, key=order):
        ratio_now, floor = now[key]
        if key not in before:
            print(f"  {key:<54} {'—':>7} → {ratio_now:.3f}  (÷ {floor})  NOT IN THE BASELINE")
            failed = True
            continue
        ratio_then = before[key][0]
        verdict = ""
        if ratio_now > ratio_then + threshold:
            verdict, failed = "RATIO REGRESSED", True
        print(f"  {key:<54} {ratio_then:.3f} → {ratio_now:.3f}  (÷ {floor})  {verdict}")
    return failed


# --- markdown (the README's tables) -------------------------------------------------------

def markdown_table(figures, digits):
    fmt = f"{{:,.{digits}f}}"
    columns = [(path, threads) for path, threads in scenarios()
               if f"{path}/{threads}/bare" in figures]
    header = " | ".join(f"{path.replace('_', ' ')}, {threads.replace('_', ' ')} | added"
                        for path, threads in columns)
    print(f"| configuration | {header} |")
    print("|---|" + "---:|---:|" * len(columns))
    for config in CONFIGS:
        cells = []
        for path, threads in columns:
            value = figures.get(f"{path}/{threads}/{config}")
            bare = figures[f"{path}/{threads}/bare"]
            if value is None:
                cells += ["", ""]
                continue
            added = "—" if config == "bare" else f"{{:+,.{digits}f}}".format(value - bare)
            cells += [fmt.format(value), added]
        name = f"**{config}**" if config == "tower_prometheus" else config
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print("| ours, added ÷ | " + " | ".join(f"{p.replace('_', ' ')}, {t.replace('_', ' ')}"
                                           for p, t in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for config, floor in FLOOR_OF.items():
        # The native + exemplars scenario's requests carry a `traceparent`: its fair
        # floor is the traced one, whose requests carry the same.
        traced = ["floor_traced"] if config == "tower_prometheus_native_exemplars" else []
        for over in dict.fromkeys([floor, "floor", *traced, "floor_shared", "axum_prometheus"]):
            cells = []
            for path, threads in columns:
                get = lambda c: figures.get(f"{path}/{threads}/{c}")
                bare, ours, other = get("bare"), get(config), get(over)
                if None in (bare, ours, other) or other == bare:
                    cells.append("")
                else:
                    cells.append(f"{(ours - bare) / (other - bare):.2f}")
            print(f"| {config} ÷ {over} | " + " | ".join(cells) + " |")
    print()


def markdown_report(args):
    if args.instructions or not (args.interleaved or args.criterion):
        path = args.instructions or ROOT / "benches" / "instructions.baseline"
        print(f"instructions per request ({path}):\n")
        markdown_table(read_baseline(path), 0)
    if args.interleaved:
        run = interleaved_run(args.interleaved)
        print(f"ns per request, medians of {run['rounds']} interleaved rounds of "
              f"{run['requests']:,} requests (load average {run['load_average_start']} → "
              f"{run['load_average_end']}):\n")
        markdown_table({key: median(values) for key, values in run["figures"].items()}, 0)
    if args.criterion:
        print(f"ns per request, criterion medians ({args.criterion}):\n")
        markdown_table(criterion_medians(args.criterion), 0)


# --- functions (callgrind_annotate) ------------------------------------------------------

def callgrind_functions(scenario):
    """Instructions per request of each function of a scenario's last callgrind run."""
    path, threads, config = scenario.split("/")
    directory = (ROOT / "target" / "gungraun" / "tower-prometheus" / "request_instructions"
                 / path / f"{path}_{threads}.{config}")
    outs = sorted(directory.glob("callgrind.*.out"))
    if not outs:
        sys.exit(f"no callgrind output in {directory}: run scripts/instructions.sh first")
    requests = requests_per_thread() * (2 if threads == "2_threads" else 1)
    functions = {}
    for out in outs:  # one per thread on two threads
        text = subprocess.run(["callgrind_annotate", "--threshold=100", "--show=Ir", str(out)],
                              check=True, capture_output=True, text=True).stdout
        for line in text.splitlines():
            match = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(\S.*)$", line)
            if not match or match.group(2) == "PROGRAM TOTALS":
                continue
            name = re.sub(r"^\S*?:(?=[^:])", "", match.group(2).split(" [")[0], count=1)
            functions[name] = functions.get(name, 0) + int(match.group(1).replace(",", ""))
    return {name: ir / requests for name, ir in functions.items()}


def functions_report(args):
    a, b = callgrind_functions(args.scenario), callgrind_functions(args.other)
    diff = {name: a.get(name, 0) - b.get(name, 0) for name in set(a) | set(b)}
    print(f"instructions per request by function (exclusive): {args.scenario} − {args.other}")
    print(f"  total {sum(a.values()):,.0f} − {sum(b.values()):,.0f} = "
          f"{sum(a.values()) - sum(b.values()):+,.0f}\n")
    print(f"  {'difference':>10} {args.scenario.rsplit('/', 1)[1][:14]:>14} "
          f"{args.other.rsplit('/', 1)[1][:14]:>14}  function")
    for name in sorted(diff, key=lambda n: -abs(diff[n]))[:args.top]:
        print(f"  {diff[name]:>+10,.0f} {a.get(name, 0):>14,.0f} {b.get(name, 0):>14,.0f}  "
              f"{name[:150]}")


def main():
    # Piped into `head`, stop quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    time = sub.add_parser("time", help="criterion's medians of request_paths")
    time.add_argument("--baseline", help="a criterion baseline to show beside the latest run")
    time.add_argument("--new", default="new", help="the criterion run to show (default: new)")
    time.add_argument("--interleaved", help="an interleaved run to show instead of criterion's")
    time.add_argument("--against", help="another interleaved run to show beside it")
    instructions = sub.add_parser("instructions", help="gungraun's counts of request_instructions")
    instructions.add_argument("run", help="gungraun's JSON output (one line per benchmark)")
    instructions.add_argument("--baseline", help="a baseline file to compare with")
    instructions.add_argument("--update", help="write this run to this baseline file")
    instructions.add_argument("--save", help="also write this run to this file")
    instructions.add_argument("--environment", help="the toolchain, recorded in baselines")
    instructions.add_argument("--threshold", type=float, default=3.0,
                              help="the growth in percent that fails (default: 3)")
    instructions.add_argument("--ratio-threshold", type=float, default=0.05,
                              help="the growth of a ratio to its floor that fails "
                                   "(default: 0.05)")
    markdown = sub.add_parser("markdown", help="the tables of benches/README.md")
    markdown.add_argument("--instructions", help="a baseline file (default: the committed one)")
    markdown.add_argument("--interleaved", help="an interleaved run of request_paths")
    markdown.add_argument("--criterion", help="a criterion run of request_paths (e.g. new)")
    functions = sub.add_parser("functions", help="per-function difference of two scenarios")
    functions.add_argument("scenario", help="e.g. axum_router/1_thread/tower_prometheus")
    functions.add_argument("other", help="e.g. axum_router/1_thread/floor_body_sizes")
    functions.add_argument("--top", type=int, default=20, help="functions shown (default: 20)")
    args = parser.parse_args()
    if args.command == "time":
        time_report(args)
    elif args.command == "functions":
        functions_report(args)
    elif args.command == "markdown":
        markdown_report(args)
    else:
        instructions_report(args)


if __name__ == "__main__":
    main()
