"""Many concurrent chat conversations over `GET /api/v1/chat/ws` on one uvicorn worker.

The issue's target: 200 concurrent WebSocket conversations on one worker, no errors, p95 message
latency reported. The server is the embedded one (SQLite, in-memory indexes, the bundled embedder,
the extractive model, one uvicorn worker, as `bench/ask_latency.py` runs it) on a copy of a library
that `bench/search_scale.py` builds and caches (10,000 chunks by default); the copy takes the
conversations, so the cache stays as built.

`--users` members are added to the library's organization with the product's own admin code, and
each signs in over HTTP for its own access token (by default one user per connection; fewer users
share their token between several connections, as tabs of one browser do, and then each socket
also gets the frames of the user's other sockets, marked `mirror`, which are counted and skipped).
Then all `--connections` sockets open at once (`{"type": "auth"}` first, then `ready`); once every
one is ready, each conversation asks `--turns` questions in turn, the next one when the `response`
of the last has come (plus `--think` seconds; `--ramp` spreads the first questions, by default all
start together): a new SciFact question first, then alternately a follow-up that leans on the one
before ("What evidence supports that?", which the server searches with the question before it) and
a new SciFact question in the same conversation.

Measured per message: send → first `delta` frame, send → `response` frame; errors (an `error`
frame, a close, a timeout, a response without ids); throughput; the server's RSS (sampled each
second). Afterwards every conversation is read back over HTTP: it must hold twice `--turns` messages.
The load generator runs on the same machine as the server (one asyncio loop, a small share of one core).

    .venv/bin/python bench/search_scale.py --chunks 10000 --threshold 5000 --prepare-only   # once
    .venv/bin/python bench/ws_concurrency.py [--connections 200] [--turns 3] [--users 200] [--think 0] [--ramp 0]

Output: a summary on stderr, bench/results/ws-concurrency-<timestamp>.json, and one JSON object on
the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.auth_me import (  # noqa: E402
    PASSWORD,
    free_port,
    machine,
    migrate,
    rss_mib,
    start_server,
    stop,
    tessera_env,
    wait_until_up,
)
from bench.search_scale import CACHE_DIR, DATASET, load_average, wait_for_log  # noqa: E402

# Follow-ups that only make sense after the question before them (the server searches with both).
FOLLOW_UPS = (
    "What evidence supports that?",
    "Is that also true in humans?",
    "Tell me more about it.",
    "What are the limits of that finding?",
    "How was this measured?",
    "Why does that happen?",
)


@dataclass
class Message:
    conversation: int
    turn: int
    sent: float  # perf_counter, seconds
    first_delta_ms: float | None = None
    response_ms: float | None = None
    deltas: int = 0
    grounded: bool | None = None
    error: str | None = None


@dataclass
class Conversation:
    number: int
    user: int
    connect_ms: float | None = None  # TCP + WebSocket handshake + auth frame → `ready`
    conversation_id: str | None = None
    messages: list[Message] = field(default_factory=list)
    error: str | None = None  # a failure outside a message (connect, auth, close)
    close_code: int | None = None
    server_pings: int = 0
    mirrored_frames: int = 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 1)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": round(max(values), 1),
        "mean": round(statistics.fmean(values), 1),
        "n": len(values),
    }


# ---------------------------------------------------------------------------------------------
# setup: a copy of the cached library, its users


def copy_library(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, Any]]:
    libraries = sorted(args.cache_dir.glob(f"sqlite-{args.chunks}-*/library.json"))
    if not libraries:
        threshold = "" if args.chunks > 20_000 else f" --threshold {args.chunks // 2}"
        sys.exit(
            f"no cached library of {args.chunks} chunks in {args.cache_dir}: run "
            f"`bench/search_scale.py --chunks {args.chunks}{threshold} --prepare-only` first"
        )
    library: dict[str, Any] = json.loads(libraries[0].read_text())["library"]
    data_dir = work / "data"
    shutil.copytree(libraries[0].parent / "data", data_dir)
    return data_dir, library


async def add_members(data_dir: Path, org_id: str, count: int) -> list[str]:
    """`count` members of the library's organization, as `tessera admin create-user --org` adds them."""
    from tessera.core.admin import create_user_with_org
    from tessera.core.auth.models import Role
    from tessera.settings import Settings

    values: dict[str, Any] = {"data_dir": data_dir, "log_level": "WARNING", "jobs": {"enabled": False}}
    settings = Settings(_env_file=None, **values)
    run = uuid.uuid4().hex[:6]
    emails = []
    for number in range(count):
        email = f"ws-{run}-{number:03}@example.com"
        await create_user_with_org(
            settings, email=email, password=PASSWORD, name=f"Reader {number}", org=org_id, role=Role.member
        )
        emails.append(email)
    return emails


async def sign_in(base: str, emails: list[str]) -> tuple[list[str], list[str]]:
    """An access token for each user, over HTTP (a few sign-ins at a time: each one hashes), and
    the failed attempts: a 5xx is retried (twice at most) so the run goes on, and reported."""
    gate = asyncio.Semaphore(4)
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def one(email: str) -> str:
            for attempt in range(3):
                async with gate:
                    response = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                if response.status_code < 500 or attempt == 2:
                    response.raise_for_status()
                    token: str = response.json()["access_token"]
                    return token
                failures.append(f"{response.status_code} {response.text[:120]}")
            raise AssertionError("unreachable")

        tokens = list(await asyncio.gather(*(one(email) for email in emails)))
    return tokens, failures


def questions_for(count: int, turns: int, seed: int) -> list[list[str]]:
    """Each conversation's questions: distinct SciFact questions (never one the warm-up asked),
    with an anaphoric follow-up on every other turn."""
    texts = [json.loads(line)["text"].strip() for line in (DATASET / "queries.jsonl").open() if line.strip()]
    texts = [t for t in dict.fromkeys(texts) if t][5:]  # the first five warm the server up
    fresh_per_conversation = (turns + 1) // 2
    if len(texts) < count * fresh_per_conversation:
        sys.exit(f"{len(texts)} distinct SciFact questions; {count} conversations of {turns} turns need more")
    rng = random.Random(seed)
    rng.shuffle(texts)
    plans = []
    for number in range(count):
        fresh = iter(texts[number * fresh_per_conversation : (number + 1) * fresh_per_conversation])
        plans.append([next(fresh) if turn % 2 == 0 else rng.choice(FOLLOW_UPS) for turn in range(turns)])
    return plans


# ---------------------------------------------------------------------------------------------
# the load


class RssSampler:
    """The server's RSS once a second, in a thread (the client's event loop stays free)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            found = re.search(r"VmRSS:\s+(\d+) kB", status)
            if found:
                self.samples.append(int(found.group(1)) / 1024)
            self._stop.wait(1.0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def converse(
    url: str,
    token: str,
    conversation: Conversation,
    questions: list[str],
    *,
    opened: asyncio.Event,
    ready_count: list[int],
    go: asyncio.Event,
    args: argparse.Namespace,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    async def frame(ws: Any, deadline: float) -> dict[str, Any]:
        """The next frame of this connection's own conversation: heartbeats, and the frames of the
        user's other connections (`"mirror": true`, when users share connections), counted and skipped."""
        while True:
            raw = await asyncio.wait_for(ws.recv(), timeout=max(0.001, deadline - time.perf_counter()))
            data: dict[str, Any] = json.loads(raw)
            if data.get("type") == "ping":
                conversation.server_pings += 1
            elif data.get("mirror"):
                conversation.mirrored_frames += 1
            else:
                return data

    done_opening = False

    def counted() -> None:
        nonlocal done_opening
        if not done_opening:  # ready or failed: either way the others need not wait for it
            done_opening = True
            ready_count[0] += 1
            if ready_count[0] == args.connections:
                opened.set()

    started = time.perf_counter()
    try:
        # No client pings: a browser sends none (it answers the server's, as this client does).
        async with connect(url, ping_interval=None, open_timeout=60, proxy=None, max_size=2**22) as ws:
            try:
                await ws.send(json.dumps({"type": "auth", "token": token}))
                ready = await frame(ws, time.perf_counter() + 60)
                if ready.get("type") != "ready":
                    conversation.error = f"auth: {ready.get('type')} {ready.get('code', '')}".strip()
                    return
                conversation.connect_ms = (time.perf_counter() - started) * 1000
            finally:
                counted()
            await go.wait()
            if args.ramp:  # each conversation's first question at its own moment within the ramp
                await asyncio.sleep(random.Random(args.seed + conversation.number).uniform(0, args.ramp))
            for turn, question in enumerate(questions):
                if turn and args.think:
                    await asyncio.sleep(args.think)
                message = Message(conversation.number, turn, time.perf_counter())
                conversation.messages.append(message)
                payload = {"type": "message", "content": question, "conversation_id": conversation.conversation_id}
                await ws.send(json.dumps(payload))
                deadline = message.sent + args.timeout
                while True:
                    try:
                        data = await frame(ws, deadline)
                    except TimeoutError:
                        message.error = "timeout"
                        return
                    kind = data.get("type")
                    elapsed = (time.perf_counter() - message.sent) * 1000
                    if kind == "delta":
                        message.deltas += 1
                        if message.first_delta_ms is None:
                            message.first_delta_ms = elapsed
                    elif kind == "response":
                        message.response_ms = elapsed
                        message.grounded = bool(data.get("grounded"))
                        if not data.get("message_id") or not data.get("conversation_id"):
                            message.error = "response without ids"
                        elif conversation.conversation_id not in (None, data["conversation_id"]):
                            message.error = "response of another conversation"
                        conversation.conversation_id = data.get("conversation_id")
                        break
                    elif kind == "error":
                        message.error = f"error frame: {data.get('code')}"
                        break
                    else:
                        message.error = f"unexpected frame: {kind}"
                        break
                if message.error:
                    return
    except ConnectionClosed as error:
        conversation.close_code = error.rcvd.code if error.rcvd else None
        conversation.error = f"closed: {conversation.close_code} {error.rcvd.reason if error.rcvd else ''}".strip()
    except (OSError, InvalidHandshake, TimeoutError) as error:
        conversation.error = f"connect: {type(error).__name__}: {error}"[:200]
    finally:
        counted()


async def run_load(
    base: str, tokens: list[str], plans: list[list[str]], args: argparse.Namespace
) -> tuple[list[Conversation], dict[str, float]]:
    url = base.replace("http://", "ws://") + "/api/v1/chat/ws"
    conversations = [Conversation(number, number % len(tokens)) for number in range(args.connections)]
    opened, go = asyncio.Event(), asyncio.Event()
    ready_count = [0]
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(
            converse(url, tokens[c.user], c, plans[c.number], opened=opened, ready_count=ready_count, go=go, args=args)
        )
        for c in conversations
    ]
    await asyncio.wait_for(opened.wait(), timeout=300)
    connected = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    done = time.perf_counter()
    return conversations, {
        "connect_phase_seconds": round(connected - started, 2),
        "message_phase_seconds": round(done - connected, 2),
    }


async def read_back(base: str, tokens: list[str], conversations: list[Conversation]) -> dict[str, int]:
    """Each conversation over HTTP, as its owner: how many hold every question and answer."""
    counts: Counter[str] = Counter()
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def one(conversation: Conversation) -> None:
            if conversation.conversation_id is None:
                counts["missing"] += 1
                return
            async with gate:
                response = await client.get(
                    f"/api/v1/conversations/{conversation.conversation_id}",
                    headers={"Authorization": f"Bearer {tokens[conversation.user]}"},
                )
            if response.status_code != 200:
                counts[f"http {response.status_code}"] += 1
                return
            expected = 2 * sum(m.response_ms is not None for m in conversation.messages)
            counts["complete" if response.json()["message_count"] == expected else "incomplete"] += 1

        await asyncio.gather(*(one(c) for c in conversations))
    return dict(counts)


def server_problems(log: Path) -> dict[str, Any]:
    """Error and warning lines of the server's JSON log, by event."""
    events: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                events[f"text: {line.strip()[:80]}"] += 1
            continue
        if record.get("level") in ("error", "critical", "warning"):
            events[f"{record.get('level')}: {record.get('event')}"] += 1
    return dict(events)


# ---------------------------------------------------------------------------------------------
# main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--chunks", type=int, default=10_000, help="size of the cached library to serve")
    parser.add_argument("--connections", type=int, default=200, help="concurrent WebSocket conversations")
    parser.add_argument("--turns", type=int, default=3, help="questions per conversation, one after another")
    parser.add_argument("--users", type=int, default=None, help="members signing in (default: one per connection)")
    parser.add_argument("--think", type=float, default=0.0, help="seconds between a response and the next question")
    parser.add_argument("--ramp", type=float, default=0.0, help="first questions spread over this many seconds")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a message may take before it fails")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", action="store_true", help="keep the copied data dir and logs")
    args = parser.parse_args()
    users = min(args.users or args.connections, args.connections)
    if not (DATASET / "queries.jsonl").is_file():
        print(f"skipped: no SciFact queries at {DATASET}")
        print(json.dumps({"skipped": f"no dataset at {DATASET}"}))
        return
    plans = questions_for(args.connections, args.turns, args.seed)
    work = Path(tempfile.mkdtemp(prefix="tessera-ws-concurrency-"))
    log = work / "server.log"
    report: dict[str, Any] = {
        "machine": machine(),
        "load_average_start": load_average(),
        "chunks": args.chunks,
        "model": "extractive:v1",
        "connections": args.connections,
        "users": users,
        "turns": args.turns,
        "think_seconds": args.think,
        "ramp_seconds": args.ramp,
    }
    finished = False
    try:
        data_dir, library = copy_library(args, work)
        env = tessera_env(
            data_dir, None, TESSERA_EMBEDDINGS__PROVIDER="local", TESSERA_JOBS__ENABLED="false",
            TESSERA_RATE_LIMIT__AUTH="1000000/second",  # every user signs in from this one address
        )  # fmt: skip
        migrate(env)
        started = time.perf_counter()
        emails = asyncio.run(add_members(data_dir, library["org_id"], users))
        report["users_created_seconds"] = round(time.perf_counter() - started, 1)
        port = free_port()
        server = start_server("tessera.main:create_app", port, env, factory=True, log=log)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{base}/health", timeout=120)
            started = time.perf_counter()
            tokens, failures = asyncio.run(sign_in(base, emails))
            report["sign_in_seconds"] = round(time.perf_counter() - started, 1)
            report["sign_in_failures_retried"] = failures
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=60) as client:
                client.post("/api/v1/search", json={"query": "warm up", "mode": "hybrid"}).raise_for_status()
                wait_for_log(log, "keyword index loaded", timeout=600)
                warm = [json.loads(line)["text"] for line in (DATASET / "queries.jsonl").open() if line.strip()][:5]
                for question in warm:
                    client.post("/api/v1/ask", json={"question": question}).raise_for_status()
            report["rss_mib_before"] = round(rss_mib(server.pid), 1)
            print(
                f"… {args.connections} connections, {users} users, {args.turns} turns (load {load_average()})",
                file=sys.stderr,
                flush=True,
            )
            with RssSampler(server.pid) as rss:
                conversations, phases = asyncio.run(run_load(base, tokens, plans, args))
            report["load_average_end"] = load_average()
            report["read_back"] = asyncio.run(read_back(base, tokens, conversations))
            report["rss_mib_after"] = round(rss_mib(server.pid), 1)
        finally:
            stop(server)
        messages = [m for c in conversations for m in c.messages]
        answered = [m for m in messages if m.response_ms is not None and m.error is None]
        errors: Counter[str] = Counter(m.error for m in messages if m.error)
        errors.update(c.error for c in conversations if c.error)
        report |= {
            **phases,
            "messages_planned": args.connections * args.turns,
            "messages_answered": len(answered),
            # A failed message ends its conversation: the turns after it are not asked.
            "messages_unanswered": args.connections * args.turns - len(answered),
            "errors": dict(errors),
            "error_count": sum(errors.values()),
            "close_codes": dict(Counter(str(c.close_code) for c in conversations if c.close_code is not None)),
            "connect_ms": summary([c.connect_ms for c in conversations if c.connect_ms is not None]),
            "message_latency_ms": summary([m.response_ms for m in answered if m.response_ms is not None]),
            "first_delta_ms": summary([m.first_delta_ms for m in answered if m.first_delta_ms is not None]),
            "by_turn_latency_ms": {
                str(turn): summary([m.response_ms for m in answered if m.turn == turn and m.response_ms is not None])
                for turn in range(args.turns)
            },
            "answers_without_delta": sum(m.first_delta_ms is None for m in answered),
            "grounded_share": round(sum(bool(m.grounded) for m in answered) / max(len(answered), 1), 3),
            "throughput_messages_per_second": round(len(answered) / max(phases["message_phase_seconds"], 1e-9), 2),
            "server_pings_received": sum(c.server_pings for c in conversations),
            "mirrored_frames_received": sum(c.mirrored_frames for c in conversations),
            "rss_mib_peak": round(max(rss.samples), 1) if rss.samples else None,
            "server_log_problems": server_problems(log),
        }
        finished = True
    finally:
        if args.keep or not finished:  # a failed run keeps its data dir and server log
            report["work_dir"] = str(work)
            print(f"kept {work} (server log: {log})", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_summary(report)
    out = ROOT / "bench" / "results" / f"ws-concurrency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"results: {out}", file=sys.stderr)
    print(json.dumps(report))


def print_summary(report: dict[str, Any]) -> None:
    def line(name: str, values: dict[str, float]) -> str:
        if not values.get("n"):
            return f"  {name:<22} -"
        cells = " / ".join(f"{values[k]:,.1f}" for k in ("p50", "p95", "p99", "max"))
        return f"  {name:<22} p50 / p95 / p99 / max {cells} ms (n={values['n']})"

    print(
        "\n".join(
            [
                f"{report['connections']} WebSocket conversations x {report['turns']} turns, {report['users']} users, "
                f"{report['chunks']:,} chunks, one worker — {report['machine']}",
                f"  load average {report['load_average_start']} → {report.get('load_average_end')}",
                f"  answered {report['messages_answered']} / {report['messages_planned']}, "
                f"errors {report['error_count']} {report['errors'] or ''}",
                line("connect + auth", report["connect_ms"]),
                line("send → first delta", report["first_delta_ms"]),
                line("send → response", report["message_latency_ms"]),
                f"  throughput {report['throughput_messages_per_second']} messages/s over "
                f"{report['message_phase_seconds']} s; RSS {report['rss_mib_before']} → peak "
                f"{report['rss_mib_peak']} MiB; read back {report['read_back']}",
                f"  server log: {report['server_log_problems'] or 'no warnings or errors'}",
                f"  sign-in failures, retried: {report.get('sign_in_failures_retried') or 'none'}",
            ]
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
