#!/usr/bin/env python3
"""Prints the criterion results under target/criterion as a markdown table:
benchmark, median, 95% interval of the median, and throughput per core.

Usage: cargo bench --bench encap --bench fdb && python3 benches/table.py
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def fmt(ns: float) -> str:
    if ns >= 1000:
        return f"{ns / 1000:.2f} µs"
    return f"{ns:.1f} ns"


rows = []
for est in sorted(root.glob("**/new/estimates.json")):
    bench = est.parent.parent
    meta = json.loads((est.parent / "benchmark.json").read_text())
    e = json.loads(est.read_text())["median"]
    ns = e["point_estimate"]
    lo, hi = e["confidence_interval"]["lower_bound"], e["confidence_interval"]["upper_bound"]
    thr = meta.get("throughput") or {}
    if "Bytes" in thr:
        per = f"{thr['Bytes'] / ns:.1f} GB/s"
    elif "Elements" in thr:
        per = f"{thr['Elements'] * 1e3 / ns:.1f} M/s"
    else:
        per = ""
    rows.append((meta["full_id"], fmt(ns), f"{fmt(lo)} – {fmt(hi)}", per))

print("| benchmark | median | 95% CI of median | per core |")
print("|---|---:|---:|---:|")
for r in rows:
    print("| " + " | ".join(r) + " |")
