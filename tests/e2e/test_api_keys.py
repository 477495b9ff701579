"""The API keys page: create a key (its secret shown once, and it works on /v1), revoke it;
the page's own openai examples, run as shown, with the local CA it says how to trust."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.ui import Tab
from tests.npm_openai import npm_client_dir

SECRET = re.compile(r"cs-[A-Za-z0-9_-]{43}")
# What a person's shell would not have: each run gets only the trust the page tells it of.
TRUST_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")


def test_create_a_key_see_it_once_use_it_and_revoke_it(tab: Tab) -> None:
    tab.signed_in()
    tab.by("open-keys").click()
    page = tab.by("keys-page")
    expect(page).to_be_visible()
    expect(tab.by("key-item")).to_have_count(0)

    tab.by("key-name").fill("laptop")
    tab.by("key-create").click()
    secret_box = tab.by("key-secret")
    expect(secret_box).to_contain_text(SECRET)
    secret = SECRET.search(secret_box.inner_text()).group(0)
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


def run_example(args: list[str], cwd: Path, **trust: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in TRUST_VARIABLES}
    return subprocess.run(
        args, cwd=cwd, env={**env, **trust}, capture_output=True, text=True, timeout=120
    )


def test_the_pages_examples_run_as_shown_once_the_local_ca_is_trusted(
    tab: Tab, tmp_path: Path
) -> None:
    tab.signed_in()
    tab.by("open-keys").click()
    tab.by("key-name").fill("script")
    tab.by("key-create").click()
    secret = SECRET.search(tab.by("key-secret").inner_text()).group(0)
    trust = tab.by("trust-ca")
    expect(trust).to_contain_text("SSL_CERT_FILE")
    expect(trust).to_contain_text("NODE_EXTRA_CA_CERTS")
    with tab.page.expect_download() as download:
        tab.by("ca-download").click()
    ca = tmp_path / download.value.suggested_filename
    download.value.save_as(ca)
    assert ca.name == "chatstack-ca.pem" and ca.read_bytes() == tab.site.ca.read_bytes()

    python, node = (
        code.inner_text().replace("cs-...", secret)
        for code in tab.by("key-example").locator("pre code").all()
    )
    (tmp_path / "hello.py").write_text(python)
    refused = run_example([sys.executable, "hello.py"], tmp_path)
    assert refused.returncode != 0 and "APIConnectionError" in refused.stderr, refused.stderr
    trusted = run_example([sys.executable, "hello.py"], tmp_path, SSL_CERT_FILE=str(ca))
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.strip()

    client_dir = npm_client_dir()
    script = client_dir / f"hello-{os.getpid()}.mjs"  # where `import "openai"` resolves
    script.write_text(node)
    try:
        refused = run_example(["node", script.name], client_dir)
        assert refused.returncode != 0 and "certificate" in refused.stderr, refused.stderr
        trusted = run_example(["node", script.name], client_dir, NODE_EXTRA_CA_CERTS=str(ca))
        assert trusted.returncode == 0, trusted.stderr
        assert trusted.stdout.strip()
    finally:
        script.unlink()
