"""Run the real SAM CLI: `sam validate --lint` and `sam build` (slow, needs PyPI for a cold build)."""

from __future__ import annotations

import importlib.util
import marshal
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .cfn_yaml import REPO_ROOT, load_template

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent
SAM = VENV_BIN / "sam"


def run_sam(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # `sam build` needs python3.13 on PATH: the venv's interpreter is one.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAM_CLI_TELEMETRY": "0",
        # Must not keep src/Makefile's compileall from writing the package's .pyc files.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    executable = str(SAM) if SAM.exists() else "sam"
    return subprocess.run(
        [executable, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_sam_validate_lint_is_clean():
    result = run_sam("validate", "--lint", "--template", "template.yaml", timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "is a valid SAM Template" in output, output
    assert not re.search(r"\[[EWI]\d{4}", output), f"cfn-lint findings:\n{output}"
    assert "warning" not in output.lower(), output


def pyc_flags(pyc: Path) -> int:
    """PEP 552 flags of a .pyc header: 0 timestamp-based, 0b11 checked hash, 0b01 unchecked hash."""
    return int.from_bytes(pyc.read_bytes()[4:8], "little")


def test_sam_build_packages_handlers_and_dependencies_for_every_function(tmp_path):
    build_dir = tmp_path / "build"
    # --no-cached: samconfig.toml turns the cache on, but SAM keeps the source hashes in
    # build.toml next to the build dir (here a fresh tmp dir), so a cached build would rebuild
    # everything anyway. Each function runs its src/Makefile target (pip for arm64, compileall),
    # in parallel: a few seconds with a warm pip cache.
    result = run_sam(
        "build",
        "--template",
        "template.yaml",
        "--build-dir",
        str(build_dir),
        "--parallel",
        "--no-cached",
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Build Succeeded" in output, output
    assert (build_dir / "template.yaml").is_file()

    template = load_template()
    global_props = template.get("Globals", {}).get("Function", {})
    function_names = [
        name for name, res in template["Resources"].items() if res["Type"] == "AWS::Serverless::Function"
    ]
    assert function_names
    src = REPO_ROOT / "src"
    # our packages with their data files (common/billing/catalog.json, ...), without the developer's .pyc files
    source_files = sorted(
        path.relative_to(src)
        for init in src.glob("*/__init__.py")
        for path in init.parent.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    assert Path("common/billing/catalog.json") in source_files
    for name in function_names:
        artifact = build_dir / name
        props = {**global_props, **template["Resources"][name]["Properties"]}
        module = props["Handler"].rpartition(".")[0]
        assert (artifact / (module.replace(".", "/") + ".py")).is_file(), f"{name}: handler not packaged"
        assert (artifact / "handlers" / "generations.py").is_file(), f"{name}: src/ not packaged whole"
        for relative in source_files:
            packaged = artifact / relative
            assert packaged.is_file(), f"{name}: src/{relative} not packaged"
            assert packaged.read_bytes() == (src / relative).read_bytes(), f"{name}: src/{relative} differs"
        assert (artifact / "common" / "billing" / "catalog.json").is_file(), f"{name}: catalog.json missing"
        assert not (artifact / "Makefile").exists(), f"{name}: the build's Makefile was packaged"
        assert (artifact / "pydantic" / "__init__.py").is_file(), f"{name}: pydantic missing"
        assert (artifact / "aws_lambda_powertools").is_dir(), f"{name}: powertools missing"
        # the compiled wheel matches the function's architecture
        native = list((artifact / "pydantic_core").glob("_pydantic_core.*.so"))
        assert native, f"{name}: pydantic_core has no native module"
        machine = "aarch64" if props.get("Architectures", ["x86_64"]) == ["arm64"] else "x86_64"
        assert all(machine in so.name for so in native), f"{name}: {[so.name for so in native]}"

        # Precompiled bytecode for the runtime's Python (/var/task is read-only: without it every
        # cold start compiles from source), hash-based and unchecked so that the mtimes zip
        # packaging changes do not matter.
        version = re.fullmatch(r"python(\d+)\.(\d+)", props["Runtime"])
        assert version, props["Runtime"]
        tag = f"cpython-{version[1]}{version[2]}"
        assert sys.implementation.cache_tag == tag, "run the tests with the runtime's Python"
        for package, stem in (
            ("common/images", "flow"),
            ("handlers", module.rpartition(".")[2]),
            ("pydantic", "main"),
            ("aws_lambda_powertools/tracing", "tracer"),
            ("requests", "sessions"),
        ):
            expected = artifact / package / "__pycache__" / f"{stem}.{tag}.pyc"
            assert expected.is_file(), f"{name}: no {expected.relative_to(artifact)}"
        sources = list(artifact.rglob("*.py"))
        assert len(sources) > 100, f"{name}: {len(sources)} .py files"
        for source in sources:
            pyc = Path(importlib.util.cache_from_source(str(source)))
            relative = source.relative_to(artifact)
            assert pyc.is_file(), f"{name}: {relative} has no .pyc"
            header = pyc.read_bytes()[:16]
            assert header[:4] == importlib.util.MAGIC_NUMBER, f"{name}: {relative} compiled by another Python"
            assert pyc_flags(pyc) == 0b01, f"{name}: {relative} .pyc is not unchecked-hash based"
            assert header[8:16] == importlib.util.source_hash(source.read_bytes()), f"{name}: stale {relative} .pyc"
        # compiled with Lambda's paths, so tracebacks read /var/task/... even before the import fixes them
        code = marshal.loads((artifact / "common/images/__pycache__" / f"flow.{tag}.pyc").read_bytes()[16:])
        assert code.co_filename == "/var/task/common/images/flow.py", code.co_filename
