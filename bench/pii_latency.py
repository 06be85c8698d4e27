"""PII analyze latency in process: cold load, then p50/p95 on a ~300-word clinical-style note.

The note is written for this benchmark (hearing-care visit with names, dates, address, phone,
e-mail, identifiers, audiogram values and medication frequencies). Each call analyses the whole
note with every entity type; `--threads 2` also runs two callers at once, as the API's worker pool
does. The machine may be shared with other work: the table also gives the fastest call, each
call's CPU time (thread time) and the load average.

    .venv/bin/python bench/pii_latency.py                  # 200 calls after 10 warm-up calls
    .venv/bin/python bench/pii_latency.py --calls 500 --threads 2 --json

Results: a Markdown table on stdout and JSON in bench/results/pii_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

NOTE = """\
Visit date: 14 March 2024, 10:30. Clinician: Dr. Helen Marsh, Audiology Department.
Patient: Mr. Thomas Brennan, date of birth 02/11/1951 (72 year old male), MRN 00418822,
member ID WX-448120-07. Address: 27 Larkspur Avenue, Apt 4B, Springfield, IL 62704.
Phone (mobile) 217-555-0143, e-mail tom.brennan@example.com. Next of kin: his daughter
Claire Brennan, who lives in Chicago and attended today's appointment.

Subjective: Mr. Brennan reports gradual hearing loss in both ears over the past three years,
worse on the left. He has difficulty following conversation in restaurants and at family
gatherings, and his wife says the television volume is too loud. He reports intermittent
tinnitus, described as a high-pitched ringing, mostly at night. No vertigo, no otalgia, no
drainage. He takes amlodipine 5 mg daily and atorvastatin 20 mg at bedtime, and uses
fluticasone nasal spray twice a day during the spring. He worked for 30 years as a machinist
at a steel plant without consistent hearing protection.

Objective: Otoscopy clear bilaterally. Tympanometry type A both ears. Pure-tone audiogram:
right ear 20 25 30 45 55 60 dB HL at 250 500 1000 2000 4000 8000 Hz; left ear 25 30 40 55 65
70 dB HL at the same frequencies. Word recognition 88% right, 76% left at 70 dB HL.
Thresholds 40 dB at 2000 Hz on the left.

Assessment: bilateral sloping sensorineural hearing loss, mild to moderately severe, left worse
than right, consistent with noise exposure and age. Tinnitus, bilateral, mild handicap.

Plan: bilateral receiver-in-canal hearing aids recommended; trial period of 30 days. Fitting
booked for 28 March 2024 at 9:00 at the Oak Street clinic, 400 Oak Street, Suite 210.
Tinnitus counselling leaflet given. Review in 6 weeks. Copy of this report sent to his GP,
Dr. Aisha Rahman, fax 217-555-0199. Insurance: BlueCross policy number BC-99310-22.
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="timed calls per thread")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="concurrent callers sharing one detector")
    parser.add_argument("--json", action="store_true", help="print the JSON result last")
    args = parser.parse_args()

    started = time.perf_counter()
    from tessera.core.privacy.presidio import PresidioDetector
    from tessera.settings import PrivacySettings

    import_seconds = time.perf_counter() - started
    detector = PresidioDetector(PrivacySettings())
    cold_seconds = time.perf_counter() - started
    first_started = time.perf_counter()
    entities = detector.analyze(NOTE)
    first_call_ms = (time.perf_counter() - first_started) * 1000
    for _ in range(args.warmup):
        detector.analyze(NOTE)

    latencies: list[float] = []
    cpu: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        mine: list[float] = []
        mine_cpu: list[float] = []
        for _ in range(args.calls):
            call_started, cpu_started = time.perf_counter(), time.thread_time()
            detector.analyze(NOTE)
            mine.append((time.perf_counter() - call_started) * 1000)
            mine_cpu.append((time.thread_time() - cpu_started) * 1000)
        with lock:
            latencies.extend(mine)
            cpu.extend(mine_cpu)

    wall_started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall_started

    result: dict[str, Any] = {
        "words": len(NOTE.split()),
        "entities_found": len(entities),
        "threads": args.threads,
        "calls": len(latencies),
        "import_s": round(import_seconds, 2),
        "cold_load_s": round(cold_seconds, 2),
        "detector_load_s": round(detector.load_seconds, 2),
        "first_call_ms": round(first_call_ms, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "min_ms": round(min(latencies), 1),
        "max_ms": round(max(latencies), 1),
        "cpu_p50_ms": round(statistics.median(cpu), 1),
        "cpu_p95_ms": round(percentile(cpu, 0.95), 1),
        "throughput_per_s": round(len(latencies) / wall, 1),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    columns = ("words", "threads", "calls", "cold load s", "first call ms", "p50 ms", "p95 ms", "min ms")
    print("| " + " | ".join((*columns, "CPU p50 / p95 ms", "calls/s")) + " |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {result['words']} | {args.threads} | {result['calls']} | {result['cold_load_s']} | "
        f"{result['first_call_ms']} | {result['p50_ms']} | {result['p95_ms']} | {result['min_ms']} | "
        f"{result['cpu_p50_ms']} / {result['cpu_p95_ms']} | {result['throughput_per_s']} |"
    )
    print(f"load average (1, 5, 15 min) after the run: {result['load_average']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pii_latency.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
