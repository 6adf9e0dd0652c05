"""Settings: one object, every knob documented in .env.example, errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketlens.adapters.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting():
    text = (ROOT / ".env.example").read_text()
    missing = [name for name in Settings.model_fields if f"TICKETLENS_{name.upper()}=" not in text]
    assert missing == []


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
