"""MLflow: a registry gate fed by MLflow's webhooks, and a guard around its loaders.

- :mod:`~donjon.integrations.mlflow.gate` reviews each model version (scan,
  signature, provenance), tags it ``donjon.*`` and removes protected aliases
  from failing versions; :mod:`~donjon.integrations.mlflow.http` receives the
  HMAC-signed webhooks (``donjon mlflow serve``).
- :mod:`~donjon.integrations.mlflow.guard` makes ``mlflow.pyfunc.load_model``
  and the flavours' ``load_model`` refuse artifacts whose review fails.
"""
