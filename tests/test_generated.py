"""Generated files cannot drift: regenerating from the shipped OpenAPI files changes nothing."""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import makini_async
from makini_async import _openapi
from makini_async._openapi import _regenerate
from makini_async.sandbox._spec import load_spec

ROOT = Path(makini_async.__file__).resolve().parent.parent
#: Every file a generator writes; a new one must be added here.
GENERATED = (
    "makini_async/models/__init__.py",
    "makini_async/models/_generated.py",
    "makini_async/resources/__init__.py",
    "makini_async/resources/_generated.py",
    "makini_async/sandbox/_spec.json",
)
FILES = tuple(f"oas3_{domain}.json" for domain in _openapi.DOMAINS)


@cache
def _regenerated() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): text for p, text in _regenerate.outputs().items()}


def _lines(name: str, text: str) -> list[str]:
    if name.endswith(".json"):  # the table is one long line; compare it entry by entry
        text = json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n"
    return text.splitlines(keepends=True)


def _short_diff(name: str, committed: str, regenerated: str, limit: int = 40) -> str:
    diff = difflib.unified_diff(
        _lines(name, committed),
        _lines(name, regenerated),
        f"{name} (committed)",
        f"{name} (regenerated)",
        n=1,
    )
    shown = [line if len(line) <= 160 else line[:157] + "...\n" for line in diff]
    more = f"... and {len(shown) - limit} more lines\n" if len(shown) > limit else ""
    return "".join(shown[:limit]) + more


class TestRegeneration:
    def test_every_generated_file_is_checked(self) -> None:
        """The generators write exactly the files this module compares."""
        assert sorted(_regenerated()) == sorted(GENERATED)

    @pytest.mark.parametrize("name", GENERATED)
    def test_regenerating_changes_nothing(self, name: str) -> None:
        """The committed file is byte for byte what the generators write from the shipped files."""
        committed = (ROOT / name).read_text(encoding="utf-8")
        regenerated = _regenerated()[name]
        if committed != regenerated:
            pytest.fail(
                f"{name} is not what the generators write; run `python -m makini_async._openapi`"
                f" and commit the result (or fix the generator):\n"
                + _short_diff(name, committed, regenerated),
                pytrace=False,
            )

    def test_diff_names_the_change(self) -> None:
        """A failure's diff shows the changed entry of the one-line table, not the whole line."""
        old = json.dumps({"routes": [["GET", "/a"], ["GET", "/b"]]}, separators=(",", ":"))
        new = old.replace("/b", "/c")
        diff = _short_diff("makini_async/sandbox/_spec.json", old, new)
        assert '-   "/b"\n' in diff
        assert '+   "/c"\n' in diff
        assert "(committed)" in diff.splitlines()[0]


class TestEntryPoint:
    def test_check_names_stale_files_and_writes_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--check`` exits 1 naming each file that would change; without it they are written."""
        same, changed, missing = tmp_path / "same.py", tmp_path / "changed.py", tmp_path / "new.py"
        same.write_text("same\n", encoding="utf-8")
        changed.write_text("old\n", encoding="utf-8")
        texts = {same: "same\n", changed: "new\n", missing: "new\n"}
        monkeypatch.setattr(_regenerate, "outputs", lambda: texts)
        assert _regenerate.main(["--check"]) == 1
        assert capsys.readouterr().out == f"would change {changed}\nwould change {missing}\n"
        assert changed.read_text(encoding="utf-8") == "old\n"
        assert not missing.exists()
        assert _regenerate.main([]) == 0
        assert capsys.readouterr().out == f"wrote {changed}\nwrote {missing}\n"
        assert _regenerate.main(["--check"]) == 0
        assert capsys.readouterr().out == "all 3 generated files are up to date\n"


class TestShippedFiles:
    def test_loader_reads_the_files_inside_the_package(self) -> None:
        """The OpenAPI files are package data beside the loader, four OpenAPI 3 documents."""
        folder = Path(str(_openapi.files()))
        assert folder == ROOT / "makini_async" / "_openapi"
        assert sorted(p.name for p in folder.glob("*.json")) == sorted(FILES)
        for domain in _openapi.DOMAINS:
            assert str(_openapi.read(domain)["openapi"]).startswith("3.")

    def test_every_documented_operation_is_a_sandbox_route(self) -> None:
        """Each path and method of the files is parsed once and served by the sandbox table."""
        documented = [
            (method.upper(), path)
            for domain in _openapi.DOMAINS
            for path, methods in _openapi.read(domain)["paths"].items()
            for method in methods
        ]
        parsed = [(op.method, op.path) for op in _openapi.load().operations]
        served = [(route.method, route.template) for route in load_spec().routes]
        assert len(documented) > 250
        assert parsed == documented
        assert served == documented

    def test_every_documented_schema_is_in_the_sandbox_table(self) -> None:
        """Each component schema and each of its properties reaches the sandbox table."""
        spec = load_spec()
        for domain in _openapi.DOMAINS:
            schemas = _openapi.read(domain)["components"]["schemas"]
            assert list(spec.schemas[domain]) == sorted(schemas)
            for name, schema in schemas.items():
                props = schema.get("properties") if isinstance(schema, dict) else None
                want = list(props) if isinstance(props, dict) else []
                assert [f.name for f in spec.fields(domain, name)] == want, (domain, name)

    def test_refs_become_schema_names(self) -> None:
        """Response, property and item references resolve to the component schema's name."""
        api = _openapi.load()
        ops = {(op.method, op.path): op for op in api.operations}
        listing = ops["GET", "/api/eam/work-orders"]
        assert (listing.response, listing.response_is_list) == ("WorkOrder", True)
        single = ops["GET", "/api/eam/work-orders/{key}"]
        assert (single.response, single.response_is_list) == ("WorkOrder", False)
        assert {p.name: p.location for p in listing.parameters}["per_page"] == "query"
        schemas = api.document("eam").schemas
        refs = {
            p.ref or p.items_ref
            for schema in schemas.values()
            for p in schema.properties or ()
            if p.ref or p.items_ref
        }
        assert refs
        assert refs <= set(schemas)

    def test_shipped_files_are_parsed_once(self) -> None:
        """Loading the shipped files again returns the documents already parsed."""
        assert _openapi.load().documents[0] is _openapi.load().documents[0]

    def test_unknown_domain_is_a_key_error(self) -> None:
        """Asking the view for a domain it did not read raises KeyError."""
        with pytest.raises(KeyError, match="crm"):
            _openapi.load(domains=("eam",)).document("crm")


class TestReader:
    @pytest.mark.parametrize(
        "ref", ["#/components/schemas/Missing", "#/components/responses/Order", "other.json#/x"]
    )
    def test_unresolvable_ref_stops_the_reader(self, tmp_path: Path, ref: str) -> None:
        """A reference to no component schema of the same file raises, naming the file."""
        doc = {
            "components": {"schemas": {"Order": {"properties": {"line": {"$ref": ref}}}}},
            "paths": {},
        }
        (tmp_path / "oas3_eam.json").write_text(json.dumps(doc), encoding="utf-8")
        with pytest.raises(_openapi.OpenAPIError, match=r"oas3_eam\.json: cannot resolve"):
            _openapi.load(tmp_path, ("eam",))

    def test_not_an_object_stops_the_reader(self, tmp_path: Path) -> None:
        """A file that holds no JSON object raises."""
        (tmp_path / "oas3_eam.json").write_text("[]", encoding="utf-8")
        with pytest.raises(_openapi.OpenAPIError, match="does not hold a JSON object"):
            _openapi.read("eam", tmp_path)

    def test_bodies_and_inline_objects(self, tmp_path: Path) -> None:
        """A request body's fields, formats and inline item properties are read as declared."""
        tasks = {"type": "array", "items": {"properties": {"dueAt": {"format": "date-time"}}}}
        body = {"properties": {"title": {"type": "string", "format": "required"}, "tasks": tasks}}
        doc = {
            "paths": {
                "/api/eam/orders": {
                    "post": {"requestBody": {"content": {"application/json": {"schema": body}}}},
                    "get": {},
                }
            }
        }
        (tmp_path / "oas3_eam.json").write_text(json.dumps(doc), encoding="utf-8")
        post, get = _openapi.load(tmp_path, ("eam",)).operations
        assert (post.method, post.content_type) == ("POST", "application/json")
        title, items = post.body
        assert (title.type, title.format, title.properties) == ("string", "required", ())
        assert [(p.name, p.format) for p in items.properties] == [("dueAt", "date-time")]
        assert (get.response, get.content_type, get.body, get.parameters) == ("", "", (), ())


def test_importing_the_package_leaves_the_openapi_files_alone() -> None:
    """Neither ``import makini_async`` nor the running sandbox imports the loader or a generator."""
    code = (
        "import sys, makini_async, makini_async.models, makini_async.resources\n"
        "from makini_async.sandbox import Sandbox\n"
        "from makini_async.sandbox._spec import load_spec\n"
        "load_spec()\n"
        "tools = {'_openapi', '_generate', '_build_spec', '_regenerate'}\n"
        "print([m for m in sys.modules if tools & set(m.split('.'))])"
    )
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip() == "[]"
