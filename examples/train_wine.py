"""Train a wine classifier, log it to the MLflow platform and make it the served model.

Uses scikit-learn's bundled wine dataset (nothing is downloaded). Talks to the platform the way a data
scientist does, through the authenticating ingress:

    export MLFLOW_TRACKING_URI=http://127.0.0.1:<port>      # npm run local prints it
    export MLFLOW_TRACKING_USERNAME=mlflow
    export MLFLOW_TRACKING_PASSWORD='<password>'
    python examples/train_wine.py

It logs the parameters, test metrics, a confusion matrix and the model (with its signature and an input example), registers
the model as `wine-quality` and points the alias `champion` at the new version, which is what model
serving deploys. The last line printed is a JSON summary (run id, model version, ...).
"""

import json
import os
import sys

import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

EXPERIMENT = os.environ.get("WINE_EXPERIMENT", "wine-quality")
REGISTERED_MODEL = os.environ.get("WINE_REGISTERED_MODEL", "wine-quality")
ALIAS = "champion"


def main() -> int:
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        print("set MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_USERNAME/PASSWORD) first", file=sys.stderr)
        return 2

    features, labels = load_wine(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=0.25, random_state=42, stratify=labels)
    # A linear model: scikit-learn trees need extra trusted types to load from MLflow's skops format.
    params = {"C": float(os.environ.get("WINE_C", "1.0")), "max_iter": 1000, "test_size": 0.25, "random_state": 42}

    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name="logistic-regression") as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=params["C"], max_iter=params["max_iter"]))
        model.fit(x_train, y_train)
        predicted = model.predict(x_test)
        mlflow.log_params(params)
        mlflow.log_metrics(
            {
                "accuracy": accuracy_score(y_test, predicted),
                "f1_macro": f1_score(y_test, predicted, average="macro"),
                "train_rows": len(x_train),
            }
        )
        mlflow.log_dict({"labels": sorted(int(c) for c in labels.unique()), "matrix": confusion_matrix(y_test, predicted).tolist()}, "evaluation/confusion_matrix.json")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_train, model.predict(x_train)),
            input_example=x_train.head(3),
            registered_model_name=REGISTERED_MODEL,
        )

    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(REGISTERED_MODEL, ALIAS, version)
    print(
        json.dumps(
            {
                "experiment_id": run.info.experiment_id,
                "run_id": run.info.run_id,
                "model_id": info.model_id,
                "registered_model": REGISTERED_MODEL,
                "version": version,
                "alias": ALIAS,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
