"""Tensors and the requests that carry them: the vocabulary every layer above speaks.

- `messages.py`: the protocol-neutral request, response and metadata types front ends build and read;
- `datatypes.py`: the KServe datatype table, raw bytes <-> numpy, typed contents -> numpy, BYTES framing;
- `shapes.py`: dimensions (`10`, `-1`, `1:8`) and their texts;
- `validation.py`: a request's inputs checked against a servable's specs in OVMS's order, numpy views out;
- `images.py`: binary image inputs (JPEG/PNG) decoded into the model's layout;
- `shared_memory.py`: the system shared memory extension's regions, inputs read from and outputs written to them;
- `node_tensor.py`: `pyovms.Tensor`, the buffer type Python nodes receive and return.

It imports only observability (statistics types in the messages) and errors.
"""
