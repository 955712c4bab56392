"""The connection's own calls: sync state, sync requests, disconnect, raw tables, passthrough."""

from __future__ import annotations

import pytest

from makini_async import AuthenticationError, Connection, ValidationError
from makini_async.models import SyncStatus
from makini_async.sandbox import Sandbox


class TestSyncState:
    async def test_integration(self, conn: Connection) -> None:
        """integration() decodes the connection with its sync status as an enum."""
        current = await conn.integration()
        assert current.id == "c1"
        assert current.sync_status is SyncStatus.DONE
        assert current.updated_at is not None
        assert current.updated_at.tzinfo is not None

    # A sync that outlasts the test (1,000 s at the suite's time scale), whatever the machine's
    # speed: with the default five simulated seconds it can end before the status is read.
    @pytest.mark.parametrize(
        "sandbox_options",
        [{"connections": 2, "seed": 1, "time_scale": 0.001, "sync_duration": 1e6}],
        ids=["long sync"],
    )
    async def test_request_sync_and_status(self, conn: Connection) -> None:
        """request_sync() starts a sync that sync_status() then reports."""
        answer = await conn.request_sync("incremental", scopes=["work-orders"])
        assert answer == {"type": "incremental", "scopes": ["work-orders"], "status": "inprogress"}
        state = await conn.sync_status()
        assert state.status is SyncStatus.IN_PROGRESS
        assert state.last_synced_at is None
        with pytest.raises(ValidationError):
            await conn.request_sync("")

    async def test_failed_sync(self, conn: Connection, sandbox: Sandbox) -> None:
        """A failed sync's error is kept as it came."""
        sandbox.fail_next_sync("c1", status="fail", code="AUTHENTICATION_FAILED")
        await conn.request_sync("full")
        await sandbox.sleep(6)  # the sync takes five simulated seconds
        state = await conn.sync_status()
        assert state.status is SyncStatus.FAIL
        assert state.error == {"code": "AUTHENTICATION_FAILED", "message": "The sync failed."}
        assert (await conn.integration()).sync_status is SyncStatus.FAIL

    async def test_disconnect(self, conn: Connection) -> None:
        """disconnect() kills the token at once."""
        await conn.disconnect()
        with pytest.raises(AuthenticationError):
            await conn.integration()


class TestRawAndPassthrough:
    async def test_raw_tables(self, conn: Connection, sandbox: Sandbox) -> None:
        """Raw tables list, and their rows page with every column in extra."""
        tables = await conn.raw_tables()
        assert isinstance(tables, list)
        assert {"name": "sites", "rows": 6} in tables
        rows = await conn.raw_rows("sites", per_page=4).to_list()
        assert [r.extra["key"] for r in rows] == [
            s["key"] for s in sandbox.records("c1", "eam/sites")
        ]
        with pytest.raises(ValueError, match="table"):
            conn.raw_rows("")

    async def test_passthrough(self, conn: Connection) -> None:
        """Passthrough sends path, method, headers and body and unwraps the answer."""
        answer = await conn.passthrough("/v1/items", "post", headers={"X": "1"}, body={"a": 1})
        assert answer == {
            "status": 200,
            "headers": {},
            "body": {"echo": {"a": 1}, "path": "/v1/items"},
        }
        with pytest.raises(ValidationError) as info:
            await conn.passthrough("/x", "patch")  # type: ignore[arg-type]
        assert "method" in info.value.fields
