"""The webhooks package's public surface."""

from __future__ import annotations

import inspect

from makini_async import MakiniError, _converter, webhooks


class TestExports:
    def test_all_is_sorted_and_complete(self) -> None:
        """`__all__` names only existing objects and covers every private module's exports.

        Its order (constants, classes, functions) is ruff's RUF022, checked by the lint test.
        """
        assert len(set(webhooks.__all__)) == len(webhooks.__all__)
        for name in webhooks.__all__:
            assert hasattr(webhooks, name), name
        for module in (
            "_aiohttp",
            "_asgi",
            "_core",
            "_dedup",
            "_events",
            "_ordering",
            "_receiver",
            "_verify",
        ):
            private = getattr(webhooks, module)
            for name in private.__all__:
                assert name in webhooks.__all__, (module, name)
        assert _converter.__all__ == sorted(_converter.__all__)

    def test_public_objects_are_documented(self) -> None:
        """Every public class and function says when it was added."""
        for name in webhooks.__all__:
            obj = getattr(webhooks, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert ".. versionadded:: 0.1.0" in (inspect.getdoc(obj) or ""), name

    def test_errors_join_the_tree(self) -> None:
        """Webhook errors are caught by `except WebhookError` and by `except MakiniError`."""
        assert issubclass(webhooks.WebhookError, MakiniError)
        assert issubclass(webhooks.WebhookVerificationError, webhooks.WebhookError)
        assert issubclass(webhooks.WebhookPayloadError, webhooks.WebhookError)
