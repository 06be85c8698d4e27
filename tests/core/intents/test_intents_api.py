"""Intent sets over HTTP on both backends: define, train into versions, pin, classify, flag out-of-scope
texts. The `fake` embedder (hashed words and trigrams) stands in where quality does not matter; one
test runs the bundled model on paraphrases. Another organization's sets are a 404."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tessera.core.intents import service
from tessera.main import create_app
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, add_member, error_code, register

SETS = "/api/v1/ai/intents/sets"
CLASSIFY = "/api/v1/ai/intents/classify"

# Each intent with its own words, so the hashing embedder tells them apart.
INTENTS: dict[str, list[str]] = {
    "weather": [
        "will it rain tomorrow", "weather forecast for the weekend", "is it sunny outside", "how cold is it today",
        "temperature this afternoon", "do I need an umbrella today", "snow forecast tonight", "how windy is it",
        "weather in paris tomorrow", "hot and humid weather today", "rain forecast this week", "sunny weekend forecast",
    ],
    "music": [
        "play some jazz music", "put on my favourite song", "next song please", "play the new album",
        "turn the music up", "shuffle my playlist", "play rock music", "who sings this song", "pause the music",
        "play songs by the beatles", "add this song to my playlist", "play relaxing music",
    ],
    "food": [
        "order a pizza", "find a restaurant nearby", "book a table for dinner", "i want sushi for lunch",
        "recipe for pancakes", "order food delivery", "best pizza restaurant in town", "cook pasta for dinner",
        "table for two at the restaurant", "order lunch delivery", "dinner recipe with chicken",
        "cheap restaurant for lunch",
    ],
}  # fmt: skip
OUT_OF_SCOPE = [
    "tell me a joke", "tell me a funny joke please", "what is the meaning of life", "who won the football match",
    "how old is the universe", "what is your name", "who wrote hamlet", "tell me a story about dragons",
]  # fmt: skip


def definition(name: str = "assistant", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "description": "What people ask the home assistant.",
        "intents": [{"name": intent, "examples": examples} for intent, examples in INTENTS.items()],
    }
    return body | overrides


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url, data_dir=tmp_path / "data", intents={"max_intents": 6, "max_examples": 80}
    )


async def create(client: httpx.AsyncClient, user: SignedIn, **overrides: Any) -> dict[str, Any]:
    response = await client.post(SETS, json=definition(**overrides), headers=user.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def train(client: httpx.AsyncClient, user: SignedIn, set_id: str) -> dict[str, Any]:
    response = await client.post(f"{SETS}/{set_id}/train", headers=user.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def classify(client: httpx.AsyncClient, user: SignedIn, text: str, set_ref: str, **extra: Any) -> dict[str, Any]:
    response = await client.post(CLASSIFY, json={"text": text, "set": set_ref, **extra}, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> SignedIn:
    return await register(client)


class TestDefining:
    async def test_create_read_list_change_and_delete_a_set(self, client: httpx.AsyncClient, owner: SignedIn) -> None:
        response = await client.post(SETS, json=definition(out_of_scope_examples=OUT_OF_SCOPE), headers=owner.headers)

        assert response.status_code == 201, response.text
        created = response.json()
        assert response.headers["Location"] == f"{SETS}/{created['id']}"
        assert created["classifier"] == "logistic"  # the server's default
        assert [i["name"] for i in created["intents"]] == list(INTENTS)
        assert created["intent_count"] == 3
        assert created["example_count"] == 36
        assert created["out_of_scope_example_count"] == len(OUT_OF_SCOPE)
        assert created["latest_version"] is None
        assert created["active_version"] is None
        assert created["changed_since_training"] is None

        got = await client.get(f"{SETS}/{created['id']}", headers=owner.headers)
        assert got.json() == created
        await create(client, owner, name="other")
        listed = await client.get(SETS, params={"q": "ASSIST"}, headers=owner.headers)
        assert [item["name"] for item in listed.json()["items"]] == ["assistant"]
        assert "intents" not in listed.json()["items"][0]

        patched = await client.patch(
            f"{SETS}/{created['id']}",
            json={"description": "v2", "classifier": "centroid", "out_of_scope_threshold": 0.4},
            headers=owner.headers,
        )
        assert patched.status_code == 200, patched.text
        assert (patched.json()["description"], patched.json()["classifier"]) == ("v2", "centroid")
        assert patched.json()["out_of_scope_threshold"] == 0.4
        assert patched.json()["intent_count"] == 3

        deleted = await client.delete(f"{SETS}/{created['id']}", headers=owner.headers)
        assert deleted.status_code == 204
        gone = await client.get(f"{SETS}/{created['id']}", headers=owner.headers)
        assert gone.status_code == 404
        assert error_code(gone) == "intent_set_not_found"

    async def test_replace_sets_the_whole_definition_and_keeps_ids_by_name(
        self, client: httpx.AsyncClient, owner: SignedIn
    ) -> None:
        created = await create(client, owner)
        ids = {i["name"]: i["id"] for i in created["intents"]}

        replaced = await client.put(
            f"{SETS}/{created['id']}",
            json={
                "name": "assistant-2",
                "intents": [
                    {"name": "music", "examples": ["play a song", "play a song", "pause the music"]},
                    {"name": "timer", "examples": ["set a timer for ten minutes"]},
                ],
            },
            headers=owner.headers,
        )

        assert replaced.status_code == 200, replaced.text
        body = replaced.json()
        assert body["name"] == "assistant-2"
        assert body["description"] == ""
        assert {i["name"]: i["examples"] for i in body["intents"]} == {
            "music": ["play a song", "pause the music"],  # duplicates dropped
            "timer": ["set a timer for ten minutes"],
        }
        music = next(i for i in body["intents"] if i["name"] == "music")
        assert music["id"] == ids["music"]
        assert (body["intent_count"], body["example_count"]) == (2, 3)

    async def test_intents_are_added_renamed_edited_and_removed(
        self, client: httpx.AsyncClient, owner: SignedIn
    ) -> None:
        created = await create(client, owner)
        base = f"{SETS}/{created['id']}/intents"

        added = await client.post(base, json={"name": "timer", "examples": ["set a timer"]}, headers=owner.headers)
        assert added.status_code == 201, added.text
        timer = added.json()
        again = await client.post(base, json={"name": "timer", "examples": ["x"]}, headers=owner.headers)
        assert again.status_code == 409
        assert error_code(again) == "intent_name_taken"

        edited = await client.patch(
            f"{base}/{timer['id']}",
            json={"name": "timers", "add_examples": ["start a countdown", "set a timer"],
                  "remove_examples": ["set a timer"]},
            headers=owner.headers,
        )  # fmt: skip
        assert edited.status_code == 200, edited.text
        assert edited.json()["name"] == "timers"
        assert edited.json()["examples"] == ["start a countdown", "set a timer"]  # removed, then added again
        clash = await client.patch(f"{base}/{timer['id']}", json={"name": "music"}, headers=owner.headers)
        assert clash.status_code == 409

        counts = (await client.get(f"{SETS}/{created['id']}", headers=owner.headers)).json()
        assert (counts["intent_count"], counts["example_count"]) == (4, 38)
        removed = await client.delete(f"{base}/{timer['id']}", headers=owner.headers)
        assert removed.status_code == 204
        missing = await client.delete(f"{base}/{timer['id']}", headers=owner.headers)
        assert missing.status_code == 404
        assert error_code(missing) == "intent_not_found"
        counts = (await client.get(f"{SETS}/{created['id']}", headers=owner.headers)).json()
        assert (counts["intent_count"], counts["example_count"]) == (3, 36)

    async def test_set_names_are_unique_within_an_organization(
        self, client: httpx.AsyncClient, owner: SignedIn
    ) -> None:
        first = await create(client, owner)
        second = await create(client, owner, name="second")

        taken = await client.post(SETS, json=definition(), headers=owner.headers)
        renamed = await client.patch(f"{SETS}/{second['id']}", json={"name": "assistant"}, headers=owner.headers)
        replaced = await client.put(f"{SETS}/{second['id']}", json=definition(), headers=owner.headers)
        stranger = await register(client)
        elsewhere = await client.post(SETS, json=definition(), headers=stranger.headers)

        for response in (taken, renamed, replaced):
            assert response.status_code == 409, response.text
            assert error_code(response) == "intent_set_name_taken"
        assert elsewhere.status_code == 201
        unchanged = await client.get(f"{SETS}/{second['id']}", headers=owner.headers)
        assert unchanged.json()["name"] == "second"
        assert (await client.get(f"{SETS}/{first['id']}", headers=owner.headers)).json()["intent_count"] == 3

    @pytest.mark.parametrize(
        "body",
        [
            {"intents": [{"name": "a", "examples": ["x"]}, {"name": "a", "examples": ["y"]}]},
            {"intents": [{"name": "a", "examples": ["   "]}]},
            {"intents": [{"name": "a", "examples": ["x" * 1_001]}]},
            {"classifier": "svm"},
            {"out_of_scope_threshold": 1.5},
            {"name": "Not A Valid Name"},
            {"out_of_scope_examples": ["nul\x00inside"]},
        ],
        ids=["duplicate-intent", "blank-example", "long-example", "classifier", "threshold", "name", "nul"],
    )
    async def test_invalid_definitions_get_a_422(
        self, client: httpx.AsyncClient, owner: SignedIn, body: dict[str, Any]
    ) -> None:
        response = await client.post(SETS, json=definition() | body, headers=owner.headers)

        assert response.status_code == 422, response.text
        assert "error" in response.json()

    async def test_a_set_larger_than_the_server_allows_gets_a_413(
        self, client: httpx.AsyncClient, owner: SignedIn
    ) -> None:
        too_many_intents = [{"name": f"intent-{i}", "examples": ["x"]} for i in range(7)]
        created = await create(client, owner)

        responses = [
            await client.post(SETS, json=definition(name="big", intents=too_many_intents), headers=owner.headers),
            await client.patch(
                f"{SETS}/{created['id']}/intents/{created['intents'][0]['id']}",
                json={"add_examples": [f"example {i}" for i in range(50)]},
                headers=owner.headers,
            ),
            await client.patch(
                f"{SETS}/{created['id']}",
                json={"out_of_scope_examples": [f"other {i}" for i in range(45)]},
                headers=owner.headers,
            ),
        ]

        for response in responses:
            assert response.status_code == 413, response.text
            assert error_code(response) == "intent_set_too_large"
        unchanged = await client.get(f"{SETS}/{created['id']}", headers=owner.headers)
        assert unchanged.json()["example_count"] == 36


class TestTraining:
    async def test_train_then_classify(self, client: httpx.AsyncClient, owner: SignedIn) -> None:
        created = await create(client, owner)

        response = await client.post(f"{SETS}/{created['id']}/train", headers=owner.headers)

        assert response.status_code == 201, response.text
        version = response.json()
        assert response.headers["Location"] == f"{SETS}/{created['id']}/versions/1"
        assert version["version"] == 1
        assert version["active"] is True
        assert version["classifier"] == "logistic"
        assert version["embedding_model"] == "fake:hash-64"
        assert version["dimension"] == 64
        assert version["intents"] == list(INTENTS)
        assert (version["intent_count"], version["example_count"], version["out_of_scope_example_count"]) == (3, 36, 0)
        assert version["training_accuracy"] == 1.0
        assert version["calibration"]["method"] == "cross_validation"
        assert version["calibration"]["objective"] == "retention"
        assert version["validation_accuracy"] >= 0.8
        assert 0 < version["calibrated_threshold"] < 1
        assert version["training_seconds"] > 0

        for text, expected in [("is it going to rain in paris", "weather"), ("play my jazz playlist", "music"),
                               ("order a pizza for dinner", "food")]:  # fmt: skip
            result = await classify(client, owner, text, created["id"], top_k=2)
            assert result["intent"] == expected, result
            assert result["out_of_scope"] is False
            assert result["version"] == 1
            assert result["model"] == "fake:hash-64"
            assert result["threshold_source"] == "calibrated"
            assert result["threshold"] == version["calibrated_threshold"]
            assert result["alternatives"][0]["intent"] == expected
            assert len(result["alternatives"]) == 2
            best = result["alternatives"][0]
            assert best["confidence"] == result["confidence"]
            assert best["confidence"] == pytest.approx((best["probability"] * best["similarity"]) ** 0.5, abs=1e-5)

    async def test_classify_takes_the_set_name_or_id(self, client: httpx.AsyncClient, owner: SignedIn) -> None:
        created = await create(client, owner)
        await train(client, owner, created["id"])

        by_name = await classify(client, owner, "play a song", "assistant")
        by_id = await classify(client, owner, "play a song", created["id"])

        assert by_name == by_id
        assert by_name["set_id"] == created["id"]

    async def test_centroid_sets_train_and_classify(self, client: httpx.AsyncClient, owner: SignedIn) -> None:
        created = await create(client, owner, classifier="centroid")

        version = await train(client, owner, created["id"])
        result = await classify(client, owner, "book a restaurant table", created["id"], top_k=3)

        assert version["classifier"] == "centroid"
        assert result["intent"] == "food"
        assert result["alternatives"][0]["intent"] == "food"
        probabilities = [a["probability"] for a in result["alternatives"]]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)

    async def test_sets_that_cannot_be_trained_get_a_422(self, client: httpx.AsyncClient, owner: SignedIn) -> None:
        lonely = await create(client, owner, name="lonely", intents=[{"name": "only", "examples": ["x"]}])
        hollow = await create(
            client, owner, name="hollow",
            intents=[{"name": "a", "examples": ["x"]}, {"name": "b", "examples": []}, {"name": "c", "examples": []}],
        )  # fmt: skip

        one = await client.post(f"{SETS}/{lonely['id']}/train", headers=owner.headers)
        empty = await client.post(f"{SETS}/{hollow['id']}/train", headers=owner.headers)

        assert one.status_code == 422
        assert error_code(one) == "intent_set_not_trainable"
        assert empty.status_code == 422
        assert error_code(empty) == "intent_set_not_trainable"
        assert empty.json()["error"]["details"] == {"intents_without_examples": ["b", "c"]}
        versions = await client.get(f"{SETS}/{hollow['id']}/versions", headers=owner.headers)
        assert versions.json()["items"] == []

    async def test_classifying_with_an_untrained_or_unknown_set_fails_clearly(
        self, client: httpx.AsyncClient, owner: SignedIn
    ) -> None:
        await create(client, owner)

        untrained = await client.post(CLASSIFY, json={"text": "hi", "set": "assistant"}, headers=owner.headers)
        unknown = await client.post(CLASSIFY, json={"text": "hi", "set": "nope"}, headers=owner.headers)
        blank = await client.post(CLASSIFY, json={"text": "   ", "set": "assistant"}, headers=owner.headers)
        top_k = await client.post(CLASSIFY, json={"text": "hi", "set": "assistant", "top_k": 0}, headers=owner.headers)

        assert untrained.status_code == 409
        assert error_code(untrained) == "intent_set_not_trained"
        assert unknown.status_code == 404
        assert error_code(unknown) == "intent_set_not_found"
        assert blank.status_code == 422
        assert top_k.status_code == 422


class TestVersions:
    async def test_versions_pinning_and_rollback(self, client: httpx.AsyncClient, owner: SignedIn) -> None:
        created = await create(client, owner)
        set_url = f"{SETS}/{created['id']}"
        await train(client, owner, created["id"])
        # Version 2 no longer knows food.
        await client.delete(f"{set_url}/intents/{created['intents'][2]['id']}", headers=owner.headers)
        second = await train(client, owner, created["id"])

        listed = (await client.get(f"{set_url}/versions", headers=owner.headers)).json()
        assert [(v["version"], v["active"]) for v in listed["items"]] == [(2, True), (1, False)]
        assert second["intents"] == ["weather", "music"]
        assert (await classify(client, owner, "order a pizza", "assistant"))["version"] == 2

        pinned = await client.put(f"{set_url}/active-version", json={"version": 1}, headers=owner.headers)
        assert pinned.status_code == 200, pinned.text
        assert (pinned.json()["active_version"], pinned.json()["pinned_version"]) == (1, 1)
        result = await classify(client, owner, "order a pizza", "assistant")
        assert (result["version"], result["intent"]) == (1, "food")
        # A later training does not move the pin.
        third = await train(client, owner, created["id"])
        assert (third["version"], third["active"]) == (3, False)
        assert (await classify(client, owner, "order a pizza", "assistant"))["version"] == 1

        one = await client.get(f"{set_url}/versions/1", headers=owner.headers)
        assert one.status_code == 200
        assert (one.json()["version"], one.json()["active"]) == (1, True)
        missing = await client.put(f"{set_url}/active-version", json={"version": 9}, headers=owner.headers)
        assert missing.status_code == 404
        assert error_code(missing) == "intent_version_not_found"
        absent = await client.get(f"{set_url}/versions/9", headers=owner.headers)
        assert absent.status_code == 404

        unpinned = await client.put(f"{set_url}/active-version", json={"version": None}, headers=owner.headers)
        assert (unpinned.json()["active_version"], unpinned.json()["pinned_version"]) == (3, None)
        assert (await classify(client, owner, "order a pizza", "assistant"))["version"] == 3

    async def test_changed_since_training_follows_the_definition(
        self, client: httpx.AsyncClient, owner: SignedIn
    ) -> None:
        created = await create(client, owner)
        set_url = f"{SETS}/{created['id']}"
        await train(client, owner, created["id"])

        async def changed() -> bool:
            state: bool = (await client.get(set_url, headers=owner.headers)).json()["changed_since_training"]
            return state

        assert await changed() is False
        music = created["intents"][1]["id"]
        await client.patch(f"{set_url}/intents/{music}", json={"add_examples": ["play it loud"]}, headers=owner.headers)
        assert await changed() is True
        await client.patch(
            f"{set_url}/intents/{music}", json={"remove_examples": ["play it loud"]}, headers=owner.headers
        )
        assert await changed() is False
        await client.patch(set_url, json={"description": "only the description"}, headers=owner.headers)
        assert await changed() is False
        await client.patch(set_url, json={"classifier": "centroid"}, headers=owner.headers)
        assert await changed() is True
        listed = (await client.get(SETS, headers=owner.headers)).json()["items"]
        assert listed[0]["changed_since_training"] is True

    async def test_deleting_a_set_deletes_its_versions(self, client: httpx.AsyncClient, owner: SignedIn) -> None:
        created = await create(client, owner)
        await train(client, owner, created["id"])

        await client.delete(f"{SETS}/{created['id']}", headers=owner.headers)
        await create(client, owner)  # the name is free again

        versions = await client.get(f"{SETS}/{created['id']}/versions", headers=owner.headers)
        assert versions.status_code == 404
        retrained = await client.post(CLASSIFY, json={"text": "hi", "set": "assistant"}, headers=owner.headers)
        assert error_code(retrained) == "intent_set_not_trained"


class TestOutOfScope:
    async def test_texts_below_the_threshold_are_out_of_scope(self, client: httpx.AsyncClient, owner: SignedIn) -> None:
        created = await create(client, owner)
        version = await train(client, owner, created["id"])

        await client.patch(f"{SETS}/{created['id']}", json={"out_of_scope_threshold": 0.99}, headers=owner.headers)
        strict = await classify(client, owner, "play some music", "assistant")
        await client.patch(f"{SETS}/{created['id']}", json={"out_of_scope_threshold": None}, headers=owner.headers)
        calibrated = await classify(client, owner, "play some music", "assistant")
        stranger = await classify(client, owner, "quantum chromodynamics lecture notes", "assistant")

        assert (strict["out_of_scope"], strict["out_of_scope_reason"]) == (True, "below_threshold")
        assert (strict["threshold"], strict["threshold_source"]) == (0.99, "set")
        assert strict["intent"] == "music"  # the best guess stays visible
        assert (calibrated["out_of_scope"], calibrated["threshold_source"]) == (False, "calibrated")
        assert calibrated["threshold"] == version["calibrated_threshold"]
        assert stranger["out_of_scope"] is True
        assert stranger["confidence"] < version["calibrated_threshold"]

    async def test_out_of_scope_examples_train_a_class_that_rejects_texts_like_them(
        self, client: httpx.AsyncClient, owner: SignedIn
    ) -> None:
        created = await create(client, owner, out_of_scope_examples=OUT_OF_SCOPE)

        version = await train(client, owner, created["id"])
        joke = await classify(client, owner, "tell me another joke", "assistant")
        rain = await classify(client, owner, "will it rain tomorrow in paris", "assistant")

        assert version["out_of_scope_example_count"] == len(OUT_OF_SCOPE)
        assert version["calibration"]["objective"] == "balanced"
        assert version["calibration"]["out_of_scope_texts"] > 0
        assert (joke["out_of_scope"], joke["out_of_scope_reason"]) == (True, "out_of_scope_examples")
        assert rain["intent"] == "weather"
        assert rain["out_of_scope"] is False

    async def test_small_sets_use_the_servers_default_threshold(
        self, client: httpx.AsyncClient, owner: SignedIn, settings: Settings
    ) -> None:
        tiny = {"intents": [{"name": "yes", "examples": ["yes please"]}, {"name": "no", "examples": ["no thanks"]}]}
        created = await create(client, owner, **tiny)

        version = await train(client, owner, created["id"])
        result = await classify(client, owner, "yes please", "assistant")

        assert version["calibrated_threshold"] is None
        assert version["calibration"]["method"] == "none"
        assert version["validation_accuracy"] is None
        assert result["intent"] == "yes"
        assert (result["threshold"], result["threshold_source"]) == (settings.intents.out_of_scope_threshold, "default")


class TestAccess:
    async def test_another_organizations_set_is_not_found(self, client: httpx.AsyncClient, owner: SignedIn) -> None:
        created = await create(client, owner)
        await train(client, owner, created["id"])
        stranger = await register(client)
        await create(client, stranger, name="theirs")
        set_url = f"{SETS}/{created['id']}"
        intent_url = f"{set_url}/intents/{created['intents'][0]['id']}"

        responses = {
            "get": await client.get(set_url, headers=stranger.headers),
            "put": await client.put(set_url, json=definition(name="stolen"), headers=stranger.headers),
            "patch": await client.patch(set_url, json={"description": "x"}, headers=stranger.headers),
            "train": await client.post(f"{set_url}/train", headers=stranger.headers),
            "versions": await client.get(f"{set_url}/versions", headers=stranger.headers),
            "version": await client.get(f"{set_url}/versions/1", headers=stranger.headers),
            "pin": await client.put(f"{set_url}/active-version", json={"version": 1}, headers=stranger.headers),
            "add-intent": await client.post(
                f"{set_url}/intents", json={"name": "x", "examples": ["x"]}, headers=stranger.headers
            ),
            "edit-intent": await client.patch(intent_url, json={"add_examples": ["x"]}, headers=stranger.headers),
            "delete-intent": await client.delete(intent_url, headers=stranger.headers),
            "classify-by-id": await client.post(
                CLASSIFY, json={"text": "play a song", "set": created["id"]}, headers=stranger.headers
            ),
            "classify-by-name": await client.post(
                CLASSIFY, json={"text": "play a song", "set": "assistant"}, headers=stranger.headers
            ),
            "delete": await client.delete(set_url, headers=stranger.headers),
        }

        for action, response in responses.items():
            assert response.status_code == 404, f"{action}: {response.status_code} {response.text}"
            assert error_code(response).endswith("not_found"), action
        listed = (await client.get(SETS, headers=stranger.headers)).json()["items"]
        assert [item["name"] for item in listed] == ["theirs"]
        intact = (await client.get(set_url, headers=owner.headers)).json()
        assert (intact["name"], intact["intent_count"], intact["example_count"]) == ("assistant", 3, 36)
        # An intent of another set of the same organization is not found through this one.
        other = await create(client, owner, name="other")
        crossed = await client.delete(
            f"{SETS}/{other['id']}/intents/{created['intents'][0]['id']}", headers=owner.headers
        )
        assert crossed.status_code == 404

    async def test_viewers_read_and_classify_but_do_not_change_sets(
        self, client: httpx.AsyncClient, owner: SignedIn
    ) -> None:
        created = await create(client, owner)
        await train(client, owner, created["id"])
        viewer = await add_member(client, owner, "viewer")

        assert (await client.get(f"{SETS}/{created['id']}", headers=viewer.headers)).status_code == 200
        assert (await classify(client, viewer, "play a song", "assistant"))["intent"] == "music"
        for response in (
            await client.post(SETS, json=definition(name="mine"), headers=viewer.headers),
            await client.post(f"{SETS}/{created['id']}/train", headers=viewer.headers),
            await client.delete(f"{SETS}/{created['id']}", headers=viewer.headers),
        ):
            assert response.status_code == 403
            assert error_code(response) == "permission_denied"
        assert (await client.post(CLASSIFY, json={"text": "x", "set": "assistant"})).status_code == 401


@pytest.fixture
async def second_app(settings: Settings) -> AsyncIterator[Any]:
    """Another API process on the same database, whose embedding model differs (32 dimensions)."""
    other = make_settings(
        database_url=settings.database_url, data_dir=settings.data_dir, embeddings={"provider": "fake", "dimension": 32}
    )
    application = create_app(other)
    async with application.router.lifespan_context(application):
        yield application


async def test_a_version_classifies_in_a_process_that_did_not_train_it(
    client: httpx.AsyncClient, owner: SignedIn, settings: Settings
) -> None:
    created = await create(client, owner)
    await train(client, owner, created["id"])
    before = await classify(client, owner, "play my jazz playlist", "assistant")
    service._models._models.clear()  # as in a freshly started process: the model comes from the database
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            after = await classify(other, owner, "play my jazz playlist", "assistant")

    assert after == before


async def test_a_version_trained_on_another_embedding_model_asks_for_training(
    client: httpx.AsyncClient, owner: SignedIn, second_app: Any
) -> None:
    created = await create(client, owner)
    await train(client, owner, created["id"])

    transport = httpx.ASGITransport(app=second_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        mismatch = await other.post(CLASSIFY, json={"text": "play a song", "set": "assistant"}, headers=owner.headers)
        retrained = await other.post(f"{SETS}/{created['id']}/train", headers=owner.headers)
        after = await other.post(CLASSIFY, json={"text": "play a song", "set": "assistant"}, headers=owner.headers)

    assert mismatch.status_code == 409
    assert error_code(mismatch) == "intent_model_mismatch"
    assert mismatch.json()["error"]["details"] == {"trained_on": "fake:hash-64", "serving": "fake:hash-32"}
    assert retrained.json()["embedding_model"] == "fake:hash-32"
    assert (after.status_code, after.json()["version"], after.json()["model"]) == (200, 2, "fake:hash-32")


@pytest.fixture
def local_settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=database_url, data_dir=tmp_path / "data", embeddings={"provider": "local"})


async def test_the_bundled_model_classifies_paraphrases_and_rejects_other_topics(local_settings: Settings) -> None:
    """Quality matters here: examples and texts share few words, so only the sentence model can tell."""
    intents = {
        "lost_card": ["I lost my card", "my card was stolen", "I can't find my bank card anywhere",
                      "someone took my wallet with the card", "block my card, it's missing"],
        "card_arrival": ["when will my new card arrive", "my card still hasn't come in the mail",
                         "how long does delivery of the card take", "I'm waiting for my card to be delivered",
                         "has my card been posted yet"],
        "exchange_rate": ["what exchange rate do you use", "how much is a euro in dollars",
                          "what's the rate for converting pounds", "currency conversion rate today",
                          "how many yen do I get for 100 dollars"],
    }  # fmt: skip
    application = create_app(local_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            user = await register(http)
            body = {"name": "bank", "intents": [{"name": k, "examples": v} for k, v in intents.items()]}
            assert (await http.post(SETS, json=body, headers=user.headers)).status_code == 201
            set_id = (await http.get(SETS, headers=user.headers)).json()["items"][0]["id"]
            version = await train(http, user, set_id)
            results = {
                text: await classify(http, user, text, "bank")
                for text in ("somebody pinched my debit card", "the postman never brought my card",
                             "convert fifty francs to sterling", "recommend a good pasta recipe")
            }  # fmt: skip

    assert version["embedding_model"] == "local:all-MiniLM-L6-v2-int8"
    assert version["calibrated_threshold"] is not None
    assert results["somebody pinched my debit card"]["intent"] == "lost_card"
    assert results["the postman never brought my card"]["intent"] == "card_arrival"
    assert results["convert fifty francs to sterling"]["intent"] == "exchange_rate"
    recipe = results["recommend a good pasta recipe"]
    assert recipe["out_of_scope"] is True, recipe
    assert all(not results[t]["out_of_scope"] for t in list(results)[:3]), results
