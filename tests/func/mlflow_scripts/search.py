"""Reading runs back: search_runs with a filter string, get_run."""

import mlflow

mlflow.set_experiment("parity")
found = mlflow.search_runs(
    experiment_names=["parity"],
    filter_string="params.lr = '0.01' and metrics.acc > 0.6 and tags.team = 'nlp'",
    order_by=["metrics.acc DESC"],
)
named = mlflow.search_runs(
    experiment_names=["parity"], filter_string="attributes.run_name LIKE 'autolog-%'"
)
listed = mlflow.search_runs(experiment_names=["parity"], output_format="list")
basic = next(r for r in listed if r.info.run_name == "basic")
with mlflow.start_run(run_name="search"):
    mlflow.log_dict(
        {
            "found": sorted(found["tags.mlflow.runName"]),
            "columns": sorted(
                c for c in found.columns if c in ("params.lr", "metrics.acc", "tags.team", "run_id")
            ),
            "named": sorted(named["tags.mlflow.runName"]),
            "basic_params": dict(sorted(mlflow.get_run(basic.info.run_id).data.params.items())),
            "basic_metrics": sorted(mlflow.get_run(basic.info.run_id).data.metrics),
        },
        "search.json",
    )
