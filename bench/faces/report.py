"""The faces benchmark's verdict: each face's median requests/s over the rounds against chat's,
and its errors. Exits 1 when a target is missed."""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict

TARGET = 0.85  # of chat's requests/s, for the faces issue 20 names


def main() -> None:
    with open(sys.argv[1]) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    rps: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    for r in rows:
        rps[r["face"]].append(float(r["rps"]))
        errors[r["face"]] += int(r["non2xx"]) + int(r["sock_err"])
    chat = statistics.median(rps["chat"])
    missed = 0
    print("\nface\tmedian rps\t/ chat\terrors\tverdict")
    for face, values in rps.items():
        median = statistics.median(values)
        ratio = median / chat
        ok = errors[face] == 0 and (face == "chat" or ratio >= TARGET)
        missed += not ok
        print(f"{face}\t{median:.0f}\t{ratio:.2f}\t{errors[face]}\t{'ok' if ok else 'MISSED'}")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
