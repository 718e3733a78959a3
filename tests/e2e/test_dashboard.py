"""The dashboard in a real browser (headless Chromium driven by Playwright) against the local
cluster while a job trains: the list changes phase without a reload, the chart gains points as
reports arrive, the checkpoints table fills, the log follows, and a failed job says why.

The tests save screenshots (`dashboard-list.png`, `dashboard-job.png`) under pytest's tmp_path,
and also under $TRAINJOB_SCREENSHOTS when set: the README's pictures come from this test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.dashboard import serving_dashboard
from tests.support.kube import Cluster
from tests.support.manifests import digits_job, python, trainjob

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def chromium() -> str:
    """Debian's Chromium (`make test` installs it); Playwright's own download is not reachable."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "no Chromium: `apt-get install -y chromium` (make test does it when run as root)"
    return path


@pytest.fixture
def dashboard(cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    """`trainjob dashboard` for the test's namespace, as a user starts it."""
    with serving_dashboard(
        tmp_path, "--kubeconfig", str(cluster.stack.kubeconfig), "-n", cluster.namespace
    ) as url:
        yield url


# Playwright's default for page loads and the first selectors is 30 s; with the suite's other
# stacks on the same two cores Chromium's first load took longer once (load average ~30). What
# the test checks is that pages update live, not how fast they load, so loads get 90 s.
PAGE_TIMEOUT_MS = 90_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("TRAINJOB_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["TRAINJOB_SCREENSHOTS"]) / name), full_page=True)


def number(page: Page, selector: str, attribute: str) -> int:
    return int(page.get_attribute(selector, attribute) or 0)


def test_the_dashboard_shows_a_training_job_live(
    cluster: Cluster, dashboard: str, browser: Browser, tmp_path: Path
) -> None:
    listing = browser.new_page(viewport={"width": 1400, "height": 700})
    listing.set_default_timeout(PAGE_TIMEOUT_MS)
    errors: list[str] = []
    listing.on("pageerror", lambda error: errors.append(str(error)))
    listing.goto(dashboard)
    listing.wait_for_selector("#empty:not([hidden])")
    # Remember every phase each row shows, and a marker a reload would lose.
    listing.evaluate(
        """() => {
        window.noReload = true; window.phases = {};
        new MutationObserver(() => document.querySelectorAll('tr[data-job]').forEach((row) => {
            const seen = (window.phases[row.dataset.job] ||= []);
            if (seen[seen.length - 1] !== row.dataset.phase) seen.push(row.dataset.phase);
        })).observe(document.querySelector('#jobs tbody'),
                    {childList: true, subtree: true, attributes: true});
    }"""
    )

    cluster.apply(digits_job("digits", epochs=12, step_sleep=0.08))
    failing = trainjob(
        "broken",
        python("import sys; sys.exit('bad config: lr must be positive')"),
        workers=1,
        failure_policy={"maxRestarts": 0},
    )
    cluster.apply(failing)

    key = f"{cluster.namespace}/digits"
    listing.wait_for_selector(f'tr[data-job="{key}"]')
    job_page = browser.new_page(viewport={"width": 1400, "height": 900})
    job_page.set_default_timeout(PAGE_TIMEOUT_MS)
    job_page.on("pageerror", lambda error: errors.append(str(error)))
    # From the list to the job by keyboard, as a person without a mouse would: its link, Enter.
    job_page.goto(dashboard)
    link = f"/jobs/{cluster.namespace}/digits"
    job_page.focus(f'a[href="{link}"]')
    # Every push rebuilds the rows; the focus stays on the job's link through one.
    job_page.evaluate("render(latest)")
    assert job_page.evaluate("document.activeElement.getAttribute('href')") == link
    with job_page.expect_navigation():
        job_page.keyboard.press("Enter")
    assert job_page.url.endswith(f"/jobs/{cluster.namespace}/digits")

    # The chart gains points as reports arrive (no reload: the page's own stream).
    job_page.wait_for_function(
        "Number(document.querySelector('#charts').dataset.points) > 0", timeout=120_000
    )
    first = number(job_page, "#charts", "data-points")
    job_page.wait_for_function(
        f"Number(document.querySelector('#charts').dataset.points) > {first}", timeout=120_000
    )
    for metric in ("loss", "val_loss", "accuracy"):
        assert job_page.query_selector(f'.chart[data-metric="{metric}"] canvas') is not None, metric
    # The log follows: lines appear while the trainer runs.
    job_page.wait_for_function(
        "document.querySelector('#log').textContent.includes('epoch 1:')", timeout=60_000
    )
    lines_then = job_page.evaluate("document.querySelector('#log').textContent.split('\\n').length")
    job_page.wait_for_function(
        f"document.querySelector('#log').textContent.split('\\n').length > {lines_then}", timeout=60_000
    )

    # The list went from a running phase to Succeeded on the same page.
    listing.wait_for_selector(f'tr[data-job="{key}"][data-phase="Succeeded"]', timeout=180_000)
    phases = listing.evaluate(f"window.phases[{key!r}]")
    assert phases[-1] == "Succeeded" and len(phases) >= 2, phases
    assert listing.evaluate("window.noReload") is True

    # The checkpoints table fills, latest and best marked, each with its download command.
    job_page.wait_for_selector('#checkpoints tbody tr[data-iteration="12"]', timeout=60_000)
    table = job_page.inner_text("#checkpoints")
    assert "latest" in table and "best" in table
    assert f"trainjob checkpoints download digits ./digits-12 --iteration 12 -n {cluster.namespace}" in table
    assert job_page.inner_text("#log").count("epoch 11:") == 1, "the followed log has every line once"
    assert "Succeeded" in job_page.inner_text("#timeline")
    assert job_page.query_selector('#pods tr[data-pod="digits-0-0"]') is not None

    # A failed job says why, in the list.
    broken = f'tr[data-job="{cluster.namespace}/broken"]'
    listing.wait_for_selector(f'{broken}[data-phase="Failed"]', timeout=120_000)
    assert "exited with code 1" in listing.inner_text(f"{broken} td.reason")

    # Light and dark, switched by keyboard.
    before = listing.evaluate("getComputedStyle(document.body).backgroundColor")
    listing.focus("#theme")
    listing.keyboard.press("Enter")
    assert listing.evaluate("getComputedStyle(document.body).backgroundColor") != before
    listing.keyboard.press("Enter")

    screenshot(listing, tmp_path, "dashboard-list.png")
    screenshot(job_page, tmp_path, "dashboard-job.png")
    assert not errors, errors
