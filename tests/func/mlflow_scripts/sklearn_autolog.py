"""scikit-learn autologging: a classifier and a regressor."""

import mlflow
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeClassifier

mlflow.set_experiment("parity")
mlflow.sklearn.autolog()
X, y = load_iris(return_X_y=True)
with mlflow.start_run(run_name="autolog-classifier"):
    DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
Xr, yr = load_diabetes(return_X_y=True)
with mlflow.start_run(run_name="autolog-regressor"):
    LinearRegression().fit(Xr, yr)
mlflow.sklearn.autolog(disable=True)
