"""Logs one metric value per step through the ingress until a stop file appears.

A step is written to the acknowledgement file only after MLflow's client returned from log_metric, i.e.
after the server answered 200 (the client retries transient failures: 5xx, connection errors). A call
that still fails after its retries is counted, not acknowledged. Prints a JSON summary at the end.

Usage: log_metrics.py RUN_ID_FILE ACK_FILE STOP_FILE
"""

import json
import os
import sys
import time

import mlflow
from mlflow import MlflowClient


def main() -> int:
    run_id_file, ack_file, stop_file = sys.argv[1:4]
    client = MlflowClient()
    experiment = mlflow.set_experiment("postgres-kill-drill")
    run = client.create_run(experiment.experiment_id, run_name="kill-9")
    with open(run_id_file, "w") as f:
        f.write(run.info.run_id)
    failed = 0
    step = 0
    with open(ack_file, "a") as acks:
        while not os.path.exists(stop_file):
            try:
                client.log_metric(run.info.run_id, "drill", float(step), step=step)
            except Exception as e:  # noqa: BLE001 - any failure after retries means "not acknowledged"
                failed += 1
                print(f"step {step} not acknowledged: {e}", file=sys.stderr, flush=True)
            else:
                acks.write(f"{step}\n")
                acks.flush()
            step += 1
            time.sleep(0.02)
    client.set_terminated(run.info.run_id)
    print(json.dumps({"run_id": run.info.run_id, "attempted": step, "failed": failed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
