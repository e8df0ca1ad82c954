"""The chat page in headless Chromium (Debian's `chromium`, driven by Playwright): type a
question, see the streamed reasoning and answer rendered, save a screenshot.

Skipped when Chromium or Playwright is not installed (`.ci/run` installs both)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from serve_support import content_of, make_server, question, reasoning_of

CHROMIUM = os.environ.get("R1_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")

SCREENSHOT_DIR = Path(os.environ.get("R1_SCREENSHOT_DIR", "test-artifacts"))


@pytest.fixture(scope="module")
def page_server(answering_model):
    with make_server(answering_model, api_key="sk-browser") as srv:
        yield srv


@pytest.fixture()
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def test_chat_page_streams_reasoning_and_answer(page_server, browser):
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_server.url + "/")
    # the server wants a key: the page says so and opens its settings
    page.wait_for_selector("#error:not([hidden])")
    assert "API key" in page.inner_text("#error")
    page.fill("#api-key", "sk-browser")
    page.dispatch_event("#api-key", "change")
    page.wait_for_function("document.getElementById('model-name').textContent === 'tiny-answers'")
    from r1.types import R1_TEMPERATURE, R1_TOP_P  # the page takes its defaults from the server
    assert float(page.input_value("#temperature")) == R1_TEMPERATURE
    assert float(page.input_value("#top-p")) == R1_TOP_P
    page.fill("#temperature", "0")
    page.dispatch_event("#temperature", "change")
    page.fill("#max-tokens", "64")

    a, b = 6, 8
    page.fill("#prompt", question(a, b))
    page.keyboard.press("Enter")  # Enter sends
    page.wait_for_selector(".msg.assistant .meta:has-text('finish: stop')", timeout=30_000)

    assert page.inner_text(".msg.user .user-text") == question(a, b)
    answer = page.inner_text(".msg.assistant .answer")
    assert answer.strip() == content_of(a, b)  # shown as text, not parsed as an HTML tag
    details = page.locator(".msg.assistant details.reasoning")
    assert details.is_visible() and details.get_attribute("open") is None  # collapsed once the answer came
    assert page.inner_text(".msg.assistant summary").startswith("Thought for")
    page.click(".msg.assistant summary")  # expand it
    assert page.inner_text(".msg.assistant .reasoning-text").strip() == reasoning_of(a, b)
    assert "tokens" in page.inner_text(".msg.assistant .meta")

    # a second turn goes out with the history; the page keeps both exchanges
    page.fill("#prompt", question(2, 3))
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('.msg.assistant .meta').length === 2 && "
                           "document.querySelectorAll('.msg.assistant .meta')[1].textContent.includes('finish')",
                           timeout=30_000)
    assert len(page.query_selector_all(".msg.user")) == 2
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOT_DIR / "chat-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not errors, errors
