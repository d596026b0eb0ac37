"""The reference page's examples, runnable: `python -m wlnet.examples [N ...]`.

`page` holds the layer's own examples (scenarios 1-8, 11), `applications` the two trained
nets (9, 10), `sequences` three sequence models beyond the page (12-14), `blocks` three
applications of attention, CTC and the Tokens encoder (15-17); each scenario prints
what it shows and returns its values (the tests pin them)."""

from __future__ import annotations

import time

from . import applications, blocks, page, sequences  # noqa: F401  (register their scenarios)
from .registry import SCENARIOS


def main(argv: list[str]) -> int:
    wanted = [int(a) for a in argv] or sorted(SCENARIOS)
    start = time.perf_counter()
    for n in wanted:
        if n not in SCENARIOS:
            print(f"no scenario {n}; the scenarios are {sorted(SCENARIOS)}")
            return 2
        title, fn = SCENARIOS[n]
        print(f"\n[{n}] {title}")
        t0 = time.perf_counter()
        fn()
        print(f"  ({time.perf_counter() - t0:.1f} s)")
    print(f"\nall {len(wanted)} scenarios ran in {time.perf_counter() - start:.1f} s")
    return 0


__all__ = ["SCENARIOS", "main"]
