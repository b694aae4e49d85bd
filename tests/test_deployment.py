"""The deployment files: the KServe manifests parse and carry what KServe and Kubernetes need; the Dockerfile runs
as a non-root user and installs the package."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_serving_runtime():
    runtime = yaml.safe_load((ROOT / "deploy" / "kserve" / "servingruntime.yaml").read_text())
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ServingRuntime")
    spec = runtime["spec"]
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    assert {f["name"] for f in spec["supportedModelFormats"]} == {"openvino", "onnx"}
    (container,) = spec["containers"]
    assert {(p["containerPort"], p["name"]) for p in container["ports"]} == {(9000, "h2c"), (8080, "http1")}
    assert "--model_path=/mnt/models" in container["args"]
    assert {"--port=9000", "--rest_port=8080"} <= set(container["args"])
    assert container["readinessProbe"]["grpc"]["port"] == 9000
    assert container["livenessProbe"]["grpc"]["port"] == 9000
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_runtime_arguments_are_accepted_by_the_command():
    from pyovms.cli import parse_settings

    runtime = yaml.safe_load((ROOT / "deploy" / "kserve" / "servingruntime.yaml").read_text())
    args = [a.replace("{{.Name}}", "resnet") for a in runtime["spec"]["containers"][0]["args"]]
    settings = parse_settings(args)
    assert (settings.port, settings.rest_port, settings.metrics_enable) == (9000, 8080, True)
    assert settings.shutdown_grace_s == 20


def test_inference_service():
    service = yaml.safe_load((ROOT / "deploy" / "kserve" / "inferenceservice.yaml").read_text())
    model = service["spec"]["predictor"]["model"]
    assert (model["runtime"], model["modelFormat"]["name"], model["protocolVersion"]) == (
        "kserve-pyovms", "openvino", "grpc-v2",
    )  # fmt: skip


def test_dockerfile_runs_as_a_non_root_user():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    assert "USER 5000" in lines
    assert any(line.startswith("RUN pip install .") for line in lines)
    assert 'ENTRYPOINT ["pyovms"]' in lines
