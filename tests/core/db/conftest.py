from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _schema_built_outside_the_event_loop(request: pytest.FixtureRequest) -> None:
    """Build the template schema from a sync fixture before `engine` asks for it.

    The migrations call `asyncio.run`, which cannot run inside the async `engine` fixture; when this
    directory runs alone nothing else has built the template first.
    """
    if "engine" not in request.fixturenames:
        return
    backend = request.getfixturevalue("backend")
    request.getfixturevalue("sqlite_template" if backend == "sqlite" else "postgres")
