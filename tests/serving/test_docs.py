"""The docs page and spec replace BentoML's boilerplate: our name and version, every route,
nothing fetched from third parties. In-process through the service's ASGI app (no lifespan:
the docs need no service instance, so no warehouse and no model)."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest
from starlette.testclient import TestClient

from serving import docs
from serving.api import AnswerRequest, RecommendRequest, SearchItemsRequest, SimilarItemsRequest
from tests.conftest import ROOT

PLAIN_ROUTES = {"/version": "get", "/admin/reload": "post", "/admin/cache/flush": "post"}
API_MODELS = {"/recommend": RecommendRequest, "/similar_items": SimilarItemsRequest, "/search_items": SearchItemsRequest, "/answer": AnswerRequest}


@pytest.fixture(scope="module")
def client(service_app) -> TestClient:
    return TestClient(service_app)


@pytest.fixture(scope="module")
def spec(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_the_spec_is_named_and_versioned_after_the_package(spec, client):
    assert spec["info"]["title"] == "recqa"
    assert spec["info"]["version"] == importlib.metadata.version("recqa") != "None"
    assert spec["info"]["description"].startswith(importlib.metadata.metadata("recqa")["Summary"])
    assert not {"slack", "twitter", "contact"} & set(re.findall(r"\w+", str(spec["info"]).lower()))  # BentoML's boilerplate
    assert client.get("/docs.json").json() == spec  # BentoML's address serves ours, not its boilerplate


def test_the_spec_describes_every_api_with_its_request_and_response_schemas(spec):
    schemas = spec["components"]["schemas"]
    for path, model in API_MODELS.items():
        operation = spec["paths"][path]["post"]
        request = operation["requestBody"]["content"]["application/json"]["schema"]
        assert set(request["properties"]) == set(model.model_fields)
        assert set(request.get("required", [])) == {name for name, field in model.model_fields.items() if field.is_required()}
        assert "properties" in operation["responses"]["200"]["content"]["application/json"]["schema"]
        for status in ("401", "413", "503"):  # the guard's and readiness's answers are documented too
            ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[-1] in schemas


def test_the_spec_has_the_version_and_admin_routes(spec):
    for path, method in PLAIN_ROUTES.items():
        operation = spec["paths"][path][method]
        assert operation["description"], path
        assert "200" in operation["responses"]
    assert spec["paths"]["/admin/reload"]["post"]["security"] == [{"bearer": []}]
    assert "404" in spec["paths"]["/admin/cache/flush"]["post"]["responses"]
    version = spec["paths"]["/version"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"ready", "tables", "model"} <= set(version["properties"])
    assert not {"/", "/docs", "/openapi.json", "/docs.json"} & set(spec["paths"])


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_the_page_shows_the_version_and_every_route(client, spec, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert f"<title>recqa {spec['info']['version']} API</title>" in page
    for route in [*API_MODELS, *PLAIN_ROUTES, "/healthz", "/metrics"]:
        assert f"<code>{route}</code>" in page, route
    for field in RecommendRequest.model_fields:
        assert f"<code>{field}</code>" in page


def test_the_page_loads_nothing_from_elsewhere_and_says_so_to_the_browser(client):
    response = client.get("/docs")
    page = response.text
    assert "googletagmanager" not in page and "swagger" not in page.lower()
    # no src= or href= naming a host: everything the page loads is on this server
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(scripts) == len(styles) == 1
    assert docs._csp_hash(scripts[0]) in policy and docs._csp_hash(styles[0]) in policy  # else the browser blocks them


@pytest.mark.parametrize("path", list(API_MODELS))
def test_the_try_it_body_of_each_api_is_a_valid_request(spec, path):
    schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    API_MODELS[path].model_validate(docs.example(schema))


def test_without_an_installed_distribution_the_version_comes_from_pyproject(monkeypatch):
    """As in a Bento, which ships the sources and pyproject.toml but installs no recqa distribution."""

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "metadata", missing)
    docs.package_info.cache_clear()
    try:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        assert docs.package_info() == docs.PackageInfo(project["name"], project["version"], project["description"])
        monkeypatch.setattr(docs, "PYPROJECT", ROOT / "no-such-pyproject.toml")
        docs.package_info.cache_clear()
        assert docs.package_info().version == "unknown"
    finally:
        docs.package_info.cache_clear()


@pytest.mark.parametrize(("path", "name"), [("/items/{item_id}", "item_id"), ("/answers/{doc_id}", "doc_id")])
def test_the_lookups_are_documented_with_their_path_parameter_and_404(spec, path, name):
    operation = spec["paths"][path]["get"]
    assert operation["parameters"] == [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]
    assert {"200", "404"} <= set(operation["responses"]) and operation["description"]
    assert not any(":path" in documented for documented in spec["paths"])  # Starlette's converter is not OpenAPI
