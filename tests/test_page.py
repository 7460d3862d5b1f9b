"""The search page of `index serve` in a real browser: headless Chromium driven by Selenium.

Skips when chromium, chromedriver or selenium are missing (.ci/run installs them). Each test
saves a screenshot under its tmp_path and prints where.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer import Index
from tests.files import DOCS, write_docs
from tests.serving import answered, served

pytestmark = pytest.mark.slow

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

#: A document whose text looks like markup: the page must show it, not run it.
MARKUP = "Tags like <b>bold</b> and <img src=x onerror=alert(1)> are shown as text in the page.\n"


def chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not browser or not Path(driver).exists():
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium "
                    "chromium-driver)")  # fmt: skip
    return browser, driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    binary, driver = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,900",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=webdriver.ChromeService(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def idx(tmp_path: Path, tiny_model_dir: Path) -> Path:
    docs = write_docs(tmp_path / "docs", {**DOCS, "en/markup.txt": MARKUP})
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    index.build(docs)
    index.close()
    return tmp_path / "idx"


def top_hit(idx: Path, question: str, mode: str = "hybrid") -> dict:
    index = Index(idx)
    try:
        return index.ask(question, mode=mode)[0].to_dict()  # type: ignore[arg-type]
    finally:
        index.close()


def search(chrome: webdriver.Chrome, question: str) -> None:
    """Type a question, press Enter, wait for the answer to it."""
    box = chrome.find_element(By.ID, "q")
    box.clear()
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    wait_for_hits(chrome, question)


def wait_for_hits(chrome: webdriver.Chrome, question: str) -> None:
    def shown(driver: webdriver.Chrome) -> bool:
        state = driver.find_element(By.ID, "state").text
        asked = driver.execute_script("return new URLSearchParams(location.search).get('q')")
        return asked == question and state.endswith(" ms")

    WebDriverWait(chrome, 60).until(shown)


def first(chrome: webdriver.Chrome) -> tuple[str, str]:
    """The top hit's location and its highlighted sentence."""
    item = chrome.find_element(By.CSS_SELECTOR, "#hits li")
    return item.get_attribute("data-location") or "", item.find_element(By.TAG_NAME, "mark").text


def screenshot(chrome: webdriver.Chrome, path: Path) -> None:
    chrome.save_screenshot(str(path))
    print(f"screenshot: {path}")


def test_japanese_and_english_questions_on_enter(
    browser: webdriver.Chrome, idx: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with served(idx, tiny_model_dir) as server:
        browser.get(server.url)
        for question in ("NPUの速度", "How fast is inference on the NPU?"):
            search(browser, question)
            expected = top_hit(idx, question)
            assert first(browser) == (expected["location"], expected["text"])
        screenshot(browser, tmp_path / "page-english.png")
        # Typing asks nothing; Enter that ends an IME composition asks nothing either.
        before = answered(server.url)
        box = browser.find_element(By.ID, "q")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("消費電力")
        browser.execute_script(
            "arguments[0].dispatchEvent(new KeyboardEvent('keydown', "
            "{key: 'Enter', keyCode: 229, isComposing: true, bubbles: true}))",
            box,
        )
        assert answered(server.url) == before
        box.send_keys(Keys.ENTER)
        wait_for_hits(browser, "消費電力")
        assert answered(server.url) == before + 1
        screenshot(browser, tmp_path / "page-japanese.png")
        location, text = first(browser)
        browser.find_element(By.CSS_SELECTOR, "#hits li .loc").click()
        marked = WebDriverWait(browser, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#doc-body mark")
        )
        assert marked[0].text == text and browser.find_element(By.ID, "doc-title").text == location
        screenshot(browser, tmp_path / "page-document-japanese.png")


def test_mode_switch_document_view_and_escaped_text(
    browser: webdriver.Chrome, idx: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with served(idx, tiny_model_dir) as server:
        browser.get(server.url)
        search(browser, "bold tags")
        browser.find_element(By.CSS_SELECTOR, "label[title='shared words only']").click()
        WebDriverWait(browser, 60).until(lambda d: "mode=keyword" in d.current_url)
        wait_for_hits(browser, "bold tags")
        location, text = first(browser)
        expected = top_hit(idx, "bold tags", mode="keyword")
        assert (location, text) == (expected["location"], expected["text"])
        assert "<b>bold</b>" in text  # shown as text ...
        assert not browser.find_elements(By.CSS_SELECTOR, "#hits b, #hits img, #doc img")

        browser.find_element(By.CSS_SELECTOR, "#hits li .loc").click()
        WebDriverWait(browser, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#doc-body mark")
        )
        panel = browser.find_element(By.ID, "doc")
        assert panel.is_displayed()
        assert browser.find_element(By.ID, "doc-title").text == location
        assert browser.find_element(By.CSS_SELECTOR, "#doc-body mark").text == text
        assert not browser.find_elements(By.CSS_SELECTOR, "#doc-body b")  # ... also here
        screenshot(browser, tmp_path / "page-document.png")
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        WebDriverWait(browser, 10).until(lambda d: not panel.is_displayed())
