"""Alerts: a failed task, or a missed publication deadline, reaches every configured channel.

Channels are Airflow notifiers, used as Airflow intends: ``on_failure_callback`` is a *list*
of notifiers (the task runner calls each one and logs, without re-raising, one that fails,
so a broken channel never hides the others or the task's own error). ``CRM_ALERT_CHANNELS``
picks them (comma list; ``log`` is always on, so a fresh clone needs no configuration):

- ``log``: one structured ``alert`` line in the task log (:class:`LogNotifier`).
- ``webhook``: the Apprise URL(s) in ``CRM_ALERT_WEBHOOK_URL`` (``slack://``, ``msteams://``,
  ``json://``, ``mailto://``...; a plain ``http(s)://`` URL gets Apprise's JSON POST).
- ``apprise``: the Apprise URL(s) of the Airflow connection ``apprise_default`` (UI, secrets
  backend, or ``AIRFLOW_CONN_APPRISE_DEFAULT``): the place for tokens, not the repository.
- ``smtp``: an e-mail to ``CRM_ALERT_EMAIL`` through the connection ``smtp_default``.

Apprise (a maintained library of ~100 services) replaces the hand-written webhook; the
provider's ``AppriseNotifier`` and the smtp provider's ``SmtpNotifier`` do the sending. They
are imported only when their channel is on: importing Apprise costs ~0.3 s of DAG parse time.

Every message names the DAG, the task and the business day and links to the task's log
(the task instance's ``log_url``, built by Airflow from ``[api] base_url``). The same
channels carry the deadline alert of ``crm_transform`` (:func:`deadline_missed`, run by
Airflow's triggerer when a run misses its ``DeadlineAlert``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Any

from airflow.sdk import BaseNotifier

from crm.dates import BANK_TZ
from crm.settings import get_settings

log = logging.getLogger("crm.alerts")

# The bank's publication promise: a business day's marts are visible to BI by this local
# time on the next calendar day. CRM_PUBLISH_DEADLINE=HH:MM changes it (read at DAG parse).
DEFAULT_PUBLISH_WITHIN = "03:00"
# Set by crm run (airflow dags test, no scheduler): the DAGs declare no deadline.
NO_DEADLINES = "CRM_NO_DEADLINES"
DEFAULT_PUBLISH_DEADLINE = "07:00"

TITLE = "[crm] {{ alert.what }}: {{ alert.dag_id }}.{{ alert.task_id }} for {{ alert.day }}"
BODY = (
    "{{ alert.what }}: DAG {{ alert.dag_id }}, task {{ alert.task_id }}, business day {{ alert.day }}\n"
    "run: {{ alert.run_id }}{% if alert.try_number %} (try {{ alert.try_number }}){% endif %}\n"
    "error: {{ alert.error }}\n"
    "log: {{ alert.log_url }}\n"
)
HTML = (
    "<p>{{ alert.what }}: DAG <b>{{ alert.dag_id }}</b>, task <b>{{ alert.task_id }}</b>, "
    "business day <b>{{ alert.day }}</b></p><p>run: {{ alert.run_id }}"
    "{% if alert.try_number %} (try {{ alert.try_number }}){% endif %}"
    '</p><p>error: {{ alert.error }}</p><p>log: <a href="{{ alert.log_url }}">{{ alert.log_url }}</a></p>'
)


def _business_day(context: dict[str, Any]) -> str | None:
    """The day a run covers: the trigger form's ``business_day``, else the day the triggering
    asset event names (crm_transform), else the local date of the logical date (crm_ingest)."""
    params = context.get("params") or {}
    if params.get("business_day"):
        return str(params["business_day"])
    try:  # fetched from the API server on access: an alert must not fail on it
        events = context.get("triggering_asset_events") or {}
        named = [
            str(e.extra["business_day"])
            for evs in events.values()
            for e in evs
            if (getattr(e, "extra", None) or {}).get("business_day")
        ]
    except Exception:
        log.warning("alert: could not read the triggering asset events", exc_info=True)
        named = []
    if named:
        return max(named)
    logical = context.get("logical_date")
    if logical:
        return logical.astimezone(BANK_TZ).date().isoformat()
    return None


def _error(exc: object) -> str:
    """Exception type and first line only: a full message can quote row values (personal data)."""
    if not exc:
        return ""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:300] if isinstance(exc, BaseException) else first[:300]


def _api_base_url() -> str:
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")


def _local(when: object) -> str:
    """A deadline time as the bank's local time (it arrives as a datetime or an ISO string)."""
    try:
        stamp = when if isinstance(when, dt.datetime) else dt.datetime.fromisoformat(str(when))
        return stamp.astimezone(BANK_TZ).isoformat(timespec="minutes")
    except ValueError:
        return str(when)


def alert_facts(context: dict[str, Any]) -> dict[str, Any]:
    """What every channel says, from a task callback's context or a deadline callback's."""
    if "deadline" in context:  # the triggerer's context: the run as the REST API shows it
        run = context.get("dag_run") or {}
        conf = run.get("conf") or {}
        logical = run.get("logical_date")
        day = conf.get("business_day") or (
            dt.datetime.fromisoformat(logical).astimezone(BANK_TZ).date().isoformat() if logical else None
        )
        from urllib.parse import quote

        return {
            "event": "deadline_missed",
            "what": "publication deadline missed",
            "dag_id": run.get("dag_id"),
            "task_id": "(run)",
            "run_id": run.get("run_id"),
            "try_number": None,
            "day": day or "unknown day",
            "error": f"not published by {_local(context['deadline'].get('deadline_time'))}",
            "log_url": f"{_api_base_url()}/dags/{run.get('dag_id')}/runs/{quote(str(run.get('run_id')))}",
        }
    ti = context.get("task_instance") or context.get("ti")
    return {
        "event": "task_failed",
        "what": "task failed",
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", None),
        "run_id": context.get("run_id") or getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "day": _business_day(context) or "unknown day",
        "error": _error(context.get("exception")),
        "log_url": getattr(ti, "log_url", None),
    }


class _AlertFacts:
    """Mixin: puts :func:`alert_facts` in the context as ``alert`` before the notifier's
    template fields are rendered, so every channel's templates say the same things."""

    def render_template_fields(self, context, jinja_env=None) -> None:
        context["alert"] = alert_facts(context)
        super().render_template_fields(context, jinja_env)


class LogNotifier(_AlertFacts, BaseNotifier):
    """Writes one structured ``alert`` line to the task (or triggerer) log; always on."""

    def notify(self, context: dict[str, Any]) -> None:
        log.error("alert %s", json.dumps(context["alert"], sort_keys=True, default=str))

    async def async_notify(self, context: dict[str, Any]) -> None:
        self.notify(context)


def _with_alert_facts(base: type) -> type:
    return type(f"Crm{base.__name__}", (_AlertFacts, base), {"__module__": __name__})


def _apprise_urls(value: str) -> str:
    """Apprise URLs as given; a plain http(s) URL becomes Apprise's JSON POST (json(s)://)."""
    urls = []
    for url in value.split():
        if url.startswith("https://"):
            url = "jsons://" + url[len("https://") :]
        elif url.startswith("http://"):
            url = "json://" + url[len("http://") :]
        urls.append(url)
    return " ".join(urls)


def channels() -> set[str]:
    return {c.strip() for c in get_settings().alert_channels.split(",") if c.strip()} | {"log"}


def notifiers() -> list[BaseNotifier]:
    """The configured channels as notifiers, ``log`` first. A channel switched on without
    its address (``webhook`` without ``CRM_ALERT_WEBHOOK_URL``) is skipped with a warning."""
    settings = get_settings()
    on = channels()
    out: list[BaseNotifier] = [LogNotifier()]
    if on & {"webhook", "apprise"}:
        from airflow.providers.apprise.notifications.apprise import AppriseNotifier
        from apprise import NotifyType

        apprise = _with_alert_facts(AppriseNotifier)
        if "webhook" in on and settings.alert_webhook_url:
            out.append(
                apprise(
                    title=TITLE,
                    body=BODY,
                    notify_type=NotifyType.FAILURE,
                    config=_apprise_urls(settings.alert_webhook_url),
                )
            )
        elif "webhook" in on:
            log.warning("alert channel webhook is on but CRM_ALERT_WEBHOOK_URL is empty")
        if "apprise" in on:  # the URLs stay in the connection, resolved when sending
            out.append(apprise(title=TITLE, body=BODY, notify_type=NotifyType.FAILURE))
    if "smtp" in on and settings.alert_email:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        out.append(_with_alert_facts(SmtpNotifier)(to=settings.alert_email, subject=TITLE, html_content=HTML))
    elif "smtp" in on:
        log.warning("alert channel smtp is on but CRM_ALERT_EMAIL is empty")
    return out


def publish_deadline() -> dt.timedelta:
    """From the logical date (00:00 local of the business day) to the publication deadline,
    ``CRM_PUBLISH_DEADLINE`` (HH:MM, default 07:00) local time on the next day."""
    value = os.environ.get("CRM_PUBLISH_DEADLINE") or DEFAULT_PUBLISH_DEADLINE
    at = dt.time.fromisoformat(value)
    return dt.timedelta(days=1, hours=at.hour, minutes=at.minute)


async def deadline_missed(context: dict[str, Any], **_: Any) -> None:
    """Deadline callback (Airflow's triggerer): the missed deadline to every channel.

    One channel failing does not stop the others (as for task callbacks)."""
    for notifier in notifiers():
        notifier.context = dict(context)
        try:
            await notifier
        except NotImplementedError:  # a notifier without async support
            import asyncio

            await asyncio.to_thread(notifier, dict(context))
        except Exception:
            log.exception("alert channel %s failed", type(notifier).__name__)


def publish_within() -> dt.timedelta:
    """``CRM_PUBLISH_WITHIN`` (HH:MM, default 03:00): how long a daily run may take from being
    queued (its raw day passed the gates) to publishing."""
    value = os.environ.get("CRM_PUBLISH_WITHIN") or DEFAULT_PUBLISH_WITHIN
    hours, _, minutes = value.partition(":")
    return dt.timedelta(hours=int(hours), minutes=int(minutes or 0))


def publish_deadline_alerts() -> list:
    """``deadline=`` of crm_transform, two alerts to the same channels:

    - ``marts_published``: a run with a logical date (triggered for a business day, a
      backfill) must publish by ``CRM_PUBLISH_DEADLINE`` local time the next day;
    - ``marts_published_after_raw``: every run, the daily asset-triggered ones included
      (Airflow 3 gives those no logical date, so the first alert never applies to them),
      must publish within ``CRM_PUBLISH_WITHIN`` of being queued.
    """
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    if os.environ.get(NO_DEADLINES):  # airflow dags test (crm run): see crm.orchestrate.run_dag
        return []
    return [
        DeadlineAlert(
            name="marts_published",
            reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
            interval=publish_deadline(),
            callback=AsyncCallback(deadline_missed),
        ),
        DeadlineAlert(
            name="marts_published_after_raw",
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=publish_within(),
            callback=AsyncCallback(deadline_missed),
        ),
    ]
