"""The library versions of the SageMaker framework images cloudserve's reference tests pin.

Sources (the images' own build files): aws/sagemaker-scikit-learn-container branch ``1.2-1``
``requirements.txt`` (scikit-learn 1.2.1, numpy 1.24.1, pandas 1.1.3, sagemaker-inference 1.2.0)
and ``docker/1.2-1/base/Dockerfile.cpu`` (Python 3.9); aws/sagemaker-xgboost-container branch
``1.7-1`` ``requirements.txt`` (numpy 1.24.1, pandas 1.2.4, scikit-learn 0.24.1,
sagemaker-inference 1.5.5) and ``docker/1.7-1/base/Dockerfile.cpu`` (xgboost 1.7.4, Python 3.9).

This machine has Python 3.11 only. Where an image's exact version has no cp311 wheel, the venv
takes the oldest release that has one, named here: pandas 1.5.3 (for 1.1.3 / 1.2.4),
scikit-learn 1.2.1 in the xgboost venv (for 0.24.1, only used by XGBClassifier's wrapper), scipy
1.10.1 (for 1.8.0). The handler's own syntax is checked against Python 3.8 separately.
"""

from __future__ import annotations

IMAGES: dict[str, list[str]] = {
    "sagemaker-sklearn-1.2-1": [
        "scikit-learn==1.2.1",
        "numpy==1.24.1",
        "scipy==1.10.1",
        "pandas==1.5.3",
        "joblib==1.2.0",
        "sagemaker-inference==1.2.0",
    ],
    "sagemaker-xgboost-1.7-1": [
        "xgboost==1.7.4",
        "numpy==1.24.1",
        "scipy==1.10.1",
        "pandas==1.5.3",
        "scikit-learn==1.2.1",
        "sagemaker-inference==1.5.5",
    ],
}

# Wheels only for the compiled libraries, so a venv never builds numpy or pandas from source.
PIP_ARGS = ["--only-binary=numpy,scipy,pandas,scikit-learn,xgboost"]
