"""Runs in and out of other trackers' stores, and the names those trackers use.

- :mod:`gitexp.interop.mlflow_names`: MLflow's names in one place: statuses,
  system tags, the ``search_runs`` columns, params as MLflow's text;
- :mod:`gitexp.interop.mlflow_filter`: MLflow filter strings and ``order_by``
  translated to the ``--where`` language (no second evaluator);
- :mod:`gitexp.interop.imported`: an imported run written as an ordinary run
  (one ``import`` commit), with ``run.json`` ``origin``; importing again adds nothing;
- :mod:`gitexp.interop.mlflow_store`: ``git exp import mlflow``: read through
  MLflow's own client (the ``mlflow`` extra);
- :mod:`gitexp.interop.tensorboard`: ``git exp import tensorboard`` and
  ``git exp export --tensorboard``, through the ``tensorboard`` package (the
  ``tensorboard`` extra).

The optional packages are imported inside the functions that need them, and a
missing one is a :class:`gitexp.errors.MissingExtra` naming the extra.
"""

from __future__ import annotations
