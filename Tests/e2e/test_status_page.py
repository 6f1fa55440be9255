"""The mesh status page (`GET /ui`) in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against a real 3-node mesh on loopback (featbit-sim upstream, LAN profile, link proxies):

- opened on a follower with the key in the URL fragment: the fragment leaves the address bar, the page shows the three
  nodes, the leader and the upstream link, and refreshes itself;
- after `kill -9` of the leader it shows the new leader within an election timeout plus a few seconds, and the old
  leader as unreachable;
- a node cut off from its peers still serves a working page that says it hears no leader;
- a wrong key gives a clear message and the key form; the right key typed into the form shows the mesh again;
- the page runs under its Content-Security-Policy without a single violation.

Screenshots of each state go to .test-output/status-page/ (gitignored). Without chromium the test skips with the
reason, except in CI (CI=true), where scripts/test installs it first and a missing browser is a failure."""
import os
import pathlib
import shutil
import time

import pytest

from conftest import API_KEY, ROOT
from mesh import Mesh, mono, wait_for

pytestmark = pytest.mark.cluster

SHOTS = ROOT / ".test-output" / "status-page"
FIRST_ELECTION_S = 15


def _chromium():
    """(chromium binary, chromedriver binary) or a reason they cannot be used."""
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        return None, "chromium and chromedriver are not installed (scripts/lib/ensure-chromium installs them)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, "selenium is not installed in .venv (scripts/lib/ensure-python-env installs it)"
    return (browser, driver), None


@pytest.fixture
def browser():
    found, reason = _chromium()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the status page's browser test must run in CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def mesh(tmp_path, request):
    m = Mesh(tmp_path / "mesh", 3, profile="lan", mode="auto")
    failed_before = request.session.testsfailed
    m.start()
    yield m
    if request.session.testsfailed != failed_before:
        m.dump()
    m.close()


def shot(driver, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    # The whole page: grow the window to the document's height first.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(800, min(int(height) + 200, 3000)))  # + the window's own frame
    driver.save_screenshot(str(path))
    return path


def text_of(driver, element_id):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id).text.strip()


def visible(driver, element_id):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id).is_displayed()


def rows(driver):
    """{node id: {column: text}} of the nodes table as shown. The page rebuilds the table every second, so a read
    that a refresh overtook (a stale element) is read again, a few times at most."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    for attempt in range(5):
        try:
            headers = [th.text.strip() for th in driver.find_elements(By.CSS_SELECTOR, "#nodes thead th")]
            out = {}
            for tr in driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr"):
                cells = [td.text.strip() for td in tr.find_elements(By.TAG_NAME, "td")]
                out[tr.get_attribute("data-node")] = dict(zip(headers, cells))
            return out
        except StaleElementReferenceException:
            if attempt == 4:
                raise
            time.sleep(0.05)


def wait_page(driver, predicate, timeout, message):
    def check():
        try:
            return predicate()
        except Exception:  # the page re-renders its table every second: a stale element is retried
            return False
    return wait_for(check, timeout, interval=0.1, message=message)


def csp_violations(driver):
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e.get("message", "") or "Refused to" in e.get("message", "")]


def test_status_page_follows_the_mesh_in_a_real_browser(mesh, browser):
    m = mesh
    lead = m.wait_for_single_leader(FIRST_ELECTION_S)
    m.wait_relay(1, timeout=10, hold=0.5)
    m.wait_converged(15)
    follower = next(n for n in m.nodes if n is not lead)
    others = {n.id for n in m.nodes}

    # 1. Opened on a follower, key in the fragment.
    browser.get(f"{follower.url}/ui#key={API_KEY}")
    wait_page(browser, lambda: set(rows(browser)) == others and text_of(browser, "leader") == lead.id, 10,
              "the page to show three nodes and the leader")
    assert "key=" not in browser.current_url, "the key stayed in the address bar"
    assert browser.execute_script("return sessionStorage.getItem('featbit-agent-ui-key')") == API_KEY
    shown = rows(browser)
    assert shown[lead.id]["role"] == "leader" and all(r["reachable"] == "yes" for r in shown.values()), shown
    assert all(r["role"] == "follower" for i, r in shown.items() if i != lead.id), shown
    assert text_of(browser, "self-id") == follower.id
    wait_page(browser, lambda: text_of(browser, "upstream-state").startswith("Stable"), 5,
              "the leader's upstream link shown as Stable")
    data_version = str(m.sim_data_version())
    assert all(r["data version"].startswith(data_version) for r in shown.values()), shown
    assert all(r["replication lag"] == "0" for r in shown.values()), shown
    assert text_of(browser, "insights-mode") == "forward"
    assert text_of(browser, "problems") == "none"
    # It refreshes itself: the "updated" clock moves without a reload.
    first = text_of(browser, "updated")
    wait_page(browser, lambda: text_of(browser, "updated") != first, 5, "the page to refresh itself")
    shot(browser, "1-three-nodes")

    # 2. kill -9 of the leader: the follower's page shows the new leader within E + a few seconds.
    t_kill = lead.kill9()
    budget = m.E + 5
    wait_page(browser, lambda: text_of(browser, "leader") not in (lead.id, "none heard", "?")
              and rows(browser)[lead.id]["reachable"] == "no", budget,
              f"the page to show a new leader within {budget:.1f} s of the kill")
    shown_after_s = mono() - t_kill
    new_leader = text_of(browser, "leader")
    assert new_leader in others - {lead.id}
    assert m.wait_quorum_leader(5, exclude=[lead])[0].id == new_leader
    shown = rows(browser)
    assert shown[new_leader]["role"] == "leader" and shown[lead.id]["role"] == "unknown", shown
    shot(browser, "2-new-leader-after-kill9")
    print(f"status page: new leader {new_leader} shown {shown_after_s * 1000:.0f} ms after kill -9 of {lead.id}")

    # 3. A node cut off from its peers still serves a page that works and says it hears no leader.
    cut = next(n for n in m.live() if n.id != new_leader)
    m.isolate(cut)
    # Each node is an origin of its own (another port), with its own session storage: the key comes in the fragment
    # unless the cut node is the one the page was first opened on.
    browser.get(f"{cut.url}/ui" if cut is follower else f"{cut.url}/ui#key={API_KEY}")
    wait_page(browser, lambda: text_of(browser, "self-id") == cut.id and text_of(browser, "leader") == "none heard",
              m.E + 5, "the cut-off node's page to show no leader")
    assert all(r["reachable"] == "no" for i, r in rows(browser).items() if i != cut.id)
    assert "serves its last data" in text_of(browser, "leader-note")
    shot(browser, "3-cut-off-node")
    m.heal(cut)

    # 4. A wrong key: a clear message and the key form, not a blank page.
    browser.get(f"{follower.url}/ui#key=rp-not-the-key")
    wait_page(browser, lambda: visible(browser, "message") and "refused" in text_of(browser, "message"), 5,
              "the wrong-key message")
    assert "HTTP 401" in text_of(browser, "message")
    assert visible(browser, "key-form") and not visible(browser, "view")
    shot(browser, "4-wrong-key")

    # The right key typed into the form brings the mesh back.
    from selenium.webdriver.common.by import By
    field = browser.find_element(By.ID, "key")
    assert field.get_attribute("type") == "password"
    field.send_keys(API_KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    # (The cut-off above made the new leader lose its quorum and step down: whoever leads now.)
    wait_page(browser, lambda: visible(browser, "view") and not visible(browser, "message")
              and text_of(browser, "leader") in others - {lead.id}, m.E + 10, "the mesh after entering the right key")

    assert csp_violations(browser) == [], "the page broke its own Content-Security-Policy"
