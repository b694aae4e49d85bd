import numpy as np
import tritonclient.grpc as grpcclient


def test_dummy_infer(client):
    tensor = grpcclient.InferInput("b", [1, 10], "FP32")
    tensor.set_data_from_numpy(np.arange(10, dtype=np.float32).reshape(1, 10))
    result = client.infer("dummy", [tensor])
    np.testing.assert_array_equal(result.as_numpy("a"), np.arange(1, 11, dtype=np.float32).reshape(1, 10))
