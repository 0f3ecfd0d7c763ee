"""The field app in Chromium on a slow tablet: first-load size, time to usable, keystroke-to-save,
opening a list of many interviews, and syncing a hundred of them (docs/field-app.md, "Speed").

Chromium (Debian's, at /usr/bin/chromium) is driven by Playwright with the DevTools protocol's CPU
throttling (4x by default) and a slow network (150 ms round trip, 1.6 Mbit/s down, 750 kbit/s up by
default). surveykit runs in this process on a fresh SQLite file (or, with --postgres ADMIN_URL, a
throwaway PostgreSQL database). Each figure is printed with a baseline measured in the same page and
run, since only ratios compare across runs on a shared machine:

- first load: bytes transferred for the app's page and modules (compressed as served), beside the
  whole release the service worker caches;
- time to usable: from navigation start to the first screen's controls, cold (nothing cached) and
  warm (the service worker's cache, a signed-in tablet);
- keystroke to local save: from an input event to its IndexedDB write committing, beside a bare
  IndexedDB write of the same record;
- opening the interview list with N stored interviews, beside opening it with none;
- pushing M ready interviews through POST /api/v1/sync in the app's batches, and the feed pull.

    .venv/bin/python bench/bench_field_app.py [--interviews 500] [--sync 100] [--postgres URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import harness

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RA1 = ROOT / "instruments" / "ra1-duty-bearers.yaml"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--no-sandbox",
]
TABLET = {"width": 1280, "height": 800}

WAIT_FOR = """(selector) => new Promise((resolve) => {
    const check = () => (document.querySelector(selector)
        ? resolve(performance.now()) : requestAnimationFrame(check));
    check();
})"""

MAKE_INTERVIEWS = """async ([deviceId, count, firstNumber, ready]) => {
    const store = await import('/app/store.js');
    const { localTimestamp } = await import('/app/record.js');
    const items = [];
    for (let k = 0; k < count; k += 1) {
        const uuid = crypto.randomUUID();
        items.push(['interviews', {
            uuid, device_id: deviceId, created_at: new Date().toISOString(),
            updated_at: new Date().toISOString(), base_revision: 0, pending: null, acked: null,
            rejected: null, conflict: null, receipts: [], edits: 1, dirty: true, local: { probes: {} },
            record: {
                study: 'ocsea', country: 'KE', activity: 'RA1', interview_number: firstNumber + k,
                participants: [{ letter: 'A', agency: ready ? 'Ministry of ICT' : '', position: null,
                                 consent_given: true, consent_date: localTimestamp().slice(0, 10),
                                 consent_recorded_how: 'verbal_audio' }],
                instrument: { slug: 'ra1-duty-bearers', version: 1 }, language: 'en',
                mode: ready ? 'in_person' : null, started_at: localTimestamp(), status: 'draft',
                answers: { interview_language: 'English',
                           pa_understanding: 'Officials know little. '.repeat(40) },
                quotes: [], notes: '',
            },
        }]);
    }
    for (let k = 0; k < items.length; k += 100) await store.put(...items.slice(k, k + 100));
}"""

OPEN_LIST = """async () => {
    location.hash = '#/new';
    await new Promise((r) => setTimeout(r, 300));
    const start = performance.now();
    location.hash = '#/';
    return await new Promise((resolve) => {
        const check = () => {
            const list = document.getElementById('interview-list');
            if (list) resolve(performance.now() - start); else requestAnimationFrame(check);
        };
        check();
    });
}"""

BARE_PUT = """async (rounds) => {
    const store = await import('/app/store.js');
    const [sample] = await store.all('interviews');
    const times = [];
    for (let k = 0; k < rounds; k += 1) {
        const start = performance.now();
        await store.put(['kv', { key: 'bench-bare-put', value: sample }]);
        times.push(performance.now() - start);
    }
    return times;
}"""


def start_server(database_url: str, data_dir: Path) -> tuple[str, Any]:
    from surveykit import make_app, migrate
    from surveykit.config import load_settings
    from surveykit.db import make_engine
    from surveykit.server import create_server

    settings = load_settings(
        {},
        {
            "SURVEYKIT_DATABASE_URL": database_url,
            "SURVEYKIT_DATA_DIR": str(data_dir),
            "SURVEYKIT_ENV": "development",
        },
    )
    engine = make_engine(settings)
    migrate.upgrade(engine)
    app = make_app({**settings, "surveykit.engine": engine})
    server, addresses = create_server(app, settings, {"host": "127.0.0.1", "port": "0"})
    threading.Thread(target=server.run, daemon=True).start()
    return addresses[0], (server, engine, settings)


def seed(engine: Any, settings: dict[str, Any]) -> str:
    """Study ocsea/KE with RA1 published, and a tablet's one-time code."""
    from sqlalchemy.orm import Session

    from surveykit.accounts import services as accounts
    from surveykit.server import publish_files
    from surveykit.studies import services as studies

    policy = accounts.AccountPolicy.from_settings(settings)
    with Session(engine) as session:
        study = studies.create_study(session, "ocsea", "Study ocsea")
        studies.add_country(session, study, "KE", "Kenya")
        studies.add_activity(session, study, "RA1", "Duty bearers")
        publish_files(session, [RA1], "bench", lambda line: None)
        user = accounts.create_user(session, "bench-tablet", None, policy)
        accounts.add_grant(session, user, "fieldworker", "ocsea", ["KE"], "bench")
        _device, code = accounts.enrol_device(session, user, "bench tablet", "bench", policy)
        session.commit()
    return code


def throttle(context: Any, page: Any, args: argparse.Namespace) -> Any:
    cdp = context.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": args.cpu})
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": args.latency,
            "downloadThroughput": args.down_kbps * 1000 / 8,
            "uploadThroughput": args.up_kbps * 1000 / 8,
        },
    )
    return cdp


def measure(url: str, code: str, args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from surveykit.fieldapp.views import app_files

    figures: dict[str, Any] = {"release_bytes_gzip": sum(len(f.gzipped) for f in app_files().values())}
    with sync_playwright() as driver, tempfile.TemporaryDirectory() as profile:
        context = driver.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, viewport=TABLET, locale="en-GB"
        )
        page = context.pages[0]
        cdp = throttle(context, page, args)
        transferred: dict[str, int] = {}
        urls: dict[str, str] = {}
        cdp.on("Network.responseReceived", lambda e: urls.__setitem__(e["requestId"], e["response"]["url"]))
        cdp.on(
            "Network.loadingFinished",
            lambda e: transferred.__setitem__(e["requestId"], e["encodedDataLength"]),
        )

        page.goto(f"{url}/app/", wait_until="commit")
        figures["cold_usable_ms"] = page.evaluate(WAIT_FOR, "#enrol-code")
        page.wait_for_load_state("networkidle")
        figures["first_load_bytes"] = sum(
            size for rid, size in transferred.items() if "/app/" in urls.get(rid, "")
        )
        page.fill("#enrol-code", code)
        page.click("button[type=submit]")
        page.wait_for_selector("#status-title")
        page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=60_000)
        page.get_by_text("Sync finished").wait_for(timeout=120_000)
        device_id = page.evaluate("window.fieldapp.deviceId")

        page.reload(wait_until="commit")
        figures["warm_usable_ms"] = page.evaluate(WAIT_FOR, "#status-title")
        page.wait_for_function("() => window.fieldapp && !window.fieldapp.syncing", timeout=120_000)

        # Sync: M ready interviews numbered from a block of this device.
        block = page.evaluate(
            "async ([d, n]) => (await import('/app/sync.js')).reserveBlock(d, 'ocsea', 'KE', 'RA1', n)",
            [device_id, args.sync],
        )
        page.evaluate(MAKE_INTERVIEWS, [device_id, args.sync, block["first_number"], True])
        start = time.perf_counter()
        counts = page.evaluate("async (d) => (await import('/app/sync.js')).push(d)", device_id)
        figures["sync_push_s"] = time.perf_counter() - start
        figures["sync_counts"] = counts
        start = time.perf_counter()
        page.evaluate("async (d) => (await import('/app/sync.js')).pull(d)", device_id)
        figures["sync_pull_s"] = time.perf_counter() - start

        # The list, empty of further records and then with N stored.
        figures["list_baseline_ms"] = statistics.median(page.evaluate(OPEN_LIST) for _ in range(3))
        figures["list_baseline_count"] = args.sync
        page.evaluate(MAKE_INTERVIEWS, [device_id, args.interviews - args.sync, 100_000, False])
        figures["list_ms"] = statistics.median(page.evaluate(OPEN_LIST) for _ in range(3))
        figures["list_count"] = page.locator("#interview-list li").count()

        # Keystrokes into a long answer, each saved as typed.
        uuid = page.locator("#interview-list li").first.get_attribute("data-uuid")
        page.goto(f"{url}/app/#/i/{uuid}/public_awareness")
        page.wait_for_selector("#q-pa_understanding")
        page.evaluate("window.fieldappSaveTimes.length = 0")
        page.focus("#q-pa_understanding")
        page.keyboard.type("x" * args.keystrokes, delay=args.key_delay)
        page.wait_for_function(f"() => window.fieldappSaveTimes.length >= {args.keystrokes}", timeout=60_000)
        saves = page.evaluate("window.fieldappSaveTimes")
        figures["save_median_ms"] = statistics.median(saves)
        figures["save_p95_ms"] = sorted(saves)[int(0.95 * (len(saves) - 1))]
        figures["bare_put_median_ms"] = statistics.median(page.evaluate(BARE_PUT, args.keystrokes))
        context.close()
    return figures


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"settings: CPU throttling {args.cpu}x; network {args.latency} ms round trip, "
        f"{args.down_kbps} kbit/s down, {args.up_kbps} kbit/s up; {args.interviews} interviews in the list; "
        f"{args.sync} synced; {args.keystrokes} keystrokes {args.key_delay} ms apart"
    )
    rows = [
        (
            "first load, transferred (KB)",
            figures["first_load_bytes"] / 1024,
            "<= 300",
            f"whole release as cached: {figures['release_bytes_gzip'] / 1024:.1f} KB gzip",
        ),
        ("time to usable, cold (ms)", figures["cold_usable_ms"], "", "nothing cached, enrolment screen"),
        (
            "time to usable, warm (ms)",
            figures["warm_usable_ms"],
            "",
            "service worker cache, home screen; warm / cold "
            f"{figures['warm_usable_ms'] / figures['cold_usable_ms']:.2f}",
        ),
        (
            "keystroke to local save, median (ms)",
            figures["save_median_ms"],
            "<= 16",
            f"p95 {figures['save_p95_ms']:.1f}; "
            f"bare IndexedDB put median {figures['bare_put_median_ms']:.1f} "
            f"(ratio {figures['save_median_ms'] / max(figures['bare_put_median_ms'], 0.01):.2f})",
        ),
        (
            f"open the list of {figures['list_count']} interviews (ms)",
            figures["list_ms"],
            "<= 200",
            f"with {figures['list_baseline_count']}: {figures['list_baseline_ms']:.0f} ms "
            f"(ratio {figures['list_ms'] / max(figures['list_baseline_ms'], 0.01):.2f})",
        ),
        (
            f"sync: push {args.sync} interviews (s)",
            figures["sync_push_s"],
            "",
            f"{figures['sync_counts']['created']} created; "
            f"{args.sync / max(figures['sync_push_s'], 1e-6):.1f} interviews/s; "
            f"feed pull {figures['sync_pull_s']:.2f} s",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'value':>9}  {'target':>7}  baseline / notes")
    for name, value, target, note in rows:
        print(f"{name.ljust(width)}  {value:9.1f}  {target:>7}  {note}")
    if figures["sync_counts"]["created"] != args.sync:
        raise SystemExit(f"only {figures['sync_counts']['created']} of {args.sync} interviews were created")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interviews", type=int, default=500, help="interviews stored for the list")
    parser.add_argument("--sync", type=int, default=100, help="interviews pushed (at most 100: one block)")
    parser.add_argument("--keystrokes", type=int, default=60)
    parser.add_argument(
        "--key-delay", type=int, default=100, help="ms between keystrokes (10 a second: a fast typist)"
    )
    parser.add_argument("--cpu", type=float, default=4.0, help="CPU throttling rate")
    parser.add_argument("--latency", type=int, default=150, help="network round trip, ms")
    parser.add_argument("--down-kbps", type=int, default=1600)
    parser.add_argument("--up-kbps", type=int, default=750)
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server (default: a SQLite file)")
    args = parser.parse_args()
    args.interviews = max(args.interviews, args.sync)
    with tempfile.TemporaryDirectory() as work:
        if args.postgres:
            with harness.ThrowawayDatabase(args.postgres, "fieldapp") as database:
                run(database.url, Path(work), args)
        else:
            run(f"sqlite:///{Path(work) / 'bench.sqlite3'}", Path(work), args)


def run(database_url: str, work: Path, args: argparse.Namespace) -> None:
    url, (server, engine, settings) = start_server(database_url, work / "data")
    try:
        code = seed(engine, settings)
        report(measure(url, code, args), args)
    finally:
        server.close()
        engine.dispose()


if __name__ == "__main__":
    main()
