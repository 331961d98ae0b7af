"""Screenshot a DAG's page (grid view) of a running Airflow 3 with headless Chromium.

Usage (with Playwright for Python installed, e.g. in .venv-airflow)::

    python scripts/airflow_screenshot.py --url http://127.0.0.1:8080 --password PW \
        --dag chimera_training --out docs/img/airflow-dag-run.png

Playwright's own browser download does not work offline: point ``--chromium`` at a system build
(Debian: ``apt-get install chromium`` gives /usr/bin/chromium). The session logs in through the
simple auth manager's ``/auth/token`` and hands the UI its JWT as the ``_token`` cookie.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlparse


def get_token(url: str, username: str, password: str) -> str:
    """A JWT from the simple auth manager."""
    req = urllib.request.Request(
        f"{url}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.loads(resp.read())["access_token"])


def screenshot(
    url: str,
    token: str,
    dag_id: str,
    out: Path,
    *,
    run_id: str | None = None,
    chromium: str = "/usr/bin/chromium",
    width: int = 1600,
    height: int = 900,
    settle_ms: int = 4000,
) -> Path:
    """Open the DAG's grid (a run's page when ``run_id`` is given) and save a PNG."""
    from playwright.sync_api import sync_playwright

    page_url = f"{url}/dags/{quote(dag_id)}"
    if run_id:
        page_url += f"/runs/{quote(run_id, safe='')}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            host = urlparse(url).hostname or "127.0.0.1"
            context.add_cookies([{"name": "_token", "value": token, "domain": host, "path": "/"}])
            page = context.new_page()
            page.goto(page_url, wait_until="networkidle", timeout=60_000)
            page.wait_for_timeout(settle_ms)  # the grid renders after its API calls return
            page.screenshot(path=str(out), full_page=False)
        finally:
            browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", required=True)
    parser.add_argument("--dag", default="chimera_training")
    parser.add_argument("--run-id", default=None, help="a run's page instead of the DAG's grid")
    parser.add_argument("--out", type=Path, default=Path("docs/img/airflow-dag-run.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"no Chromium at {args.chromium} (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("Playwright for Python is not installed (pip install playwright)", file=sys.stderr)
        return 2
    token = get_token(args.url.rstrip("/"), args.username, args.password)
    path = screenshot(
        args.url.rstrip("/"), token, args.dag, args.out, run_id=args.run_id, chromium=args.chromium
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
