"""Binary image inputs (spec §3.1-§3.2 and the image rows of §2.4): JPEG and PNG files made by OpenCV here, sent
as BYTES over gRPC (bytes_contents and length-prefixed raw) and REST (binary extension). Identity-like models
return the pixels they received, which are compared with OpenCV's own decode (and resize)."""

from __future__ import annotations

import json
import struct

import cv2
import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2

from pyovms.tensors.images import declared_size

from ..support import models
from ..support.server_process import serve_config

H, W = 8, 6


def _image(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """A smooth BGR(A) test picture (gradients plus noise), uint8."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    planes = [(ys * 255 // max(height - 1, 1)), (xs * 255 // max(width - 1, 1)), ((ys + xs) * 7) % 256, ys * 0 + 200]
    picture = np.stack(planes[:channels], axis=-1).astype(np.int32) + rng.integers(-20, 20, (height, width, channels))
    picture = np.clip(picture, 0, 255).astype(np.uint8)
    return picture[:, :, 0] if channels == 1 else picture


def _encode(picture: np.ndarray, ext: str = ".png") -> bytes:
    ok, data = cv2.imencode(ext, picture)
    assert ok
    return data.tobytes()


def _opencv(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    """What the model should receive: OpenCV's unchanged decode, resized (bilinear) to (height, width)."""
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if size is not None and picture.shape[:2] != size:
        picture = cv2.resize(picture, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return picture if picture.ndim == 3 else picture[:, :, np.newaxis]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    entries = []

    def serve(name: str, base: str, **options) -> None:
        entries.append({"config": {"name": name, "base_path": base, **options}})

    models.build_relu(root / "nhwc" / "1" / "model.xml", [1, H, W, 3])
    serve("nhwc", "nhwc", layout="NHWC")
    serve("n_dots", "nhwc", layout="N...")
    models.build_relu(root / "nchw" / "1" / "model.xml", [1, 3, H, W])
    serve("nchw_to_nhwc", "nchw", layout="NHWC:NCHW")
    serve("nchw", "nchw", layout="NCHW")
    models.build_relu(root / "any" / "1" / "model.xml", [-1, -1, -1, 3])
    serve("any_dims", "any")
    serve("ranged", "nhwc", layout="NHWC", shape="(1,4:16,4:16,3)")
    models.build_relu(root / "gray" / "1" / "model.xml", [1, H, W, 1])
    serve("gray", "gray", layout="NHWC")
    models.build_relu(root / "rgba" / "1" / "model.xml", [1, H, W, 4])
    serve("rgba", "rgba", layout="NHWC")
    models.build_relu(root / "batch2" / "1" / "model.xml", [2, H, W, 3])
    serve("batch2", "batch2", layout="NHWC")
    for name, ov_type in (("as_u8", models.OV_TYPES["UINT8"]), ("as_fp16", models.OV_TYPES["FP16"]),
                          ("as_i64", models.OV_TYPES["INT64"])):  # fmt: skip
        models.build_to_fp32(root / name / "1" / "model.xml", [1, H, W, 3], ov_type)
        serve(name, name, layout="NHWC")
    process = serve_config(root, {"model_config_list": entries})
    yield process
    process.stop()


def _grpc_raw(client, model: str, files: list[bytes], shape: list[int] | None = None) -> np.ndarray:
    """tritonclient sends BYTES as length-prefixed raw_input_contents."""
    tensor = grpcclient.InferInput("x", shape or [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
    return client.infer(model, [tensor]).as_numpy("y")


def _grpc_contents(server, model: str, files: list[bytes], shape: list[int] | None = None):
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype="BYTES", shape=shape or [len(files)])
    tensor.contents.bytes_contents.extend(files)
    response = server.stub.ModelInfer(request, timeout=30)
    output = response.outputs[0]
    return np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(list(output.shape))


def _error(server, model: str, files: list[bytes], shape: list[int] | None = None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _grpc_contents(server, model, files, shape)
    return info.value


# ---------------------------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_colour_image_at_model_size(server, client, ext):
    data = _encode(_image(H, W, 3), ext)
    expected = _opencv(data)[np.newaxis].astype(np.float32)
    np.testing.assert_array_equal(_grpc_raw(client, "nhwc", [data]), expected)
    np.testing.assert_array_equal(_grpc_contents(server, "nhwc", [data]), expected)


def test_larger_image_is_resized_bilinear(client):
    data = _encode(_image(32, 20, 3), ".jpg")
    expected = _opencv(data, (H, W))[np.newaxis].astype(np.float32)
    np.testing.assert_array_equal(_grpc_raw(client, "nhwc", [data]), expected)


def test_nchw_model_behind_nhwc_layout(client):
    data = _encode(_image(H, W, 3))
    got = _grpc_raw(client, "nchw_to_nhwc", [data])
    assert got.shape == (1, 3, H, W)  # the model's own NCHW output
    np.testing.assert_array_equal(got.transpose(0, 2, 3, 1), _opencv(data)[np.newaxis].astype(np.float32))


def test_grayscale_and_rgba_keep_their_channels(client):
    gray = _encode(_image(H, W, 1))
    np.testing.assert_array_equal(_grpc_raw(client, "gray", [gray]), _opencv(gray)[np.newaxis].astype(np.float32))
    rgba = _encode(_image(H, W, 4))
    assert _opencv(rgba).shape == (H, W, 4)
    np.testing.assert_array_equal(_grpc_raw(client, "rgba", [rgba]), _opencv(rgba)[np.newaxis].astype(np.float32))


def test_batch_of_mixed_sizes_is_resized_when_allowed(client):
    files = [_encode(_image(16, 16, 3, seed=1)), _encode(_image(5, 9, 3, seed=2), ".jpg")]
    expected = np.stack([_opencv(f, (H, W)) for f in files]).astype(np.float32)
    np.testing.assert_array_equal(_grpc_raw(client, "batch2", files), expected)


def test_any_dimensions_take_the_images_size(client):
    files = [_encode(_image(5, 7, 3, seed=s)) for s in (1, 2)]
    got = _grpc_raw(client, "any_dims", files)
    assert got.shape == (2, 5, 7, 3)
    np.testing.assert_array_equal(got, np.stack([_opencv(f) for f in files]).astype(np.float32))


@pytest.mark.parametrize(("size", "target"), [((2, 3), (4, 4)), ((20, 30), (16, 16)), ((10, 12), (10, 12))])
def test_range_dimensions_clamp_the_size(client, size, target):
    data = _encode(_image(*size, 3))
    got = _grpc_raw(client, "ranged", [data])
    assert got.shape == (1, *target, 3)
    np.testing.assert_array_equal(got, _opencv(data, target)[np.newaxis].astype(np.float32))


@pytest.mark.parametrize("model", ["as_u8", "as_fp16"])
def test_pixels_are_converted_unscaled_to_the_model_precision(client, model):
    data = _encode(_image(H, W, 3))
    np.testing.assert_array_equal(_grpc_raw(client, model, [data]), _opencv(data)[np.newaxis].astype(np.float32))


def test_rest_binary_extension(server):
    data = _encode(_image(H, W, 3), ".jpg")
    rest = httpclient.InferenceServerClient(server.rest_address)
    try:
        tensor = httpclient.InferInput("x", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([data], dtype=np.object_), binary_data=True)
        got = rest.infer("nhwc", [tensor]).as_numpy("y")
    finally:
        rest.close()
    np.testing.assert_array_equal(got, _opencv(data)[np.newaxis].astype(np.float32))


# ---------------------------------------------------------------------------------------------- errors


def _huge_png() -> bytes:
    data = bytearray(_encode(_image(H, W, 3)))
    data[16:24] = struct.pack(">II", 100_000, 100_000)  # IHDR width and height
    return bytes(data)


@pytest.mark.parametrize(
    ("model", "files", "shape", "message"),
    [
        ("nhwc", [b"not an image at all"], None, "Image parsing failed - OpenCV cannot decode image 0 (19 bytes)"),
        ("nhwc", [_huge_png()], None, "Image parsing failed - image 0 declares 100000x100000x3, more than the "
         "1073741824 bytes allowed (--max_image_decoded_bytes)"),
        ("nhwc", [b""], None, "Bytes contents is empty - image 0"),
        ("nhwc", [_encode(_image(H, W, 1))], None, "Invalid number of channels in binary input - Expected: 3; Actual: 1"),
        ("gray", [_encode(_image(H, W, 3))], None, "Invalid number of channels in binary input - Expected: 1; Actual: 3"),
        ("nchw", [_encode(_image(H, W, 3))], None,
         "Received binary image input but resource not configured to accept NHWC layout - endpoint layout: [N,C,H,W]"),
        ("nhwc", [_encode(_image(H, W, 3))], [1, 1], "Invalid number of shape dimensions - Expected number of input "
         "shape dimensions: 1; Actual: 2"),
        ("nhwc", [_encode(_image(H, W, 3))], [2], "Invalid input batch size - Expected: 2 images; Actual: 1"),
        ("nhwc", [_encode(_image(H, W, 3))] * 2, None, "Invalid input batch size - Expected: 1; Actual: 2"),
        ("any_dims", [_encode(_image(5, 5, 3)), _encode(_image(6, 5, 3))], None,
         "Binary input images for this endpoint are required to have the same resolution - first: 5x5; other: 5x6"),
        ("n_dots", [_encode(_image(H + 1, W, 3))], None, "Invalid input shape - Expected: (1,8,6,3); Actual: (1,9,6,3)"),
        ("as_i64", [_encode(_image(H, W, 3))], None, "Invalid input precision - Expected: one of FP16, FP32, FP64, "
         "INT16, INT32, INT8, UINT16, UINT8 for binary images; Actual: INT64"),
    ],
)  # fmt: skip
def test_image_errors(server, client, model, files, shape, message):
    error = _error(server, model, files, shape)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(message), error.details()
    assert error.details().endswith("input name: x")
    good = _encode(_image(H, W, 3))  # the next request is served
    np.testing.assert_array_equal(_grpc_raw(client, "nhwc", [good]), _opencv(good)[np.newaxis].astype(np.float32))


def test_broken_raw_framing(server):
    request = service_pb2.ModelInferRequest(model_name="nhwc")
    request.inputs.add(name="x", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(struct.pack("<I", 500) + b"short")
    with pytest.raises(grpc.RpcError) as info:
        server.stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "Image parsing failed - raw buffer framing is broken; input name: x"


def test_rest_errors_are_400(server):
    import http.client

    header = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES"}]}).encode()
    body = header + struct.pack("<I", 5) + b"bogus"
    connection = http.client.HTTPConnection(server.rest_address, timeout=30)
    connection.request("POST", "/v2/models/nhwc/infer", body, {"Inference-Header-Content-Length": str(len(header))})
    response = connection.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["error"].startswith("Image parsing failed - OpenCV cannot decode image 0")
    connection.close()


# ---------------------------------------------------------------------------------------------- headers


def test_declared_size_reads_png_and_jpeg_headers():
    assert declared_size(_encode(_image(7, 5, 3), ".png")) == (5, 7, 3)
    assert declared_size(_encode(_image(7, 5, 4), ".png")) == (5, 7, 4)
    assert declared_size(_encode(_image(7, 5, 1), ".png")) == (5, 7, 1)
    assert declared_size(_encode(_image(30, 40, 3), ".jpg")) == (40, 30, 3)
    assert declared_size(_encode(_image(30, 40, 1), ".jpg")) == (40, 30, 1)
    assert declared_size(_encode(_image(8, 8, 3), ".bmp")) is None
    assert declared_size(b"\xff\xd8\xff") is None
