"""``ticketlens doctor`` against the simulator: the pass case, several fail cases, and that it never writes
unless asked."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ticketlens.doctor import main
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import client_env, running_simulator


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=3, start=datetime(2026, 8, 1, tzinfo=UTC), days=2,
                                            tickets_per_day=60))


def doctor(monkeypatch, capsys, sim, *argv, **env):
    values = client_env("sqlite:///unused.db", sim, rate_per_minute=6000, **{
        "TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE": "10",
        "TICKETLENS_WRITEBACK_CUSTOM_FIELDS": '{"category": 360010, "tier": 360011}', **env})
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    code = main(["doctor", "--json", *argv])
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)}
    return code, checks


def test_a_ready_account_passes_and_nothing_is_written(monkeypatch, capsys, dataset):
    with running_simulator(dataset) as sim:
        code, checks = doctor(monkeypatch, capsys, sim)
        assert code == 0, checks
        assert {c["status"] for c in checks.values()} == {"PASS"}
        assert "admin" in checks["role"]["detail"]
        assert "type tagger" in checks["contact-reason field"]["detail"]
        assert "satisfaction_ratings" in checks["CSAT API"]["detail"].split(";")[0]
        assert "10/min reported" in checks["export rate limit"]["detail"]
        assert "not written" in checks["write-back field category"]["detail"]
        assert sim.updates() == []  # reads only
        assert not any("update_many" in path for path in sim.stats()["by_path"])


def test_survey_only_account_and_multiselect_reason(monkeypatch, capsys, dataset):
    with running_simulator(dataset, csat_api="survey_responses", multiselect_reasons=True) as sim:
        code, checks = doctor(monkeypatch, capsys, sim)
    assert code == 0
    assert checks["CSAT API"]["detail"].startswith("account uses survey_responses")
    assert "multiselect" in checks["contact-reason field"]["detail"]


def test_agent_token_fails_role_and_export(monkeypatch, capsys, dataset):
    with running_simulator(dataset, user_role="agent") as sim:
        code, checks = doctor(monkeypatch, capsys, sim)
    assert code == 1
    assert checks["role"]["status"] == "FAIL" and "admin-only" in checks["role"]["detail"]
    assert checks["export rate limit"]["status"] == "FAIL" and "403" in checks["export rate limit"]["detail"]
    assert checks["CSAT API"]["status"] == "FAIL"


def test_wrong_token_fails_credentials_and_skips_the_rest(monkeypatch, capsys, dataset):
    with running_simulator(dataset) as sim:
        code, checks = doctor(monkeypatch, capsys, sim, TICKETLENS_HELPDESK_API_TOKEN="wrong")
    assert code == 1
    assert checks["credentials"]["status"] == "FAIL" and "401" in checks["credentials"]["detail"]
    assert checks["role"]["status"] == "SKIP" and checks["write-back fields"]["status"] == "SKIP"
    assert "wrong" not in json.dumps(checks)  # the token never appears in the output


def test_missing_fields_bad_writeback_ids_and_a_too_fast_export_setting(monkeypatch, capsys, dataset):
    with running_simulator(dataset, export_requests_per_minute=10) as sim:
        code, checks = doctor(monkeypatch, capsys, sim,
                              TICKETLENS_CONTACT_REASON_FIELD_TITLE="Reason for contact",
                              TICKETLENS_EXPORT_REQUESTS_PER_MINUTE="10",
                              TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE="60",
                              TICKETLENS_WRITEBACK_CUSTOM_FIELDS='{"category": 999, "tier": 360000, '
                                                                 '"auto_reply": 360021}')
    assert code == 1
    assert checks["contact-reason field"]["status"] == "FAIL"
    assert "Reason for contact" in checks["contact-reason field"]["detail"]
    assert checks["write-back field category"]["status"] == "FAIL" and "no ticket field 999" in \
        checks["write-back field category"]["detail"]
    assert "system field" in checks["write-back field tier"]["detail"]  # 360000 is the Subject field
    assert "type decimal" in checks["write-back field auto_reply"]["detail"]
    assert checks["export rate limit"]["status"] == "WARN" and "expect 429s" in checks["export rate limit"]["detail"]


def test_write_check_writes_only_current_values_when_asked(monkeypatch, capsys, dataset):
    with running_simulator(dataset) as sim:
        before = {f["id"]: f["value"] for f in sim.ticket(5)["custom_fields"]}
        code, checks = doctor(monkeypatch, capsys, sim, "--write-check", "5")
        assert code == 0 and checks["write check"]["status"] == "PASS"
        updates = sim.updates()
        assert len(updates) == 1 and updates[0]["tickets"][0]["id"] == 5
        after = {f["id"]: f["value"] for f in sim.ticket(5)["custom_fields"]}
    assert after == before  # the values written were the ones already there
