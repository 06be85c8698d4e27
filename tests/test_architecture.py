"""Architecture rules from STYLE.md, checked on the source instead of in review."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import pytest

import tessera
from tessera.core.db.base import Base
from tessera.core.errors import AppError

SRC = Path(tessera.__file__).resolve().parent
HTTP_EXCEPTIONS = {"HTTPException", "StarletteHTTPException"}
# Reads of the environment that are not Tessera settings, with the reason.
ENVIRONMENT_READS_ALLOWED = {
    "tessera/settings.py": "the one place settings are read",
    "tessera/core/jobs/runtime.py": "DBOS__VMID is set by the DBOS runtime, not by an operator",
    "tessera/core/documents/parsing/ocr.py": "a default of OMP_THREAD_LIMIT for the Tesseract child processes",
}


@dataclass(frozen=True)
class SourceFile:
    path: Path
    module: str  # dotted name, e.g. tessera.core.auth.router
    tree: ast.Module

    @property
    def relative(self) -> str:
        return self.path.relative_to(SRC.parent).as_posix()

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


@cache
def source_files() -> tuple[SourceFile, ...]:
    files = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files.append(SourceFile(path, module, ast.parse(path.read_text(), filename=str(path))))
    return tuple(files)


def imported_modules(source: SourceFile) -> Iterator[tuple[int, str]]:
    """Every module a file imports (relative imports resolved), with its line number."""
    package = source.module if source.is_package else source.module.rpartition(".")[0]
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from tessera.modules import clinical` imports a module too
                yield node.lineno, f"{target}.{alias.name}"


def product_module(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) >= 3 and parts[:2] == ["tessera", "modules"]:
        return parts[2]
    return None


def files_named(name: str) -> list[SourceFile]:
    return [source for source in source_files() if source.path.name == name]


def calls_named(source: SourceFile, attribute: str) -> Iterator[int]:
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attribute:
            yield node.lineno


def http_exception_uses(source: SourceFile) -> Iterator[int]:
    for node in ast.walk(source.tree):
        if isinstance(node, ast.ImportFrom) and any(alias.name in HTTP_EXCEPTIONS for alias in node.names):
            yield node.lineno
        elif isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in HTTP_EXCEPTIONS:
                yield node.lineno


def report(violations: list[str]) -> str:
    return "\n  " + "\n  ".join(violations)


def test_source_walk_sees_the_whole_package() -> None:
    modules = {source.module for source in source_files()}

    assert {"tessera.main", "tessera.core.db.session", "tessera.core.auth.router"} <= modules


def test_relative_imports_are_resolved() -> None:
    source = SourceFile(SRC / "core" / "x" / "router.py", "tessera.core.x.router", ast.parse("from ..y import z\n"))

    assert {name for _, name in imported_modules(source)} == {"tessera.core.y", "tessera.core.y.z"}


def test_detectors_find_commits_and_http_exceptions() -> None:
    code = (
        "from fastapi import HTTPException\n"
        "async def f(session):\n"
        "    await session.commit()\n"
        "    raise fastapi.HTTPException(404)\n"
    )
    source = SourceFile(SRC / "core" / "x" / "service.py", "tessera.core.x.service", ast.parse(code))

    assert list(calls_named(source, "commit")) == [3]
    assert set(http_exception_uses(source)) == {1, 4}


def test_core_does_not_import_product_modules() -> None:
    violations = [
        f"{source.relative}:{line} imports {name}"
        for source in source_files()
        if source.module.startswith("tessera.core")
        for line, name in imported_modules(source)
        if name == "tessera.modules" or name.startswith("tessera.modules.")
    ]

    assert not violations, "tessera.core must not depend on product modules:" + report(violations)


def test_product_modules_do_not_import_each_other() -> None:
    violations = []
    for source in source_files():
        own = product_module(source.module)
        if own is None:
            continue
        for line, name in imported_modules(source):
            other = product_module(name)
            if other is not None and other != own:
                violations.append(f"{source.relative}:{line} ({own}) imports {name}")

    assert not violations, "product modules must talk through tessera.core, not each other:" + report(violations)


def test_routers_do_not_commit() -> None:
    violations = [
        f"{source.relative}:{line}"
        for source in files_named("router.py")
        for attribute in ("commit", "rollback")
        for line in calls_named(source, attribute)
    ]

    assert not violations, "routers must leave commit/rollback to the request's unit of work:" + report(violations)


def test_services_do_not_commit() -> None:
    violations = [
        f"{source.relative}:{line}"
        for source in files_named("service.py")
        for attribute in ("commit", "rollback")
        for line in calls_named(source, attribute)
    ]

    assert not violations, "services add and flush; the caller's unit of work commits:" + report(violations)


@pytest.mark.parametrize("file_name", ["service.py", "router.py", "repository.py"])
def test_http_exception_is_not_raised_outside_the_http_layer(file_name: str) -> None:
    violations = [
        f"{source.relative}:{line}" for source in files_named(file_name) for line in http_exception_uses(source)
    ]

    assert not violations, f"{file_name} must raise AppError subclasses, not HTTPException:" + report(violations)


def test_models_do_not_use_pydantic() -> None:
    violations = [
        f"{source.relative}:{line} imports {name}"
        for source in files_named("models.py")
        for line, name in imported_modules(source)
        if name == "pydantic" or name.startswith("pydantic.")
    ]

    assert not violations, "ORM models and Pydantic schemas live apart:" + report(violations)


def test_schemas_hold_no_orm_classes() -> None:
    violations = []
    for source in files_named("schemas.py"):
        violations += [
            f"{source.relative}:{line} imports {name}"
            for line, name in imported_modules(source)
            if name == "sqlalchemy" or name.startswith("sqlalchemy.")
        ]
        module = importlib.import_module(source.module)
        violations += [
            f"{source.relative} uses ORM class {value.__name__}"
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Base) and value is not Base
        ]

    assert not violations, "schemas are Pydantic only:" + report(violations)


def test_environment_is_read_only_by_settings() -> None:
    violations = []
    for source in source_files():
        if source.relative in ENVIRONMENT_READS_ALLOWED:
            continue
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}:
                violations.append(f"{source.relative}:{node.lineno} os.{node.attr}")

    assert not violations, "read configuration through tessera.settings.Settings:" + report(violations)


@cache
def all_modules() -> tuple[ModuleType, ...]:
    return tuple(
        importlib.import_module(info.name) for info in pkgutil.walk_packages(tessera.__path__, prefix="tessera.")
    )


def subclasses(cls: type[Any]) -> Iterator[type[Any]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


def test_every_error_has_its_own_code_and_a_real_status() -> None:
    all_modules()
    errors = [AppError, *subclasses(AppError)]
    seen: dict[str, str] = {}
    violations = []
    for error in errors:
        name = f"{error.__module__}.{error.__qualname__}"
        if error.__module__.startswith("tests."):
            continue
        if not re.fullmatch(r"[a-z][a-z0-9_]*", error.code):
            violations.append(f"{name}: code {error.code!r} is not snake_case")
        if not 400 <= error.status_code <= 599:
            violations.append(f"{name}: status {error.status_code} is not an error status")
        if error.code in seen:
            violations.append(f"{name}: code {error.code!r} is already used by {seen[error.code]}")
        seen.setdefault(error.code, name)

    assert len(seen) > 10
    assert not violations, "clients tell errors apart by code:" + report(violations)


def test_provider_registries_match_their_names() -> None:
    """A `CHAT_PROVIDERS` dict needs a `ChatProviderName` Literal with exactly its keys (STYLE.md)."""
    violations = []
    for module in all_modules():
        if not module.__name__.endswith(".registry"):
            continue
        for attribute, registry in vars(module).items():
            match = re.fullmatch(r"([A-Z][A-Z0-9_]*)_PROVIDERS", attribute)
            if match is None or not isinstance(registry, dict):
                continue
            alias = "".join(part.capitalize() for part in match.group(1).split("_")) + "ProviderName"
            names = getattr(module, alias, None)
            if names is None:
                violations.append(f"{module.__name__}.{attribute} has no {alias} Literal")
            elif set(get_args(names)) != set(registry):
                violations.append(
                    f"{module.__name__}: {alias} {sorted(get_args(names))} != {attribute} {sorted(registry)}"
                )

    # No registry yet is fine: each one added is checked from then on.
    assert not violations, report(violations)


def test_every_endpoint_and_dependency_is_async() -> None:
    """FastAPI runs plain `def` endpoints and dependencies in a thread pool: two thread switches per
    call, which on the authenticated hot path cost more than the database query itself."""
    import inspect

    from tessera.main import create_app
    from tests.conftest import test_settings

    def sync_calls(dependant: Any, found: set[str]) -> set[str]:
        for sub in dependant.dependencies:
            call = sub.call
            if not (
                inspect.iscoroutinefunction(call)
                or inspect.isasyncgenfunction(call)
                or inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004
            ):
                found.add(getattr(call, "__qualname__", repr(call)))
            sync_calls(sub, found)
        return found

    app = create_app(test_settings())
    found: set[str] = set()
    for route in app.routes:
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        sync_calls(dependant, found)
        if not inspect.iscoroutinefunction(route.endpoint):  # type: ignore[attr-defined]
            found.add(f"endpoint {route.path}")  # type: ignore[attr-defined]
    assert not found, f"make these async: {sorted(found)}"
