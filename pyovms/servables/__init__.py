"""What answers ModelInfer: the backends behind the `Servable` interface (pyovms/repository/servable.py).

- `openvino_model.py`: one version of a model compiled by OpenVINO (IR, ONNX and the other front ends), its
  layout and shape handling, metadata and output reading;
- `pipelines/`: DAG pipelines of models and custom nodes (`pipeline_config_list`);
- `graphs/`: MediaPipe-style graphs (`mediapipe_config_list`), unary and streaming.

Servables may import the repository (pipelines and graphs look up the models they call), custom nodes, scheduling,
tensors, observability and errors; never the control layer, the core, the front ends or the wiring.
"""
