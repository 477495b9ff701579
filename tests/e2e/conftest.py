"""Fixtures of the browser tests: the real stack behind nginx over HTTPS (built once per
session), one headless Chromium, and a fresh browser context per tab whose console must
stay free of errors. Screenshots of each run go to tests/e2e/screenshots/<run>/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.e2e.browser import ConsoleWatch, launch
from tests.e2e.stack import Site, build_web, fresh_web_root, running_site
from tests.e2e.ui import Tab

SCREENSHOTS = Path(__file__).parent / "screenshots"
ACTION_TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def web_root() -> Iterator[Path]:
    """The web app, built once per session, where nginx's workers can read it."""
    root = fresh_web_root()
    try:
        build_web(root)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, model_api, web_root: Path) -> Iterator[Site]:
    """The stack most tests share; a module that needs another (more upstreams) overrides
    this fixture with its own `running_site`."""
    with running_site(tmp_path_factory.mktemp("e2e"), model_api.url, web_root) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    playwright = sync_playwright().start()
    try:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """This run's folder of screenshots (git-ignored)."""
    folder = SCREENSHOTS / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def open_tab(
    browser: Browser, site: Site, screenshots: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Tab]]:
    """Opens tabs, each in a fresh context (its own cookies); context options such as a
    phone's viewport pass through. On the way out: a screenshot of every tab when the test
    failed, and a check that no tab logged a console error or threw."""
    tabs: list[Tab] = []

    def open_(**context_options) -> Tab:
        context = browser.new_context(
            base_url=site.url, ignore_https_errors=True, accept_downloads=True, **context_options
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        page = context.new_page()
        console = ConsoleWatch()
        console.attach(page)
        tabs.append(Tab(page, console, site, screenshots))
        return tabs[-1]

    yield open_
    report = getattr(request.node, "report_call", None)
    try:
        if report is not None and report.failed:
            for number, tab in enumerate(tabs):
                try:
                    tab.shot(f"FAILED-{request.node.name}-{number}")
                except Exception as error:  # a crashed page still lets the others close
                    print(f"no failure screenshot of tab {number}: {error}")
    finally:
        errors = [error for tab in tabs for error in tab.console.errors]
        for tab in tabs:
            tab.page.context.close()
    assert not errors, "the page logged errors:\n" + "\n".join(errors)


@pytest.fixture
def tab(open_tab: Callable[..., Tab]) -> Tab:
    """A desktop-sized tab."""
    return open_tab(viewport={"width": 1280, "height": 800})
