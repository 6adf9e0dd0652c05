"""Failures say what to do: the message names the setting or the next step, never a secret."""

from __future__ import annotations

import httpx
import pytest

from tests.support.helpdesk import TOKEN, make_client
from ticketlens.adapters.helpdesk import HelpdeskError
from ticketlens.adapters.warehouse.engine import WarehouseUnreachableError, check_warehouse


def test_a_rejected_write_back_names_the_custom_field_setting_and_is_not_retried():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"error": "RecordInvalid", "description": "Custom field 999 is invalid"})

    client, _, seen = make_client(handler)
    with pytest.raises(HelpdeskError) as err:
        client.update_many([{"id": 1, "additional_tags": ["tl_cat_x"], "custom_fields": [{"id": 999, "value": 1}]}])
    message = str(err.value)
    assert "HTTP 422" in message and "Custom field 999 is invalid" in message
    assert "TICKETLENS_WRITEBACK_CUSTOM_FIELDS" in message and "not retried" in message
    assert TOKEN not in message
    assert len(seen) == 1  # a 4xx is the request's fault: no retries


def test_an_unreachable_warehouse_names_the_setting_and_hides_the_password():
    url = "postgresql+psycopg://ticketlens:hunter2-secret@127.0.0.1:1/ticketlens?connect_timeout=2"
    with pytest.raises(WarehouseUnreachableError) as err:
        check_warehouse(url)
    message = str(err.value)
    assert "TICKETLENS_WAREHOUSE_URL=postgresql+psycopg://ticketlens:***@127.0.0.1:1/ticketlens" in message
    assert "hunter2-secret" not in message
    assert "nothing was fetched" in message


def test_a_reachable_warehouse_passes_the_check(warehouse_url):
    check_warehouse(warehouse_url)
