"""How the Run screen's log pane copes with a flood: 100,000 lines at 10,000 a second.

Runs the real RunScreen against a deployment that only emits LogLine events
(in bursts of 100 every 10 ms, the rate an apt install or an npm build can
reach), and prints:

  lines/s     lines delivered to the pane per second of wall time
  frame delay how late a 60 Hz UI timer fired while the flood ran (p50/p95/max):
              what the operator feels as lag; the UI must stay well under 100 ms
  memory      resident set growth and the pane's line count (capped by max_lines)

    python bench/log_pane.py                 # headless (CI), batched pane
    python bench/log_pane.py --unbatched     # one write per line, for comparison
    python bench/log_pane.py --tty           # in a real terminal (e.g. tmux), prints after exit

Figures only; nothing is asserted (see tests/tui for behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wizard import events as ev  # noqa: E402
from wizard.engine import RunResult  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


class FloodDeployment:
    """Emits ``lines`` LogLines at ``rate`` per second, nothing else but start/finish."""

    def __init__(self, plan, store, lines: int, rate: int, burst: int = 100):
        self.plan, self.store = plan, store
        self.lines, self.rate, self.burst = lines, rate, burst
        self.phases: list = []
        self.started = self.finished = 0.0

    def review(self, prices=None):
        raise NotImplementedError

    async def status(self):
        raise NotImplementedError

    async def apply(self, emit, *, resume=True, **kw) -> RunResult:
        emit(ev.RunStarted("bench", False, (), ("web1",)))
        self.started = time.perf_counter()
        text = "Unpacking libmongocrypt0 (1.8.4-1) ... Setting up mongodb-org-server (8.0.4) ... " * 1
        sent = 0
        while sent < self.lines:
            n = min(self.burst, self.lines - sent)
            for i in range(n):
                emit(ev.LogLine("web1", f"{sent + i:>6} {text}", "out"))
            sent += n
            # keep to the target rate: sleep until this burst's due time
            due = self.started + sent / self.rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        self.finished = time.perf_counter()
        emit(ev.RunFinished("bench", True, 0, 0, self.finished - self.started, {}))
        return RunResult(True, 0, 0, self.finished - self.started, {})


async def bench(lines: int, rate: int, batched: bool, tty: bool) -> dict:
    import os
    import tempfile

    os.environ["ROCKET_WIZARD_STATE_DIR"] = tempfile.mkdtemp(prefix="rw-bench-")
    from screens.demo import demo_app, demo_plan
    from screens.run import RunScreen
    from screens.widgets.log_pane import LogPane
    from wizard.state import StateStore

    plan = demo_plan("bench")
    dep = FloodDeployment(plan, StateStore(plan.name), lines, rate)
    lags: list[float] = []
    result: dict = {}

    app = demo_app()

    if not batched:       # the naive pane: a widget write per line
        LogPane.add = lambda self, host, text: self.write_line(f"{host:<7} {text}")  # type: ignore[method-assign]

    async def drive(pilot=None) -> None:
        rss0 = rss_mb()
        screen = RunScreen(dep)
        await app.push_screen(screen)
        period = 1 / 60
        expected = time.perf_counter() + period
        while screen.running or dep.finished == 0.0:
            await asyncio.sleep(period)
            now = time.perf_counter()
            lags.append(max(0.0, now - expected))
            expected = now + period
        pane = screen.query_one(LogPane)
        pane.flush()
        await asyncio.sleep(0.1)
        elapsed = dep.finished - dep.started
        result.update(lines=lines, seconds=elapsed, rate=lines / elapsed, lags=lags,
                      rss_growth=rss_mb() - rss0, rss=rss_mb(), pane_lines=pane.line_count,
                      max_lines=pane.max_lines)

    if tty:
        async def on_ready():
            await drive()
            app.exit()
        app.call_after_refresh(lambda: asyncio.ensure_future(on_ready()))
        await app.run_async()
    else:
        async with app.run_test(size=(80, 24)) as pilot:
            await drive(pilot)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--rate", type=int, default=10_000, help="target lines per second")
    ap.add_argument("--unbatched", action="store_true")
    ap.add_argument("--tty", action="store_true", help="draw in the real terminal")
    args = ap.parse_args()
    r = asyncio.run(bench(args.lines, args.rate, not args.unbatched, args.tty))
    lags = sorted(r["lags"]) or [0.0]
    p95 = lags[int(len(lags) * 0.95) - 1] if len(lags) > 1 else lags[0]
    mode = "unbatched" if args.unbatched else "batched"
    print(f"log pane ({mode}, {'tty' if args.tty else 'headless'} 80x24): {r['lines']:,} lines "
          f"at a target of {args.rate:,}/s")
    print(f"  lines/s      {r['rate']:,.0f}  ({r['seconds']:.2f} s)")
    print(f"  frame delay  p50 {statistics.median(lags) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
          f"max {lags[-1] * 1000:.1f} ms  ({len(lags)} ticks of a 60 Hz timer)")
    print(f"  memory       RSS {r['rss']:.0f} MiB (+{r['rss_growth']:.1f} MiB during the flood); "
          f"pane holds {r['pane_lines']:,} lines (max_lines {r['max_lines']:,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
