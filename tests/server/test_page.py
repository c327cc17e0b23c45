"""The page at / in a real headless browser (Debian's chromium and chromedriver, driven by the
pinned selenium): it lists the key's actors with their state, shows live tokens per second, and
chats with the selected actor, the reply streaming in."""
import os
import shutil
import time

import pytest

from conftest import KEY_A

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (tools/setup.d/10-debian.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    yield d
    d.quit()


def wait_for(fn, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting in the page")


def test_page_lists_actors_and_chats(server, browser):
    from selenium.webdriver.common.by import By

    c = server.client()
    existing = c.post("/v1/actors", json={}).json()["id"]
    c.post(f"/v1/actors/{existing}/hibernate")
    browser.get(server.url + "/")
    browser.find_element(By.ID, "key").send_keys(KEY_A)
    browser.find_element(By.ID, "save-key").click()
    row = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f'tr[data-id="{existing}"]'))[0]
    assert "hibernated" in row.text
    # chat with it: the reply streams in, the actor wakes and its row shows the turn
    row.click()
    browser.find_element(By.ID, "input").send_keys("Hello from the browser")
    browser.find_element(By.ID, "send").click()
    done = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '.msg.assistant[data-done="1"]'))[0]
    turn = c.get(f"/v1/actors/{existing}").json()
    assert turn["turns"] == 1 and done.text.strip()
    assert "woke in" in browser.find_element(By.CSS_SELECTOR, ".msg.info").text
    wait_for(lambda: "awake" in browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{existing}"]').text
             and browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{existing}"]').find_elements(By.TAG_NAME, "td")[2].text == "1")
    # live tokens per second: generation by another client shows up in the figure
    browser.find_element(By.ID, "create").click()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#actors tbody tr")) >= 2)

    def busy_tps():
        c.post("/v1/completions", json={"model": "default", "prompt": "Long ago", "max_tokens": 200})
        return float(browser.find_element(By.ID, "tps").text) > 0

    wait_for(busy_tps)
