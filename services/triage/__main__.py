"""``python -m ticketlens.services.triage`` (``ticketlens-triage``): run the triage service with uvicorn.

Refuses to run as root (uid 0) unless TICKETLENS_TRIAGE_ALLOW_ROOT=true: it parses input from the internet and
needs no privileges (binding a port above 1024, reading the warehouse and MLflow).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    from ticketlens.adapters.settings import load_settings
    from ticketlens.services.triage.settings import TriageSettings

    parser = argparse.ArgumentParser(prog="ticketlens-triage", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="bind address (default TICKETLENS_TRIAGE_HOST)")
    parser.add_argument("--port", type=int, help="port (default TICKETLENS_TRIAGE_PORT)")
    args = parser.parse_args(argv)
    triage = TriageSettings()
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not triage.allow_root:
        print("ticketlens-triage refuses to run as root: start it as an unprivileged user (it needs no privileges), "
              "or set TICKETLENS_TRIAGE_ALLOW_ROOT=true to override.", file=sys.stderr)
        return 2
    if triage.webhook_secret is None:
        print("WARNING: TICKETLENS_TRIAGE_WEBHOOK_SECRET is not set: every webhook will be refused (401).",
              file=sys.stderr)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from ticketlens.services.triage.app import create_app
    from ticketlens.services.triage.service import TriageService

    service = TriageService(load_settings(), triage)
    # access_log off: request lines carry nothing useful here and bodies are never logged anyway.
    uvicorn.run(create_app(service), host=args.host or triage.host, port=args.port or triage.port,
                access_log=False, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
