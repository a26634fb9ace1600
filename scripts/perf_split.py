#!/usr/bin/env python3
"""Splits a router's CPU samples by whose code ran: Tollgate's (with the Rust crates it calls),
SHA-256, librdkafka, the allocator, libc and the kernel.

Reads the text of

    perf report -i perf.data --no-children -g none --sort pid,comm,dso,sym --stdio

on stdin (a system-wide `perf record -a` taken during the router phase of `tollgate bench`),
keeps the router's threads (`tollgate*`, librdkafka's `rdk:*`, rdkafka's producer threads) and
prints each share of their samples, overall and per thread group. Symbols are classified by
name: `rd_*` is librdkafka, `LZ4*`/`XXH*` the lz4 library bundled in it, `mi_*`/`_mi_*` and
C++ `operator new/delete` the allocator (mimalloc), anything in libc, ld.so or the vDSO is libc,
`[kernel.kallsyms]` the kernel.
"""

import collections
import re
import sys

LINE = re.compile(r"\s*([\d.]+)%\s+\d+:.+?\s{2,}(.+?)\s{2,}(\[[^\]]+\]|\S+)\s+\[.\]\s+(.*)$")
ROUTER_THREADS = ("tollgate", "rdk:", "producer")


def owner(dso: str, symbol: str) -> str:
    if dso.startswith("[kernel"):
        return "kernel"
    if symbol.startswith(("rd_", "mtx_", "cnd_", "thrd_")):
        return "librdkafka"
    if symbol.startswith(("LZ4", "XXH")):
        # The lz4 library bundled in librdkafka: record compression (since session 17).
        return "lz4 (in librdkafka)"
    if symbol.startswith(("mi_", "_mi_", "operator new", "operator delete")):
        return "allocator"
    if dso.startswith(("libc", "ld-")) or dso == "[vdso]":
        return "libc"
    if "sha2" in symbol:
        return "SHA-256"
    return "Tollgate and its Rust crates"


def main() -> None:
    overall = collections.Counter()
    by_thread = collections.defaultdict(collections.Counter)
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        share, comm, dso, symbol = float(m[1]), m[2].strip(), m[3], m[4].strip()
        if not comm.startswith(ROUTER_THREADS):
            continue
        who = owner(dso, symbol)
        overall[who] += share
        group = "librdkafka threads" if comm.startswith("rdk:") else comm
        by_thread[group][who] += share
    total = sum(overall.values())
    if total == 0:
        sys.exit("no samples of the router's threads")
    print(f"router threads: {total:.1f}% of all samples")
    for who, share in overall.most_common():
        print(f"  {who:<30} {100 * share / total:5.1f}%")
    for group, shares in sorted(by_thread.items(), key=lambda g: -sum(g[1].values())):
        part = sum(shares.values())
        split = ", ".join(f"{who} {100 * s / part:.0f}%" for who, s in shares.most_common())
        print(f"{group} ({100 * part / total:.0f}% of the router's samples): {split}")


if __name__ == "__main__":
    main()
