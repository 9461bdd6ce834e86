"""Cold start: each handler's import (plus the clients it creates) in a fresh interpreter with
Lambda's environment variables, loaded from the function's built package the way Lambda loads
/var/task (package first on sys.path, its precompiled .pyc files, nothing written), next to a bare
`import boto3` plus one client. The package is what `sam build` produces; on a host that is not
arm64 its native modules cannot load, so the same src/Makefile target builds it again for this
machine (LAMBDA_PLATFORM=host) and the bench checks that both hold the same Python files and bytecode.
"""
from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.measure import ROOT, progress
from local_stack.template import load as load_template

LAMBDA_ENV = {
    # What Lambda sets: the X-Ray SDK, for one, takes its cheaper in-Lambda path when it sees these.
    "LAMBDA_TASK_ROOT": str(ROOT / "src"), "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
    "TABLE_NAME": "bench", "UPSTREAM_API_KEY_SECRET_ID": "bench", "IMAGE_BUCKET": "bench-images",
    "POWERTOOLS_SERVICE_NAME": "image-gateway", "POWERTOOLS_METRICS_NAMESPACE": "ImageGateway",
}
BASELINE = "import boto3; boto3.client('dynamodb')"
# What each handler's container creates before it can answer: the module and its DynamoDB client.
HANDLER_INIT = "import handlers.{name}; from common.wiring import container; container().ledger"
# Must come from the package, not from the venv (boto3 stands in for the runtime's).
PACKAGED_MODULES = ("handlers", "common", "pydantic", "pydantic_core", "aws_lambda_powertools", "aws_xray_sdk",
                    "requests")
VENV_BIN = Path(sys.executable).parent


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
    for round_ in range(runs):
        progress(f"cold start: round {round_ + 1}/{runs} ({len(probes)} fresh interpreters)")
        for name, probe in probes.items():
            samples[name].append(run_probe(probe))
    base = [ms for ms, _ in samples["baseline"]]
    return {name: {"ms": statistics.median(ms for ms, _ in runs_),
                   "mb": statistics.median(mb for _, mb in runs_),
                   "ratios": [ms / b for (ms, _), b in zip(runs_, base)]}
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
    progress(f"sam build --no-cached of {len(names)} functions (about a minute)")
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
    # Every function is built by the same recipe from the same src/: one twin serves them all when
    # their packages hold the same Python files, which is checked rather than assumed.
    alike = all(not differing_python_files(sample, packages[name]) for name in names[1:])
    progress(f"building {'one package' if alike else 'the packages'} for this machine ({platform.machine()}) "
             "to import here")
    host_dir, differing = tmp / "host", set()
    for name in names[:1] if alike else names:
        run([shutil.which("make") or "make", "-C", "src", f"build-{name}", f"ARTIFACTS_DIR={host_dir / name}",
             "LAMBDA_PLATFORM=host"])
        differing |= differing_python_files(packages[name], host_dir / name)
    packages = {name: host_dir / (names[0] if alike else name) for name in names}
    same = ("the same .py/.pyc files" if not differing
            else f"WARNING: {len(differing)} .py/.pyc files differ, e.g. {sorted(differing)[:3]}")
    shared = "; all functions' packages hold the same files, so one twin serves all" if alike else ""
    return packages, (f"{what}; measured: its {platform.machine()} twin (`make -C src build-<Function> "
                      f"LAMBDA_PLATFORM=host`, {same}, native modules for this machine){shared}")


