"""Failure alerts for Airflow tasks: a structured log line, plus e-mail / webhook if configured.

Channels are Airflow notifier classes, chosen by ``CRM_ALERT_CHANNELS``
(``log``, ``smtp``, ``webhook``), so adding a channel is adding a notifier.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import BaseNotifier

from crm.settings import get_settings

log = logging.getLogger("crm.alerts")


def alert_payload(context: dict[str, Any]) -> dict[str, Any]:
    ti = context.get("task_instance") or context.get("ti")
    logical = context.get("logical_date")
    return {
        "event": "task_failed",
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", None),
        "try_number": getattr(ti, "try_number", None),
        "logical_date": logical.isoformat() if logical else None,
        "run_id": context.get("run_id"),
        "error": str(context.get("exception") or "")[:2000],
    }


class LogNotifier(BaseNotifier):
    """Writes one structured ``alert`` line to the task log (always on)."""

    def notify(self, context: dict[str, Any]) -> None:
        log.error("alert %s", json.dumps(alert_payload(context), sort_keys=True))


class WebhookNotifier(BaseNotifier):
    """POSTs the alert as JSON (Slack/Teams-compatible gateways, incident tools)."""

    template_fields = ("url",)

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def notify(self, context: dict[str, Any]) -> None:
        import httpx

        payload = alert_payload(context)
        payload["text"] = f"{payload['dag_id']}.{payload['task_id']} failed: {payload['error'][:300]}"
        httpx.post(self.url, json=payload, timeout=10).raise_for_status()


def notifiers() -> list[BaseNotifier]:
    settings = get_settings()
    channels = {c.strip() for c in settings.alert_channels.split(",") if c.strip()}
    out: list[BaseNotifier] = [LogNotifier()]
    if "smtp" in channels and settings.alert_email:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        out.append(
            SmtpNotifier(
                to=settings.alert_email,
                subject="[crm] {{ ti.dag_id }}.{{ ti.task_id }} failed for {{ ds }}",
                html_content="{{ exception }}",
            )
        )
    if "webhook" in channels and settings.alert_webhook_url:
        out.append(WebhookNotifier(settings.alert_webhook_url))
    return out


def on_task_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback`` for every task: fan the alert out to the configured channels."""
    for notifier in notifiers():
        try:
            notifier(context)
        except Exception:  # an alert channel must never hide the original failure
            log.exception("alert channel %s failed", type(notifier).__name__)
