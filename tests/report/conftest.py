"""Fixtures for the report tests: hostile tokens, toy report data, a command runner and a headless browser."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import typer

from tests.helpers import random_attention

#: Tokens that would run script if any of them reached the page unescaped.
XSS_TOKENS = [
    "<script>window.__xss = 1</script>",
    '"><img src=x onerror="window.__xss = 2">',
    "</script><script>window.__xss = 3</script>",
    "<!--",
    "<svg onload=window.__xss=4>",
    "' onmouseover='window.__xss = 5",
    "{{script}}",
    "&lt;b&gt;",
    "\u2028",
    "plain",
]
XSS_MODEL = '<img src=x onerror="window.__xss = 6">model'
XSS_TEXT = "</title><script>window.__xss = 7</script>"


@pytest.fixture
def xss_data():
    """Report data over the hostile tokens, with a hostile model name and text."""
    from attnflow.report.data import report_data

    attention = random_attention(np.random.default_rng(7), 3, 2, len(XSS_TOKENS))
    return report_data(
        attention,
        XSS_TOKENS,
        methods=("raw", "rollout", "flow"),
        output=1,
        special_positions=(0,),
        model_name=XSS_MODEL,
        text=XSS_TEXT,
    )


@pytest.fixture
def toy_data():
    """Report data over 6 tokens, 4 layers, with raw, rollout and flow."""
    from attnflow.report.data import report_data

    attention = random_attention(np.random.default_rng(3), 4, 3, 6)
    return report_data(
        attention,
        ["[CLS]", "the", "keys", "are", "here", "[SEP]"],
        methods=("raw", "rollout", "flow"),
        special_positions=(0, 5),
        model_name="toy",
        text="the keys are here",
    )


@pytest.fixture
def run_command():
    """Run attnflow subcommands in-process through an app wired like attnflow.cli (explain and report).

    Errors propagate (AttnflowError), so tests can check them; returns the exit value.
    """
    from attnflow.commands.explain import explain
    from attnflow.commands.report import report

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(explain)
    app.command()(report)

    def run(*args: str):
        return app(args=list(args), standalone_mode=False)

    return run


EVALUATION_RESULTS = {
    "format": "attnflow.evaluation",
    "version": 1,
    "model": "minilm",
    "target": {"spec": "norm"},
    "n_examples": 3,
    "n_layers": 2,
    "output": "cls",
    "methods": ["raw", "rollout"],
    "ground_truths": ["blankout", "gradient"],
    "correlation": {
        "blankout": {"raw": [[0.1, 0.2], [0.29, 0.1]], "rollout": [[0.5, 0.1], [0.71, None]]},
        "gradient": {"raw": [[0.2, 0.1], [0.46, 0.2]], "rollout": [[None, None], [0.54, 0.1]]},
    },
    "faithfulness": {
        "layer": 2,
        "percents": [10, 20],
        "removal": "delete",
        "methods": {
            "raw": {"aopc_comprehensiveness": [0.1, 0.01], "aopc_sufficiency": [0.2, 0.02]},
            "random": {"aopc_comprehensiveness": [0.05, 0.01], "aopc_sufficiency": [0.3, 0.02]},
        },
    },
}

#: What `attnflow reproduce` adds to an evaluation summary (the paper's numbers, the model's accuracy).
REPRODUCE_RESULTS = {
    **EVALUATION_RESULTS,
    "task": "sva",
    "accuracy": {"accuracy": 0.97, "accuracy_attractors": 0.9, "n_attractors": 10},
    "paper": {
        "source": "Abnar & Zuidema (2020), Table 1",
        "accuracy": 0.96,
        "layer": 2,
        "correlation": {"blankout": {"raw": 0.29, "rollout": 0.71}, "gradient": {"raw": 0.46, "rollout": 0.54}},
    },
}


# ---------------------------------------------------------------------------- the browser


def _find(names: list[str], extra: list[str]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return next((path for path in extra if os.access(path, os.X_OK)), None)


def find_browser() -> tuple[str | None, str | None]:
    """Paths of chromium and chromedriver, ``None`` for what is missing."""
    chromium = _find(["chromium", "chromium-browser", "google-chrome"], ["/usr/bin/chromium"])
    return chromium, _find(["chromedriver"], ["/usr/lib/chromium/chromedriver"])


def no_browser(reason: str) -> None:
    """Skip a browser test, with the reason; under CI (``CI`` set) fail instead: CI must run them."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by selenium + chromedriver.

    ``scripts/install-browser.sh`` (run by ``make setup``) installs both. Without
    them the browser tests skip with the reason, or fail when ``CI`` is set.
    """
    chromium, driver_path = find_browser()
    if chromium is None or driver_path is None:
        no_browser(
            f"no headless browser: chromium {'found' if chromium else 'missing'}, chromedriver "
            f"{'found' if driver_path else 'missing'}; run scripts/install-browser.sh"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        no_browser("selenium is not installed; pip install -r requirements-dev.txt")
    profile = tempfile.mkdtemp(prefix="attnflow-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1360,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as exc:  # any start-up failure means: no usable browser here
        shutil.rmtree(profile, ignore_errors=True)
        no_browser(f"headless chromium would not start: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, path: Path) -> list[dict]:
    """Load a file, wait until the report script has run, return the console entries it logged."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop entries from earlier pages
    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    return driver.get_log("browser")


def severe(entries: list[dict]) -> list[dict]:
    return [entry for entry in entries if entry.get("level") == "SEVERE"]
