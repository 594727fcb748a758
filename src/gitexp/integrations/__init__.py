"""Framework integrations: one module per framework, each importing its framework
lazily (``import gitexp.integrations.keras`` without Keras raises
:class:`~gitexp.errors.MissingExtra` naming the pip extra).

- :mod:`gitexp.integrations.lightning`: ``GitExpLogger`` (a Lightning ``Logger``)
  and ``GitExpThroughput`` (a ``Callback`` for samples/s);
- :mod:`gitexp.integrations.keras`: ``GitExpCallback`` (Keras 3);
- :mod:`gitexp.integrations.transformers`: ``GitExpCallback`` (a ``TrainerCallback``);
- :mod:`gitexp.integrations.xgboost`: ``GitExpCallback`` (a ``TrainingCallback``);
- :mod:`gitexp.integrations.lightgbm`: ``GitExpCallback`` (a ``lgb.train`` callback).

Each logs into the run it is given, else the active run (the one ``git exp
run`` started, or the script's own), else a run it starts itself; the last is
left open for what the script logs after training, and finished at exit or by
the integration's ``finish()``. docs/integrations.md says what each records.
"""

from __future__ import annotations
