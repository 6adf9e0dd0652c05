"""Peak memory of reading a gzip bomb (a 300 MiB export page, ~300 KB on the wire) with and without the cap.

Each mode runs in its own child process so its peak RSS (``ru_maxrss``) is its own. ``plain-httpx`` is what the
client did before (``httpx.Client.request`` reads and inflates the whole body); ``ticketlens`` is the
``HelpdeskClient`` with TICKETLENS_HELPDESK_MAX_RESPONSE_MB=64 (the default). Prints a markdown table.

    uv run python -m bench.response_cap_bench
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

MIB = 2**20


def _child(mode: str, inflated_mb: int) -> dict:
    from ticketlens.helpdesk_sim.hostile import Page, Script, gzip_bomb, hostile_helpdesk

    bomb = gzip_bomb(inflated_mb)
    script = Script(tickets={"start": Page([], raw_body=bomb, headers={"Content-Encoding": "gzip"})})
    with hostile_helpdesk(script) as hd:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        if mode == "plain-httpx":
            import httpx

            body = httpx.get(f"{hd.base_url}/api/v2/incremental/tickets/cursor.json?start_time=0", timeout=120)
            outcome = f"accepted, {len(body.content) / MIB:.0f} MiB body"
        else:
            from ticketlens.adapters.helpdesk import HelpdeskClient

            client = HelpdeskClient(hd.base_url, email=hd.email, api_token=hd.api_token, max_retries=0,
                                    requests_per_minute=None, export_requests_per_minute=None)
            try:
                next(iter(client.export_tickets(start_time=0)))
                outcome = "accepted"
            except Exception as exc:  # the point of the benchmark: which error, how fast, how much memory
                outcome = type(exc).__name__
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "wire_kb": len(bomb) / 1024, "inflated_mb": inflated_mb, "outcome": outcome,
            "seconds": seconds, "rss_before_mb": before, "peak_rss_mb": peak}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], int(sys.argv[3]))))
        return
    rows = []
    for mode in ("plain-httpx", "ticketlens"):
        out = subprocess.run([sys.executable, "-m", "bench.response_cap_bench", "--child", mode, "300"],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| reader | on the wire | inflated | outcome | seconds | RSS before → peak (MiB) |")
    print("|---|---:|---:|---|---:|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['wire_kb']:.0f} KB | {r['inflated_mb']} MiB | {r['outcome']} | "
              f"{r['seconds']:.1f} | {r['rss_before_mb']:.0f} → {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
