"""Intent classification on banking77 (../shared/data/banking77): the `logistic` and `centroid`
classifiers side by side, then out-of-scope detection with intents held out, through the same code as
`tessera eval intent` and `POST /ai/intents/sets/{id}/train` (tessera.core.intents).

1. All 77 intents: accuracy and macro-F1 on the 3,080 test texts (train on the 10,003).
2. Out of scope: `--held-out` intents (10 of 77) drawn per seed are out of scope; the 67 others are the
   set's intents. Two protocols, each calibrating the threshold on validation data carved from train
   (a stratified 20% holdout of the in-scope training texts, plus the held-out intents' training texts
   where they are not trained on):
   - `examples`: the held-out intents' training texts are the set's out-of-scope examples (a class of
     their own for `logistic`), as a user lists what the assistant must not answer (CLINC's oos-train);
   - `unseen`: the held-out intents are never trained on; their training texts only calibrate.
   Test: in-scope accuracy (right and not rejected) over the in-scope test texts, out-of-scope recall
   over the held-out intents' test texts.
3. Which score the threshold applies to (`unseen`, logistic, fit on 80% of train, threshold chosen on
   the other 20% plus the held-out intents' training texts by the same rule): the probability alone
   (max softmax), the linear model's max logit and energy (log-sum-exp of the logits), the similarity
   to the nearest example of the intent alone, and the geometric mean of probability and similarity
   (Tessera's `confidence`). AUROC: in-scope against out-of-scope test texts, threshold-free.

Embeddings are cached on disk (`--cache`, default /tmp/tessera-bench-cache) by model and texts.

    .venv/bin/python bench/intent_eval.py                      # seeds 0 1 2
    .venv/bin/python bench/intent_eval.py --seeds 0 --no-ablation
    .venv/bin/python bench/intent_eval.py --api-only                 # train and classify over HTTP

Results: Markdown tables on stdout and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from tessera.core.embeddings.local import LocalOnnxEmbedder
from tessera.core.intents import classifier
from tessera.core.intents.evaluation import IntentData, evaluate_intents, held_out_intents, load_intent_data, macro_f1

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BANKING77 = ROOT.parent / "shared" / "data" / "banking77" / "banking_data"


def cached_vectors(texts: list[str], cache: Path) -> tuple[str, np.ndarray[Any, Any]]:
    embedder = LocalOnnxEmbedder()
    digest = hashlib.sha256("\n".join([embedder.name, *texts]).encode()).hexdigest()[:16]
    path = cache / f"intents-{digest}.npy"
    if path.is_file():
        return embedder.name, np.load(path)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    vectors = asyncio.run(embedder.embed(texts, kind="query"))
    print(f"embedded {len(texts)} texts in {time.perf_counter() - started:.1f} s (cached in {path})")
    np.save(path, vectors)
    return embedder.name, vectors


def run(data: IntentData, lookup: dict[str, np.ndarray[Any, Any]], model: str, **options: Any) -> dict[str, Any]:
    async def embed(texts: list[str]) -> tuple[str, classifier.F32]:
        return model, np.stack([lookup[text] for text in texts])

    return asyncio.run(evaluate_intents(data, embed, **options))


def ablation(
    data: IntentData, lookup: dict[str, np.ndarray[Any, Any]], held: list[str], seed: int
) -> dict[str, dict[str, float]]:
    """`unseen` protocol, logistic: the threshold on each score in turn, chosen by the same rule."""
    labels = sorted({label for _, label in data.train} - set(held))
    index = {label: i for i, label in enumerate(labels)}
    outside = len(labels)

    def arrays(rows: list[tuple[str, str]]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        return np.stack([lookup[t] for t, _ in rows]), np.array([index.get(label, outside) for _, label in rows])

    vectors, classes = arrays(data.train)
    inside = classes < outside
    fold, _ = classifier._folds(classes[inside], outside, np.random.default_rng(seed))
    fit_mask = np.flatnonzero(inside)[fold != 0]
    model = classifier.fit(vectors[fit_mask], classes[fit_mask], labels, classifier="logistic")
    validation = np.concatenate([np.flatnonzero(inside)[fold == 0], np.flatnonzero(~inside)])
    test_vectors, test_classes = arrays(data.test)
    assert model.coef is not None
    assert model.intercept is not None
    figures = {}
    for name in ("probability", "max_logit", "energy", "similarity", "confidence"):
        scored = {}
        for part, (x, y) in {"validation": (vectors[validation], classes[validation]),
                             "test": (test_vectors, test_classes)}.items():  # fmt: skip
            scores = model.predict(x)
            top = scores.probability.argmax(axis=1)
            rows = np.arange(len(top))
            logits = x @ model.coef.T + model.intercept  # the linear model's, before the neighbours' vote
            if name == "max_logit":
                value = logits.max(axis=1)
            elif name == "energy":  # log-sum-exp of the logits (Liu et al. 2020)
                value = np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1)) + logits.max(axis=1)
            else:
                value = getattr(scores, name)[rows, top]
            scored[part] = (value.astype(np.float32), top == y, y >= outside)
        value, correct, out = scored["validation"]
        threshold, _, _ = classifier.choose_threshold(value, correct, out, np.zeros(len(value), bool), retention=0.95)
        value, correct, out = scored["test"]
        accepted = value >= threshold
        figures[name] = {
            "threshold": round(threshold, 4),
            "in_scope_accuracy": float((correct & accepted)[~out].mean()),
            "out_of_scope_recall": float((~accepted)[out].mean()),
            "auroc": auroc(value, ~out),
        }
    return figures


def auroc(score: np.ndarray[Any, Any], positive: np.ndarray[Any, Any]) -> float:
    """Probability that an in-scope text scores above an out-of-scope one (ties count half)."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    for value in np.unique(score):  # average ranks of ties
        tied = score == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def api_timing(data: IntentData, classify: int) -> dict[str, Any]:
    """The whole set through the HTTP API on a throwaway SQLite database (bundled model, in process):
    create, train (embedding included), then classify test texts one request at a time."""
    import tempfile

    from tessera.cli import run_migrations
    from tessera.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, environment="test", secret_key="bench-secret-key-that-is-long-enough-0123456789",
            data_dir=Path(folder), database_url=f"sqlite:///{folder}/bench.db", jobs={"enabled": False},
            rate_limit={"enabled": False}, log_level="WARNING", ai={"warm_up": False},
        )  # fmt: skip
        run_migrations(settings)
        return asyncio.run(_api_timing(settings, data, classify))


async def _api_timing(settings: Any, data: IntentData, classify: int) -> dict[str, Any]:
    import httpx

    from tessera.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as http:
            account = {"email": "bench@example.com", "password": "Analytical-Engine-1843", "name": "Bench"}
            tokens = (await http.post("/api/v1/auth/register", json=account)).json()
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            intents: dict[str, list[str]] = {}
            for text, label in data.train:
                intents.setdefault(label, []).append(text)
            body = {"name": "banking77", "intents": [{"name": k, "examples": v} for k, v in intents.items()]}
            created = (await http.post("/api/v1/ai/intents/sets", json=body, headers=headers)).json()
            started = time.perf_counter()
            version = await http.post(f"/api/v1/ai/intents/sets/{created['id']}/train", headers=headers)
            train_seconds = time.perf_counter() - started
            assert version.status_code == 201, version.text
            latencies, correct = [], 0
            for text, label in data.test[:: max(1, len(data.test) // classify)][:classify]:
                started = time.perf_counter()
                answer = await http.post(
                    "/api/v1/ai/intents/classify", json={"text": text, "set": "banking77"}, headers=headers
                )
                latencies.append(1000 * (time.perf_counter() - started))
                correct += answer.json()["intent"] == label
    return {
        "train_request_seconds": round(train_seconds, 1),
        "training_seconds_reported": version.json()["training_seconds"],
        "classify_p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "classify_p95_ms": round(float(np.percentile(latencies, 95)), 1),
        "classified": len(latencies),
        "accuracy_of_those": round(correct / len(latencies), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=BANKING77, help="Folder with train.csv and test.csv.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--held-out", type=int, default=10, help="Intents held out as out of scope per seed.")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/tessera-bench-cache"))
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--api", action="store_true", help="Also time training and classifying over the HTTP API.")
    parser.add_argument("--api-only", action="store_true", help="Only the HTTP API timing.")
    args = parser.parse_args()

    data = load_intent_data(args.data / "train.csv", args.data / "test.csv")
    if args.api or args.api_only:
        timing = api_timing(data, classify=300)
        print("\n### Over the HTTP API (SQLite, in process)\n")
        print(json.dumps(timing, indent=2))
        if args.api_only:
            return
    texts = list(dict.fromkeys(text for rows in (data.train, data.test) for text, _ in rows))
    model, vectors = cached_vectors(texts, args.cache)
    lookup = dict(zip(texts, vectors, strict=True))
    report: dict[str, Any] = {"machine": platform.platform(), "model": model, "date": time.strftime("%Y-%m-%d")}

    full = run(data, lookup, model, classifiers=("logistic", "centroid"))
    report["all_intents"] = full
    print(f"\n### All {full['intents']} intents ({full['train_texts']} train, {full['test_texts']} test)\n")
    print("| classifier | accuracy | macro-F1 | train s (with calibration) | classify ms/text |")
    print("|---|---:|---:|---:|---:|")
    for name, figures in full["classifiers"].items():
        print(f"| {name} | {figures['accuracy']:.4f} | {figures['macro_f1']:.4f} | {figures['train_seconds']:.1f} "
              f"| {figures['predict_ms_per_text']:.2f} |")  # fmt: skip

    # The linear model alone, without the nearest examples' vote that `logistic` blends in.
    labels = sorted({label for _, label in data.train})
    index = {label: i for i, label in enumerate(labels)}
    linear = classifier.fit(
        np.stack([lookup[t] for t, _ in data.train]), [index[label] for _, label in data.train], labels,
        classifier="logistic",
    )  # fmt: skip
    assert linear.coef is not None
    assert linear.intercept is not None
    test_vectors = np.stack([lookup[t] for t, _ in data.test])
    predicted = (test_vectors @ linear.coef.T + linear.intercept).argmax(axis=1)
    truth = np.array([index[label] for _, label in data.test])
    report["linear_alone"] = {"accuracy": float((predicted == truth).mean()), "macro_f1": macro_f1(truth, predicted)}
    print(f"| logistic regression alone (no neighbours' vote) | {report['linear_alone']['accuracy']:.4f} | "
          f"{report['linear_alone']['macro_f1']:.4f} | | |")  # fmt: skip

    rows = []
    for seed in args.seeds:
        for protocol in ("examples", "unseen"):
            result = run(
                data, lookup, model, classifiers=("logistic", "centroid"), oos_intents=args.held_out, seed=seed,
                oos_train=protocol == "examples",
            )  # fmt: skip
            for figures in result["classifiers"].values():
                rows.append({"seed": seed, "protocol": protocol, "held_out": result["held_out_intents"], **figures})
    report["out_of_scope"] = rows
    print(f"\n### Out of scope: {args.held_out} of 77 intents held out per seed\n")
    print("| seed | protocol | classifier | accuracy (67) | threshold | in-scope acc. | OOS recall | OOS precision |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['seed']} | {row['protocol']} | {row['classifier']} | {row['accuracy']:.4f} | "
              f"{row['threshold']:.3f} | {row['in_scope_accuracy']:.4f} | {row['out_of_scope_recall']:.4f} | "
              f"{row['out_of_scope_precision']:.4f} |")  # fmt: skip
    for seed in args.seeds:
        held = held_out_intents(sorted({label for _, label in data.train}), args.held_out, seed)
        print(f"seed {seed}: held out {', '.join(held)}")

    if not args.no_ablation:
        report["ablation"] = {}
        print("\n### Score for the threshold (`unseen`, logistic)\n")
        print("| seed | score | AUROC | in-scope acc. | OOS recall |")
        print("|---:|---|---:|---:|---:|")
        for seed in args.seeds:
            held = held_out_intents(sorted({label for _, label in data.train}), args.held_out, seed)
            figures = ablation(data, lookup, held, seed)
            report["ablation"][seed] = figures
            for name, f in figures.items():
                print(f"| {seed} | {name} | {f['auroc']:.3f} | {f['in_scope_accuracy']:.4f} | "
                      f"{f['out_of_scope_recall']:.4f} |")  # fmt: skip

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"intent_eval-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
