"""The service's own API docs: an OpenAPI spec named after the package, and a page rendering it.

BentoML's `/` is a Swagger UI titled with the service name and version "None", with its
project's badges and a Google Tag Manager script: an operator's browser calls third parties
just by opening the docs. These routes live in the plain Starlette app mounted beside the
APIs; BentoML adds its own `/` and `/docs.json` after the mounted apps, so ours match first.
The page is rendered here from the spec, with one inline script and style of our own, and a
Content-Security-Policy that lets the browser fetch nothing but this server.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import html
import importlib.metadata
import json
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

DISTRIBUTION = "recqa"
# A Bento ships the sources, not the installed distribution: there the version comes from
# the pyproject.toml the bentofile includes beside them.
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
DOCS_PATHS = ("/", "/docs", "/openapi.json", "/docs.json")
OPS_TAG = "Operations"
LOOKUP_TAG = "Lookups"
INGEST_TAG = "Ingest"
PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")  # a Starlette path parameter, with its converter
ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string", "description": "What was wrong."}}}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

# Responses of the plain routes (BentoML does not describe a mounted app's routes).
_READINESS = {"description": "Not ready; `reason` says why.", "content": {"application/json": {"schema": {"type": "object"}}}}
_VERSION_SCHEMA = {
    "type": "object",
    "required": ["ready", "reason", "tables", "model", "indexes", "encoder", "cache"],
    "properties": {
        "ready": {"type": "boolean", "description": "Whether a release is being served."},
        "reason": {"type": "string", "nullable": True, "description": "Why not ready; null when ready."},
        "tables": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "Served version of each table."},
        "model": {"type": "string", "description": "The question encoder's model."},
        "indexes": {"type": "object", "description": "Search parameters of each vector index, by `table.column`."},
        "encoder": {"type": "object", "description": "Encoder backend, batch precision, threads per forward pass, questions per batch (`max_batch`, one encoder call) and passes at once (`lanes`) in each worker, and `workers`: the service's processes (RECQA_WORKERS), each answering its share of requests."},
        "cache": {"type": "object", "description": "The semantic cache's threshold and capacity."},
        "answer_search": {
            "type": "object",
            "description": "How the served answers version is searched: `path` memory or lance, its rows and bytes, "
            "`budget_mb` (RECQA_MEMORY_BUDGET_MB), `reason`, `vector_search`, and `keyword_search` (in memory or "
            "Lance's full-text index) with `keyword_reason`.",
        },
        "item_search": {
            "type": "object",
            "description": "The same for the served items' content vectors (/search_items, /similar_items by content): "
            "`path`, rows, bytes, `budget_mb`, `reason` and `vector_search`.",
        },
    },
}
_RELOAD_SCHEMA = {
    "type": "object",
    "properties": {
        "swapped": {"type": "boolean", "description": "Whether the served versions changed."},
        "tables": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "Served version of each table."},
    },
}
_FLUSH_SCHEMA = {"type": "object", "properties": {"flushed": {"type": "integer", "description": "Entries removed."}}}
PLAIN_RESPONSES: dict[str, dict[str, Any]] = {
    "/version": {"200": {"description": "Ready: what is served.", "content": {"application/json": {"schema": _VERSION_SCHEMA}}}, "503": _READINESS},
    "/admin/reload": {"200": {"description": "Checked (by the one worker that took the request, when RECQA_WORKERS > 1).", "content": {"application/json": {"schema": _RELOAD_SCHEMA}}}, "503": _READINESS},
    "/admin/cache/flush": {"200": {"description": "Flushed (the cache of the one worker that took the request, when RECQA_WORKERS > 1).", "content": {"application/json": {"schema": _FLUSH_SCHEMA}}}, "503": _READINESS},
}
GUARD_RESPONSES = {
    "401": {"description": "Missing or wrong bearer token (when a token is configured).", "content": _ERROR},
    "413": {"description": "Request body over RECQA_MAX_BODY_BYTES.", "content": _ERROR},
}


@dataclass(frozen=True)
class PackageInfo:
    name: str
    version: str
    summary: str


@functools.cache
def package_info() -> PackageInfo:
    """Name, version and summary of the installed distribution, else of the shipped pyproject.toml."""
    try:
        meta = importlib.metadata.metadata(DISTRIBUTION)
        return PackageInfo(meta["Name"], meta["Version"], meta.get("Summary") or "")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        project = tomllib.loads(PYPROJECT.read_text())["project"]
        return PackageInfo(project["name"], project["version"], project.get("description", ""))
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return PackageInfo(DISTRIBUTION, "unknown", "")


def openapi_spec(service_spec: dict[str, Any], plain_routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """BentoML's spec of the APIs with our info, the guard's responses and the plain routes added."""
    spec = copy.deepcopy(service_spec)
    info = package_info()
    spec["info"] = {
        "title": info.name,
        "version": info.version,
        "description": (
            f"{info.summary}\n\nWhen `RECQA_API_TOKEN` is set, every route but the probes, /metrics and these docs needs "
            "`Authorization: Bearer <token>`. The admin routes exist only when `RECQA_ADMIN_TOKEN` is set, "
            "and need that token; the write API (`/ingest/`) exists only when `RECQA_INGEST_TOKEN` is set, and needs that one."
        ),
        "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
    }
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("requestBody"):
                # BentoML keys its statuses by int; JSON and OpenAPI want strings
                operation["responses"] = {**GUARD_RESPONSES, **{str(k): v for k, v in operation["responses"].items()}}
                operation["responses"].setdefault("503", {"description": "Not ready, or the release lacks a table this endpoint reads.", "content": _ERROR})
                operation["security"] = [{}, {"bearer": []}]
    for route in plain_routes:
        if not isinstance(route, Route) or route.path in DOCS_PATHS:
            continue
        admin = route.path.startswith("/admin/")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            responses = {**PLAIN_RESPONSES.get(route.path, {"200": {"description": "OK"}}), "401": GUARD_RESPONSES["401"]}
            if admin:
                responses["404"] = {"description": "RECQA_ADMIN_TOKEN is not set: the admin routes do not exist.", "content": _ERROR}
            # Starlette's `{item_id:path}` is OpenAPI's `{item_id}` plus a path parameter
            names = PATH_PARAMETER.findall(route.path)
            operation = {
                "tags": [OPS_TAG if admin or not names else LOOKUP_TAG],
                "description": _first_paragraph(route.endpoint.__doc__),
                "responses": responses,
                "security": [{"bearer": []}] if admin else [{}, {"bearer": []}],
            }
            if names:
                operation["parameters"] = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]
                responses.setdefault("404", {"description": f"No {names[0]} of that value in the served release.", "content": _ERROR})
            described = dict(getattr(route.endpoint, "openapi", None) or {})  # a route that describes itself (ingest/)
            components["schemas"].update(described.pop("schemas", {}))
            operation.update(described)
            operation["responses"] = {**GUARD_RESPONSES, **described.get("responses", responses)} if described else responses
            spec["paths"].setdefault(PATH_PARAMETER.sub(r"{\1}", route.path), {})[method.lower()] = operation
    tags = ((LOOKUP_TAG, "An item or an answer document by its id."), (OPS_TAG, "What is served, and the admin controls."),
            (INGEST_TAG, "Writes between batch builds: upserts, deletes and events (needs RECQA_INGEST_TOKEN)."))
    for name, description in tags:
        if not any(tag.get("name") == name for tag in spec.setdefault("tags", [])):
            spec["tags"].append({"name": name, "description": description})
    return spec


def docs_routes(spec_source: Callable[[], dict[str, Any]]) -> list[Route]:
    """`/` and `/docs` (the page), `/openapi.json` and `/docs.json` (the spec), built on first use."""
    spec = functools.cache(spec_source)

    @functools.cache
    def page() -> str:
        return render_page(spec())

    def spec_view(request: Request) -> Response:
        return JSONResponse(spec())

    def page_view(request: Request) -> Response:
        return HTMLResponse(page(), headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    return [
        Route("/", page_view, methods=["GET"]),
        Route("/docs", page_view, methods=["GET"]),
        Route("/openapi.json", spec_view, methods=["GET"]),
        Route("/docs.json", spec_view, methods=["GET"]),
    ]


def _first_paragraph(doc: str | None) -> str:
    return re.sub(r"\s+", " ", (doc or "").strip().split("\n\n")[0])


# ---- the page ---------------------------------------------------------------------------

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;color:#1d1d1f}
h1 small{font-weight:normal;color:#666;font-size:.6em}code,pre,textarea{font:13px ui-monospace,monospace}
section.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.method{display:inline-block;min-width:3.5rem;font-weight:bold;color:#fff;background:#2b6cb0;border-radius:4px;
text-align:center;margin-right:.5rem}.method.get{background:#2f855a}
table{border-collapse:collapse;width:100%;margin:.3rem 0}td,th{border-bottom:1px solid #eee;padding:.2rem .4rem;
text-align:left;vertical-align:top}th{font-weight:600}textarea{width:100%;min-height:5rem}
pre{background:#f6f8fa;padding:.5rem;overflow:auto;max-height:20rem}
"""
_SCRIPT = """
document.querySelectorAll("form.try").forEach(function (form) {
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var out = form.querySelector("pre"), body = form.querySelector("textarea");
    var headers = {"Content-Type": "application/json"};
    var token = document.getElementById("token").value;
    if (token) { headers["Authorization"] = "Bearer " + token; }
    out.textContent = "...";
    fetch(form.dataset.path, {method: form.dataset.method, headers: headers, body: body ? body.value : undefined})
      .then(function (r) { return r.text().then(function (t) {
        try { t = JSON.stringify(JSON.parse(t), null, 2); } catch (e) {}
        out.textContent = r.status + " " + r.statusText + "\\n" + t; }); })
      .catch(function (e) { out.textContent = String(e); });
  });
});
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only this server, and only our own inline script and style: a page that asks a third party
# for anything is refused by the browser, not just left out of the markup.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; style-src {_csp_hash(_STYLE)}; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def render_page(spec: dict[str, Any]) -> str:
    """The whole page: the operations grouped by tag, their fields, responses and a form to try each."""
    info, schemas = spec["info"], spec.get("components", {}).get("schemas", {})
    esc = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1"><link rel=icon href="data:,">',
        f"<title>{esc(info['title'])} {esc(info['version'])} API</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(info['title'])} API <small>version {esc(info['version'])}</small></h1>",
        "".join(f"<p>{_inline(p)}</p>" for p in info.get("description", "").split("\n\n") if p),
        '<p>The spec: <a href="openapi.json">openapi.json</a>. '
        '<label>Bearer token for the forms below: <input id=token type=password autocomplete=off></label></p>',
    ]
    operations = [(path, method, op) for path, ops in spec.get("paths", {}).items() for method, op in ops.items()]
    for tag in [t["name"] for t in spec.get("tags", [])] + [None]:
        tagged = [o for o in operations if (o[2].get("tags") or [None])[0] == tag]
        if tagged:
            parts.append(f"<h2>{esc(tag or 'Other')}</h2>")
            parts.extend(_operation(path, method, op) for path, method, op in tagged)
    parts.append("<h2>Schemas</h2>")
    parts.extend(f'<h3 id="schema-{esc(name)}">{esc(name)}</h3>{_fields(schema)}' for name, schema in schemas.items())
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    esc = html.escape
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    parts = [
        f'<section class=op id="{esc(method + path)}"><h3><span class="method {esc(method)}">{esc(method.upper())}</span>'
        f"<code>{esc(path)}</code></h3><p>{_inline(_strip_tags(op.get('description', '')))}</p>"
    ]
    if body:
        parts.append(f"<h4>Request body</h4>{_fields(body)}")
    parts.append("<h4>Responses</h4><table><tr><th>status</th><th>meaning</th><th>body</th></tr>")
    for status, response in sorted(op.get("responses", {}).items()):
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        shown = _fields(schema) if schema and "properties" in schema else (_type(schema) if schema else "")
        parts.append(f"<tr><td>{esc(status)}</td><td>{esc(response.get('description', ''))}</td><td>{shown}</td></tr>")
    parts.append("</table>")
    textarea = f"<textarea>{esc(json.dumps(example(body), indent=1))}</textarea>" if body else ""
    parts.append(
        f'<form class=try data-method="{esc(method.upper())}" data-path="{esc(path)}">{textarea}'
        "<button type=submit>Send</button><pre></pre></form></section>"
    )
    return "".join(parts)


def _fields(schema: dict[str, Any]) -> str:
    """A table of an object schema's properties: name, type, required, limits and description."""
    esc = html.escape
    required = set(schema.get("required", []))
    rows = ["<table><tr><th>field</th><th>type</th><th>required</th><th>limits / default</th><th>description</th></tr>"]
    for name, prop in schema.get("properties", {}).items():
        limits = [f"{key} {prop[key]}" for key in ("minLength", "maxLength", "minimum", "maximum", "maxItems") if key in prop]
        if "default" in prop:
            limits.append(f"default {json.dumps(prop['default'])}")
        rows.append(
            f"<tr><td><code>{esc(name)}</code></td><td>{_type(prop)}</td><td>{'yes' if name in required else ''}</td>"
            f"<td>{esc(', '.join(limits))}</td><td>{_inline(prop.get('description', ''))}</td></tr>"
        )
    return "".join(rows) + "</table>"


def _type(schema: dict[str, Any]) -> str:
    """A schema's type in words, linking named schemas."""
    if "$ref" in schema:
        name = html.escape(schema["$ref"].rsplit("/", 1)[-1])
        return f'<a href="#schema-{name}">{name}</a>'
    if "anyOf" in schema:
        return " or ".join(_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{html.escape(json.dumps(v))}</code>" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'])}"
    return html.escape(kind) + (" or null" if schema.get("nullable") else "")


def example(schema: dict[str, Any] | None) -> dict[str, Any]:
    """A request body to start from: the required fields and the scalar defaults."""
    placeholders = {"string": "example", "integer": 1, "number": 0.0, "boolean": False, "array": []}
    body: dict[str, Any] = {}
    for name, prop in (schema or {}).get("properties", {}).items():
        if prop.get("default") is not None and not isinstance(prop["default"], (list, dict)):
            body[name] = prop["default"]
        elif name in (schema or {}).get("required", []):
            body[name] = placeholders.get(prop.get("type", "string"), None)
    return body


def _strip_tags(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)


def _inline(text: str) -> str:
    """Escaped text with `code` spans, the only markup our descriptions use."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
