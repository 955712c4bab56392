"""Tests of makini_async.sandbox, over real HTTP."""
