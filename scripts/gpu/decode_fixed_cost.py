"""A decode call's fixed cost and streaming rate: times one batch-1 decode step over a range of KV
lengths with `wideattn run` (median of its timed calls, KV copies rotated past the cache) and
fits time = fixed + bytes / rate by least squares. The slope is the rate the kernels stream K/V
at once they run; the intercept what a call costs besides its bytes (launches, the first tiles'
latency, the tail, the merge). docs/design.md, "A batch-1 call's fixed cost", has the first
such table (H200, 2026-12-03).

    python3 scripts/gpu/decode_fixed_cost.py WIDEATTN_BINARY [--backend cuda] [--shapes E4B,31B]
        [--lengths 8192,16384,32768,65536,131072] [--caches bf16,fp8] [--repeat 30]
"""
import argparse
import re
import subprocess
import sys
from typing import List, Optional, Tuple

# Gemma 4 global layers (query heads, KV heads), head_dim 512.
SHAPES = {"E2B": (8, 1), "E4B": (8, 2), "26B": (16, 2), "31B": (32, 4)}
TIME = re.compile(r"^\s*time\s+([0-9.]+)\s+(us|ms|s)\b", re.MULTILINE)
KERNEL = re.compile(r"^\s*kernel\s+(.*)$", re.MULTILINE)
SCALE = {"us": 1.0, "ms": 1e3, "s": 1e6}


def kv_bytes(kv_heads: int, length: int, cache: str) -> float:
    """K and V rows a batch-1 step reads: length x KV heads x 512 columns, 1 or 2 bytes each."""
    return 2.0 * length * kv_heads * 512 * (1 if cache == "fp8" else 2)


def time_step(binary: str, backend: str, shape: str, length: int, cache: str, repeat: int
              ) -> Tuple[Optional[float], str]:
    q_heads, kv_heads = SHAPES[shape]
    command = [binary, "run", "--backend", backend, "--q-heads", str(q_heads), "--kv-heads", str(kv_heads),
               "--kv-length", str(length), "--suffix", "1", "--repeat", str(repeat)]
    if cache == "fp8":
        command.append("--kv-fp8")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    text = result.stdout + result.stderr
    found, kernel = TIME.search(text), KERNEL.search(text)
    if result.returncode != 0 or not found:
        return None, f"rc {result.returncode}: {text.strip().splitlines()[-1] if text.strip() else 'no output'}"
    return float(found.group(1)) * SCALE[found.group(2)], kernel.group(1).strip() if kernel else ""


def fit(points: List[Tuple[float, float]]) -> Tuple[float, float]:
    """Least squares time_us = fixed_us + bytes / rate: (fixed in us, rate in GB/s)."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx  # us per byte
    return mean_y - slope * mean_x, 1e-3 / slope  # bytes / us = MB/s; / 1e3 = GB/s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary")
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--shapes", default="E4B,31B")
    parser.add_argument("--lengths", default="8192,16384,32768,65536,131072")
    parser.add_argument("--caches", default="bf16,fp8")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"--shapes: unknown {unknown}, expected some of {sorted(SHAPES)}")
    caches = [c for c in args.caches.split(",") if c]
    if not caches or any(c not in ("bf16", "fp8") for c in caches):
        parser.error(f"--caches: {caches}, expected bf16 and/or fp8")
    lengths = [int(x) for x in args.lengths.split(",") if x]
    if len(lengths) < 2:
        parser.error("--lengths: at least two lengths to fit a line")
    print(f"| shape | cache | {' | '.join(f'{n // 1024}K' for n in lengths)} | streaming | fixed (intercept) |")
    print(f"|---|---|{'---|' * len(lengths)}---|---|")
    status = 0
    for shape in shapes:
        for cache in caches:
            points, cells = [], []
            for length in lengths:
                us, note = time_step(args.binary, args.backend, shape, length, cache, args.repeat)
                if us is None:
                    cells.append("-")
                    print(f"{shape} {cache} kv {length}: {note}", file=sys.stderr)
                    status = 1
                    continue
                cells.append(f"{us:.1f} us")
                points.append((kv_bytes(SHAPES[shape][1], length, cache), us))
            if len(points) >= 2:
                fixed, rate = fit(points)
                tail = f"{rate:.0f} GB/s | {fixed:.1f} us"
            else:
                tail = "- | -"
            print(f"| {shape} | {cache} | {' | '.join(cells)} | {tail} |", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
