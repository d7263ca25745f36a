"""The web chat page end to end in headless Chromium: multi-turn, streaming, the stop button."""

import os
import shutil

import pytest

from test_server import KEY, Server

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or shutil.which("chromium-browser") or "")
if not CHROMIUM:
    pytest.skip("no Chromium binary (apt-get install chromium, or set CHROMIUM)", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(tiny_model_dir):
    server = Server(tiny_model_dir, max_queue=8, max_new_tokens=4096)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page()
        pg.goto(server.url + "/")
        pg.fill("#api_key", KEY)
        pg.fill("#temperature", "0")
        yield pg, server
        browser.close()
    server.close()


def send(pg, text):
    pg.fill("#input", text)
    pg.press("#input", "Enter")


def test_multi_turn_chat_streams_replies(page):
    pg, server = page
    pg.fill("#max_tokens", "12")
    send(pg, "你好")
    pg.wait_for_selector(".msg.assistant[data-done='1']", timeout=30000)
    send(pg, "再说一遍")
    pg.wait_for_function("document.querySelectorAll(\".msg.assistant[data-done='1']\").length == 2", timeout=30000)
    assert pg.locator(".msg.user").all_inner_texts() == ["你好", "再说一遍"]
    replies = pg.locator(".msg.assistant").all_inner_texts()
    assert len(replies) == 2
    assert server.cfg.stats["completed"] >= 2 and not pg.locator(".msg.error").count()


def test_stop_button_cancels_the_stream(page, monkeypatch):
    pg, server = page
    step = server.engine.step

    def slow_step():  # a big model's pace, so there is time to press stop mid-stream
        import time
        time.sleep(0.03)
        return step()
    monkeypatch.setattr(server.engine, "step", slow_step)
    pg.click("#reset")
    pg.fill("#max_tokens", "200")
    pg.fill("#temperature", "1.0")
    before = server.cfg.stats["cancelled"]
    send(pg, "写一首很长的诗")
    pg.wait_for_function("document.querySelector('.msg.assistant') && "
                         "document.querySelector('.msg.assistant').textContent.length > 0", timeout=10000)
    pg.click("#stop")
    pg.wait_for_selector(".msg.assistant[data-done='1']", timeout=10000)
    assert pg.locator("#send").is_enabled()
    for _ in range(50):
        if server.cfg.stats["cancelled"] > before and server.engine.busy == 0:
            break
        pg.wait_for_timeout(100)
    assert server.cfg.stats["cancelled"] > before and server.engine.busy == 0


def test_errors_are_shown(page):
    pg, _ = page
    pg.click("#reset")
    pg.fill("#api_key", "wrong")
    send(pg, "hi")
    pg.wait_for_selector(".msg.error", timeout=10000)
    assert "API key" in pg.locator(".msg.error").inner_text()
    pg.fill("#api_key", KEY)
