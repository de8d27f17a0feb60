"""Monitoring: Evidently drift on captured traffic, and the retraining trigger.

Modules:

* :mod:`reconciler.monitor.data`: reading reference data and captured traffic
  (``<sink>/<name>/<env>/<YYYY-MM-DD>/capture-*.jsonl|parquet``), with clear errors.
* :mod:`reconciler.monitor.drift`: :func:`~reconciler.monitor.drift.run_drift` →
  :class:`~reconciler.monitor.drift.DriftResult` (per-feature ValueDrift, prediction
  drift, sampling, HTML report, JSON summary, ledger ``drift`` field).
* :mod:`reconciler.monitor.retrain`: :func:`~reconciler.monitor.retrain.run_retraining`
  → :class:`~reconciler.monitor.retrain.RetrainResult` (command with time-out, candidate
  vs live on the holdout, commit on ``modelops/retrain/<name>-<time>``, cooldown).
* :mod:`reconciler.monitor.specedit`: in-place edits of scalar values in a spec's text.
* :mod:`reconciler.monitor.schedule`: :func:`~reconciler.monitor.schedule.next_runs`,
  the next run times of a cron schedule (for the plan).
* :mod:`reconciler.monitor.traffic`: :func:`~reconciler.monitor.traffic.send_traffic`
  and :func:`~reconciler.monitor.traffic.shifted` for the demo and the tests.

Commands (``reconciler/commands/monitor.py``): ``modelops monitor run NAME --env ENV``
(exit 1 on drift) and ``modelops retrain NAME --env ENV``; these are what the scheduled
jobs run.
"""
