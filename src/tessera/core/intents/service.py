"""Intent sets: define (intents and example phrases), train into immutable versions, pin a version,
classify texts.

Embeddings come from the AI client only (`ai.embed`, in process or a remote AI service). A version
stores the trained model's arrays, so every API process classifies with it after loading it once
(`_ModelCache`); training writes nothing but a new version.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Literal, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.ai.client import AIClient
from tessera.core.audit.service import NO_REQUEST, RequestMeta, record_event
from tessera.core.auth.principal import Principal
from tessera.core.db.base import new_id, utcnow
from tessera.core.errors import InvalidInput
from tessera.core.intents import classifier
from tessera.core.intents.classifier import ClassifierName, IntentModel
from tessera.core.intents.errors import (
    IntentModelMismatch,
    IntentNameTaken,
    IntentNotFound,
    IntentSetNameTaken,
    IntentSetNotFound,
    IntentSetNotTrainable,
    IntentSetNotTrained,
    IntentSetTooLarge,
    IntentTrainingConflict,
    IntentVersionNotFound,
)
from tessera.core.intents.models import Intent, IntentSet, IntentSetVersion
from tessera.core.intents.schemas import (
    CalibrationRead,
    ClassifyRequest,
    ClassifyResponse,
    IntentCreate,
    IntentDefinition,
    IntentRead,
    IntentScore,
    IntentSetCreate,
    IntentSetRead,
    IntentSetSummary,
    IntentSetUpdate,
    IntentSetVersionRead,
    IntentUpdate,
)
from tessera.core.pagination import PageParams, paginate
from tessera.settings import IntentSettings

EMBED_BATCH = 256  # texts per `ai.embed` call: bounded requests to a remote AI service
# Short phrases on both sides (examples and texts to classify): embedded the same way.
TEXT_KIND: Literal["query"] = "query"


# --- reading -----------------------------------------------------------------------------------


def _owned(principal: Principal) -> sa.ColumnElement[bool]:
    return IntentSet.org_id == principal.org_id


async def get_set(session: AsyncSession, principal: Principal, set_id: uuid.UUID) -> IntentSet:
    found = (
        await session.execute(sa.select(IntentSet).where(IntentSet.id == set_id, _owned(principal)))
    ).scalar_one_or_none()
    if found is None:
        raise IntentSetNotFound("Intent set not found")
    return found


async def find_set(session: AsyncSession, principal: Principal, reference: str) -> IntentSet:
    """By id, else by name."""
    try:
        set_id: uuid.UUID | None = uuid.UUID(reference)
    except ValueError:
        set_id = None
    condition = IntentSet.name == reference
    if set_id is not None:
        condition = sa.or_(IntentSet.id == set_id, condition)
    rows = (await session.execute(sa.select(IntentSet).where(condition, _owned(principal)))).scalars().all()
    if not rows:
        raise IntentSetNotFound(f"No intent set {reference!r}", details={"set": reference})
    return next((row for row in rows if row.id == set_id), rows[0])


async def _intents(session: AsyncSession, set_id: uuid.UUID) -> list[Intent]:
    query = sa.select(Intent).where(Intent.set_id == set_id).order_by(Intent.id)
    return list((await session.execute(query)).scalars().all())


def _active_number(intent_set: IntentSet) -> int | None:
    return intent_set.pinned_version if intent_set.pinned_version is not None else intent_set.latest_version


async def _trained_digests(session: AsyncSession, sets: Sequence[IntentSet]) -> dict[uuid.UUID, str]:
    """Each set's active version's definition digest."""
    wanted = {(s.id, number) for s in sets if (number := _active_number(s)) is not None}
    if not wanted:
        return {}
    query = sa.select(IntentSetVersion.set_id, IntentSetVersion.version, IntentSetVersion.definition_digest).where(
        IntentSetVersion.set_id.in_({set_id for set_id, _ in wanted})
    )
    rows = await session.execute(query)
    return {row.set_id: row.definition_digest for row in rows if (row.set_id, row.version) in wanted}


def _summary_fields(intent_set: IntentSet, trained_digest: str | None) -> dict[str, object]:
    active = _active_number(intent_set)
    return {
        "id": intent_set.id,
        "name": intent_set.name,
        "description": intent_set.description,
        "classifier": intent_set.classifier,
        "out_of_scope_threshold": intent_set.out_of_scope_threshold,
        "intent_count": intent_set.intent_count,
        "example_count": intent_set.example_count,
        "out_of_scope_example_count": len(intent_set.out_of_scope_examples),
        "latest_version": intent_set.latest_version,
        "active_version": active,
        "pinned_version": intent_set.pinned_version,
        "changed_since_training": None if active is None else trained_digest != intent_set.definition_digest,
        "created_at": intent_set.created_at,
        "updated_at": intent_set.updated_at,
    }


async def read_set(session: AsyncSession, intent_set: IntentSet) -> IntentSetRead:
    intents = await _intents(session, intent_set.id)
    digest = (await _trained_digests(session, [intent_set])).get(intent_set.id)
    return IntentSetRead.model_validate(
        {
            **_summary_fields(intent_set, digest),
            "intents": [IntentRead.model_validate(intent) for intent in intents],
            "out_of_scope_examples": list(intent_set.out_of_scope_examples),
        }
    )


async def list_sets(
    session: AsyncSession, principal: Principal, *, params: PageParams, search: str | None = None
) -> tuple[list[IntentSetSummary], str | None]:
    query = sa.select(IntentSet).where(_owned(principal))
    if search:
        query = query.where(sa.func.lower(IntentSet.name).contains(search.lower(), autoescape=True))
    rows, cursor = await paginate(session, query, key=IntentSet.id, params=params)
    digests = await _trained_digests(session, rows)
    return [IntentSetSummary.model_validate(_summary_fields(row, digests.get(row.id))) for row in rows], cursor


# --- defining ------------------------------------------------------------------------------------


def _unique(texts: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _digest(classifier_name: str, intents: Sequence[tuple[str, Sequence[str]]], out_of_scope: Sequence[str]) -> str:
    definition = {
        "classifier": classifier_name,
        "intents": sorted([name, sorted(examples)] for name, examples in intents),
        "out_of_scope": sorted(out_of_scope),
    }
    return hashlib.sha256(json.dumps(definition, ensure_ascii=False).encode()).hexdigest()


def _refresh(intent_set: IntentSet, intents: Sequence[Intent], settings: IntentSettings | None) -> None:
    """Counts and digest after a change; refuses a set larger than the server allows (`settings`)."""
    examples = sum(len(intent.examples) for intent in intents)
    total = examples + len(intent_set.out_of_scope_examples)
    if settings is None:
        pass
    elif len(intents) > settings.max_intents:
        raise IntentSetTooLarge(
            f"{len(intents)} intents: at most {settings.max_intents} in a set",
            details={"intents": len(intents), "max_intents": settings.max_intents},
        )
    elif total > settings.max_examples:
        raise IntentSetTooLarge(
            f"{total} example phrases: at most {settings.max_examples} in a set (out-of-scope ones included)",
            details={"examples": total, "max_examples": settings.max_examples},
        )
    intent_set.intent_count = len(intents)
    intent_set.example_count = examples
    intent_set.definition_digest = _digest(
        intent_set.classifier, [(i.name, i.examples) for i in intents], intent_set.out_of_scope_examples
    )
    intent_set.updated_at = utcnow()


def _check_names(intents: Sequence[IntentDefinition]) -> None:
    repeated = sorted(name for name, count in Counter(i.name for i in intents).items() if count > 1)
    if repeated:
        raise InvalidInput("Intent names must be unique in a set", details={"repeated": repeated})


async def _flush_named(session: AsyncSession, name: str) -> None:
    """Flush in a savepoint: a taken set name undoes this flush only."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        raise IntentSetNameTaken(f"An intent set named {name!r} already exists", details={"name": name}) from error


async def create_set(
    session: AsyncSession,
    principal: Principal,
    body: IntentSetCreate,
    settings: IntentSettings,
    *,
    meta: RequestMeta = NO_REQUEST,
) -> IntentSet:
    assert principal.org_id is not None
    _check_names(body.intents)
    await session.flush()  # earlier work stays outside the savepoint
    intent_set = IntentSet(
        id=new_id(),
        org_id=principal.org_id,
        name=body.name,
        description=body.description or "",
        classifier=body.classifier or settings.classifier,
        out_of_scope_threshold=body.out_of_scope_threshold,
        out_of_scope_examples=_unique(body.out_of_scope_examples),
        created_by=principal.user_id,
    )
    intents = [Intent(set_id=intent_set.id, name=i.name, examples=_unique(i.examples)) for i in body.intents]
    _refresh(intent_set, intents, settings)
    session.add(intent_set)
    await _flush_named(session, body.name)
    session.add_all(intents)
    await session.flush()
    await record_event(
        session, action="intent_set.created", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="intent_set", target_id=intent_set.id, details={"name": intent_set.name},
    )  # fmt: skip
    return intent_set


async def replace_set(
    session: AsyncSession,
    principal: Principal,
    set_id: uuid.UUID,
    body: IntentSetCreate,
    settings: IntentSettings,
    *,
    meta: RequestMeta = NO_REQUEST,
) -> IntentSet:
    """The whole definition replaced; intents keep their id where their name stays."""
    intent_set = await get_set(session, principal, set_id)
    _check_names(body.intents)
    existing = {intent.name: intent for intent in await _intents(session, set_id)}
    intents = []
    for definition in body.intents:
        intent = existing.pop(definition.name, None) or Intent(set_id=set_id, name=definition.name)
        intent.examples = _unique(definition.examples)
        intents.append(intent)
    intent_set.description = body.description or ""
    intent_set.classifier = body.classifier or settings.classifier
    intent_set.out_of_scope_threshold = body.out_of_scope_threshold
    intent_set.out_of_scope_examples = _unique(body.out_of_scope_examples)
    _refresh(intent_set, intents, settings)
    for removed in existing.values():
        await session.delete(removed)
    await session.flush()  # deletions first: a re-added name must not collide
    session.add_all(intents)
    await session.flush()
    intent_set.name = body.name  # last, in a savepoint of its own: a taken name is a 409
    await _flush_named(session, body.name)
    await record_event(
        session, action="intent_set.replaced", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="intent_set", target_id=intent_set.id,
        details={"intents": len(intents), "examples": intent_set.example_count},
    )  # fmt: skip
    return intent_set


async def update_set(
    session: AsyncSession,
    principal: Principal,
    set_id: uuid.UUID,
    body: IntentSetUpdate,
    settings: IntentSettings,
    *,
    meta: RequestMeta = NO_REQUEST,
) -> IntentSet:
    intent_set = await get_set(session, principal, set_id)
    given = body.model_fields_set
    for field in ("name", "classifier"):
        if field in given and getattr(body, field) is None:
            raise InvalidInput(f"`{field}` cannot be null", details={"field": field})
    await session.flush()
    if "name" in given and body.name is not None:
        intent_set.name = body.name
    if "classifier" in given and body.classifier is not None:
        intent_set.classifier = body.classifier
    if "description" in given:
        intent_set.description = body.description or ""
    if "out_of_scope_threshold" in given:
        intent_set.out_of_scope_threshold = body.out_of_scope_threshold
    if "out_of_scope_examples" in given:
        intent_set.out_of_scope_examples = _unique(body.out_of_scope_examples or [])
    _refresh(intent_set, await _intents(session, set_id), settings)
    await _flush_named(session, intent_set.name)
    await record_event(
        session, action="intent_set.updated", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="intent_set", target_id=intent_set.id, details={"fields": sorted(given)},
    )  # fmt: skip
    return intent_set


async def delete_set(
    session: AsyncSession, principal: Principal, set_id: uuid.UUID, *, meta: RequestMeta = NO_REQUEST
) -> None:
    intent_set = await get_set(session, principal, set_id)
    # Bulk deletes: the ORM would otherwise load every version's parameters to delete them one by one.
    await session.execute(sa.delete(IntentSetVersion).where(IntentSetVersion.set_id == set_id))
    await session.execute(sa.delete(Intent).where(Intent.set_id == set_id))
    await session.delete(intent_set)
    await session.flush()
    await record_event(
        session, action="intent_set.deleted", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="intent_set", target_id=set_id, details={"name": intent_set.name},
    )  # fmt: skip


async def _save_intent(session: AsyncSession, intent: Intent) -> None:
    try:
        async with session.begin_nested():
            session.add(intent)
            await session.flush()
    except IntegrityError as error:
        raise IntentNameTaken(
            f"The set already has an intent named {intent.name!r}", details={"name": intent.name}
        ) from error


async def add_intent(
    session: AsyncSession, principal: Principal, set_id: uuid.UUID, body: IntentCreate, settings: IntentSettings
) -> Intent:
    intent_set = await get_set(session, principal, set_id)
    intents = await _intents(session, set_id)
    if any(intent.name == body.name for intent in intents):
        raise IntentNameTaken(f"The set already has an intent named {body.name!r}", details={"name": body.name})
    intent = Intent(set_id=set_id, name=body.name, examples=_unique(body.examples))
    _refresh(intent_set, [*intents, intent], settings)
    await session.flush()
    await _save_intent(session, intent)
    return intent


async def update_intent(
    session: AsyncSession,
    principal: Principal,
    set_id: uuid.UUID,
    intent_id: uuid.UUID,
    body: IntentUpdate,
    settings: IntentSettings,
) -> Intent:
    intent_set = await get_set(session, principal, set_id)
    intents = await _intents(session, set_id)
    intent = next((i for i in intents if i.id == intent_id), None)
    if intent is None:
        raise IntentNotFound("Intent not found in this set")
    if body.name is not None and body.name != intent.name:
        if any(other.name == body.name for other in intents):
            raise IntentNameTaken(f"The set already has an intent named {body.name!r}", details={"name": body.name})
        intent.name = body.name
    removed = set(body.remove_examples)
    intent.examples = _unique([e for e in intent.examples if e not in removed] + list(body.add_examples))
    intent.updated_at = utcnow()
    _refresh(intent_set, intents, settings)
    await session.flush()
    return intent


async def delete_intent(session: AsyncSession, principal: Principal, set_id: uuid.UUID, intent_id: uuid.UUID) -> None:
    intent_set = await get_set(session, principal, set_id)
    intents = await _intents(session, set_id)
    intent = next((i for i in intents if i.id == intent_id), None)
    if intent is None:
        raise IntentNotFound("Intent not found in this set")
    await session.delete(intent)
    _refresh(intent_set, [i for i in intents if i.id != intent_id], None)  # smaller: no limit to check
    await session.flush()


# --- training ------------------------------------------------------------------------------------


async def embed_texts(ai: AIClient, texts: Sequence[str]) -> tuple[str, classifier.F32]:
    """(model name, vectors) of `texts`, in batches of EMBED_BATCH through the AI client."""
    model = ""
    parts: list[classifier.F32] = []
    for start in range(0, len(texts), EMBED_BATCH):
        name, vectors = await ai.embed(texts[start : start + EMBED_BATCH], kind=TEXT_KIND)
        if model and name != model:  # the AI service changed models mid-way: nothing consistent to train on
            raise IntentModelMismatch(f"The embedding model changed during training ({model} → {name}); retry")
        model = name
        parts.append(np.asarray(vectors, dtype=np.float32))
    return model, np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _check_trainable(intents: Sequence[Intent]) -> None:
    if len(intents) < 2:
        raise IntentSetNotTrainable(
            f"An intent set needs two intents at least to be trained; this one has {len(intents)}",
            details={"intents": len(intents)},
        )
    empty = [intent.name for intent in intents if not intent.examples]
    if empty:
        raise IntentSetNotTrainable(
            "Every intent needs an example phrase at least: " + ", ".join(empty[:10]),
            details={"intents_without_examples": empty},
        )


async def train_set(
    session: AsyncSession,
    principal: Principal,
    set_id: uuid.UUID,
    ai: AIClient,
    settings: IntentSettings,
    *,
    meta: RequestMeta = NO_REQUEST,
) -> IntentSetVersion:
    """Embed the examples, fit the set's classifier, calibrate its threshold, store a new version.

    Raises IntentSetNotTrainable (fewer than two intents, or an intent without examples),
    IntentTrainingConflict (another training wrote the same version number first)."""
    started = time.perf_counter()
    intent_set = await get_set(session, principal, set_id)
    intents = await _intents(session, set_id)
    _check_trainable(intents)
    labels = [intent.name for intent in intents]
    texts: list[str] = []
    classes: list[int] = []
    for index, intent in enumerate(intents):
        texts += intent.examples
        classes += [index] * len(intent.examples)
    out_of_scope = intent_set.out_of_scope_examples
    texts += out_of_scope
    classes += [len(labels)] * len(out_of_scope)
    unique = _unique(texts)
    model_name, unique_vectors = await embed_texts(ai, unique)
    row_of = {text: row for row, text in enumerate(unique)}
    vectors = unique_vectors[[row_of[text] for text in texts]]
    kind = cast(ClassifierName, intent_set.classifier)
    trained = await asyncio.to_thread(
        classifier.train, vectors, classes, labels, classifier=kind, retention=settings.calibration_retention
    )
    latest = (
        await session.execute(sa.select(sa.func.max(IntentSetVersion.version)).where(IntentSetVersion.set_id == set_id))
    ).scalar_one_or_none() or 0
    calibration = trained.calibration
    version = IntentSetVersion(
        set_id=set_id,
        version=latest + 1,
        classifier=kind,
        embedding_model=model_name,
        dimension=trained.model.dimension,
        labels=labels,
        intent_count=len(labels),
        example_count=len(texts) - len(out_of_scope),
        out_of_scope_example_count=len(out_of_scope),
        training_accuracy=round(trained.training_accuracy, 6),
        validation_accuracy=None if calibration.accuracy is None else round(calibration.accuracy, 6),
        calibrated_threshold=calibration.threshold,
        calibration=calibration.as_dict(),
        definition_digest=intent_set.definition_digest,
        parameters=trained.model.to_bytes(),
        training_seconds=round(time.perf_counter() - started, 3),
        trained_by=principal.user_id,
        trained_at=utcnow(),
    )
    await session.flush()
    try:
        async with session.begin_nested():
            session.add(version)
            await session.flush()
    except IntegrityError as error:
        raise IntentTrainingConflict("Another training of this set finished first; train again") from error
    intent_set.latest_version = version.version
    await session.flush()
    _models.put(version.id, trained.model)
    await record_event(
        session, action="intent_set.trained", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="intent_set", target_id=set_id,
        details={"version": version.version, "classifier": kind, "examples": len(texts)},
    )  # fmt: skip
    return version


def version_read(intent_set: IntentSet, version: IntentSetVersion) -> IntentSetVersionRead:
    return IntentSetVersionRead(
        set_id=version.set_id,
        version=version.version,
        active=_active_number(intent_set) == version.version,
        classifier=cast(ClassifierName, version.classifier),
        embedding_model=version.embedding_model,
        dimension=version.dimension,
        intents=list(version.labels),
        intent_count=version.intent_count,
        example_count=version.example_count,
        out_of_scope_example_count=version.out_of_scope_example_count,
        training_accuracy=version.training_accuracy,
        validation_accuracy=version.validation_accuracy,
        calibrated_threshold=version.calibrated_threshold,
        calibration=CalibrationRead.model_validate(version.calibration),
        training_seconds=version.training_seconds,
        trained_by=version.trained_by,
        trained_at=version.trained_at,
    )


async def list_versions(
    session: AsyncSession, principal: Principal, set_id: uuid.UUID, *, params: PageParams
) -> tuple[IntentSet, Sequence[IntentSetVersion], str | None]:
    """Newest first."""
    intent_set = await get_set(session, principal, set_id)
    query = sa.select(IntentSetVersion).where(IntentSetVersion.set_id == set_id)
    rows, cursor = await paginate(session, query, key=IntentSetVersion.id, params=params)
    return intent_set, rows, cursor


async def _version(session: AsyncSession, set_id: uuid.UUID, number: int) -> IntentSetVersion:
    query = sa.select(IntentSetVersion).where(IntentSetVersion.set_id == set_id, IntentSetVersion.version == number)
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        raise IntentVersionNotFound(f"The set has no version {number}", details={"version": number})
    return found


async def get_version(
    session: AsyncSession, principal: Principal, set_id: uuid.UUID, number: int
) -> tuple[IntentSet, IntentSetVersion]:
    intent_set = await get_set(session, principal, set_id)
    return intent_set, await _version(session, set_id, number)


async def set_active_version(
    session: AsyncSession,
    principal: Principal,
    set_id: uuid.UUID,
    number: int | None,
    *,
    meta: RequestMeta = NO_REQUEST,
) -> IntentSet:
    """Pin `number` (classification uses it until unpinned), or follow the latest version (None)."""
    intent_set = await get_set(session, principal, set_id)
    if number is not None:
        await _version(session, set_id, number)
    intent_set.pinned_version = number
    intent_set.updated_at = utcnow()
    await session.flush()
    await record_event(
        session, action="intent_set.version_pinned", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="intent_set", target_id=set_id, details={"version": number},
    )  # fmt: skip
    return intent_set


# --- classifying ---------------------------------------------------------------------------------


class _ModelCache:
    """Trained models by version id. Versions never change, so an entry never goes stale."""

    def __init__(self) -> None:
        self._models: OrderedDict[uuid.UUID, IntentModel] = OrderedDict()
        self.capacity = 32

    def get(self, version_id: uuid.UUID) -> IntentModel | None:
        model = self._models.get(version_id)
        if model is not None:
            self._models.move_to_end(version_id)
        return model

    def put(self, version_id: uuid.UUID, model: IntentModel) -> None:
        self._models[version_id] = model
        self._models.move_to_end(version_id)
        while len(self._models) > self.capacity:
            self._models.popitem(last=False)


_models = _ModelCache()


async def _load_model(session: AsyncSession, version: IntentSetVersion) -> IntentModel:
    model = _models.get(version.id)
    if model is None:
        query = sa.select(IntentSetVersion.parameters).where(IntentSetVersion.id == version.id)
        data = (await session.execute(query)).scalar_one()
        model = await asyncio.to_thread(IntentModel.from_bytes, data)
        _models.put(version.id, model)
    return model


async def classify(
    session: AsyncSession, principal: Principal, ai: AIClient, body: ClassifyRequest, settings: IntentSettings
) -> ClassifyResponse:
    """Raises IntentSetNotFound, IntentSetNotTrained, IntentModelMismatch (the embedding model changed
    since the version was trained)."""
    _models.capacity = settings.model_cache_entries
    intent_set = await find_set(session, principal, body.set)
    number = _active_number(intent_set)
    if number is None:
        raise IntentSetNotTrained(
            f"The intent set {intent_set.name!r} has no trained version: train it first",
            details={"set_id": str(intent_set.id)},
        )
    version = await _version(session, intent_set.id, number)
    model = await _load_model(session, version)
    model_name, vectors = await ai.embed([body.text], kind=TEXT_KIND)
    if model_name != version.embedding_model or vectors.shape[1] != model.dimension:
        raise IntentModelMismatch(
            f"Version {version.version} was trained on {version.embedding_model}, the server now embeds with "
            f"{model_name}: train the set again",
            details={"trained_on": version.embedding_model, "serving": model_name},
        )
    scores = model.predict(vectors)
    probability, similarity, confidence = scores.probability[0], scores.similarity[0], scores.confidence[0]
    order = np.argsort(-probability, kind="stable")
    top = int(order[0])
    threshold_source: Literal["set", "calibrated", "default"]
    if intent_set.out_of_scope_threshold is not None:
        threshold, threshold_source = intent_set.out_of_scope_threshold, "set"
    elif version.calibrated_threshold is not None:
        threshold, threshold_source = version.calibrated_threshold, "calibrated"
    else:
        threshold, threshold_source = settings.out_of_scope_threshold, "default"
    reason: Literal["below_threshold", "out_of_scope_examples"] | None = None
    if float(scores.out_of_scope_probability[0]) > float(probability[top]):
        reason = "out_of_scope_examples"
    elif float(confidence[top]) < threshold:
        reason = "below_threshold"
    alternatives = [
        IntentScore(
            intent=model.labels[i],
            confidence=round(float(confidence[i]), 6),
            probability=round(float(probability[i]), 6),
            similarity=round(float(similarity[i]), 6),
        )
        for i in order[: body.top_k]
    ]
    return ClassifyResponse(
        intent=model.labels[top],
        confidence=alternatives[0].confidence,
        out_of_scope=reason is not None,
        out_of_scope_reason=reason,
        threshold=threshold,
        threshold_source=threshold_source,
        alternatives=alternatives,
        set_id=intent_set.id,
        version=version.version,
        model=version.embedding_model,
    )
