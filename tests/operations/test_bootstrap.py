"""Item 5 of issue #16: a new deployment gets its first admin key from a secret (environment
or file) and, when asked, the Spix taxonomy in an empty registry; and the image's start
command works as the container runs it: the wheel in a clean prefix, a non-root user, an
empty folder, PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.auth.models import ApiKey
from app.core.db import Database
from app.data_categories.models import DataCategory
from tests.databases import free_port, fresh_database
from tests.operations.cli import spix

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "sdsr_boot01_" + "b" * 43
SUBJECT_KEY = "s" * 40
AUDIT_KEY = "a" * 40


async def test_bootstrap_stores_the_admin_key_once_and_seeds_an_empty_registry(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        key_file = tmp_path / "admin.key"
        key_file.write_text(ADMIN_KEY + "\n", encoding="utf-8")
        env = {
            "SPIX_DSR_DATABASE_URL": url,
            "SPIX_DSR_DATA_DIR": str(tmp_path / "data"),
            "SPIX_DSR_BOOTSTRAP_ADMIN_KEY_FILE": str(key_file),
            "SPIX_DSR_SEED_ON_EMPTY": "true",
        }
        first = spix("bootstrap", cwd=tmp_path, env=env)
        assert first.returncode == 0, first.stderr
        assert "bootstrap admin key stored" in first.stdout
        assert "Spix default taxonomy loaded" in first.stdout
        again = spix("bootstrap", cwd=tmp_path, env=env)
        assert again.returncode == 0, again.stderr
        assert "bootstrap admin key already stored" in again.stdout
        assert "registry not empty: seed skipped" in again.stdout
        assert ADMIN_KEY not in first.stdout + first.stderr + again.stdout + again.stderr

        # Another key while an admin key exists: not added.
        other = spix(
            "bootstrap",
            cwd=tmp_path,
            env={**env, "SPIX_DSR_BOOTSTRAP_ADMIN_KEY": "sdsr_other1_" + "c" * 43},
        )
        assert other.returncode == 0, other.stderr
        assert "an admin key exists: bootstrap admin key not added" in other.stdout

        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            keys = (await session.scalars(select(ApiKey))).all()
            categories = await session.scalar(select(func.count()).select_from(DataCategory))
            created = await session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.event_type == "api_key.created")
            )
        await database.dispose()
        assert [(k.prefix, k.role) for k in keys] == [("boot01", "admin")]
        assert ADMIN_KEY not in {k.key_hash for k in keys}
        assert categories and categories > 0
        assert created == 1


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("not-a-key-" + "x" * 40, "must read sdsr_<prefix>_<secret>"),
        ("sdsr_short1_tooshort", "at least 32 characters"),
    ],
)
async def test_a_malformed_bootstrap_key_is_refused(
    backend: str, tmp_path: Path, key: str, message: str
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        result = spix(
            "bootstrap",
            cwd=tmp_path,
            env={
                "SPIX_DSR_DATABASE_URL": url,
                "SPIX_DSR_DATA_DIR": str(tmp_path / "data"),
                "SPIX_DSR_BOOTSTRAP_ADMIN_KEY": key,
            },
        )
    assert result.returncode == 2
    assert message in result.stderr
    assert key not in result.stderr


def _image_command() -> str:
    """The shell command the Dockerfile's CMD runs."""
    for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("CMD "):
            argv = json.loads(line.removeprefix("CMD "))
            assert argv[:2] == ["sh", "-c"], argv
            return str(argv[2])
    raise AssertionError("no CMD in the Dockerfile")


@contextmanager
def _clean_prefix() -> Iterator[Path]:
    """A virtual environment holding the built wheel and nothing of this checkout: its
    dependencies come from the test environment's site-packages (a path, so the editable
    install of this checkout there is not loaded)."""
    folder = Path(tempfile.mkdtemp(prefix="spix-dsr-image-"))
    try:
        folder.chmod(0o755)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "-w", str(folder / "dist"), str(REPO)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        venv = folder / "venv"
        subprocess.run(
            [_interpreter(), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
        )
        (wheel,) = (folder / "dist").glob("*.whl")
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
             "-q", "--no-deps", "--no-index", str(wheel)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        (site,) = (venv / "lib").glob("python3*/site-packages")
        deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
        (site / "_test_dependencies.pth").write_text(f"{deps}\n", encoding="utf-8")
        yield venv
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _world_usable(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def _interpreter() -> str:
    """This Python, or one of the same version a non-root user may run (this one may live
    under root's home)."""
    base = Path(sys._base_executable).resolve()  # type: ignore[attr-defined]
    if os.geteuid() != 0 or _world_usable(base):
        return str(base)
    other = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if other.exists() and _world_usable(other.resolve()):
        return str(other)
    pytest.skip("no Python of this version that a non-root user may run")


def _as_non_root() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser") or shutil.which("setpriv")
    if runuser is None:
        pytest.skip("running as root without runuser to drop privileges")
    pwd.getpwnam("nobody")
    return [runuser, "-u", "nobody", "--"] if runuser.endswith("runuser") else [
        runuser, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"
    ]  # fmt: skip


async def test_the_image_command_starts_two_replicas_from_a_clean_install(
    backend: str, tmp_path: Path
) -> None:
    """No container engine runs here (no privileges), so the image is emulated: the wheel
    installed into a clean prefix, the Dockerfile's own CMD run by a non-root user from an
    empty, read-only folder against a new PostgreSQL database, two replicas at once. Both
    migrate, bootstrap and serve; the bootstrap key reads the seeded registry."""
    if backend != "postgresql":
        pytest.skip("the image runs against PostgreSQL (production)")
    with _clean_prefix() as venv:
        secrets = venv.parent / "secrets"
        secrets.mkdir(mode=0o755)
        (secrets / "admin.key").write_text(ADMIN_KEY + "\n", encoding="utf-8")
        (secrets / "admin.key").chmod(0o644)
        empty = venv.parent / "home"
        empty.mkdir(mode=0o755)  # owned by root: the service cannot write here
        async with fresh_database(backend, tmp_path, migrate=False) as url:
            env = {
                "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
                "HOME": str(empty),
                "PYTHONDONTWRITEBYTECODE": "1",
                "SPIX_DSR_ENV": "production",
                "SPIX_DSR_DATABASE_URL": url,
                "SPIX_DSR_SUBJECT_KEY": SUBJECT_KEY,
                "SPIX_DSR_AUDIT_KEY": AUDIT_KEY,
                # A raw Ed25519 private key in base64 (32 bytes), as production needs one.
                "SPIX_DSR_RECEIPT_SIGNING_KEY": base64.b64encode(bytes(range(32))).decode(),
                "SPIX_DSR_BOOTSTRAP_ADMIN_KEY_FILE": str(secrets / "admin.key"),
                "SPIX_DSR_SEED_ON_EMPTY": "true",
            }
            ports = [free_port(), free_port()]
            replicas = [
                subprocess.Popen(  # noqa: ASYNC220  (started, then polled below)
                    [*_as_non_root(), "sh", "-c", _image_command()],
                    cwd=empty,
                    env={**env, "PORT": str(port)},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
                for port in ports
            ]
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    for port, replica in zip(ports, replicas, strict=True):
                        deadline = time.monotonic() + 60
                        while True:
                            assert replica.poll() is None, replica.communicate()[0]
                            try:
                                ready = await client.get(f"http://127.0.0.1:{port}/readyz")
                                if ready.status_code == 200:
                                    break
                            except httpx.TransportError:
                                pass
                            assert time.monotonic() < deadline, "replica not ready in 60 s"
                            await asyncio.sleep(0.3)
                        listed = await client.get(
                            f"http://127.0.0.1:{port}/v1/controllers?kind=platform",
                            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                        )
                        assert listed.status_code == 200, listed.text
                        assert listed.json()["items"], listed.text  # the seeded platform
                        refused = await client.get(
                            f"http://127.0.0.1:{port}/v1/controllers",
                            headers={"Authorization": "Bearer sdsr_nope00_" + "x" * 43},
                        )
                        assert refused.status_code == 401
            finally:
                for replica in replicas:
                    if replica.poll() is None:
                        os.killpg(replica.pid, signal.SIGTERM)
                outputs = [replica.communicate(timeout=30)[0] for replica in replicas]
        assert list(empty.iterdir()) == []
    for output in outputs:
        assert "database is at the newest revision" in output, output
        assert "Traceback" not in output, output
    assert sum("bootstrap admin key stored" in o for o in outputs) == 1, outputs
