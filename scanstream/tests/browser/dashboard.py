"""The dashboard in a real browser: Debian's chromium, driven through chromedriver by selenium.

Run by scanstream/tests/dashboard.rs against `scanstream up`, which passes everything through
the environment (tokens never on a command line):
  DASHBOARD_URL, ADMIN_TOKEN, READER_TOKEN, REPO_URL (the repository with the secret),
  BLOCKER_URL (a repository scanned once, named `blocker`), MIRRORS (the scanner's mirror folder),
  SECRET (the planted secret, which no page may show), OUT (screenshots and result.json).
It prints each step and exits non-zero at the first failed expectation.
"""

import fcntl
import glob
import json
import os
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

URL = os.environ["DASHBOARD_URL"].rstrip("/")
OUT = os.environ["OUT"]
SECRET = os.environ["SECRET"]
TERMINAL = {"succeeded", "failed", "cancelled"}


def step(text):
    print(f"[browser] {text}", flush=True)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    # Headless, and nothing that phones home (this machine's network is closed).
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    return driver


def shot(driver, name):
    path = os.path.join(OUT, name)
    driver.save_screenshot(path)
    step(f"screenshot {path}")


def wait(driver, seconds=20):
    # A page that reloads itself (after a form) or refreshes a part (live updates) can replace
    # an element between two WebDriver calls: such a read is retried, not a failure.
    return WebDriverWait(
        driver, seconds, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
    )


def text(driver, css):
    """The text of the first element matching `css`, read in one script (None: no such one)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css
    )


def no_secret(driver, where):
    assert SECRET not in driver.page_source, f"the secret is shown on {where}"


def login(driver, token):
    driver.delete_all_cookies()
    driver.get(URL + "/ui/")
    wait(driver).until(EC.url_contains("/ui/login"))
    field = driver.find_element(By.NAME, "token")
    field.send_keys(token)
    field.send_keys(Keys.ENTER)
    wait(driver).until(lambda d: "/ui/login" not in d.current_url)
    assert driver.find_element(By.TAG_NAME, "h1").text == "Overview", driver.title
    cookie = driver.get_cookie("scanstream_session")
    assert cookie and cookie.get("httpOnly"), f"session cookie not HttpOnly: {cookie}"
    assert cookie.get("sameSite") == "Strict", f"session cookie not SameSite=Strict: {cookie}"


def status_of(driver):
    # Read in one script: the live update may replace the element between two WebDriver calls.
    return driver.execute_script(
        "const e = document.getElementById('job-status'); return e ? e.dataset.status : null;"
    )


def api(method, path, body=None):
    """The public API with the admin token (the test's own setup, not the browser's)."""
    request = urllib.request.Request(
        URL + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "authorization": "Bearer " + os.environ["ADMIN_TOKEN"],
            "content-type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def occupy_the_scanner():
    """Holds the blocker repository's mirror locked and starts a scan of it: with
    scanner.concurrency = 1 the scanner is busy until the lock is released, so the next job
    stays queued. Returns the held locks."""
    held = []
    for path in glob.glob(os.path.join(os.environ["MIRRORS"], "*-blocker.lock")):
        handle = open(path, "a+")
        fcntl.flock(handle, fcntl.LOCK_EX)
        held.append(handle)
    assert held, "no blocker mirror: the warm-up scan made none"
    job = api("POST", "/jobs", {"name": "blocker", "repo": os.environ["BLOCKER_URL"]})["uuid"]
    deadline = time.time() + 30
    while True:
        try:
            if api("GET", "/jobs/" + job)["status"] == "RUNNING":
                return held
        except urllib.error.HTTPError:
            pass
        assert time.time() < deadline, "the blocker scan never started"
        time.sleep(0.2)


def submit_and_watch(driver):
    step("submit a scan from the form; watch it go from queued to succeeded without reloading")
    driver.get(URL + "/ui/submit")
    driver.find_element(By.NAME, "name").send_keys("browser-scan")
    driver.find_element(By.NAME, "repo").send_keys(os.environ["REPO_URL"])
    locks = occupy_the_scanner()
    try:
        driver.find_element(By.CSS_SELECTOR, "form[data-api='/jobs'] button[type=submit]").click()
        wait(driver).until(EC.url_contains("/ui/jobs/"))
        job = driver.current_url.rsplit("/", 1)[-1]
        driver.execute_script("window.__notReloaded = true;")
        wait(driver).until(lambda d: status_of(d) is not None)
        seen = [status_of(driver)]
        # The scanner is busy with the blocker: the job waits, queued, and the page says so.
        time.sleep(3)
        assert status_of(driver) == "queued", f"not queued while the scanner was busy: {seen}"
        if seen[-1] != "queued":
            seen.append("queued")
    finally:
        for handle in locks:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
    deadline = time.time() + 60
    while status_of(driver) != "succeeded":
        assert time.time() < deadline, f"never succeeded; saw {seen}"
        current = status_of(driver)
        if current and current != seen[-1]:
            seen.append(current)
        time.sleep(0.1)
    seen.append("succeeded")
    assert seen[0] == "queued", f"the page first showed {seen[0]}"
    assert driver.execute_script("return window.__notReloaded === true;"), "the page reloaded"
    step(f"statuses seen on one page load: {seen}")
    no_secret(driver, "the job page")
    shot(driver, "job.png")
    return job, seen


def triage_first_finding(driver):
    step("open the job's finding and mark it a false positive")
    # The job page is live: take the link's address in one script, then go there.
    href = wait(driver).until(
        lambda d: d.execute_script(
            "const a = document.querySelector(\"a[href^='/ui/findings/']\"); return a ? a.href : null;"
        )
    )
    driver.get(href)
    wait(driver).until(EC.url_contains("/ui/findings/"))
    item = driver.current_url.rsplit("/", 1)[-1]
    no_secret(driver, "the finding page")
    preview = driver.find_element(By.CSS_SELECTOR, "dl.facts code").text
    assert preview and SECRET not in preview, preview
    driver.find_element(By.ID, "triage-open").click()
    dialog = wait(driver).until(EC.visibility_of_element_located((By.ID, "triage")))
    Select(dialog.find_element(By.NAME, "status")).select_by_value("ignored")
    Select(dialog.find_element(By.NAME, "reason")).select_by_value("false_positive")
    dialog.find_element(By.NAME, "comment").send_keys("test fixture, not a real key")
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # The page reloads once the API accepted; the fold shows the decision soon after.
    deadline = time.time() + 30
    while "false positive" not in (text(driver, "#trail") or ""):
        assert time.time() < deadline, "the triage decision never showed in the trail"
        time.sleep(0.5)
        driver.refresh()
    status = text(driver, "#item-status")
    assert "ignored" in (status or ""), status
    shot(driver, "finding.png")
    return item


def schedule_create_and_suspend(driver):
    step("create a schedule, then suspend it")
    driver.get(URL + "/ui/schedules")
    driver.find_element(By.NAME, "name").send_keys("nightly-browser")
    cron = driver.find_element(By.NAME, "schedule")
    cron.clear()
    cron.send_keys("0 3 * * *")
    driver.find_element(By.ID, "schedule-repo").send_keys(os.environ["REPO_URL"])
    driver.find_element(By.CSS_SELECTOR, "form[data-api='/jobs/schedule'] button[type=submit]").click()
    row = "tr[data-schedule='nightly-browser']"
    # The page reloads once the API accepted the form.
    wait(driver, 30).until(lambda d: "active" in (text(d, row) or ""))
    wait(driver).until(lambda d: text(d, row + " time"))
    wait(driver).until(
        EC.element_to_be_clickable((By.CSS_SELECTOR, row + " button[type=submit]"))
    ).click()
    wait(driver, 30).until(lambda d: "suspended" in (text(d, row) or ""))
    shot(driver, "schedules.png")


def jobs_page(driver, job):
    step("the jobs page lists the job by name, as text")
    driver.get(URL + "/ui/jobs")
    # The rows are replaced by live updates: read the cell's text in one script.
    text = wait(driver).until(
        lambda d: d.execute_script(
            "const a = document.querySelector(arguments[0]); return a ? a.textContent : null;",
            f"a[href='/ui/jobs/{job}']",
        )
    )
    assert text == "browser-scan", text
    shot(driver, "jobs.png")


def overview(driver):
    step("the overview: counts and charts; keyboard and a narrow screen")
    driver.get(URL + "/ui/")
    charts = driver.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    assert len(charts) >= 3, f"{len(charts)} charts"
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    focused = driver.switch_to.active_element
    assert focused.get_attribute("class") == "skip", "the first Tab does not reach the skip link"
    shot(driver, "overview.png")
    driver.set_window_size(390, 844)
    driver.get(URL + "/ui/")
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth;"
    )
    assert overflow <= 1, f"the overview is {overflow}px wider than a phone"
    shot(driver, "overview-narrow.png")
    driver.set_window_size(1280, 900)


def reader_sees_no_triage(driver, item):
    step("a read-only token sees no triage button and no submit form")
    login(driver, os.environ["READER_TOKEN"])
    driver.get(URL + "/ui/findings/" + item)
    assert driver.find_elements(By.CSS_SELECTOR, "dl.facts"), "the reader cannot see the item"
    assert not driver.find_elements(By.ID, "triage-open"), "a reader is offered triage"
    assert not driver.find_elements(By.CSS_SELECTOR, "nav a[href='/ui/submit']")
    driver.get(URL + "/ui/schedules")
    assert not driver.find_elements(By.CSS_SELECTOR, "form[data-api='/jobs/schedule']")
    shot(driver, "reader.png")


def logout(driver):
    driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait(driver).until(EC.url_contains("/ui/login"))
    driver.get(URL + "/ui/jobs")
    wait(driver).until(EC.url_contains("/ui/login"))


def main():
    os.makedirs(OUT, exist_ok=True)
    driver = browser()
    try:
        login(driver, os.environ["ADMIN_TOKEN"])
        job, seen = submit_and_watch(driver)
        item = triage_first_finding(driver)
        schedule_create_and_suspend(driver)
        jobs_page(driver, job)
        overview(driver)
        logout(driver)
        reader_sees_no_triage(driver, item)
        with open(os.path.join(OUT, "result.json"), "w") as out:
            json.dump({"job": job, "item": item, "statuses": seen}, out)
        step("done")
    except (AssertionError, TimeoutException, WebDriverException) as failure:
        shot(driver, "failure.png")
        print(f"[browser] FAILED at {driver.current_url}: {failure!r}", flush=True)
        sys.exit(1)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
