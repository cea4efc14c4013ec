"""The README's shell examples run, so they cannot rot.

A fenced ```sh block right after a `<!-- test -->` line is run with bash against the real
server (`spix-dsr serve` on a free loopback port, a fresh database of each backend, a
temporary data folder). The blocks run in order in one shell (`set -euo pipefail`), so a
variable one block sets is there for the next, as for a reader who pastes them in turn. A
```text block right after a `<!-- output -->` line is what the block before it prints: each
of its lines must be printed, in that order (`…` stands for any text). The shell starts in a
temporary folder whose `.venv` is this interpreter's environment, so `.venv/bin/spix-dsr`
is the installed command. Blocks without the marker (`make`, Docker) are not run.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.databases import free_port, fresh_database

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "::spix-dsr-readme-block "


def readme_blocks(text: str) -> list[tuple[int, str, list[str] | None]]:
    """(line number, script, expected output lines or None) for each marked block."""
    lines = text.splitlines()
    blocks: list[tuple[int, str, list[str] | None]] = []
    i = 0

    def fenced(start: int, language: str) -> tuple[int, list[str]]:
        assert lines[start].strip() == f"```{language}", (
            f"README.md:{start + 1}: a marker must be followed by a ```{language} block"
        )
        end = start + 1
        while lines[end].strip() != "```":
            end += 1
        return end + 1, lines[start + 1 : end]

    while i < len(lines):
        if lines[i].strip() == "<!-- test -->":
            number = i + 2
            i, body = fenced(i + 1, "sh")
            expected = None
            j = i
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j < len(lines) and lines[j].strip() == "<!-- output -->":
                i, expected = fenced(j + 1, "text")
            blocks.append((number, "\n".join(body), expected))
        else:
            i += 1
    return blocks


def matches_in_order(expected: list[str], printed: list[str]) -> bool:
    patterns = [
        re.compile(".*".join(re.escape(part) for part in line.strip().split("…")))
        for line in expected
        if line.strip()
    ]
    position = 0
    for pattern in patterns:
        while position < len(printed) and not pattern.fullmatch(printed[position].strip()):
            position += 1
        if position == len(printed):
            return False
        position += 1
    return True


def test_the_readme_marks_runnable_blocks() -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    assert any(expected for _, _, expected in blocks)
    for number, script, _ in blocks:
        assert "make " not in script and "docker " not in script, f"README.md:{number}"


def test_expected_output_is_checked_in_order() -> None:
    assert matches_in_order(["a …", "c"], ["x", "a b", "c"])
    assert not matches_in_order(["c", "a …"], ["a b", "c"])
    assert not matches_in_order(["d"], ["a", "b"])


async def test_readme_shell_examples_run(backend: str, tmp_path: Path) -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    venv = Path(sys.executable).parent.parent
    home = tmp_path / "reader"
    home.mkdir()
    (home / ".venv").symlink_to(venv)
    spix_dsr = str(Path(sys.executable).parent / "spix-dsr")
    port = free_port()
    async with fresh_database(backend, tmp_path) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPIX_DSR_")}
        env |= {
            "SPIX_DSR_DATA_DIR": str(tmp_path / "data"),
            "SPIX_DSR_DATABASE_URL": url,
            "SPIX_DSR_URL": f"http://127.0.0.1:{port}",
        }
        seeded = subprocess.run(  # noqa: ASYNC221  (a short command, before the server)
            [spix_dsr, "seed"], cwd=home, env=env, capture_output=True, text=True, check=False
        )
        assert seeded.returncode == 0, seeded.stderr
        server = subprocess.Popen(  # noqa: ASYNC220  (started, then polled below)
            [spix_dsr, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=home,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                deadline = time.monotonic() + 30
                while True:
                    assert server.poll() is None, server.communicate()[1]
                    try:
                        if (await client.get(f"{env['SPIX_DSR_URL']}/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, "the server was not ready in 30 s"
                    await asyncio.sleep(0.2)
            script = ["set -euo pipefail"]
            for index, (_, body, _) in enumerate(blocks):
                script += [f"printf '\\n{MARKER}{index}\\n'", body]
            ran = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                "\n".join(script),
                cwd=home,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(ran.communicate(), timeout=60)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.communicate(timeout=30)
    printed = out.decode()
    sections = re.split(rf"^{re.escape(MARKER)}(\d+)$", printed, flags=re.MULTILINE)
    reached = int(sections[-2]) if len(sections) > 1 else 0
    number = blocks[reached][0]
    assert ran.returncode == 0, f"README.md:{number} exited {ran.returncode}:\n{printed}"
    assert reached == len(blocks) - 1, printed
    outputs = {int(sections[k]): sections[k + 1] for k in range(1, len(sections), 2)}
    for index, (number, _, expected) in enumerate(blocks):
        if expected is not None:
            shown = outputs[index].splitlines()
            assert matches_in_order(expected, shown), (
                f"README.md:{number} printed:\n{outputs[index]}\nexpected:\n" + "\n".join(expected)
            )


DOCS = [README, README.parent / "openapi" / "README.md", README.parent / "app" / "README.md"]


@pytest.mark.parametrize("page", DOCS, ids=lambda page: str(page.relative_to(README.parent)))
def test_docs_point_only_inside_the_repository(page: Path) -> None:
    """Every link and every path a page names in backticks exists in a clone."""
    text = page.read_text(encoding="utf-8")
    assert "shared/" not in text and "../" not in text
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert not target.startswith(("http:", "https:")), f"{page.name} links out: {target}"
        assert (page.parent / target).exists(), f"{page.name} links to a missing {target}"
    root = README.parent
    for named in re.findall(r"`((?:app|tests|openapi|migrations)/[\w./-]+)`", text):
        assert (root / named).exists() or named.startswith("app/worker"), (
            f"{page.name} names a missing {named}"
        )
