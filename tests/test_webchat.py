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
def browser():
    with sync_api.sync_playwright() as p:   # one Playwright per module: it cannot be nested
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(tiny_model_dir, browser):
    server = Server(tiny_model_dir, max_queue=8, max_new_tokens=4096)
    pg = browser.new_page()
    pg.goto(server.url + "/")
    pg.fill("#api_key", KEY)
    pg.fill("#temperature", "0")
    yield pg, server
    pg.close()
    server.close()


def send(pg, text):
    pg.fill("#input", text)
    pg.press("#input", "Enter")


def test_reply_length_defaults_to_half_the_context(page):
    pg, server = page   # the page asks 512 tokens by default; the server's context is 256
    pg.wait_for_function("document.getElementById('max_tokens').value === '128'", timeout=10000)
    assert pg.get_attribute("#max_tokens", "max") == "255"


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


def test_document_search_answers_with_sources(tiny_model_dir, browser, tmp_path, monkeypatch):
    pytest.importorskip("bm25s")
    pytest.importorskip("jieba")
    import baichuan.rag.answer as rag_answer
    from baichuan.rag.build import build_index
    from baichuan.rag.index import load_index
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "globe.md").write_text("The Globe Theatre burned down in 1613.\n\nIt was rebuilt in 1614.",
                                   encoding="utf-8")
    build_index(docs, progress=False)
    finish = rag_answer.finish
    # the tiny random model never writes "[1]"; a capable one does: append it to what it wrote
    monkeypatch.setattr(rag_answer, "finish", lambda raw, *a: finish(raw + " [1]", *a))
    server = Server(tiny_model_dir, max_queue=8, max_new_tokens=64, index=load_index(docs))
    try:
        pg = browser.new_page()
        asked = []
        pg.on("request", lambda r: asked.append(r.url) if r.method == "POST" else None)
        pg.goto(server.url + "/")
        pg.fill("#api_key", KEY)
        pg.fill("#temperature", "0")
        pg.fill("#max_tokens", "8")
        pg.wait_for_selector("#use_index_label:not([hidden])", timeout=10000)
        pg.check("#use_index")
        send(pg, "When did the Globe Theatre burn down?")
        pg.wait_for_selector(".msg.assistant[data-done='1']", timeout=30000)
        assert asked == [server.url + "/v1/ask"]
        assert pg.locator(".msg.assistant .sources li").all_inner_texts()[0].startswith("globe.md #1: The Globe")
        pg.close()
    finally:
        server.close()
