"""MLflow 3 model logging (logged models) and loading back through pyfunc."""

import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression


def _fit():
    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 4))
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)
    return LogisticRegression().fit(features, labels), features


def test_sklearn_log_model_and_load(client, unique):
    model, features = _fit()
    mlflow.set_experiment(unique())
    with mlflow.start_run() as run:
        mlflow.log_metric("train_acc", model.score(features, (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)))
        info = mlflow.sklearn.log_model(model, name="model", input_example=features[:3])
    assert info.model_uri.startswith("models:/m-")
    logged = client.get_logged_model(info.model_id)
    assert str(logged.status).endswith("READY")
    assert logged.source_run_id == run.info.run_id

    loaded = mlflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    # MLflow 3 resolves runs:/<run>/<name> to the logged model through the run's outputs.
    reloaded = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(reloaded.predict(features), model.predict(features))
    found = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert [m.model_id for m in found] == [info.model_id]
