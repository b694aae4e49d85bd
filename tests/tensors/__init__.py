"""Unit tests of pyovms/tensors/: datatypes, shapes, validation and the Python nodes' Tensor, without a server."""
