"""The README's examples run as written: in a fresh shell at the repository root, after pasting
the `export` line that `make run`'s banner printed, against a running local stack.

Every ```bash and ```python block runs, in order, except those marked just above with
`<!-- readme-test: skip (why) -->` (make itself, Docker, AWS). The shell blocks run in one bash
with `set -euo pipefail`, as a user would paste them one after the other; the Python blocks run in
one interpreter. They run in a scratch directory that links every entry of the repository, so the
files they write (image.png, jan.csv, ...) land there and not in the checkout.
"""
from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.integration.stack import REPO

pytestmark = pytest.mark.slow

BLOCK = re.compile(r"(?P<skip><!-- readme-test: skip[^>]*-->\n)?```(?P<lang>[a-z]*)\n(?P<code>.*?)```", re.S)
PNG = b"\x89PNG\r\n\x1a\n"


def readme_blocks(lang: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [m["code"] for m in BLOCK.finditer(text) if m["lang"] == lang and not m["skip"]]


def banner_export_line(stack) -> str:
    for line in stack.output.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("export BASE_URL="):
            return line.split("#")[0].strip()
    raise AssertionError("the banner has no export BASE_URL=... line")


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A scratch 'repository root': links to every entry of the real one."""
    for entry in REPO.iterdir():
        if entry.name != ".git":
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def fresh_environment(stack) -> dict[str, str]:
    """A new terminal with the project's virtualenv activated; GATEWAY_STATE_FILE only tells the
    operator CLI which stack to use (the test's, not a developer's `make run`)."""
    return {"PATH": f"{REPO / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8", "GATEWAY_STATE_FILE": str(stack.state_file)}


def test_the_readme_marks_what_it_does_not_run():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    runnable = readme_blocks("bash") + readme_blocks("python")
    assert len(runnable) >= 6
    assert "make run" not in "".join(readme_blocks("bash")), "the blocking `make run` must be marked skip"
    assert text.count("<!-- readme-test: skip") == len(re.findall(r"<!-- readme-test: skip \([^)]+\) -->", text)), \
        "every skip says why"


def test_the_shell_examples_run_as_pasted_after_the_banners_export_line(stack, checkout):
    export = banner_export_line(stack)
    script = ["set -euo pipefail", export]
    for number, block in enumerate(readme_blocks("bash"), start=1):
        script += [f"echo '### README shell block {number}' >&2", block]

    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=checkout, env=fresh_environment(stack),
                          capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    for name in ("image.png", "restyled.png", "restyled-local.png", "balloons.png"):
        assert (checkout / name).read_bytes().startswith(PNG), name
    assert (checkout / "jan.csv").read_text().startswith("date,model,requests")
    assert '"statusCode": 200' in done.stdout  # local_stack.invoke printed the function's answer


def test_the_python_examples_run_as_pasted_with_the_banners_variables(stack, checkout):
    variables = dict(item.split("=", 1) for item in shlex.split(banner_export_line(stack))[1:])
    code = "\n".join(readme_blocks("python"))

    done = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", code], cwd=checkout,
                          env={**fresh_environment(stack), **variables}, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = base64.b64decode(lines[0][:32])  # the first 24 bytes of the image: PNG magic, IHDR, size
    assert header[:8] == PNG and header[12:16] == b"IHDR"
    assert (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")) == (1024, 1024)
    assert all(line.startswith("http://127.0.0.1:") for line in lines[1:]) and len(lines) == 3
