"""Quality gates: Great Expectations suites that decide whether a business day flows on.

``suites`` writes the GX project in ``expectations/`` from the feed registry and the dbt
vars (reviewed files in git); ``history`` turns each feed's own past into today's bounds;
``gate`` runs a gate for a day, applies each expectation's severity (from the suite's
meta) and records every result in ``dq``.
"""
