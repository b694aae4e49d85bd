"""OVMS's C custom node interface (`custom_node_interface.h`), declared for ctypes.

These are our own declarations of the ABI that OVMS's compiled custom node libraries implement: the precision enum,
the three structs and the six functions, each returning 0 on success. A library built against OVMS's header loads
here unchanged. Nothing in this module calls into a library; `c_library.py` does.
"""

from __future__ import annotations

import ctypes

import numpy as np

from ..tensors import datatypes

# enum CustomNodeTensorPrecision, in the header's order (the values are their positions).
UNSPECIFIED, FP32, FP16, U8, I8, I16, U16, I32, FP64, I64 = range(10)

PRECISION_DATATYPES: dict[int, str] = {
    FP32: "FP32",
    FP16: "FP16",
    U8: "UINT8",
    I8: "INT8",
    I16: "INT16",
    U16: "UINT16",
    I32: "INT32",
    FP64: "FP64",
    I64: "INT64",
}
"""The KServe datatype of each precision a library may declare or produce (UNSPECIFIED has none)."""

PRECISION_DTYPES: dict[int, np.dtype] = {
    precision: datatypes.DATATYPES[datatype].dtype  # type: ignore[misc]
    for precision, datatype in PRECISION_DATATYPES.items()
}
"""The numpy dtype (little-endian) of each precision's elements."""

DTYPE_PRECISIONS = {dtype.str: precision for precision, dtype in PRECISION_DTYPES.items()}
"""The precision a numpy array of each dtype (`dtype.str`) is passed to a library with."""

MAX_DIMS = 64
"""More dimensions than numpy holds: a `dimsCount` beyond this is a corrupted shape, never read."""


class CustomNodeTensor(ctypes.Structure):
    """`struct CustomNodeTensor`: a tensor passed to `execute` or returned from it."""

    _fields_ = (
        ("name", ctypes.c_char_p),
        ("data", ctypes.c_void_p),
        ("dataBytes", ctypes.c_uint64),
        ("dims", ctypes.POINTER(ctypes.c_uint64)),
        ("dimsCount", ctypes.c_uint64),
        ("precision", ctypes.c_int),
    )


class CustomNodeTensorInfo(ctypes.Structure):
    """`struct CustomNodeTensorInfo`: an input or output as `getInputsInfo`/`getOutputsInfo` declare it; a
    dimension of 0 is any size."""

    _fields_ = (
        ("name", ctypes.c_char_p),
        ("dims", ctypes.POINTER(ctypes.c_uint64)),
        ("dimsCount", ctypes.c_uint64),
        ("precision", ctypes.c_int),
    )


class CustomNodeParam(ctypes.Structure):
    """`struct CustomNodeParam`: one of the node's `params` (key and value, NUL-terminated)."""

    _fields_ = (("key", ctypes.c_char_p), ("value", ctypes.c_char_p))


_c_int_p = ctypes.POINTER(ctypes.c_int)
_params_p = ctypes.POINTER(CustomNodeParam)

SIGNATURES: dict[str, tuple[type, ...]] = {
    # int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount)
    "initialize": (ctypes.POINTER(ctypes.c_void_p), _params_p, ctypes.c_int),
    # int deinitialize(void* manager)
    "deinitialize": (ctypes.c_void_p,),
    # int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
    #             int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* manager)
    "execute": (
        ctypes.POINTER(CustomNodeTensor),
        ctypes.c_int,
        ctypes.POINTER(ctypes.POINTER(CustomNodeTensor)),
        _c_int_p,
        _params_p,
        ctypes.c_int,
        ctypes.c_void_p,
    ),
    # int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
    #                   int paramsCount, void* manager); getOutputsInfo the same
    "getInputsInfo": (
        ctypes.POINTER(ctypes.POINTER(CustomNodeTensorInfo)),
        _c_int_p,
        _params_p,
        ctypes.c_int,
        ctypes.c_void_p,
    ),
    "getOutputsInfo": (
        ctypes.POINTER(ctypes.POINTER(CustomNodeTensorInfo)),
        _c_int_p,
        _params_p,
        ctypes.c_int,
        ctypes.c_void_p,
    ),
    # int release(void* ptr, void* manager)
    "release": (ctypes.c_void_p, ctypes.c_void_p),
}
"""The six functions a library must export, in the order OVMS looks them up, with their argument types (all
return int)."""
