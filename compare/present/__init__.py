"""Presenting a sweep: rows pooled over seeds (``summary``), the one table formatter (``tables``), PNG plots
(``plots``) and report.md (``report``)."""
