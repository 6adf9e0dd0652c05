"""Settings: one object, every knob documented in .env.example, errors that name the variable; grouped
settings keep their flat names and are the one source of the detector, routing and report defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ticketlens.adapters.settings import (
    CsatSettings,
    OpsSettings,
    RoutingSettings,
    Settings,
    SettingsError,
    SpikeSettings,
    all_env_names,
    load_settings,
)
from ticketlens.models.csat_drivers import DriverConfig
from ticketlens.models.ops_reports import OpsConfig
from ticketlens.models.routing import RoutingPolicy
from ticketlens.models.spikes import LifecycleParams, SpikeParams

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting():
    text = (ROOT / ".env.example").read_text()
    missing = [name for name in all_env_names() if f"{name}=" not in text]
    assert missing == []
    assert len(all_env_names()) == len(set(all_env_names()))  # no two settings share a variable


def test_every_setting_has_a_description():
    groups = [Settings, SpikeSettings, RoutingSettings, CsatSettings, OpsSettings]
    undocumented = [f"{model.__name__}.{name}" for model in groups for name, info in model.model_fields.items()
                    if not info.description]
    assert undocumented == []


def test_environment_overrides_defaults(monkeypatch):
    monkeypatch.setenv("TICKETLENS_WAREHOUSE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("TICKETLENS_HELPDESK_BASE_URL", "https://acme.zendesk.com/")
    settings = load_settings(_env_file=None)
    assert settings.warehouse_url == "postgresql+psycopg://u@h/db"
    assert settings.helpdesk_base_url == "https://acme.zendesk.com"


def test_invalid_setting_error_names_the_variable(monkeypatch):
    monkeypatch.setenv("TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE", "-3")
    with pytest.raises(SettingsError, match="TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE"):
        load_settings(_env_file=None)


def test_missing_credentials_say_what_to_set(monkeypatch):
    with pytest.raises(SettingsError, match="TICKETLENS_HELPDESK_API_TOKEN"):
        load_settings(_env_file=None, helpdesk_api_token=None, helpdesk_oauth_token=None)


def test_tokens_never_print(monkeypatch):
    monkeypatch.setenv("TICKETLENS_HELPDESK_API_TOKEN", "s3cr3t-token-value")
    settings = load_settings(_env_file=None)
    assert "s3cr3t-token-value" not in repr(settings)
    assert "s3cr3t-token-value" not in settings.model_dump_json()
    assert settings.helpdesk_api_token.get_secret_value() == "s3cr3t-token-value"


# Variables (and their flat keyword names) as they were before the settings were grouped, with the group field
# each one now sets. A renamed variable would silently fall back to its default in a deployment.
FLAT = {
    "TICKETLENS_SPIKE_MIN_COUNT": ("spike", "min_count", "9", 9),
    "TICKETLENS_SPIKE_FDR": ("spike", "fdr", "0.01", 0.01),
    "TICKETLENS_SPIKE_MAX_CATCHUP_HOURS": ("spike", "max_catchup_hours", "3", 3),
    "TICKETLENS_SPIKE_GROWTH_FACTOR": ("spike", "growth_factor", "3.5", 3.5),
    "TICKETLENS_TRIAGE_THRESHOLD": ("routing", "triage_threshold", "0.35", 0.35),
    "TICKETLENS_AUTO_REPLY_THRESHOLD": ("routing", "auto_reply_threshold", "0.9", 0.9),
    "TICKETLENS_AUTO_ROUTE_THRESHOLD": ("routing", "auto_route_threshold", "0.7", 0.7),
    "TICKETLENS_LANGUAGE_QUEUES": ("routing", "language_queues", '{"ja": "japanese_queue"}', {"ja": "japanese_queue"}),
    "TICKETLENS_CSAT_WINDOW_DAYS": ("csat", "window_days", "30", 30),
    "TICKETLENS_CSAT_FDR_METHOD": ("csat", "fdr_method", "bh", "bh"),
    "TICKETLENS_CSAT_MIN_SEGMENT_RATINGS": ("csat", "min_segment_ratings", "40", 40),
    "TICKETLENS_SELF_SELECTION_MIN_TICKETS": ("ops", "self_selection_min_tickets", "15", 15),
    "TICKETLENS_AUTO_REPLY_MIN_HIGH_CONFIDENCE_SHARE": ("ops", "auto_reply_min_high_confidence_share", "0.5", 0.5),
}


@pytest.mark.parametrize("variable", sorted(FLAT))
def test_grouped_settings_keep_their_environment_variables(monkeypatch, variable):
    group, field, raw, value = FLAT[variable]
    monkeypatch.setenv(variable, raw)
    assert getattr(getattr(load_settings(_env_file=None), group), field) == value


@pytest.mark.parametrize("variable", sorted(FLAT))
def test_grouped_settings_keep_their_env_file_lines(tmp_path, variable):
    group, field, raw, value = FLAT[variable]
    env_file = tmp_path / ".env"
    env_file.write_text(f"{variable}={raw}\n")
    assert getattr(getattr(load_settings(_env_file=env_file), group), field) == value


@pytest.mark.parametrize("variable", sorted(FLAT))
def test_grouped_settings_keep_their_keyword_names(variable):
    group, field, _, value = FLAT[variable]
    keyword = variable.removeprefix("TICKETLENS_").lower()
    assert getattr(getattr(load_settings(_env_file=None, **{keyword: value}), group), field) == value


def test_sources_keep_their_order_for_grouped_settings(monkeypatch, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("TICKETLENS_SPIKE_MIN_COUNT=7\nTICKETLENS_SPIKE_FDR=0.02\nTICKETLENS_SPIKE_MIN_RATIO=3\n")
    monkeypatch.setenv("TICKETLENS_SPIKE_FDR", "0.03")
    monkeypatch.setenv("TICKETLENS_SPIKE_MIN_RATIO", "4")
    settings = load_settings(_env_file=env_file, spike_min_ratio=5)
    # keyword > environment > .env, field by field inside one group
    assert (settings.spike.min_count, settings.spike.fdr, settings.spike.min_ratio) == (7, 0.03, 5)
    assert load_settings(_env_file=None, spike={"min_count": 11}).spike.min_count == 11  # the nested form


def test_invalid_grouped_setting_names_its_variable(monkeypatch):
    monkeypatch.setenv("TICKETLENS_SPIKE_FDR", "1.5")
    with pytest.raises(SettingsError, match="TICKETLENS_SPIKE_FDR"):
        load_settings(_env_file=None)
    monkeypatch.delenv("TICKETLENS_SPIKE_FDR")
    monkeypatch.setenv("TICKETLENS_LANGUAGE_QUEUES", "{not json")
    with pytest.raises(SettingsError, match="TICKETLENS_LANGUAGE_QUEUES"):
        load_settings(_env_file=None)
    monkeypatch.delenv("TICKETLENS_LANGUAGE_QUEUES")
    with pytest.raises(SettingsError, match="TICKETLENS_TRIAGE_THRESHOLD"):
        load_settings(_env_file=None, triage_threshold=2)


def test_models_dataclasses_hold_no_default_of_a_setting():
    """One set of defaults: the settings groups. The dataclasses keep only modelling constants."""
    def defaulted(cls):
        return {f.name for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}

    assert defaulted(SpikeParams) == set() and defaulted(LifecycleParams) == set()
    assert defaulted(RoutingPolicy) == {"triage_group"}
    assert defaulted(OpsConfig) == {"misuse_share"}
    assert defaulted(DriverConfig) == {"prior_ratings", "interval", "factor_tests"}


def test_groups_build_the_models_configs_with_the_documented_defaults():
    settings = load_settings(_env_file=None)
    params = settings.spike.params()
    assert dataclasses.asdict(params) == settings.spike.model_dump(include=set(SpikeParams.__dataclass_fields__))
    assert (params.min_count, params.fdr, params.baseline_weeks, params.window_hours) == (5, 0.002, 4, 3)
    assert settings.spike.lifecycle() == LifecycleParams(growth_factor=2.0, resolve_after_hours=2)
    assert settings.routing.policy() == RoutingPolicy(triage_threshold=0.5, auto_reply_threshold=0.8,
                                                      language_queues={})
    assert settings.csat.drivers() == DriverConfig(fdr=0.05, method="by", min_segment_ratings=20)
    assert settings.ops.config(settings.routing) == OpsConfig(
        min_confidence=0.6, min_option_tickets=20, auto_reply_threshold=0.8, auto_reply_min_tickets=30,
        auto_reply_min_high_confidence_share=0.6)
    tuned = load_settings(_env_file=None, spike_min_count=8, auto_reply_threshold=0.9, csat_fdr=0.1)
    assert tuned.spike.params().min_count == 8
    assert tuned.routing.policy().auto_reply_threshold == tuned.ops.config(tuned.routing).auto_reply_threshold == 0.9
    assert tuned.csat.drivers().fdr == 0.1
