"""Helpers shared by tests. Test modules import helpers only from here, never from another test module;
shared fixtures live in conftest.py (tests/ for all, tests/<folder>/ for one folder).

  folders        what each test folder promises (used by the folders' conftest.py)
  helpdesk       a HelpdeskClient on an httpx.MockTransport with an injected clock
  leak_scan      look for a secret or PII in logs, the Prefect API, MLflow and the warehouse
  records        Zendesk-shaped ticket records
  scheduled      run a flow the way the Prefect scheduler does
  slack          a stand-in for Slack's incoming webhook
  spikes         a warehouse history with one planted surge
  tcp_proxy      a TCP proxy that can cut connections (outage tests)
  warehouse      row counts, warehouse-equals-source, predictions as the scorer writes them

Helpers that benchmarks use too live outside tests/ (bench must not import tests): the simulator runner
(``ticketlens.helpdesk_sim.testing``), ``ticketlens.helpdesk_sim.seed`` and ``ticketlens.helpdesk_sim.hostile``.
"""
