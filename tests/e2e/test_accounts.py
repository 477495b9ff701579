"""Signing up, logging out and in, and the form's errors in words."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.ui import Tab, unique_name


def test_first_screen_explains_then_sign_up_log_out_and_log_in(tab: Tab) -> None:
    tab.open_signed_out()
    first_screen = tab.page.locator("body").inner_text()
    assert re.search(r"sign in|log in", first_screen, re.I), first_screen
    assert re.search(r"create (an )?account|sign up", first_screen, re.I), first_screen
    tab.shot("sign-in")

    username = unique_name()
    tab.choose_auth_mode(create_account=True)
    tab.shot("create-account")
    tab.sign_up(username)
    expect(tab.by("sidebar")).to_be_visible()
    expect(tab.by("composer-input")).to_be_editable()
    expect(tab.page.locator("body")).to_contain_text(username)
    tab.shot("signed-in-empty-chat")

    tab.page.reload()  # the session survives a reload
    expect(tab.by("composer")).to_be_visible()

    tab.by("logout").click()
    expect(tab.by("auth-form")).to_be_visible()
    expect(tab.by("composer")).to_have_count(0)
    tab.page.reload()  # and is gone on the server too
    expect(tab.by("auth-form")).to_be_visible()

    tab.log_in(username)
    expect(tab.by("sidebar")).to_be_visible()


def test_wrong_password_and_taken_username_are_said_in_words(tab: Tab) -> None:
    tab.open_signed_out()
    # A first visit is not greeted as a return, and a bad form is said in words.
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Sign in to chatstack")
    tab.choose_auth_mode(create_account=True)
    tab.submit_credentials("", "")
    expect(tab.by("auth-error")).to_have_text(re.compile(r"^A username is 3–32 letters"))
    tab.submit_credentials("ada", "short")
    expect(tab.by("auth-error")).to_have_text("Use a password of at least 8 characters.")
    username = unique_name()
    tab.sign_up(username)
    tab.by("logout").click()
    expect(tab.by("auth-form")).to_be_visible()
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Welcome back")

    tab.console.expect_http_error(401, "/api/auth/login")
    tab.choose_auth_mode(create_account=False)
    tab.submit_credentials(username, "not the password")
    expect(tab.by("auth-error")).to_contain_text(re.compile(r"wrong|incorrect|invalid", re.I))
    expect(tab.by("composer")).to_have_count(0)
    tab.shot("sign-in-error")

    tab.console.expect_http_error(409, "/api/auth/register")
    tab.choose_auth_mode(create_account=True)
    tab.submit_credentials(username.upper())  # usernames ignore case
    expect(tab.by("auth-error")).to_contain_text(re.compile(r"taken|exists|already", re.I))
    expect(tab.by("composer")).to_have_count(0)


def test_theme_toggle_switches_light_and_dark(tab: Tab) -> None:
    tab.signed_in()
    html = tab.page.locator("html")
    expect(html).to_have_attribute("data-theme", re.compile(r"^(light|dark)$"))
    before = html.get_attribute("data-theme")
    tab.by("theme-toggle").click()
    after = "dark" if before == "light" else "light"
    expect(html).to_have_attribute("data-theme", after)
    tab.shot(f"theme-{after}")
    tab.by("theme-toggle").click()
    expect(html).to_have_attribute("data-theme", before)
