"""`make bench`: what the gateway itself costs, measured side by side in one run.

1. Cold start (bench/cold_start.py): each handler's import from its built package, next to
   `import boto3` plus one client, in fresh interpreters, interleaved.
2. Own work (bench/own_work.py): a request through the API Gateway emulation and the handler with
   the in-memory ledger and store: everything the gateway does but AWS, next to a direct upstream call;
   then the same with a large answer, per answer-MB.
3. Peak memory (bench/memory.py) of the largest legal answer, n=4 at 3840x2160, streamed.
   AWS calls per request (bench/aws_calls.py): counted by service and operation, on moto.
4. End to end (bench/end_to_end.py): through `make run` (DynamoDB and S3 on moto), next to a direct
   upstream call.

Every timing is also given as a ratio to a yardstick measured in the same run, with its spread:
absolute milliseconds move with the machine and its load, ratios much less. The goals are judged on
the ratios: handler import <= 1.5x `import boto3` plus one client; own work <= 4 direct upstream
calls (a direct call is a plain Python HTTP round trip on loopback; 3 ms on the machine the goal
was set on, where a direct call took 0.75 ms); end to end <= 18 direct calls (the first 15 ms goal on
the machine it was set on). The machine is printed first.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import cold_start, end_to_end
from bench.measure import ROOT, PairedRun, machine, progress, spread

IMPORT_GOAL = 1.5
OWN_WORK_GOAL_DIRECT_CALLS = 4.0
END_TO_END_GOAL_DIRECT_CALLS = 18.0
# Issue 10's target for the bytes of a large answer: at most 2 ms of the gateway's own work per MB.
OWN_WORK_PER_MB_GOAL_MS = 2.0


def in_own_interpreter(module: str, *args: int) -> object:
    """A bench section that patches what it measures runs in an interpreter of its own."""
    done = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{module} failed ({done.returncode})")
    return json.loads(done.stdout)


def print_paired(title: str, runs: list[PairedRun], path: str) -> float:
    print(f"\n{title}, median (min-max over runs):")
    print("| figure | value |\n|---|---|")
    print(f"| straight to the upstream emulator, ms | {spread([r.direct_ms for r in runs], 1)} |")
    print(f"| {path}, ms | {spread([r.path_ms for r in runs], 1)} |")
    print(f"| added by the gateway (paired difference), ms | {spread([r.overhead_ms for r in runs], 1)} |")
    print(f"| added, p90, ms | {spread([r.overhead_p90_ms for r in runs], 1)} |")
    ratios = [r.in_direct_calls for r in runs]
    print(f"| **added, in direct calls** (added / direct call, same run) | {spread(ratios, 1)} |")
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timing runs (the spread is over these)")
    parser.add_argument("--pairs", type=int, default=100, help="interleaved request pairs per run")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--import-runs", type=int, default=15)
    args = parser.parse_args()

    print(f"Machine: {machine()}\n")
    handlers = cold_start.functions()
    with tempfile.TemporaryDirectory() as tmp:
        packages, what = cold_start.build_packages(Path(tmp), list(handlers))
        cold = cold_start.measure_cold_starts(handlers, packages, args.import_runs)
    print(f"Cold start ({args.import_runs} interleaved rounds), from the built package:\n{what}")
    print("| what | import ms (median) | x boto3: median (min-max over rounds) | peak RSS MiB |\n|---|---|---|---|")
    print(f"| `import boto3` + one client | {cold['baseline']['ms']:.0f} | 1.00 | {cold['baseline']['mb']:.0f} |")
    for function, name in handlers.items():
        row = cold[function]
        print(f"| handlers.{name} ({function}) | {row['ms']:.0f} | {spread(row['ratios'])} | {row['mb']:.0f} |")
    worst_import = max(statistics.median(cold[function]["ratios"]) for function in handlers)

    own_work = in_own_interpreter("bench.own_work", args.runs, args.pairs, args.warmup)
    own = [PairedRun(**run) for run in own_work["small"]]
    own_ratio = print_paired(f"Own work per request, b64 mode, no AWS ({args.runs} runs of {args.pairs} interleaved "
                             f"pairs after {args.warmup} warm-up)", own,
                             "API Gateway emulation + handler on the in-memory ledger and store")
    large = [PairedRun(**run) for run in own_work["large"]]
    answer_mb = own_work["large_answer_bytes"] / 1_000_000
    print_paired(f"The same with a large answer ({answer_mb:.1f} MB of base64: a 1536x1024 PNG of random pixels), "
                 "streamed", large, "API Gateway emulation (streaming) + handler on the in-memory ledger and store")
    per_mb = [run.overhead_ms / answer_mb for run in large]
    print(f"| **own work per answer-MB**, ms (added / MB) | {spread(per_mb, 2)} |")

    progress("peak memory of the largest answer (n=4 at 3840x2160, random pixels)")
    memory = in_own_interpreter("bench.memory")
    print(f"\nPeak memory of the largest legal answer, streamed (n=4 at 3840x2160, PNGs of random pixels, "
          f"{memory['answer_mb']:.0f} MB of base64):\n| figure | MiB |\n|---|---|")
    print(f"| the function's process before the request (imported, warm) | {memory['peak_before_mib']:.0f} |")
    print(f"| its peak during the request | {memory['peak_after_mib']:.0f} |")
    print(f"| added by the answer, in answer sizes | "
          f"{(memory['peak_after_mib'] - memory['peak_before_mib']) * 1.048576 / memory['answer_mb']:.2f} |")

    progress("AWS calls per request (moto in process)")
    calls = in_own_interpreter("bench.aws_calls")
    print("\nAWS calls per image request, counted on moto:\n| request | calls |\n|---|---|")
    for label, counted in calls.items():
        print(f"| {label} | {', '.join(f'{name} x{n}' for name, n in counted.items())} |")

    e2e = end_to_end.measure(args.runs, args.pairs, args.warmup)
    e2e_ratio = print_paired(f"End to end per request, b64 mode, through `make run` ({args.runs} runs of {args.pairs} "
                             f"interleaved pairs after {args.warmup} warm-up)", e2e,
                             "through the local stack (DynamoDB on moto)")

    verdict = {True: "met", False: "MISSED"}
    per_mb_median = statistics.median(per_mb)
    print(f"\nGoals, judged on ratios: handler import <= {IMPORT_GOAL}x boto3: {verdict[worst_import <= IMPORT_GOAL]} "
          f"(worst median {worst_import:.2f}x); own work <= {OWN_WORK_GOAL_DIRECT_CALLS:g} direct calls: "
          f"{verdict[own_ratio <= OWN_WORK_GOAL_DIRECT_CALLS]} ({own_ratio:.1f}); own work per answer-MB <= "
          f"{OWN_WORK_PER_MB_GOAL_MS:g} ms: {verdict[per_mb_median <= OWN_WORK_PER_MB_GOAL_MS]} ({per_mb_median:.2f}); "
          "end to end <= "
          f"{END_TO_END_GOAL_DIRECT_CALLS:g} direct calls: {verdict[e2e_ratio <= END_TO_END_GOAL_DIRECT_CALLS]} "
          f"({e2e_ratio:.1f})")


if __name__ == "__main__":
    main()
