"""The admins' status page: the app's version, the model server's model, device and GPU
(or its absence), and charts that fill in as the page refreshes itself; others never see it."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing

import requests
from playwright.sync_api import expect

from tests.e2e.stack import Site
from tests.e2e.ui import Tab
from tests.integration.conftest import MODEL

# The app service samples every few seconds; a chart needs a sample or two.
CHART_TIMEOUT_MS = 30_000


def set_admin(site: Site, username: str, is_admin: bool) -> None:
    """The first account of a stack is its admin, and which test signs up first depends on
    what runs: set the flag directly in the app service's database (read on every request)."""
    database = site.app.log_path.parent / "data" / "chatstack.db"
    with closing(sqlite3.connect(database, timeout=10)) as conn, conn:
        changed = conn.execute(
            "UPDATE users SET is_admin = ? WHERE username = ?", (int(is_admin), username)
        ).rowcount
    assert changed == 1, f"no user {username} in {database}"


def signed_in_as(tab: Tab, is_admin: bool) -> str:
    username = tab.signed_in()
    set_admin(tab.site, username, is_admin)
    tab.page.reload()  # /api/auth/me tells the UI again
    expect(tab.by("composer")).to_be_visible()
    assert tab.api("GET", "/api/auth/me")["user"]["is_admin"] is is_admin
    return username


def test_admin_sees_versions_model_device_and_charts(tab: Tab, model_api) -> None:
    signed_in_as(tab, is_admin=True)
    model_health = requests.get(model_api.url + "/health", timeout=10).json()
    app_version = tab.api("GET", "/api/health")["version"]

    tab.by("nav-status").click()
    expect(tab.by("status-page")).to_be_visible()
    expect(tab.page.get_by_role("heading", name="Status", exact=True)).to_be_visible()
    expect(tab.by("status-app-version")).to_have_text(app_version)
    expect(tab.by("status-app-health")).to_have_text("OK")

    upstream = tab.by("status-upstream")
    expect(upstream).to_have_count(1)
    expect(upstream.get_by_test_id("status-upstream-health")).to_have_text("Healthy")
    expect(upstream.get_by_test_id("status-model")).to_have_text(MODEL)
    expect(upstream.get_by_test_id("status-device")).to_have_text(model_health["device"])
    gpu = upstream.get_by_test_id("status-gpu")
    if model_health["device"] == "cpu":
        expect(gpu.get_by_test_id("status-no-gpu")).to_have_text(
            "No GPU on this model server (CPU)"
        )
    else:
        expect(gpu.get_by_test_id("status-gpu-device").first).to_be_visible()

    # The page asks again by itself: the time of the last update moves on, and the samples
    # the app service keeps show as charts, each an image that says its latest value.
    updated = tab.by("status-updated")
    expect(updated).to_contain_text("updated")
    first = updated.inner_text()
    expect(updated).not_to_have_text(first, timeout=CHART_TIMEOUT_MS)
    chart = upstream.locator('svg[data-testid^="status-chart-"]').first
    expect(chart).to_be_visible(timeout=CHART_TIMEOUT_MS)
    expect(chart).to_have_attribute("role", "img")
    expect(chart).to_have_attribute("aria-label", re.compile(r"now \S"))
    tab.shot("status-page")

    tab.by("status-refresh").click()  # and on demand
    expect(tab.by("status-error")).to_have_count(0)
    tab.page.get_by_role("button", name="Back to chat").click()
    expect(tab.by("composer")).to_be_visible()


def test_other_users_see_no_status_entry(tab: Tab) -> None:
    signed_in_as(tab, is_admin=False)
    expect(tab.by("open-keys")).to_be_visible()
    expect(tab.by("nav-status")).to_have_count(0)
    reply = tab.page.context.request.get("/api/admin/status")
    assert reply.status == 403, reply.text()
