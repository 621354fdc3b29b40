"""Warp-stall summary of an Nsight Compute source page (ncu --page source --csv --print-source
sass, as scripts/gpu/profile_fused.sh writes it): samples per stall reason over the kernel, then
the instructions with the most samples and their main reason.

    python3 scripts/gpu/ncu_stalls.py PROFILE.sass.csv [TOP_INSTRUCTIONS]
"""
import collections
import csv
import sys


def main(path: str, top: int) -> None:
    rows = list(csv.reader(open(path)))
    header = rows[1]
    column = {name: i for i, name in enumerate(header)}
    data = [r for r in rows[2:] if len(r) >= len(header)]
    reasons = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    totals = collections.Counter()
    for r in data:
        for h in reasons:
            totals[h] += int(r[column[h]] or 0)
    total = sum(totals.values())
    print("total samples", total)
    for h, v in totals.most_common(12):
        print(f"{h:28s} {v:8d} {100 * v / max(total, 1):5.1f}%")
    hot = []
    for r in data:
        samples = int(r[column["Warp Stall Sampling (All Samples)"]] or 0)
        main_reason = max(reasons, key=lambda h: int(r[column[h]] or 0))
        hot.append((samples, r[column["Address"]][-5:], r[column["Source"]].strip()[:70], main_reason,
                    r[column["Instructions Executed"]]))
    for item in sorted(hot, reverse=True)[:top]:
        print(item)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40)
