"""decide() over 100,000 node facts on one core: decisions per second.

Prints two figures: validating raw facts and deciding (what the API and importer do), and
deciding from already-parsed facts (the engine alone). Run: python bench/bench_decide.py [N]
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._fleet import fleet_rows  # noqa: E402
from gates.facts import parse_facts  # noqa: E402
from gates.plans import decide  # noqa: E402


def main(n: int = 100_000) -> None:
    rows = fleet_rows(n, ["a"])
    for plan in ("proposal", "upstream"):
        started = time.perf_counter()
        facts = [parse_facts(row) for row in rows]
        decisions = [decide(f, plan, "shared") for f in facts]
        full = time.perf_counter() - started
        started = time.perf_counter()
        for f in facts:
            decide(f, plan, "shared")
        engine = time.perf_counter() - started
        shared = sum(d.pid_namespace == "shared" for d in decisions)
        print(
            f"plan={plan}: {n} nodes; parse+decide {n / full:,.0f}/s; decide alone {n / engine:,.0f}/s "
            f"({shared} would share)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
