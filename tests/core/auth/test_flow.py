from __future__ import annotations

import httpx


async def test_register_login_me_refresh(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "ada@example.com", "password": "Analytical-Engine-1843", "name": "Ada Lovelace"},
    )
    assert response.status_code == 201, response.text
    response = await client.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": "Analytical-Engine-1843"}
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.json()["user"]["email"] == "ada@example.com"
    assert me.json()["role"] == "owner"
    rotated = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "refresh_token_reused"
    # The reuse ended the whole sign-in: the newest refresh token is dead too.
    newest = await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]})
    assert newest.status_code == 401
