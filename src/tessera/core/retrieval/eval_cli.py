"""`tessera eval retrieval`: nDCG@10, recall and MRR of each search mode on a BEIR dataset."""

from __future__ import annotations

import asyncio
import enum
import json
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera.core.retrieval.fusion import DEFAULT_FUSION, DEFAULT_SEMANTIC_WEIGHT
from tessera.core.retrieval.schemas import Mode

eval_app = typer.Typer(help="Measure Tessera on public benchmarks.", no_args_is_help=True)

SUMMARY_KEYS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "latency_p50_ms", "latency_p95_ms")
MODES: tuple[Mode, ...] = get_args(Mode)
STAGE_LABELS = {"storing": "Storing documents", "processing": "Parsing, chunking, embedding"}


class ModeChoice(enum.StrEnum):
    keyword = "keyword"
    semantic = "semantic"
    hybrid = "hybrid"
    all = "all"


class BackendChoice(enum.StrEnum):
    sqlite = "sqlite"
    postgresql = "postgresql"


class FusionChoice(enum.StrEnum):
    weighted = "weighted"
    dbsf = "dbsf"
    rrf = "rrf"


DEFAULT_FUSION_CHOICE = FusionChoice(DEFAULT_FUSION)


@eval_app.callback()
def _group() -> None:
    """Measure Tessera on public benchmarks."""


def selected_modes(choices: list[ModeChoice]) -> list[Mode]:
    """In the order given, each once; `all` is every mode; nothing is `hybrid` (the API's default)."""
    modes: list[Mode] = []
    for choice in choices:
        for mode in MODES:
            if (choice is ModeChoice.all or mode == choice.value) and mode not in modes:
                modes.append(mode)
    return modes or ["hybrid"]


class _Bars:
    """One rich progress bar per stage, made on first report."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        task = self.tasks.get(stage)
        if task is None:
            label = STAGE_LABELS.get(stage) or f"Queries ({stage.partition(':')[2]})"
            task = self.tasks[stage] = self.progress.add_task(label, total=total)
        self.progress.update(task, completed=done, total=total)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON line: one mode's figures, or every mode's under `modes` plus the first mode's."""
    modes: dict[str, dict[str, Any]] = result["modes"]
    first = next(iter(modes.values()))
    if len(modes) == 1:
        return first
    return {**first, "modes": modes}


def print_table(console: Console, result: dict[str, Any]) -> None:
    modes: dict[str, dict[str, Any]] = result["modes"]
    table = Table(
        title=f"{result['dataset']} ({result['split']}): {result['queries']} queries, {result['documents']} "
        f"documents, {result['chunks']} chunks, ingested in {result['ingest_seconds']:.1f} s on {result['backend']}"
    )
    table.add_column("mode")
    for key in SUMMARY_KEYS:
        table.add_column(key, justify="right")
    for mode, figures in modes.items():
        table.add_row(mode, *(f"{figures[key]:.4f}" if "@" in key else f"{figures[key]:.1f}" for key in SUMMARY_KEYS))
    console.print(table)
    models = {figures["embedding_model"] for figures in modes.values() if figures["embedding_model"]}
    if models:
        console.print(f"embedding model: {', '.join(sorted(models))}")


@eval_app.command("retrieval")
def retrieval(
    dataset: Annotated[
        Path, typer.Option(help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.", show_default=False)
    ],
    split: Annotated[str, typer.Option(help="Which qrels file to evaluate.")] = "test",
    mode: Annotated[
        list[ModeChoice] | None,
        typer.Option(help="Search mode; repeat for several (one ingest serves them all), or `all`."),
    ] = None,
    backend: Annotated[BackendChoice, typer.Option(help="Database of the throwaway Tessera.")] = BackendChoice.sqlite,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the figures as one JSON object on the last line of stdout.")
    ] = False,
    limit_queries: Annotated[int | None, typer.Option(min=1, help="Only the first N queries.")] = None,
    fusion: Annotated[FusionChoice, typer.Option(help="Hybrid fusion.")] = DEFAULT_FUSION_CHOICE,
    semantic_weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Weight of semantic scores in dbsf and weighted fusion.")
    ] = DEFAULT_SEMANTIC_WEIGHT,
) -> None:
    """Ingest a BEIR corpus into a throwaway Tessera, run the queries, print nDCG@10, recall, MRR, latency."""
    from tessera.core.errors import AppError
    from tessera.core.retrieval.evaluation import NotBeirDataset, evaluate_retrieval, load_beir

    errors = Console(stderr=True)
    try:
        load_beir(dataset, split)  # fail fast, before a database is made
    except NotBeirDataset as error:
        errors.print(f"[red]Error:[/red] {error.message}", highlight=False)
        raise typer.Exit(2) from error
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
    )
    try:
        with progress:
            result = asyncio.run(
                evaluate_retrieval(
                    dataset, split=split, modes=selected_modes(mode or []), backend=backend.value,
                    fusion=fusion.value, semantic_weight=semantic_weight, limit_queries=limit_queries,
                    progress=_Bars(progress),
                )
            )  # fmt: skip
    except AppError as error:
        errors.print(f"[red]Error:[/red] {error.message}", highlight=False)
        raise typer.Exit(1) from error
    print_table(errors if json_output else Console(), result)
    if json_output:
        typer.echo(json.dumps(summary(result)))
