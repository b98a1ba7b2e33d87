"""The operations stack of the serving demo (paper, Table 1: Prometheus + Grafana, GitHub Actions,
FastAPI + Docker), generated from the policy files.

* :mod:`clinops.ops.prometheus` -- scrape configuration, recording rules, alerting rules whose
  thresholds are read from ``params/policies/*.yaml`` through the policy loaders, and promtool
  unit tests for every alert rule;
* :mod:`clinops.ops.dashboard` -- the Grafana dashboard (provisioning-ready JSON);
* :mod:`clinops.ops.stack` -- a real Prometheus server next to the serving demo (``make stack``);
* :mod:`clinops.ops.sbom` -- a CycloneDX SBOM of the serving runtime dependencies.

``clinops ops generate`` writes the committed files under ``serving/ops/``;
``clinops ops check`` fails, naming file and line, where they differ from what the
policies give (tests/test_ops_rules.py runs it in ``make test``).
"""
