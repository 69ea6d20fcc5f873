"""The fake refuses what SageMaker refuses, though botocore and moto let it through.

botocore's ParamValidator checks types, required members and minimums; maximums, enums and
patterns are left to the service. Each request below passes botocore and is refused by the fake's
service-model validator with the service's ``ValidationException``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sagemaker_harness import BUCKET, ROLE, start_fake

pytest.importorskip("moto", reason="the fake SageMaker is moto in server mode")

from botocore.exceptions import ClientError

from cloudserve_sagemaker.testing import FakeSageMaker
from cloudserve_sagemaker.testing._validator import java_pattern, validator_for

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeSageMaker]:
    f = start_fake(tmp_path)
    yield f
    f.stop()


def refused(call: Any, **params: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**params)
    error = info.value.response["Error"]
    assert error["Code"] in ("ValidationException", "ValidationError")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(error["Message"])


def variant(**extra: Any) -> dict[str, Any]:
    return {"VariantName": "v1", "ModelName": "m", **extra}


def test_serverless_max_concurrency_over_200(fake: FakeSageMaker) -> None:
    sm = fake.client("sagemaker")
    text = refused(
        sm.create_endpoint_config,
        EndpointConfigName="c1",
        ProductionVariants=[
            variant(ServerlessConfig={"MemorySizeInMB": 2048, "MaxConcurrency": 500})
        ],
    )
    assert text == (
        "1 validation error detected: Value '500' at "
        "'productionVariants.1.member.serverlessConfig.maxConcurrency' failed to satisfy "
        "constraint: Member must have value less than or equal to 200"
    )
    assert [r.operation for r in fake.rejected()] == ["CreateEndpointConfig"]
    assert sm.list_endpoint_configs()["EndpointConfigs"] == [], "moto never saw it"


def test_endpoint_config_name_over_63(fake: FakeSageMaker) -> None:
    sm = fake.client("sagemaker")
    text = refused(
        sm.create_endpoint_config,
        EndpointConfigName="c" * 100,
        ProductionVariants=[variant(InstanceType="ml.m5.large", InitialInstanceCount=1)],
    )
    assert "at 'endpointConfigName'" in text
    assert "Member must have length less than or equal to 63" in text


@pytest.mark.parametrize("name", ["churn_v1", "churn-", "-churn", "churn.v1", "çhurn"])
def test_names_breaking_the_pattern(fake: FakeSageMaker, name: str) -> None:
    text = refused(
        fake.client("sagemaker").create_endpoint, EndpointName=name, EndpointConfigName="c"
    )
    assert (
        "at 'endpointName' failed to satisfy constraint: Member must satisfy regular expression"
        in text
    )


def test_metadata_value_over_256_and_json_text(fake: FakeSageMaker) -> None:
    sm = fake.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName="g")
    inference = {
        "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/m.tar.gz"}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["application/json"],
    }
    text = refused(
        sm.create_model_package,
        ModelPackageGroupName="g",
        InferenceSpecification=inference,
        CustomerMetadataProperties={"lineage:notes": "x" * 300},
    )
    assert (
        "Map value must satisfy constraint: [Member must have length less than or equal to 256]"
        in text
    )
    text = refused(
        sm.create_model_package,
        ModelPackageGroupName="g",
        InferenceSpecification=inference,
        CustomerMetadataProperties={"lineage:params": '{"C": 1.0}'},
    )
    assert "Member must satisfy regular expression pattern" in text


def tuning(**config: Any) -> dict[str, Any]:
    return {
        "HyperParameterTuningJobName": "t1",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "auc"},
            **config,
        },
        "TrainingJobDefinition": {
            "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            "RoleArn": ROLE,
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/out"},
            "ResourceConfig": {
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 10,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        },
    }


def test_forty_categorical_values(fake: FakeSageMaker) -> None:
    values = [str(v) for v in range(1, 41)]
    ranges = {"CategoricalParameterRanges": [{"Name": "depth", "Values": values}]}
    text = refused(
        fake.client("sagemaker").create_hyper_parameter_tuning_job,
        **tuning(ParameterRanges=ranges),
    )
    assert "parameterRanges.categoricalParameterRanges.1.member.values" in text
    assert "Member must have length less than or equal to 30" in text


def test_strategy_outside_the_enum(fake: FakeSageMaker) -> None:
    text = refused(
        fake.client("sagemaker").create_hyper_parameter_tuning_job,
        **tuning(Strategy="NotAStrategy"),
    )
    assert "Value 'NotAStrategy' at 'hyperParameterTuningJobConfig.strategy'" in text
    assert "Member must satisfy enum value set: [" in text and "Bayesian" in text


def test_several_violations_in_one_message(fake: FakeSageMaker) -> None:
    text = refused(
        fake.client("sagemaker").create_hyper_parameter_tuning_job,
        **{**tuning(Strategy="NotAStrategy"), "HyperParameterTuningJobName": "t" * 40},
    )
    assert text.startswith("3 validation errors detected: "), "length, pattern and enum"


def test_runtime_headers_are_checked(fake: FakeSageMaker) -> None:
    runtime = fake.client("sagemaker-runtime")
    text = refused(
        runtime.invoke_endpoint,
        EndpointName="churn",
        Body=b"[[1]]",
        ContentType="application/json",
        TargetVariant="bad_variant",
    )
    assert "at 'targetVariant'" in text


def test_other_services_are_checked(fake: FakeSageMaker) -> None:
    aas = fake.client("application-autoscaling")
    text = refused(
        aas.register_scalable_target,
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/churn/variant/v1",
        ScalableDimension="sagemaker:variant:NotADimension",
        MinCapacity=1,
        MaxCapacity=2,
    )
    assert "at 'scalableDimension'" in text


def test_valid_requests_pass(fake: FakeSageMaker) -> None:
    sm = fake.client("sagemaker")
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(
        EndpointConfigName="c1",
        ProductionVariants=[
            variant(ServerlessConfig={"MemorySizeInMB": 2048, "MaxConcurrency": 200})
        ],
    )
    assert fake.rejected() == []


def test_java_patterns_translate() -> None:
    assert java_pattern(r"[\p{Alnum}\-]+") == r"[a-zA-Z0-9\-]+"
    assert java_pattern(r"\p{Print}+") == r"[ -~]+"
    assert java_pattern(r"\A\S[\p{Print}]*\z") == r"\A\S[ -~]*\Z"
    assert java_pattern(r"[\uD800\uDC00-\uDBFF\uDFFF]") == r"[\U00010000-\U0010FFFF]"
    assert java_pattern(r"[\p{L}\p{Z}]") == r"[\p{L}\p{Z}]", "Unicode classes stay Unicode"


def test_every_pattern_of_the_models_compiles() -> None:
    from cloudserve_sagemaker.testing._validator import _compiled

    for service in ("sagemaker", "sagemaker-runtime", "application-autoscaling", "pricing"):
        model = validator_for(service).model
        for name in model.shape_names:
            pattern = model.shape_for(name).metadata.get("pattern")
            if pattern:
                _compiled(pattern)
