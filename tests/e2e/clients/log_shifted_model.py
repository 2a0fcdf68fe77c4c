"""Logs a deliberately different version of a registered model, without moving any alias.

The same pipeline as examples/train_wine.py, trained on every label shifted by one class ((y + 1) % 3),
so each prediction it serves is recognisably its own. Prints {"version", "model_id"} as JSON.

Usage: log_shifted_model.py REGISTERED_MODEL
"""

import json
import sys

import mlflow
import mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> int:
    registered_model = sys.argv[1]
    features, labels = load_wine(return_X_y=True, as_frame=True)
    shifted = (labels + 1) % 3
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(features, shifted)
    mlflow.set_experiment("wine-quality")
    with mlflow.start_run(run_name="shifted-labels"):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(features, model.predict(features)),
            input_example=features.head(3),
            registered_model_name=registered_model,
        )
    print(json.dumps({"version": str(info.registered_model_version), "model_id": info.model_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
