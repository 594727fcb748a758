"""MlflowClient: a run made and ended by id."""

import mlflow

client = mlflow.MlflowClient()
experiment = mlflow.set_experiment("parity")
run = client.create_run(experiment.experiment_id, run_name="client", tags={"via": "client"})
run_id = run.info.run_id
client.log_param(run_id, "batch", 32)
for step in range(4):
    client.log_metric(run_id, "loss", 2.0 - 0.25 * step, step=step)
client.log_batch(
    run_id,
    metrics=[mlflow.entities.Metric("f1", 0.8, 1_700_000_000_000, 2)],
    params=[mlflow.entities.Param("model", "mlp")],
    tags=[mlflow.entities.RunTag("kind", "batch")],
)
client.set_tag(run_id, "kind", "batch-2")
client.log_text(run_id, "by id\n", "client.txt")
client.log_dict(run_id, {"k": 1}, "client.json")
client.set_terminated(run_id)
history = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
with mlflow.start_run(run_name="client-reader"):
    steps = [m.step for m in history]
    mlflow.log_dict({"steps": steps, "values": [m.value for m in history]}, "history.json")
    read = client.get_run(run_id)
    params = dict(sorted(read.data.params.items()))
    mlflow.log_dict({"params": params, "status": read.info.status}, "read.json")
