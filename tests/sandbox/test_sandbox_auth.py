"""Tokens and their lifecycle: link/token grants, rotation, expiry, reauthorization, disconnect."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from makini_async.sandbox import Sandbox
from tests.sandbox.support import Api

WO = "/api/eam/work-orders"


def _creds(sandbox: Sandbox) -> dict[str, str]:
    return {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret}


class TestConnectionTokens:
    async def test_tokens_look_like_jwts(self, sandbox: Sandbox) -> None:
        """Connection tokens are three dot-separated parts starting like a JWT header."""
        token = sandbox.connections["c1"]
        assert token.startswith("eyJ")
        assert token.count(".") == 2
        assert token != sandbox.connections["c2"]

    async def test_token_reaches_only_its_connection(self, api: Api) -> None:
        """Each token reads its own connection's data."""
        one = await api.get("/api/integrations/current")
        two = await api.as_connection("c2").get("/api/integrations/current")
        assert one.body["data"]["id"] == "c1"
        assert two.body["data"]["id"] == "c2"
        keys_one = await api.get(WO, params={"per_page": "1"})
        keys_two = await api.as_connection("c2").get(WO, params={"per_page": "1"})
        assert keys_one.body["data"][0]["key"] != keys_two.body["data"][0]["key"]

    @pytest.mark.parametrize(
        "header", [None, "Bearer", "Bearer nope", "Basic abc", "bearer eyJ.x.y"]
    )
    async def test_missing_or_unknown_token(self, api: Api, header: str | None) -> None:
        """No token, an empty one or an unknown one answers 401 AUTHENTICATION_FAILED."""
        bare = api.as_connection(None)
        headers = {"Authorization": header} if header else None
        reply = await bare.get(WO, headers=headers)
        assert reply.status == 401
        assert reply.error_code == "AUTHENTICATION_FAILED"
        assert reply.body["error"]["type"] == "authentication_error"

    async def test_expired_token(self, api: Api, sandbox: Sandbox) -> None:
        """An expired token answers 401 TOKEN_EXPIRED."""
        sandbox.expire_token("c1")
        reply = await api.get(WO)
        assert reply.status == 401
        assert reply.error_code == "TOKEN_EXPIRED"

    async def test_tokens_expire_after_thirty_days(self, api: Api, sandbox: Sandbox) -> None:
        """Moving the sandbox clock 30 days ahead expires the access token."""
        sandbox.advance(30 * 86400 + 1)
        reply = await api.get(WO)
        assert reply.error_code == "TOKEN_EXPIRED"

    async def test_credential_change_until_reconnect(self, api: Api, sandbox: Sandbox) -> None:
        """After a credential change calls need reauthorization until a reconnect's new token."""
        old = sandbox.connections["c1"]
        sandbox.change_credentials("c1")
        reply = await api.get(WO)
        assert reply.status == 401
        assert reply.error_code == "REAUTHORIZATION_REQUIRED"
        new = sandbox.reconnect("c1")
        assert new != old
        assert sandbox.connections["c1"] == new
        assert (await api.get(WO)).status == 200
        stale = await api.as_connection(None, old).get(WO)
        assert stale.error_code == "AUTHENTICATION_FAILED"

    async def test_disconnect_kills_the_token(self, api: Api) -> None:
        """DELETE /api/integrations/current answers {} and the token dies at once."""
        reply = await api.request("DELETE", "/api/integrations/current")
        assert reply.status == 200
        assert reply.body == {}
        after = await api.get(WO)
        assert after.status == 401
        assert after.error_code == "AUTHENTICATION_FAILED"

    async def test_inactive_connection(self, api: Api, sandbox: Sandbox) -> None:
        """An inactive connection answers 403 CONNECTION_INACTIVE until reactivated."""
        sandbox.set_status("c1", "inactive")
        reply = await api.get(WO)
        assert reply.status == 403
        assert reply.error_code == "CONNECTION_INACTIVE"
        assert reply.body["error"]["type"] == "permission_error"
        sandbox.set_status("c1", "active")
        assert (await api.get(WO)).status == 200

    async def test_removed_connection(self, api: Api, sandbox: Sandbox) -> None:
        """A removed connection's token answers AUTHENTICATION_FAILED."""
        token = sandbox.connections["c1"]
        sandbox.remove_connection("c1")
        reply = await api.as_connection(None, token).get(WO)
        assert reply.error_code == "AUTHENTICATION_FAILED"

    async def test_admin_token_cannot_read_data(self, api: Api, sandbox: Sandbox) -> None:
        """The admin token on a data path answers 403 PERMISSION_DENIED."""
        reply = await api.as_connection(None, sandbox.admin_token).get(WO)
        assert reply.status == 403
        assert reply.error_code == "PERMISSION_DENIED"


class TestLinkToken:
    async def test_authorization_code_form(self, api: Api, sandbox: Sandbox) -> None:
        """A form-encoded code exchange returns a bearer pair with an absolute expires_in."""
        code = sandbox.authorization_code()
        reply = await api.as_connection(None).post(
            "/link/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "x",
                **_creds(sandbox),
            },
        )
        assert reply.status == 200, reply.text
        body = reply.body
        assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert body["token_type"] == "bearer"
        assert abs(body["expires_in"] - (time.time() + 30 * 86400)) < 60
        assert reply.headers["Cache-Control"] == "no-store"
        data = await api.as_connection(None, body["access_token"]).get(WO)
        assert data.status == 200
        again = await api.as_connection(None).post(
            "/link/token",
            data={"grant_type": "authorization_code", "code": code, **_creds(sandbox)},
        )
        assert again.status == 400

    async def test_refresh_rotates_the_pair(self, api: Api, sandbox: Sandbox) -> None:
        """A JSON refresh returns a new pair and kills the old access and refresh tokens."""
        old_access = sandbox.connections["c1"]
        old_refresh = sandbox.connection("c1").refresh_token
        reply = await api.as_connection(None).post(
            "/link/token",
            json={"grant_type": "refresh_token", "refresh_token": old_refresh, **_creds(sandbox)},
        )
        assert reply.status == 200
        assert reply.body["access_token"] != old_access
        assert (await api.as_connection(None, old_access).get(WO)).status == 401
        assert (await api.as_connection(None, reply.body["access_token"]).get(WO)).status == 200
        reuse = await api.as_connection(None).post(
            "/link/token",
            json={"grant_type": "refresh_token", "refresh_token": old_refresh, **_creds(sandbox)},
        )
        assert reuse.status == 401

    async def test_client_credentials_gives_an_admin_token(
        self, api: Api, sandbox: Sandbox
    ) -> None:
        """client_credentials returns an admin token that opens the Admin API."""
        reply = await api.as_connection(None).post(
            "/link/token", json={"grant_type": "client_credentials", **_creds(sandbox)}
        )
        assert reply.status == 200
        admin = api.as_connection(None, reply.body["access_token"])
        connections = await admin.get("/api/system/connections")
        assert connections.status == 200
        assert [c["key"] for c in connections.body["data"]] == ["c1", "c2"]

    @pytest.mark.parametrize(
        "body",
        [
            {"grant_type": "password"},
            {"grant_type": "authorization_code"},
            {"grant_type": "refresh_token"},
        ],
    )
    async def test_bad_grants_are_400(
        self, api: Api, sandbox: Sandbox, body: dict[str, str]
    ) -> None:
        """Unknown grants and missing codes answer 400 INVALID_REQUEST."""
        reply = await api.as_connection(None).post("/link/token", json={**body, **_creds(sandbox)})
        assert reply.status == 400
        assert reply.error_code == "INVALID_REQUEST"

    async def test_wrong_client_secret(self, api: Api, sandbox: Sandbox) -> None:
        """A wrong client secret answers 401."""
        reply = await api.as_connection(None).post(
            "/link/token",
            json={
                "grant_type": "client_credentials",
                "client_id": sandbox.client_id,
                "client_secret": "x",
            },
        )
        assert reply.status == 401

    async def test_oauth_authorize_redirects_with_a_code(self, api: Api, sandbox: Sandbox) -> None:
        """/oauth/authorize approves at once and redirects to redirect_uri with code and state."""
        reply = await api.as_connection(None).get(
            "/oauth/authorize",
            params={
                "client_id": sandbox.client_id,
                "redirect_uri": "http://app.test/callback",
                "response_type": "code",
                "state": "s1",
                "provider": "upkeep",
            },
        )
        assert reply.status == 302
        location = urlsplit(reply.headers["Location"])
        assert location.netloc == "app.test"
        query = parse_qs(location.query)
        assert query["state"] == ["s1"]
        exchanged = await api.as_connection(None).post(
            "/link/token",
            json={"grant_type": "authorization_code", "code": query["code"][0], **_creds(sandbox)},
        )
        current = await api.as_connection(None, exchanged.body["access_token"]).get(
            "/api/integrations/current"
        )
        assert current.body["data"]["provider"] == "upkeep"
        assert current.body["data"]["id"] not in {"c1", "c2"}


class TestAdminApi:
    async def test_connection_token_cannot_use_admin_api(self, api: Api) -> None:
        """A connection token on /api/system/* answers 403 PERMISSION_DENIED."""
        reply = await api.get("/api/system/connections")
        assert reply.status == 403
        assert reply.error_code == "PERMISSION_DENIED"

    async def test_admin_endpoints(self, api: Api, sandbox: Sandbox) -> None:
        """Client, platforms, connection create/metadata/token/delete work with the admin token."""
        admin = api.as_connection(None, sandbox.admin_token)
        client = await admin.get("/api/system/client")
        assert client.body["data"]["id"] == sandbox.client_id
        platforms = await admin.get("/api/system/platforms")
        assert "upkeep" in [p["slug"] for p in platforms.body["data"]]
        created = await admin.post(
            "/api/system/connections",
            json={
                "name": "Acme",
                "email": "ops@acme.test",
                "provider": "emaint",
                "credentials": {},
            },
        )
        assert created.status == 200
        token = created.body["data"]["access_token"]
        current = await api.as_connection(None, token).get("/api/integrations/current")
        cid = current.body["data"]["id"]
        assert current.body["data"]["company_name"] == "Acme"
        meta = await admin.post(
            f"/api/system/connections/{cid}/metadata", json=[{"key": "uc", "value": "v"}]
        )
        assert meta.status == 200
        listed = await admin.get(f"/api/system/connections/{cid}/metadata")
        assert listed.body["data"] == [{"key": "uc", "value": "v"}]
        fresh = await admin.post(f"/api/system/connections/{cid}/token")
        assert fresh.body["data"]["token"] != token
        assert (await api.as_connection(None, token).get(WO)).status == 401
        gone = await admin.request("DELETE", f"/api/system/connections/{cid}")
        assert gone.body == {}
        missing = await admin.request("DELETE", f"/api/system/connections/{cid}")
        assert missing.status == 404

    async def test_create_connection_needs_an_email(self, api: Api, sandbox: Sandbox) -> None:
        """POST /api/system/connections without a valid email answers 422 with field messages."""
        admin = api.as_connection(None, sandbox.admin_token)
        reply = await admin.post("/api/system/connections", json={"name": "x", "email": "nope"})
        assert reply.status == 422
        assert "email" in reply.body["error"]["details"]["fields"]


class TestAdminTokens:
    async def test_admin_refresh_rotates(self, api: Api, sandbox: Sandbox) -> None:
        """Refreshing the admin pair issues a new admin token and kills the old one."""
        old = sandbox.admin_token
        reply = await api.as_connection(None).post(
            "/link/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": sandbox.admin_refresh_token,
                **_creds(sandbox),
            },
        )
        assert reply.status == 200
        assert reply.body["access_token"] == sandbox.admin_token != old
        stale = await api.as_connection(None, old).get("/api/system/client")
        assert stale.error_code == "AUTHENTICATION_FAILED"
        fresh = await api.as_connection(None, sandbox.admin_token).get("/api/system/client")
        assert fresh.status == 200

    async def test_issued_token_keeps_reauthorization(self, api: Api, sandbox: Sandbox) -> None:
        """A token issued by the Admin API does not undo a customer's credential change."""
        sandbox.change_credentials("c1")
        admin = api.as_connection(None, sandbox.admin_token)
        issued = await admin.post("/api/system/connections/c1/token")
        token = issued.body["data"]["token"]
        assert issued.body["data"]["expires_in"] > time.time()
        reply = await api.as_connection(None, token).get(WO)
        assert reply.error_code == "REAUTHORIZATION_REQUIRED"

    async def test_client_credentials_pairs_coexist(self, api: Api, sandbox: Sandbox) -> None:
        """Asking for an admin token twice leaves both working; only a refresh kills a pair."""
        grant = {"grant_type": "client_credentials", **_creds(sandbox)}
        first = await api.as_connection(None).post("/link/token", json=grant)
        second = await api.as_connection(None).post("/link/token", json=grant)
        for reply in (first, second):
            admin = api.as_connection(None, reply.body["access_token"])
            assert (await admin.get("/api/system/client")).status == 200


class TestAuthorizeErrors:
    @pytest.mark.parametrize(
        ("change", "drop"),
        [
            ({"client_id": "other"}, None),
            ({"response_type": "token"}, None),
            ({"provider": "nope"}, None),
            ({}, "redirect_uri"),
        ],
    )
    async def test_bad_authorize_requests_are_400(
        self, api: Api, sandbox: Sandbox, change: dict[str, str], drop: str | None
    ) -> None:
        """A wrong client, response type or provider, or no redirect_uri, answers 400."""
        params = {
            "client_id": sandbox.client_id,
            "redirect_uri": "http://app.test/cb?x=1",
            "response_type": "code",
            **change,
        }
        if drop:
            del params[drop]
        reply = await api.as_connection(None).get("/oauth/authorize", params=params)
        assert reply.status == 400
        assert reply.error_code == "INVALID_REQUEST"

    async def test_reconnect_through_link(self, api: Api, sandbox: Sandbox) -> None:
        """Authorizing for an existing connection reconnects it with a new token."""
        sandbox.change_credentials("c1")
        reply = await api.as_connection(None).get(
            "/oauth/authorize",
            params={
                "client_id": sandbox.client_id,
                "redirect_uri": "http://app.test/cb?x=1",
                "connection": "c1",
            },
        )
        location = urlsplit(reply.headers["Location"])
        assert parse_qs(location.query)["x"] == ["1"]
        code = parse_qs(location.query)["code"][0]
        exchanged = await api.as_connection(None).post(
            "/link/token",
            json={"grant_type": "authorization_code", "code": code, **_creds(sandbox)},
        )
        assert exchanged.body["access_token"] == sandbox.connections["c1"]
        assert (await api.get(WO)).status == 200
