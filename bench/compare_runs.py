#!/usr/bin/env python3
"""Side by side: `wideattn bench --json` records of several builds of the same suite.

Each argument is NAME=FILE[,FILE...]: the runs of one build (for an A/B, run the builds in
turns, A B A B, so that clock and thermal drift fall on both; scripts/gpu/ab_bench.sh does).
Per problem and build the table gives the lowest median over its runs, its % of the ceiling the
suite reports (matmul or bandwidth, measured in the same run), and the ratio to the first build
(> 1: faster). A result whose sampled rows miss the f64 oracle (rel_error above 2e-2) is
flagged ERROR. --host adds each build's host time to issue a call (host_s_per_call).

usage: python3 bench/compare_runs.py main=a1.json,a2.json branch=b1.json,b2.json [--markdown] [--host]
"""
import json
import sys


def load(spec):
    name, _, files = spec.partition("=")
    if not files:
        sys.exit(f"compare_runs: '{spec}' is not NAME=FILE[,FILE...]")
    runs = []
    for path in files.split(","):
        with open(path) as f:
            runs.append(json.load(f))
    return name, runs


def best(runs):
    """Per problem name: the record with the lowest median over the runs."""
    out = {}
    for run in runs:
        for p in run["problems"]:
            if "median_s" not in p:
                continue
            kept = out.get(p["name"])
            if kept is None or p["median_s"] < kept["median_s"]:
                out[p["name"]] = p
    return out


def ceiling_pct(p):
    key = "pct_of_bandwidth" if p.get("bound") == "memory" else "pct_of_matmul"
    return p.get(key)


def main(argv):
    markdown = "--markdown" in argv
    host = "--host" in argv
    specs = [a for a in argv if a not in ("--markdown", "--host")]
    if len(specs) < 2:
        sys.exit(__doc__)
    builds = [load(s) for s in specs]
    tables = [(name, best(runs)) for name, runs in builds]
    names = []
    for _, table in tables:
        names += [n for n in table if n not in names]
    header = ["problem"] + [f"{b} (us, % ceiling{', x first' if i else ''})" for i, (b, _) in enumerate(tables)]
    rows = []
    for n in names:
        first = tables[0][1].get(n)
        cells = [n]
        for i, (_, table) in enumerate(tables):
            p = table.get(n)
            if p is None:
                cells.append("-")
                continue
            cell = f"{p['median_s'] * 1e6:.1f}"
            pct = ceiling_pct(p)
            if pct is not None:
                cell += f" ({pct:.1f}%)"
            if i and first is not None:
                cell += f" {first['median_s'] / p['median_s']:.3f}x"
            if (p.get("rel_error") or 0.0) > 2e-2:  # bf16 results sit near 3e-3
                cell += " ERROR"
            if host and p.get("host_s_per_call") is not None:
                cell += f", host {p['host_s_per_call'] * 1e6:.1f} us"
            cells.append(cell)
        rows.append(cells)
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
        for r in [header] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main(sys.argv[1:])
