"""Tests of makini_async.webhooks, over real HTTP on 127.0.0.1."""
