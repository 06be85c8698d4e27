"""What the HTTP hop to a separate AI service costs: PII analyze of the ~300-word note of
`bench/pii_latency.py`, in process (`InProcessAIClient`) and through `RemoteAIClient` to a real
`tessera serve --role ai` process, interleaved call by call in one run so both see the same
machine. Also a small embedding call (one sentence), where the hop is most of the cost.

    .venv/bin/python bench/ai_hop.py [--calls 200]

Prints a JSON object: p50/p95 per path and the hop (remote minus in process) at the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.auth_me import free_port, machine, start_server, stop, tessera_env, wait_until_up  # noqa: E402
from bench.pii_latency import NOTE  # noqa: E402
from bench.search_scale import load_average  # noqa: E402
from tessera.core.ai.client import InProcessAIClient  # noqa: E402
from tessera.core.ai.remote import RemoteAIClient  # noqa: E402
from tessera.settings import Settings  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 2)


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "mean": round(statistics.fmean(values), 2)}


async def timed(call: Any) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def measure(settings: Settings, url: str, calls: int) -> dict[str, Any]:
    local = InProcessAIClient(settings)
    remote = RemoteAIClient(settings.model_copy(update={"ai": settings.ai.model_copy(update={"url": url})}))
    sentence = "Tinnitus in the left ear since March."
    try:
        for client in (local, remote):  # load models, open connections
            for _ in range(5):
                await client.analyze_pii(NOTE)
                await client.embed([sentence])
        times: dict[str, list[float]] = {key: [] for key in ("pii_local", "pii_remote", "embed_local", "embed_remote")}
        for _ in range(calls):
            times["pii_local"].append(await timed(lambda: local.analyze_pii(NOTE)))
            times["pii_remote"].append(await timed(lambda: remote.analyze_pii(NOTE)))
            times["embed_local"].append(await timed(lambda: local.embed([sentence])))
            times["embed_remote"].append(await timed(lambda: remote.embed([sentence])))
    finally:
        await local.close()
        await remote.close()
    result = {key: summary(values) for key, values in times.items()}
    for what in ("pii", "embed"):
        hops = [r - lo for lo, r in zip(times[f"{what}_local"], times[f"{what}_remote"], strict=True)]
        result[f"{what}_hop_ms"] = {
            "p50": pct(hops, 50),
            "median_difference": round(
                statistics.median(times[f"{what}_remote"]) - statistics.median(times[f"{what}_local"]), 2
            ),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tessera-ai-hop-"))
    env = tessera_env(work / "data", None, TESSERA_EMBEDDINGS__PROVIDER="local", TESSERA_JOBS__ENABLED="false")
    port = free_port()
    server = start_server("tessera.main:create_ai_app", port, env, factory=True, log=work / "ai.log")
    load_start = load_average()
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/v1/ai/health", timeout=120)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=work / "data",
            secret_key=env["TESSERA_SECRET_KEY"],
            embeddings={"provider": "local"},
            ai={"warm_up": False},
        )
        result = asyncio.run(measure(settings, f"http://127.0.0.1:{port}", args.calls))
    finally:
        stop(server)
    result.update(machine=machine(), calls=args.calls, load_average_start=load_start, load_average_end=load_average())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
