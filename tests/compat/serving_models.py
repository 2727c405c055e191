"""Models trained and exported to ONNX the way their users do it, saved as MLflow model
directories, with the predictions of the library that trained them.

Shared by the serving tests (which compare tarn's predictions with the library's) and by the
serving benchmark (which serves the same models with tarn and with `mlflow models serve`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

FEATURES = 20


@dataclass
class Trained:
    """A model directory and what the library predicts for `rows`."""

    name: str
    path: str
    rows: pd.DataFrame
    # Library outputs: labels (classifiers) and probabilities, or values (regressors).
    labels: np.ndarray | None
    probabilities: np.ndarray | None
    values: np.ndarray | None


def dataset(seed: int = 7, rows: int = 2000, classes: int = 2, regression: bool = False):
    """A synthetic table of FEATURES columns f0..f19 with a learnable target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    signal = x[:, 0] * 1.5 - x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + np.sin(x[:, 4])
    if regression:
        y = signal + rng.normal(scale=0.1, size=rows)
    else:
        cuts = np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1])
        y = np.digitize(signal, cuts)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
    return frame, y


def _skl2onnx(model, frame: pd.DataFrame, double: bool = False):
    from skl2onnx import to_onnx

    sample = frame.to_numpy(dtype=np.float64 if double else np.float32)[:1]
    return to_onnx(model, sample, target_opset={"": 17, "ai.onnx.ml": 3})


def _onnxmltools(model, kind: str):
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("input", FloatTensorType([None, FEATURES]))]
    convert = convert_lightgbm if kind == "lightgbm" else convert_xgboost
    return convert(model, initial_types=types, target_opset=15)


def _save(onnx_model, directory: str, name: str, rows: pd.DataFrame, outputs) -> str:
    import mlflow.onnx
    from mlflow.models import infer_signature

    path = os.path.join(directory, name)
    signature = infer_signature(rows, outputs)
    mlflow.onnx.save_model(
        onnx_model, path, signature=signature, input_example=rows.head(3), pip_requirements=["onnx", "onnxruntime"]
    )
    return path


def classifier(name, make, classes=2, string_labels=False, export="skl2onnx", nan=False):
    def build(directory: str) -> Trained:
        frame, y = dataset(classes=classes)
        if string_labels:
            y = np.array(["low", "mid", "high", "top"])[y]
        train, test = frame.iloc[:1500], frame.iloc[1500:1700].reset_index(drop=True)
        if nan:
            train = train.mask(np.random.default_rng(1).random(train.shape) < 0.05)
            test = test.mask(np.random.default_rng(2).random(test.shape) < 0.05)
        model = make()
        model.fit(train.to_numpy(np.float32), y[:1500])
        rows32 = test.to_numpy(np.float32)
        labels = model.predict(rows32)
        probabilities = model.predict_proba(rows32)
        onnx_model = _skl2onnx(model, train) if export == "skl2onnx" else _onnxmltools(model, export)
        path = _save(onnx_model, directory, name, test, labels)
        return Trained(name, path, test, np.asarray(labels), probabilities, None)

    return name, build


def regressor(name, make, export="skl2onnx", double=False, nan=False):
    def build(directory: str) -> Trained:
        frame, y = dataset(regression=True)
        train, test = frame.iloc[:1500], frame.iloc[1500:1700].reset_index(drop=True)
        if nan:
            train = train.mask(np.random.default_rng(1).random(train.shape) < 0.05)
            test = test.mask(np.random.default_rng(2).random(test.shape) < 0.05)
        model = make()
        dtype = np.float64 if double else np.float32
        model.fit(train.to_numpy(dtype), y[:1500])
        values = model.predict(test.to_numpy(dtype))
        onnx_model = _skl2onnx(model, train, double) if export == "skl2onnx" else _onnxmltools(model, export)
        path = _save(onnx_model, directory, name, test, values)
        return Trained(name, path, test, None, None, np.asarray(values))

    return name, build


def _sklearn():
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Binarizer, Normalizer, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    return [
        classifier("logistic_binary", lambda: LogisticRegression(max_iter=500)),
        classifier("logistic_multiclass", lambda: LogisticRegression(max_iter=500), classes=3),
        regressor("linear_regression", LinearRegression),
        classifier("scaled_logistic", lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))),
        classifier("normalized_logistic", lambda: make_pipeline(Normalizer(), LogisticRegression(max_iter=500))),
        classifier("binarized_logistic", lambda: make_pipeline(Binarizer(threshold=0.2), LogisticRegression(max_iter=500))),
        regressor("imputed_ridge", lambda: make_pipeline(SimpleImputer(), Ridge()), nan=True),
        classifier("decision_tree_strings", lambda: DecisionTreeClassifier(max_depth=6), classes=4, string_labels=True),
        classifier("random_forest_binary", lambda: RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0)),
        classifier("random_forest_multiclass", lambda: RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0), classes=3),
        regressor("random_forest_regressor", lambda: RandomForestRegressor(n_estimators=30, max_depth=8, random_state=0)),
        regressor("random_forest_regressor_double", lambda: RandomForestRegressor(n_estimators=10, max_depth=8, random_state=0), double=True),
        classifier("gradient_boosting_binary", lambda: GradientBoostingClassifier(n_estimators=50, random_state=0)),
        classifier("gradient_boosting_multiclass", lambda: GradientBoostingClassifier(n_estimators=30, random_state=0), classes=3),
        regressor("gradient_boosting_regressor", lambda: GradientBoostingRegressor(n_estimators=50, random_state=0)),
        classifier("mlp_classifier", lambda: MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, random_state=0)),
        regressor("mlp_regressor", lambda: MLPRegressor(hidden_layer_sizes=(32,), max_iter=300, random_state=0)),
    ]


def _boosters():
    from lightgbm import LGBMClassifier, LGBMRegressor
    from xgboost import XGBClassifier, XGBRegressor

    return [
        classifier("lightgbm_binary", lambda: LGBMClassifier(n_estimators=40, verbose=-1), export="lightgbm", nan=True),
        classifier("lightgbm_multiclass", lambda: LGBMClassifier(n_estimators=20, verbose=-1), classes=3, export="lightgbm"),
        regressor("lightgbm_regressor", lambda: LGBMRegressor(n_estimators=40, verbose=-1), export="lightgbm"),
        classifier("xgboost_binary", lambda: XGBClassifier(n_estimators=40, max_depth=4), export="xgboost"),
        classifier("xgboost_multiclass", lambda: XGBClassifier(n_estimators=20, max_depth=4), classes=3, export="xgboost"),
        regressor("xgboost_regressor", lambda: XGBRegressor(n_estimators=40, max_depth=4), export="xgboost"),
    ]


def torch_style_mlp(name):
    """The graph `torch.onnx.export` writes for nn.Sequential(Linear(20, 16), ReLU(),
    Linear(16, 1), Sigmoid()) with a dynamic batch axis: Gemm (transB=1), Relu, Gemm, Sigmoid.
    PyTorch itself is not in the test venv (a 2 GB wheel); the same forward pass in float32
    numpy gives the expected values."""

    def build(directory: str) -> Trained:
        from onnx import TensorProto, helper, numpy_helper

        frame, _ = dataset()
        test = frame.iloc[1500:1700].reset_index(drop=True)
        rng = np.random.default_rng(3)
        w1 = rng.normal(scale=0.3, size=(16, FEATURES)).astype(np.float32)
        b1 = rng.normal(scale=0.1, size=16).astype(np.float32)
        w2 = rng.normal(scale=0.3, size=(1, 16)).astype(np.float32)
        b2 = rng.normal(scale=0.1, size=1).astype(np.float32)
        nodes = [
            helper.make_node("Gemm", ["input", "0.weight", "0.bias"], ["/0/Gemm_output_0"], transB=1),
            helper.make_node("Relu", ["/0/Gemm_output_0"], ["/1/Relu_output_0"]),
            helper.make_node("Gemm", ["/1/Relu_output_0", "2.weight", "2.bias"], ["/2/Gemm_output_0"], transB=1),
            helper.make_node("Sigmoid", ["/2/Gemm_output_0"], ["output"]),
        ]
        weights = {"0.weight": w1, "0.bias": b1, "2.weight": w2, "2.bias": b2}
        graph = helper.make_graph(
            nodes,
            "main_graph",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", FEATURES])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch_size", 1])],
            initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
        x = test.to_numpy(np.float32)
        hidden = np.maximum(x @ w1.T + b1, 0)
        values = 1 / (1 + np.exp(-(hidden @ w2.T + b2)))
        path = _save(model, directory, name, test, values)
        return Trained(name, path, test, None, None, values.reshape(-1))

    return name, build


def catalogue() -> list[tuple[str, Callable[[str], Trained]]]:
    """Every model family the serving tests cover, by name."""
    return _sklearn() + _boosters() + [torch_style_mlp("torch_style_mlp")]


def build(name: str, directory: str) -> Trained:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(catalogue())[name](directory)
