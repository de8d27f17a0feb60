"""Policies: Rego evaluation (regopy) in a worker, metadata, waivers, policy tests.

Entry point: ``reconciler.policy.check.check_policies(config, deployments)`` →
``PolicyReport``. The package imports nothing on its own, so that importing
``reconciler.policy.encoding`` (validation does) does not load the Rego worker.
"""
