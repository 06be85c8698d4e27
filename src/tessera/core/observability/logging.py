"""structlog set-up: JSON lines in production, readable console output on a terminal.

Every line carries the request id (bound per request in a contextvar by the middleware).
"""

from __future__ import annotations

import logging
import sys

import structlog

from tessera.settings import Settings


def configure_logging(settings: Settings) -> None:
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and (settings.environment == "production" or not sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # Our own lines are rendered by structlog and written straight to stderr: going through a
    # stdlib LogRecord and formatter costs about as much as the rest of a cached request. Lines
    # from libraries (uvicorn, SQLAlchemy, DBOS) still pass through the stdlib handler below.
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.log_level)),
        # Not cached: tests and `create_app` reconfigure the level, and cached loggers would keep the old one.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # uvicorn's own access log would duplicate ours (which has the request id and the user).
    logging.getLogger("uvicorn.access").handlers.clear()
    logging.getLogger("uvicorn.access").propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("sqlalchemy.engine").setLevel("INFO" if settings.db.echo else "WARNING")
    # Presidio logs every recogniser it loads at INFO: a screenful at each start, nothing to act on.
    for name in ("presidio-analyzer", "presidio-anonymizer"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    # Lazy: resolved at each call, so a module-level logger follows later `configure_logging` calls.
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name, logger_name=name)
    return logger
