"""The tracking calls an MLflow training script makes, the way the docs show them."""

import os

import matplotlib
import mlflow
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

mlflow.set_experiment("parity")
with mlflow.start_run(run_name="basic", tags={"team": "nlp"}, description="a first try"):
    mlflow.log_param("lr", 0.01)
    mlflow.log_params({"epochs": 3, "optimizer": "adam", "use_bn": True, "seed": None})
    for epoch in range(3):
        mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        mlflow.log_metrics({"acc": 0.5 + 0.1 * epoch, "val/acc": 0.45 + 0.1 * epoch}, step=epoch)
    mlflow.log_metric("lr_now", 0.001, step=7, timestamp=1_700_000_000_123)
    mlflow.log_metric("once", 3.5)
    mlflow.set_tag("stage", "dev")
    mlflow.set_tags({"stage": "prod", "owner": "ana"})

    with open("notes.md", "w") as f:
        f.write("# notes\n")
    mlflow.log_artifact("notes.md")
    mlflow.log_artifact("notes.md", artifact_path="docs")
    os.makedirs("outputs/sub", exist_ok=True)
    with open("outputs/a.txt", "w") as f:
        f.write("a\n")
    with open("outputs/sub/b.txt", "w") as f:
        f.write("b\n")
    mlflow.log_artifacts("outputs", artifact_path="results")
    mlflow.log_dict({"layers": [64, 32], "act": "relu"}, "config/model.json")
    mlflow.log_dict({"layers": [64, 32], "act": "relu"}, "config/model.yaml")
    mlflow.log_text("hello from the run\n", "summary.txt")

    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.plot([0, 1, 2], [1.0, 0.5, 0.33])
    mlflow.log_figure(fig, "plots/loss.png")
    plt.close(fig)
    image = np.linspace(0, 1, 4 * 4 * 3).reshape(4, 4, 3)
    mlflow.log_image(image, "images/ramp.png")

    with mlflow.start_run(run_name="basic-child", nested=True):
        mlflow.log_param("fold", 1)
        mlflow.log_metric("fold_acc", 0.7)
