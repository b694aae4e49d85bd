"""The front ends: each translates its wire protocol to and from the core `Server` (pyovms/core.py), nothing else.

- `grpc/`: `inference.GRPCInferenceService` on grpc.aio, with health and reflection;
- `rest/`: KServe v2 over HTTP (JSON and the binary tensor extension) on aiohttp, and `/metrics`;
- `access.py`: who may call what (API groups, restricted protocols, the API key), checked the same way by both;
- `transport.py`: TLS and CORS settings of the ports.

They may import the core, the request and tensor types (`pyovms.tensors`), the statistics types, `errors` and the
generated gRPC code; never a servable, the control layer or the wiring (`server.py`, `settings.py`). The Python API
(`pyovms.serve`, `in_process.py`) is the third front end; it stays beside the wiring because it also starts the
server it calls.
"""
