"""Run the real SAM CLI: `sam validate --lint` and `sam build` (slow, needs PyPI for a cold build)."""

from __future__ import annotations

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


def test_sam_build_packages_handlers_and_dependencies_for_every_function(tmp_path):
    build_dir = tmp_path / "build"
    # --no-cached: samconfig.toml turns the cache on, but SAM keeps the manifest hashes in
    # build.toml next to the build dir (here a fresh tmp dir), so a cached build would download
    # everything anyway and only leave a stray dependency copy in .aws-sam/deps. Both functions
    # share one build definition, so SAM resolves the dependencies once (about 8 s).
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
    for name in function_names:
        artifact = build_dir / name
        props = {**global_props, **template["Resources"][name]["Properties"]}
        module = props["Handler"].rpartition(".")[0]
        assert (artifact / (module.replace(".", "/") + ".py")).is_file(), f"{name}: handler not packaged"
        assert (artifact / "handlers" / "generations.py").is_file(), f"{name}: src/ not packaged whole"
        assert (artifact / "pydantic" / "__init__.py").is_file(), f"{name}: pydantic missing"
        assert (artifact / "aws_lambda_powertools").is_dir(), f"{name}: powertools missing"
        # the compiled wheel matches the function's architecture
        native = list((artifact / "pydantic_core").glob("_pydantic_core.*.so"))
        assert native, f"{name}: pydantic_core has no native module"
        machine = "aarch64" if props.get("Architectures", ["x86_64"]) == ["arm64"] else "x86_64"
        assert all(machine in so.name for so in native), f"{name}: {[so.name for so in native]}"
