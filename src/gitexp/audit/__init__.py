"""The audit: who trained a model, when, from which code and data, and can it be
proven. :func:`verify` checks a model version's (or a run's) whole lineage:
the signatures of its registry and run commits (``git verify-commit``), the
artifact's bytes against their BLAKE3, the code commit, the recorded inputs;
and it gathers the facts a report states."""

from gitexp.audit.verify import Check, Report, verify

__all__ = ["Check", "Report", "verify"]
