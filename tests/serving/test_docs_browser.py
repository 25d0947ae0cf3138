"""A real browser opens the docs page of a real `recqa serve`: every request it makes goes to
that loopback server, and the page's own script runs (it is not blocked by the page's CSP).

Debian's Chromium (`.ci/run` installs it), driven by playwright; playwright's own browser
downloads are never used. The server watches an empty warehouse: up, not ready, which is all
the docs need.
"""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest

from tests.serving.conftest import start_server, stop_server

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("docs-server")
    (tmp_path / "warehouse").mkdir()
    server = start_server(tmp_path / "warehouse", tmp_path, wait_ready=False)
    yield server
    stop_server(server.process)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (.ci/run does)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_loading_the_docs_requests_nothing_but_the_loopback_server(docs_server, browser, path):
    page = browser.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        response = page.goto(docs_server.base_url + path, wait_until="networkidle")
        assert response is not None and response.status == 200
        assert page.title().startswith("recqa ")
        assert not problems, problems  # a CSP violation or a script error on load shows here
        # The page's script works: the /version form answers in the page (503: nothing published).
        form = page.locator('form.try[data-path="/version"]')
        form.locator("button").click()
        page.wait_for_function("document.querySelector('form.try[data-path=\"/version\"] pre').textContent.startsWith('503')")
        assert "nothing is published" in form.locator("pre").text_content()
        assert problems == ["Failed to load resource: the server responded with a status of 503 (Service Unavailable)"]
        page.wait_for_load_state("networkidle")
    finally:
        page.close()
    print(f"requests made loading {path}:", requested)
    server = urlsplit(docs_server.base_url).netloc
    assert requested and all(urlsplit(url).netloc == server for url in requested), requested
    assert f"{docs_server.base_url}/version" in requested
