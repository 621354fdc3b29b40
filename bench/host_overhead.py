#!/usr/bin/env python3
"""Per-call host cost of wideattn.attention from Python, against the same call from C++.

The problem is a tiny decode step, so that the host's own work shows: one sequence, one new
token, 8 query heads over 2 KV heads, head_dim 64, 64 keys; float32 on the CPU (the case and the
targets of issue 11: at most 20 us per call from PyTorch and 15 us from NumPy on the CPU
machine), --cuda-dtype (default bfloat16) on CUDA.

Rows, per device:
  C++ (wideattn run)      the CLI's median per call (`--cli`, default build/wideattn; skipped
                          when absent). On the CPU that is the whole call (it rotates over 32
                          KV copies); on CUDA the host's time to issue one call.
  extension call          _wideattn.attention with everything prepared: the floor under Python
  NumPy                   wideattn.attention on NumPy arrays, out allocated / out= given (CPU)
  PyTorch eager           wideattn.attention on torch tensors, out allocated / out= given
  PyTorch operator        torch.ops.wideattn.attention called directly: the custom operator's
                          dispatch, what a compiled graph runs (for comparison)

Each Python row: warm-up, then --rounds rounds of --calls back-to-back calls, each call timed
with time.perf_counter; a round's figure is the median call. The table gives the median of the
rounds' medians and the smallest. On CUDA a call's time is the host's time to issue it; the
'b2b' column is a round's wall time over its calls, with a final synchronize, on every device.

    python3 bench/host_overhead.py [--calls 1000] [--rounds 5] [--devices cpu,cuda]
                                   [--cuda-dtype bfloat16] [--cli build/wideattn] [--json out.json]

The C++ row needs the CLI (`ninja -C build wideattn_cli`); the rest needs the package installed
(`pip install .`) or PYTHONPATH=python with WIDEATTN_BUILD_DIR set.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np

import wideattn
from wideattn._native import native

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Q_HEADS, KV_HEADS, HEAD_DIM, KV_LENGTH = 8, 2, 64, 64
OFFSETS, LENGTHS = [0, 1], [KV_LENGTH]


def time_calls(fn: Callable[[], object], calls: int, rounds: int, warmup: int,
               sync: Optional[Callable[[], None]] = None) -> Dict[str, object]:
    """Median per-call time (us) of each round of back-to-back calls, and each round's wall time
    per call including a final `sync`."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    clock = time.perf_counter
    medians, b2b = [], []
    for _ in range(rounds):
        times = [0.0] * calls
        start = clock()
        for i in range(calls):
            t0 = clock()
            fn()
            times[i] = clock() - t0
        if sync:
            sync()
        b2b.append((clock() - start) / calls * 1e6)
        medians.append(statistics.median(times) * 1e6)
    return {"median_us": statistics.median(medians), "best_us": min(medians),
            "b2b_us": statistics.median(b2b), "round_medians_us": medians}


def cli_row(cli: str, device: str, dtype: str, calls: int) -> Optional[Dict[str, object]]:
    """The C++ CLI's figure for the same problem, or None when it is not there."""
    if not cli or not os.path.exists(cli):
        return None
    cli_dtype = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}[dtype]
    command = [cli, "run", "--backend", device, "--dtype", cli_dtype, "--q-heads", str(Q_HEADS),
               "--kv-heads", str(KV_HEADS), "--head-dim", str(HEAD_DIM), "--kv-length",
               str(KV_LENGTH), "--suffix", "1", "--repeat", str(calls),
               "--warmup", "100"]
    try:
        text = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return {"path": "C++ (wideattn run)", "error": str(error)}
    units = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
    pattern = (r"host issues a call in ([\d.]+)\s*(ns|us|ms|s)\b" if device == "cuda"
               else r"^\s*time\s+([\d.]+)\s*(ns|us|ms|s)\b")
    match = re.search(pattern, text, re.M)
    if not match:
        return {"path": "C++ (wideattn run)", "error": "no time in its output: " + text[-300:]}
    value = float(match.group(1)) * units[match.group(2)]
    return {"path": "C++ (wideattn run)", "median_us": value, "best_us": value, "b2b_us": None,
            "command": " ".join(command)}


def numpy_rows(calls: int, rounds: int, warmup: int) -> List[Dict[str, object]]:
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, Q_HEADS, HEAD_DIM)).astype(np.float32)
    k = rng.standard_normal((1, KV_LENGTH, KV_HEADS, HEAD_DIM)).astype(np.float32)
    v = rng.standard_normal((1, KV_LENGTH, KV_HEADS, HEAD_DIM)).astype(np.float32)
    out = np.empty_like(q)
    attention = wideattn.attention
    direct = native.attention
    floor = lambda: direct(  # noqa: E731
        q, k, v, out, None, OFFSETS, LENGTHS, True, 0, 0, 0, None, None, 0.0, None, "auto", 0,
        False, False)
    try:
        floor()
    except TypeError:  # the extension before issue 11: tree parts apart, scalars pre-converted
        floor = lambda: direct(  # noqa: E731
            q, k, v, out, None, OFFSETS, LENGTHS, True, 0, 0, 0, None, None, None, None, 0.0,
            math.nan, "auto", 0, False)
    rows = [
        ("extension call (floor)", floor),
        ("NumPy", lambda: attention(q, k, v, query_offsets=OFFSETS, kv_lengths=LENGTHS)),
        ("NumPy, out=", lambda: attention(q, k, v, query_offsets=OFFSETS, kv_lengths=LENGTHS,
                                          out=out)),
    ]
    return [run_row(name, fn, calls, rounds, warmup) for name, fn in rows]


def run_row(name: str, fn: Callable[[], object], calls: int, rounds: int, warmup: int,
            sync: Optional[Callable[[], None]] = None) -> Dict[str, object]:
    try:
        return dict(path=name, **time_calls(fn, calls, rounds, warmup, sync))
    except Exception as error:  # noqa: BLE001 - a row that cannot run says why
        return {"path": name, "error": f"{type(error).__name__}: {error}"}


def torch_rows(torch, device: str, dtype: str, calls: int, rounds: int,
               warmup: int) -> List[Dict[str, object]]:
    g = torch.Generator().manual_seed(0)
    dt = getattr(torch, dtype)
    q = torch.randn(1, Q_HEADS, HEAD_DIM, generator=g).to(device, dt)
    k = torch.randn(1, KV_LENGTH, KV_HEADS, HEAD_DIM, generator=g).to(device, dt)
    v = torch.randn(1, KV_LENGTH, KV_HEADS, HEAD_DIM, generator=g).to(device, dt)
    out = torch.empty_like(q)
    attention = wideattn.attention
    sync = torch.cuda.synchronize if device == "cuda" else None
    nan = math.nan
    rows = [
        ("PyTorch eager", lambda: attention(q, k, v, query_offsets=OFFSETS, kv_lengths=LENGTHS)),
        ("PyTorch eager, out=", lambda: attention(q, k, v, query_offsets=OFFSETS,
                                                  kv_lengths=LENGTHS, out=out)),
        ("PyTorch operator (torch.ops)", lambda: torch.ops.wideattn.attention(
            q, k, v, OFFSETS, LENGTHS, True, 0, 0, 0, None, None, None, None, 0.0, nan, "auto",
            False)),
    ]
    return [run_row(name, fn, calls, rounds, warmup, sync) for name, fn in rows]


def machine() -> Dict[str, object]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: Dict[str, object] = {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
                               "numpy": np.__version__}
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="back-to-back calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per row")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls first")
    parser.add_argument("--devices", default="cpu,cuda", help="cpu, cuda or both (cuda: when present)")
    parser.add_argument("--cuda-dtype", default="bfloat16", choices=("float32", "float16", "bfloat16"),
                        help="dtype of the CUDA rows (the CPU rows are float32)")
    parser.add_argument("--cli", default=os.path.join(REPO, "build", "wideattn"),
                        help="the wideattn CLI for the C++ row ('' to skip)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: F811
        except ImportError:
            torch = None
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    record: Dict[str, object] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "problem": f"decode: 1 sequence, 1 new token, {Q_HEADS}/{KV_HEADS} heads, head_dim "
                   f"{HEAD_DIM}, {KV_LENGTH} keys (float32 on the CPU, --cuda-dtype on CUDA)",
        "calls": args.calls, "rounds": args.rounds, "machine": machine(),
        "torch": getattr(torch, "__version__", None), "rows": [],
    }
    rows: List[Dict[str, object]] = record["rows"]  # type: ignore[assignment]
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
    for device in devices:
        if device == "cuda":
            usable = (torch is not None and torch.cuda.is_available() and wideattn.cuda_built
                      and wideattn.backend_available("cuda")[0])
            if not usable:
                print("cuda: skipped (no GPU, no PyTorch CUDA, or a build without the CUDA backend)")
                continue
        dtype = args.cuda_dtype if device == "cuda" else "float32"
        device_rows: List[Dict[str, object]] = []
        cli = cli_row(args.cli, device, dtype, args.calls)
        if cli:
            device_rows.append(cli)
        if device == "cpu":
            device_rows += numpy_rows(args.calls, args.rounds, args.warmup)
        if torch is not None:
            device_rows += torch_rows(torch, device, dtype, args.calls, args.rounds, args.warmup)
        for row in device_rows:
            row["device"] = device
            row["dtype"] = dtype
        rows += device_rows

    m = record["machine"]
    print(f"wideattn host cost per call: {record['problem']}")
    print(f"{record['date']}; {m['cpu']}, {m['cores']} cores, load {m.get('load_average_1min')}; "
          f"Python {m['python']}, NumPy {m['numpy']}, PyTorch {record['torch']}")
    print(f"median call of {args.calls} back-to-back calls; median and best of {args.rounds} rounds\n")
    print("| device | path | median us | best us | b2b us |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        where = f"{row['device']} {row['dtype']}"
        if "error" in row:
            print(f"| {where} | {row['path']} | {row['error']} | | |")
            continue
        b2b = row.get("b2b_us")
        print(f"| {where} | {row['path']} | {row['median_us']:.1f} | {row['best_us']:.1f} | "
              f"{'' if b2b is None else f'{b2b:.1f}'} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
