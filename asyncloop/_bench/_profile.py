"""Profile one consumer run with cProfile: where the event loop thread's CPU goes.

    .venv/bin/python -m asyncloop._bench._profile --target fake --messages 100000 --receivers 8 \\
        --max-in-flight 256 [--invoke-latency-ms 50] [--top 30]

Runs one warm-up and one profiled run of the asyncloop consumer (no baselines, no
calibration) and prints the functions with the most own time, and the same grouped by
module (asyncloop core, the bench's wrappers, the fake, asyncio, aiobotocore, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
from collections import defaultdict

from ._config import BenchConfig, LatencyModel, Setting, parse_int_list
from ._measure import CONTENDER, measure
from ._targets import make_target


def _group(filename: str) -> str:
    for marker, name in (
        ("asyncloop/testing", "asyncloop.testing (fakes)"),
        ("asyncloop/_bench/", "bench wrappers"),
        ("asyncloop/_", "asyncloop core"),
        ("asyncio", "asyncio"),
        ("anyio", "anyio"),
        ("aiobotocore", "aiobotocore"),
        ("botocore", "botocore"),
        ("aiohttp", "aiohttp"),
        ("json", "json"),
    ):
        if marker in filename:
            return name
    return "other" if filename != "~" else "builtins"


async def _run(config: BenchConfig, setting: Setting, profiler: cProfile.Profile) -> None:
    target = make_target(config)
    async with target:
        await measure(target, config, CONTENDER, setting, min(config.n, 2000), -1)
        profiler.enable()
        run = await measure(target, config, CONTENDER, setting, config.n, 0)
        profiler.disable()
    print(
        f"{run.succeeded} messages, {run.msgs_s:,.0f} msgs/s, "
        f"{1e6 * run.cpu_s / max(1, run.succeeded):.1f} us loop CPU per message (profiled: "
        "cProfile roughly doubles it)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asyncloop._bench._profile")
    parser.add_argument("--target", default="fake")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--receivers", default="8")
    parser.add_argument("--max-in-flight", default="256")
    parser.add_argument("--invoke-latency-ms", default="0")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    config = BenchConfig(
        target=args.target,
        messages=args.messages,
        receivers=parse_int_list(args.receivers, flag="--receivers")[:1],
        max_in_flight=parse_int_list(args.max_in_flight, flag="--max-in-flight")[:1],
        invoke_latency=LatencyModel.parse(args.invoke_latency_ms),
        baselines=(),
        repeats=1,
    ).resolved()
    setting = config.settings()[0]
    profiler = cProfile.Profile()
    asyncio.run(_run(config, setting, profiler))
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(args.top)
    by_group: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_group[_group(filename)] += tottime
        total += tottime
    print(stream.getvalue())
    print("own time by module group:")
    for name, seconds in sorted(by_group.items(), key=lambda item: -item[1]):
        print(f"  {name:28s} {seconds:8.3f} s  {100 * seconds / total:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
