"""`make bench`: what the gateway itself costs, measured side by side in one run.

1. Overhead per request: the same quickstart request sent straight to the upstream emulator and
   through the local gateway (API Gateway emulation -> handler -> DynamoDB on moto -> emulator),
   interleaved so both see the same machine state. Reports medians and p90s.
2. Cold start: each handler's import (plus the clients it creates) in a fresh interpreter with
   Lambda's environment variables, loaded from the function's built package the way Lambda loads
   /var/task (package first on sys.path, its precompiled .pyc files, nothing written), next to a
   bare `import boto3` plus one client. The package is what `sam build` produces; on a host that
   is not arm64 its native modules cannot load, so the same src/Makefile target builds it again
   for this machine (LAMBDA_PLATFORM=host) and the bench checks that both hold the same Python
   files and bytecode.

Goals (issue 2): median overhead <= 15 ms in b64 mode; handler import <= 1.5x the boto3 figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from local_stack.template import load as load_template

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = {"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024"}
LAMBDA_ENV = {
    # What Lambda sets: the X-Ray SDK, for one, takes its cheaper in-Lambda path when it sees these.
    "LAMBDA_TASK_ROOT": str(ROOT / "src"), "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
    "TABLE_NAME": "bench", "UPSTREAM_API_KEY_SECRET_ID": "bench", "IMAGE_BUCKET": "bench-images",
    "POWERTOOLS_SERVICE_NAME": "image-gateway", "POWERTOOLS_METRICS_NAMESPACE": "ImageGateway",
}
BASELINE = "import boto3; boto3.client('dynamodb')"
# What each handler's container creates before it can answer: the module and its DynamoDB client.
HANDLER_INIT = "import handlers.{name}; from common.ledger import get_ledger; get_ledger()"
# Must come from the package, not from the venv (boto3 stands in for the runtime's).
PACKAGED_MODULES = ("handlers", "common", "pydantic", "pydantic_core", "aws_lambda_powertools", "aws_xray_sdk",
                    "requests")
VENV_BIN = Path(sys.executable).parent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def start_stack(tmp: Path) -> tuple[subprocess.Popen, dict]:
    state_file = tmp / "state.json"
    env = {**os.environ, "GATEWAY_PORT": "0", "GATEWAY_STATE_FILE": str(state_file), "GATEWAY_DATA_DIR": str(tmp / "data"),
           "GATEWAY_DEMO_BALANCE_USD": "100000", "GATEWAY_STORAGE": "on"}
    env.pop("UPSTREAM_BASE_URL", None)  # always the built-in emulator: a real upstream would swamp the figure
    process = subprocess.Popen([sys.executable, "-m", "local_stack"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not state_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"local stack did not start: {process.stderr.read().decode() if process.stderr else ''}")
        time.sleep(0.1)
    return process, json.loads(state_file.read_text())


def measure_overhead(rounds: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        process, state = start_stack(Path(tmp))
        try:
            emulator_key = state["emulator_api_key"]
            direct = requests.Session()
            via_gateway = requests.Session()
            targets = {
                "direct": (direct, f"{state['emulator_url']}/images/generations", emulator_key),
                "gateway": (via_gateway, f"{state['base_url']}/images/generations", state["token"]),
            }
            samples: dict[str, list[float]] = {"direct": [], "gateway": []}
            for i in range(warmup + rounds):
                for name, (session, url, key) in targets.items():
                    started = time.perf_counter()
                    response = session.post(url, json=QUICKSTART, headers={"Authorization": f"Bearer {key}"},
                                            timeout=30)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise SystemExit(f"{name} answered {response.status_code}: {response.text[:300]}")
                    if i >= warmup:
                        samples[name].append(elapsed)
                # Reset the emulator's request log so it does not grow through the run.
                requests.post(f"{state['emulator_url'].rsplit('/v1', 1)[0]}/__emulator/reset", timeout=5)
        finally:
            process.terminate()
            process.wait(timeout=30)
    paired = [g - d for g, d in zip(samples["gateway"], samples["direct"])]
    return {
        "rounds": rounds,
        "direct_median": statistics.median(samples["direct"]), "direct_p90": percentile(samples["direct"], 90),
        "gateway_median": statistics.median(samples["gateway"]), "gateway_p90": percentile(samples["gateway"], 90),
        "overhead_median": statistics.median(paired), "overhead_p90": percentile(paired, 90),
    }


def import_probe(code: str, package: Path | None = None) -> tuple[list[str], Path, dict[str, str]]:
    """The command, working directory and environment that time `code` in a fresh interpreter.

    With `package`, the interpreter loads it like Lambda loads /var/task: it is the working
    directory and comes first on sys.path, and (read-only there) no .pyc file gets written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))} | LAMBDA_ENV
    if package is None:
        setup, check, cwd = "sys.path.insert(0, 'src'); ", "", ROOT
    else:
        setup, cwd = "", package
        env |= {"PYTHONPATH": str(package), "LAMBDA_TASK_ROOT": str(package), "PYTHONDONTWRITEBYTECODE": "1"}
        check = ("; where = {m: getattr(sys.modules.get(m), '__file__', None) or '' for m in %r}; "
                 "stray = {m: f for m, f in where.items() if not f.startswith(%r)}; "
                 "stray and sys.exit(f'not loaded from the package: {stray}')"
                 % (PACKAGED_MODULES, str(package) + os.sep))
    script = (f"import time, resource, sys; {setup}t = time.perf_counter(); "
              f"{code}; ms = (time.perf_counter() - t) * 1000{check}; "
              "print(ms, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    return [sys.executable, "-c", script], cwd, env


def run_probe(probe: tuple[list[str], Path, dict[str, str]]) -> tuple[float, float]:
    """Wall time (ms) and peak RSS (MiB) of one fresh interpreter."""
    command, cwd, env = probe
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cold import failed: {done.stderr.strip()[-2000:]}")
    ms, mb = done.stdout.split()
    return float(ms), float(mb)


def measure_cold_starts(handlers: dict[str, str], packages: dict[str, Path], runs: int) -> dict[str, dict]:
    """Interleaved: each round times the baseline and every handler once, so that the machine's
    drift during the run touches all of them alike; ratios are per round, then the median."""
    probes = {"baseline": import_probe(BASELINE)} | {
        function: import_probe(HANDLER_INIT.format(name=name), packages[function]) for function, name in handlers.items()}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in probes}
    for _ in range(runs):
        for name, probe in probes.items():
            samples[name].append(run_probe(probe))
    base = [ms for ms, _ in samples["baseline"]]
    return {name: {"ms": statistics.median(ms for ms, _ in runs_),
                   "mb": statistics.median(mb for _, mb in runs_),
                   "ratio": statistics.median(ms / b for (ms, _), b in zip(runs_, base))}
            for name, runs_ in samples.items()}


def functions() -> dict[str, str]:
    """Logical id -> handler module name (generations, ...) of every function in template.yaml."""
    resources = load_template(ROOT / "template.yaml")["Resources"]
    return {name: res["Properties"]["Handler"].rpartition(".")[0].rpartition(".")[2]
            for name, res in sorted(resources.items()) if res["Type"] == "AWS::Serverless::Function"}


def run(command: list[str]) -> None:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "SAM_CLI_TELEMETRY": "0"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def differing_python_files(one: Path, other: Path) -> set[str]:
    """The .py and .pyc files only one package has, or whose bytes differ. File by file: a bench
    process that held both packages in memory would pass its peak RSS on to the interpreters it
    starts (Linux keeps ru_maxrss across fork and exec)."""
    mine, theirs = ({str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".py", ".pyc")}
                    for root in (one, other))
    return (mine ^ theirs) | {f for f in mine & theirs if (one / f).read_bytes() != (other / f).read_bytes()}


def build_packages(tmp: Path, names: list[str]) -> tuple[dict[str, Path], str]:
    """Each function's package to measure, and a line saying what it is."""
    sam_dir = tmp / "sam"
    started = time.perf_counter()
    run([str(VENV_BIN / "sam"), "build", "--template", "template.yaml", "--build-dir", str(sam_dir), "--no-cached", "--parallel"])
    sam_s = time.perf_counter() - started
    packages = {name: sam_dir / name for name in names}
    sample = packages[names[0]]
    pycs = sum(1 for _ in sample.rglob("*.pyc"))
    size = sum(p.stat().st_size for p in sample.rglob("*") if p.is_file()) / 2**20
    what = f"`sam build --no-cached` ({sam_s:.0f} s): {pycs} .pyc files, {size:.1f} MiB per function, arm64"
    if platform.machine() in ("aarch64", "arm64") and sys.platform == "linux":
        return packages, f"{what}; measured as built"
    host_dir, differing = tmp / "host", set()
    for name in names:
        run([shutil.which("make") or "make", "-C", "src", f"build-{name}", f"ARTIFACTS_DIR={host_dir / name}",
             "LAMBDA_PLATFORM=host"])
        differing |= differing_python_files(packages[name], host_dir / name)
        packages[name] = host_dir / name
    same = ("the same .py/.pyc files" if not differing
            else f"WARNING: {len(differing)} .py/.pyc files differ, e.g. {sorted(differing)[:3]}")
    return packages, (f"{what}; measured: its {platform.machine()} twin (`make -C src build-<Function> "
                      f"LAMBDA_PLATFORM=host`, {same}, native modules for this machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--import-runs", type=int, default=15)
    args = parser.parse_args()

    handlers = functions()
    with tempfile.TemporaryDirectory() as tmp:
        packages, what = build_packages(Path(tmp), list(handlers))
        print(f"Cold start ({args.import_runs} interleaved rounds, medians), from the built package:\n{what}")
        cold = measure_cold_starts(handlers, packages, args.import_runs)
    print("| what | import ms | x boto3 (per round) | peak RSS MiB |\n|---|---|---|---|")
    print(f"| `import boto3` + one client | {cold['baseline']['ms']:.0f} | 1.00 | {cold['baseline']['mb']:.0f} |")
    for function, name in handlers.items():
        row = cold[function]
        print(f"| handlers.{name} ({function}) | {row['ms']:.0f} | {row['ratio']:.2f} | {row['mb']:.0f} |")
    ratios = [cold[function]["ratio"] for function in handlers]

    print(f"\nOverhead per request, b64 mode ({args.rounds} interleaved pairs after {args.warmup} warm-up):")
    result = measure_overhead(args.rounds, args.warmup)
    print("| path | median ms | p90 ms |\n|---|---|---|")
    print(f"| straight to the upstream emulator | {result['direct_median']:.1f} | {result['direct_p90']:.1f} |")
    print(f"| through the gateway | {result['gateway_median']:.1f} | {result['gateway_p90']:.1f} |")
    print(f"| gateway overhead (paired difference) | {result['overhead_median']:.1f} | {result['overhead_p90']:.1f} |")

    ok_overhead = result["overhead_median"] <= 15
    ok_import = max(ratios) <= 1.5
    print(f"\nGoals: median overhead <= 15 ms: {'met' if ok_overhead else 'MISSED'}; "
          f"handler import <= 1.5x boto3: {'met' if ok_import else 'MISSED'} (worst {max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
