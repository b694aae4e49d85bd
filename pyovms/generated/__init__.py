"""Code generated from proto/ by scripts/generate_protos.py. Do not edit.

`grpc_predict_v2_pb2*`: KServe v2 messages and the gRPC service (front ends, tests and the Python client helpers);
`mediapipe_graph_pb2`: the graph.pbtxt schema (graphs).
"""
