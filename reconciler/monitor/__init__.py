"""Monitoring: Evidently drift on captured traffic, and the retraining trigger."""
