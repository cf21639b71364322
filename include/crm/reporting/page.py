"""The daily report's page: the sections' figures laid out by one Jinja2 template.

The page is self-contained: plotly.js is inlined once (in the first figure), no CDN, no
web font, no link out, so it opens from disk on a laptop without a network.
"""

from __future__ import annotations

import datetime as dt

from jinja2 import Environment
from markupsafe import Markup

from crm.reporting.data import ReportData
from crm.reporting.figures import Section, sections

__all__ = ["TEMPLATE", "Section", "render", "sections"]

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>CRM daily report {{ day }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 16px 40px; color: #222; }
header { border-bottom: 3px solid #db0011; padding: 12px 0; }
h1 { margin: 0; font-size: 24px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
.note { color: #555; margin: 4px 0; } .figure { margin: 8px 0; } li { font-family: monospace; }
</style></head>
<body><header><h1>CRM daily report, business day {{ day }}</h1>
<p class="note">Built {{ built }} from the CRM marts and the quality ledger. RM ids only; no customer
personal data.</p></header>
{% for s in sections %}<section><h2>{{ s.title }}</h2>
{% for n in s.notes %}<p class="note">{{ n }}</p>
{% endfor %}{% for f in s.figures_html %}<div class="figure">{{ f }}</div>
{% endfor %}{% if s.listed %}<ul>{% for i in s.listed %}<li>{{ i }}</li>{% endfor %}</ul>{% endif %}
</section>
{% endfor %}</body></html>
"""


def render(data: ReportData, built: dt.datetime | None = None) -> str:
    """The whole page as one HTML string (plotly.js inlined in the first figure only)."""
    built = built or dt.datetime.now().astimezone()
    first = True
    views = []
    for s in sections(data):
        html = []
        for fig in s.figures:
            html.append(
                Markup(fig.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False}))
            )
            first = False
        views.append({"title": s.title, "notes": s.notes, "listed": s.items, "figures_html": html})
    env = Environment(autoescape=True)
    return env.from_string(TEMPLATE).render(day=data.day, built=f"{built:%Y-%m-%d %H:%M %Z}", sections=views)
