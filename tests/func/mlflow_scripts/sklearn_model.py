"""A scikit-learn model logged, loaded back by its URI, and used."""

import json

import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

mlflow.set_experiment("parity")
X, y = load_iris(return_X_y=True)
with mlflow.start_run(run_name="sklearn-model"):
    model = LogisticRegression(max_iter=300, C=0.5).fit(X, y)
    mlflow.log_params({"C": 0.5, "max_iter": 300})
    mlflow.log_metric("acc", float(model.score(X, y)))
    info = mlflow.sklearn.log_model(
        model, name="model", pip_requirements=["scikit-learn"], serialization_format="cloudpickle"
    )
    loaded = mlflow.sklearn.load_model(info.model_uri)
    mlflow.log_text(json.dumps(loaded.predict(X[:20]).tolist()), "predictions.json")
