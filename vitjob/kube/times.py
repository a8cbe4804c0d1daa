"""Kubernetes time formats: ``Time`` (RFC 3339 to the second, UTC) and ``MicroTime`` (to the microsecond)."""

from __future__ import annotations

import datetime as dt


def time_text(when: dt.datetime | None = None) -> str:
    """A ``metav1.Time`` (object timestamps, ``sinceTime``, status times): now unless ``when``."""
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time_text(when: dt.datetime | None = None) -> str:
    """A ``metav1.MicroTime`` (Lease renew and acquire times): now unless ``when``."""
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
