"""`tessera` command line: serve, worker, migrate, admin, version."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

import tessera
from tessera.core.auth.models import Role
from tessera.core.retrieval.eval_cli import eval_app
from tessera.settings import Settings, format_settings_error

app = typer.Typer(help="Tessera: the AI backend for document-heavy products.", no_args_is_help=True)
admin = typer.Typer(help="Administration tasks.", no_args_is_help=True)
app.add_typer(admin, name="admin")
app.add_typer(eval_app, name="eval", help="Measure quality on your data: retrieval, FAQ matching, intents, PII.")

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"


def load_settings() -> Settings:
    try:
        return Settings()
    except Exception as error:
        typer.secho(format_settings_error(error), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error


def _alembic_config(settings: Settings) -> object:
    from alembic.config import Config

    config = Config(str(ALEMBIC_DIR.parent / "alembic.ini"))
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["settings"] = settings
    return config


def run_migrations(settings: Settings) -> None:
    from alembic import command

    command.upgrade(_alembic_config(settings), "head")  # type: ignore[arg-type]


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(tessera.__version__)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run repeatedly)."""
    settings = load_settings()
    typer.echo(f"Migrating {_describe_db(settings)} …")
    run_migrations(settings)
    typer.secho("Database is up to date.", fg=typer.colors.GREEN)


class ServeRole(StrEnum):
    api = "api"
    ai = "ai"


AI_SERVICE_PORT = 8002


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default TESSERA_HTTP__HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default TESSERA_HTTP__PORT).")] = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (PostgreSQL deployments).")] = 1,
    role: Annotated[
        ServeRole,
        typer.Option(
            help="`api`: the whole API (default). `ai`: only the AI service (PII, entities, intents, "
            "embeddings, default port 8002), which APIs started with TESSERA_AI__URL call."
        ),
    ] = ServeRole.api,
) -> None:
    """Start the HTTP API. With SQLite it also runs the job worker in-process."""
    import uvicorn

    settings = load_settings()
    host = host or settings.http.host
    port = port or (AI_SERVICE_PORT if role is ServeRole.ai else settings.http.port)
    if role is ServeRole.ai:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        typer.secho(f"Tessera {tessera.__version__} AI service on {_describe_db(settings)}", bold=True)
        typer.echo(f"  Health:    http://{shown}:{port}/api/v1/ai/health")
        typer.echo(f"  API side:  TESSERA_AI__URL=http://{shown}:{port} tessera serve (same TESSERA_SECRET_KEY)")
        uvicorn.run(
            "tessera.main:create_ai_app",
            factory=True,
            host=host,
            port=port,
            reload=reload,
            workers=None if reload else workers,
            log_config=None,
            server_header=False,
        )
        return
    if workers > 1 and settings.is_sqlite:
        typer.secho("Several workers need PostgreSQL; starting one.", fg=typer.colors.YELLOW, err=True)
        workers = 1
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    typer.secho(f"Tessera {tessera.__version__} on {_describe_db(settings)}", bold=True)
    typer.echo(f"  API docs:  http://{shown}:{port}/docs")
    typer.echo(f"  Health:    http://{shown}:{port}/health/ready")
    typer.echo("  Sign in:   POST /api/v1/auth/register {email, password, name}, then /api/v1/auth/login;")
    typer.echo("             or create a user with `tessera admin create-user --email you@example.com --password …`")
    typer.echo("             and use the Authorize button on the docs page.")
    uvicorn.run(
        "tessera.main:create_app",
        factory=True,
        host=host,
        port=port,
        reload=reload,
        workers=None if reload else workers,
        log_config=None,  # our structlog set-up handles uvicorn's loggers
        proxy_headers=settings.rate_limit.trust_forwarded_for,
        server_header=False,
    )


@app.command()
def worker() -> None:
    """Run durable jobs (DBOS queues and schedules) until stopped."""
    from tessera.core.jobs.runtime import run_worker_forever
    from tessera.core.observability.logging import configure_logging

    settings = load_settings()
    if not settings.jobs.enabled:
        typer.secho("Jobs are turned off (TESSERA_JOBS__ENABLED=false); nothing to run.", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    configure_logging(settings)
    from tessera.core.documents.runtime import PipelineContext

    PipelineContext.configure(settings)
    run_worker_forever(settings)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files, or folders with --recursive.")],
    collection: Annotated[str, typer.Option(help="Collection name (created when missing, unless --no-create).")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into folders.")] = False,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="key=value, repeatable; JSON values keep their type.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="Server base URL; without it the local data dir is used.")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="TESSERA_API_KEY", help="API key for --url (or TESSERA_API_KEY).")
    ] = None,
    org: Annotated[str | None, typer.Option(help="Local mode: organization name, slug or id.")] = None,
    user: Annotated[str | None, typer.Option(help="Local mode: act as this member (default: an owner).")] = None,
    create: Annotated[bool, typer.Option(help="Create the collection when it does not exist.")] = True,
    wait: Annotated[bool, typer.Option(help="Server mode: wait until every document is processed.")] = True,
) -> None:
    """Ingest files into a collection with a progress bar and a summary; exit 1 if any failed."""
    from rich.console import Console

    from tessera.core.documents import ingest_cli
    from tessera.core.errors import AppError

    console = Console(stderr=True)
    try:
        files = ingest_cli.collect_paths(paths, recursive=recursive)
        pairs = ingest_cli.parse_metadata_pairs(metadata or [])
        if not files:
            typer.secho("No files to ingest.", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(1)
        if url:
            if not api_key:
                typer.secho("--url needs --api-key (or TESSERA_API_KEY).", fg=typer.colors.RED, err=True)
                raise typer.Exit(2)
            report = ingest_cli.ingest_remote(
                url, api_key, files, collection=collection, metadata=pairs, create=create, wait=wait, console=console
            )
        else:
            settings = load_settings()
            run_migrations(settings)
            report = asyncio.run(
                ingest_cli.ingest_local(
                    settings, files, collection=collection, metadata=pairs, org=org, user=user, create=create,
                    console=console,
                )
            )  # fmt: skip
    except AppError as error:
        typer.secho(f"Error: {error.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from error
    ingest_cli.print_report(Console(), report)
    if report.failed:
        raise typer.Exit(1)


@app.command("export")
def export_collection(
    collection: Annotated[str, typer.Option(help="Collection id, or its name in --org.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Archive to write (ZIP).", show_default=False)],
    org: Annotated[
        str | None, typer.Option(help="Organization name, slug or id (default: the collection's, or the only one).")
    ] = None,
) -> None:
    """Write a collection (documents, original files, texts, chunks, vectors) to one archive."""
    from rich.console import Console

    from tessera.core.retrieval import portability

    settings = load_settings()
    with _archive_errors():
        report = asyncio.run(
            portability.export_collection(
                settings, collection=collection, org=org, output=output, console=Console(stderr=True)
            )
        )
    counts = report.counts
    vectors = f"{counts['vectors']} vectors of {report.model}" if report.model else "no vectors"
    typer.secho(
        f"Exported '{report.collection_name}' ({report.collection_id}): {counts['documents']} documents, "
        f"{counts['chunks']} chunks, {vectors}, to {report.output} ({report.bytes:,} bytes, {report.seconds:.1f} s).",
        fg=typer.colors.GREEN,
    )


@app.command("import")
def import_collection(
    archive: Annotated[Path, typer.Argument(help="An archive written by `tessera export`.", show_default=False)],
    org: Annotated[str | None, typer.Option(help="Target organization name, slug or id.")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the new collection (default: the archived one's).")] = None,
) -> None:
    """Create a new collection from an archive; documents the organization already holds are skipped."""
    from rich.console import Console

    from tessera.core.retrieval import portability

    settings = load_settings()
    with _archive_errors():
        run_migrations(settings)
        report = asyncio.run(
            portability.import_collection(settings, archive, org=org, name=name, console=Console(stderr=True))
        )
    typer.secho(
        f"Imported {report.documents} documents ({report.chunks} chunks, {report.vectors} vectors) into "
        f"'{report.collection_name}' ({report.collection_id}) in {report.seconds:.1f} s.",
        fg=typer.colors.GREEN,
    )
    if report.reembedding == "done":
        typer.echo("Vectors of another model (or none) in the archive: the chunks were embedded again here.")
    elif report.reembedding:
        typer.echo(f"Vectors of another model (or none) in the archive: re-embedding queued as {report.reembedding}.")
    if report.reprocessing:
        typer.echo(f"{report.reprocessing} documents were still being processed in the source: processing them again.")
    for duplicate in report.duplicates:
        typer.echo(f"duplicate: {duplicate.filename} is already stored as document {duplicate.existing_document_id}")
    if report.duplicates:
        typer.echo(f"{len(report.duplicates)} duplicate(s) skipped (same content already in the organization).")


class IntentClassifierChoice(StrEnum):
    logistic = "logistic"
    centroid = "centroid"
    all = "all"


@eval_app.command("intent")
def eval_intent(
    train: Annotated[
        Path, typer.Option(help="Training data: `text,category` CSV, or CLINC-style JSON.", show_default=False)
    ],
    test: Annotated[
        Path | None, typer.Option(help="Test data, CSV or JSON (default: the JSON's `test` and `oos_test`).")
    ] = None,
    classifier: Annotated[
        list[IntentClassifierChoice] | None, typer.Option(help="`logistic` (default), `centroid` or `all`; repeatable.")
    ] = None,
    oos_intents: Annotated[int, typer.Option(min=0, help="Hold out N intents (seeded) as out of scope.")] = 0,
    oos_labels: Annotated[
        list[str] | None, typer.Option(help="Labels of out-of-scope rows, comma-separated or repeated (CLINC: `oos`).")
    ] = None,
    oos_train: Annotated[
        bool, typer.Option(help="Train on out-of-scope rows as a class; without, they only calibrate the threshold.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the held-out intents and the calibration split.")] = 0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the figures as one JSON object on the last line of stdout.")
    ] = False,
) -> None:
    """Train intent classifiers on labelled texts; print accuracy, macro-F1 and out-of-scope recall."""
    from tessera.core.intents.evaluation import run_cli

    chosen = list(dict.fromkeys(classifier or [IntentClassifierChoice.logistic]))
    names = ["logistic", "centroid"] if IntentClassifierChoice.all in chosen else [c.value for c in chosen]
    code = run_cli(
        load_settings(), train=train, test=test, classifiers=names, oos_intents=oos_intents,  # type: ignore[arg-type]
        oos_labels=oos_labels or [], oos_train=oos_train, seed=seed, json_output=json_output,
    )  # fmt: skip
    raise typer.Exit(code)


class PiiEngineChoice(StrEnum):
    tessera = "tessera"
    presidio_untuned = "presidio-untuned"


class PiiSubsetChoice(StrEnum):
    all = "all"
    even = "even"
    odd = "odd"


@eval_app.command("pii")
def eval_pii(
    dataset: Annotated[
        Path,
        typer.Option(
            help="Presidio-research JSON: a list of {full_text, spans: [{entity_type, start_position, end_position}]}.",
            show_default=False,
        ),
    ],
    label_map: Annotated[
        str | None,
        typer.Option(
            help="Dataset type -> Tessera type, over the default map: a JSON file, inline JSON, or "
            "`GPE=LOCATION,TITLE=` (empty: not scored)."
        ),
    ] = None,
    engine: Annotated[
        list[PiiEngineChoice] | None,
        typer.Option(help="`tessera` (default) or `presidio-untuned` (plain Presidio, same model); repeatable."),
    ] = None,
    subset: Annotated[
        PiiSubsetChoice, typer.Option(help="Samples at even or odd positions only (a development / held-out split).")
    ] = PiiSubsetChoice.all,
    score_threshold: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Lowest score counted (default: privacy.score_threshold)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the figures as one JSON object on the last line of stdout.")
    ] = False,
) -> None:
    """Run the PII detector on labelled text; print precision, recall and F1 per type and overall."""
    from tessera.core.privacy.evaluation import run_cli as run_pii_cli

    engines = [choice.value for choice in dict.fromkeys(engine or [PiiEngineChoice.tessera])]
    code = run_pii_cli(
        load_settings(), dataset=dataset, engines=engines, label_map=label_map, subset=subset.value,
        score_threshold=score_threshold, json_output=json_output,
    )  # fmt: skip
    raise typer.Exit(code)


@eval_app.command("faq")
def eval_faq(
    dataset: Annotated[
        Path,
        typer.Option(
            help="BEIR folder whose corpus entries are FAQs (`title` = question, `text` = answer) and whose "
            "queries are users' wordings: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.",
            show_default=False,
        ),
    ],
    split: Annotated[str, typer.Option(help="The qrels split to evaluate.")] = "test",
    feedback_split: Annotated[
        str | None,
        typer.Option(help="First replay this split's queries as helpful feedback (what learning from users adds)."),
    ] = None,
    limit_queries: Annotated[int | None, typer.Option(min=1, help="Evaluate the first N queries only.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the figures as one JSON object on the last line of stdout.")
    ] = False,
) -> None:
    """Load a corpus as FAQs and match its queries: top-1 accuracy, MRR@10, nDCG@10, no-match precision."""
    from tessera.modules.support.evaluation import run_cli as run_faq_cli

    code = run_faq_cli(
        load_settings(), dataset=dataset, split=split, feedback_split=feedback_split,
        limit_queries=limit_queries, json_output=json_output,
    )  # fmt: skip
    raise typer.Exit(code)


@admin.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="E-mail address (the sign-in name).")],
    password: Annotated[str, typer.Option(help="Password (the policy applies).")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the e-mail's name part).")] = None,
    org: Annotated[str | None, typer.Option(help="Organization name or id to join; created when new.")] = None,
    role: Annotated[Role, typer.Option(help="Role in that organization.")] = Role.owner,
) -> None:
    """Create a user, and an organization for them, from the command line."""
    from sqlalchemy.exc import SQLAlchemyError

    from tessera.core.admin import create_user_with_org
    from tessera.core.errors import AppError

    settings = load_settings()
    try:
        user_id, org_id, org_name = asyncio.run(
            create_user_with_org(settings, email=email, password=password, name=name, org=org, role=role)
        )
    except AppError as error:
        typer.secho(f"Error: {error.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from error
    except (SQLAlchemyError, OSError) as error:
        raise _database_unusable(error) from error
    typer.secho(f"Created {email} ({user_id}) as {role.value} of '{org_name}' ({org_id}).", fg=typer.colors.GREEN)


@admin.command("verify-audit")
def verify_audit(
    # A UUID option: a malformed id is a usage error (exit 2), not a traceback.
    org_id: Annotated[uuid.UUID | None, typer.Option("--org-id", help="Only this organization's chain.")] = None,
) -> None:
    """Recompute the audit hash chains; exit 1 if any event was changed, inserted or removed
    (3 if the database could not be read, so a failed check is never mistaken for either answer)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tessera.core.admin import verify_audit_log

    settings = load_settings()
    try:
        report = asyncio.run(verify_audit_log(settings, org_id=org_id))
    except (SQLAlchemyError, OSError) as error:
        raise _database_unusable(error) from error
    if report.ok:
        typer.secho(f"Audit log intact: {report.events} events in {report.chains} chains.", fg=typer.colors.GREEN)
        return
    typer.secho(f"Audit log TAMPERED: {len(report.problems)} problem(s).", fg=typer.colors.RED, err=True)
    for problem in report.problems:
        where = f"event #{problem.seq}" if problem.seq is not None else "chain"
        typer.echo(f"  chain {problem.chain_id} {where} ({problem.event_id or '-'}): {problem.problem}", err=True)
    raise typer.Exit(1)


DATABASE_UNUSABLE = 3


@contextlib.contextmanager
def _archive_errors() -> Iterator[None]:
    """Export and import: expected failures become one red line and exit 1 (the database's, exit 2)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tessera.core.errors import AppError

    try:
        yield
    except AppError as error:
        typer.secho(f"Error: {error.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from error
    except SQLAlchemyError as error:
        raise _database_unusable(error) from error
    except OSError as error:
        typer.secho(f"Error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from error


def _database_unusable(error: Exception) -> typer.Exit:
    """A one-line reason instead of a traceback when the database is unreachable or not migrated."""
    reason = getattr(error, "orig", None) or error
    typer.secho(
        f"Error: the database could not be used ({type(reason).__name__}: {reason}). "
        "Check TESSERA_DATABASE_URL, and run `tessera migrate` on a new database.",
        fg=typer.colors.RED,
        err=True,
    )
    return typer.Exit(DATABASE_UNUSABLE)


def _describe_db(settings: Settings) -> str:
    if settings.is_sqlite:
        return f"SQLite ({settings.resolved_database_url.split('///', 1)[-1]})"
    return "PostgreSQL"


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
