"""Running `wrk` against a server process pinned to one core, wrk on another, and reading what
the run cost the server: its CPU per request from /proc/<pid>/stat."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.benchmarks import _data

SCRIPTS = Path(__file__).parent / "scripts"


def ensure_wrk() -> str | None:
    """The wrk binary, installed with apt-get when missing and allowed; None otherwise."""
    found = shutil.which("wrk")
    if found or not shutil.which("apt-get"):
        return found
    command = ["apt-get", "install", "-y", "-q", "wrk"]
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            return None
        command = ["sudo", "-n", *command]
    subprocess.run(command, capture_output=True, check=False, timeout=600)
    return shutil.which("wrk")


def cores() -> tuple[str | None, str | None]:
    """(server core, wrk core): the server on one core, the load on another, when there are
    two; no pinning on a single core."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return str(available[0]), str(available[1])


def pinned(command: list[str], core: str | None) -> list[str]:
    if core is None or not shutil.which("taskset"):
        return command
    return ["taskset", "-c", core, *command]


@dataclass(frozen=True)
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def start(name: str, command: list[str], env: dict[str, str], port: int, log: Path) -> Server:
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, env=env, stdout=sink, stderr=sink, cwd=Path(__file__).parents[3]
        )
    server = Server(name, process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(server.base_url + ready_path(name), timeout=2).status_code < 500:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(server)
    raise AssertionError(f"{name} did not start: {log.read_text()[-3000:]}")


def ready_path(name: str) -> str:
    return "/healthz" if name == "service" else "/"


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    rps: float
    bad: int  # non-2xx answers and socket errors
    cpu_us: float  # server CPU per request
    # CPU per request of the machine's PostgreSQL processes (None: no such process here)
    database_cpu_us: float | None
    p50_ms: float
    p99_ms: float


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse(output: str) -> tuple[int, float, int, float, float]:
    """(requests, seconds, bad answers, p50 ms, p99 ms) from wrk's report."""
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    assert done, output
    seconds = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
        output,
    )
    if errors:
        bad += sum(int(n) for n in errors.groups())
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s))\s*$", output, re.M))
    return (
        int(done.group(1)),
        seconds,
        bad,
        _ms(latency.get("50", "0ms")),
        _ms(latency.get("99", "0ms")),
    )


def wrk(
    server: Server,
    path: str,
    *,
    core: str | None,
    seconds: float,
    connections: int,
    headers: dict[str, str],
    script: str | None = None,
    script_args: list[str] | None = None,
    database: bool = False,
) -> Run:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "30s",
        "--latency",
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(SCRIPTS / script)]
    command.append(server.base_url + path)
    if script_args:
        command += ["--", *script_args]
    cpu_before = _data.cpu_seconds(server.pid)
    database_before = _data.cpu_seconds_named("postgres") if database else None
    finished = subprocess.run(
        pinned(command, core), capture_output=True, text=True, check=False, timeout=seconds + 120
    )
    cpu = _data.cpu_seconds(server.pid) - cpu_before
    database_after = _data.cpu_seconds_named("postgres") if database else None
    assert finished.returncode == 0, finished.stderr + finished.stdout
    requests, elapsed, bad, p50, p99 = parse(finished.stdout)
    return Run(
        requests=requests,
        seconds=elapsed,
        rps=requests / elapsed if elapsed else 0.0,
        bad=bad,
        cpu_us=cpu / requests * 1e6 if requests else 0.0,
        database_cpu_us=(
            (database_after - database_before) / requests * 1e6
            if requests and database_before is not None and database_after is not None
            else None
        ),
        p50_ms=p50,
        p99_ms=p99,
    )
