"""The API keys page: create a key (its secret shown once, and it works on /v1), revoke it."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.ui import Tab


def test_create_a_key_see_it_once_use_it_and_revoke_it(tab: Tab) -> None:
    tab.signed_in()
    tab.by("open-keys").click()
    page = tab.by("keys-page")
    expect(page).to_be_visible()
    expect(tab.by("key-item")).to_have_count(0)

    tab.by("key-name").fill("laptop")
    tab.by("key-create").click()
    secret_box = tab.by("key-secret")
    expect(secret_box).to_contain_text(re.compile(r"cs-[A-Za-z0-9_-]{43}"))
    secret = re.search(r"cs-[A-Za-z0-9_-]{43}", secret_box.inner_text()).group(0)
    expect(tab.by("key-item")).to_have_count(1)
    expect(tab.by("key-item")).to_contain_text("laptop")
    expect(tab.by("key-example")).to_contain_text(f"{tab.site.url}/v1")
    tab.shot("api-keys-new-secret")

    http = tab.site.http()
    http.headers["Authorization"] = f"Bearer {secret}"
    assert http.get(tab.site.url + "/v1/models", timeout=30).status_code == 200

    # Shown once: after leaving the page and coming back, only the list remains.
    tab.page.reload()
    tab.by("open-keys").click()
    expect(tab.by("keys-page")).to_be_visible()
    expect(tab.by("key-item")).to_have_count(1)
    expect(tab.by("key-secret")).to_have_count(0)
    assert secret not in tab.page.locator("body").inner_text()

    tab.by("key-item").get_by_test_id("key-revoke").click()
    confirm = tab.page.get_by_role("alertdialog")  # revoking asks first
    expect(confirm).to_contain_text("Revoke this key?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(tab.by("key-revoke")).to_have_count(1)
    tab.by("key-item").get_by_test_id("key-revoke").click()
    tab.by("confirm-delete").click()
    expect(tab.by("key-revoke")).to_have_count(0)
    if tab.by("key-item").count():  # a revoked key may stay listed, marked as such
        expect(tab.by("key-item")).to_contain_text(re.compile(r"revoked", re.I))
    tab.shot("api-keys-revoked")
    assert http.get(tab.site.url + "/v1/models", timeout=30).status_code == 401
