/* The C custom node interface that pyovms loads: OVMS's ABI, in pyovms's own declarations. A library built against
 * this header or against OVMS's custom_node_interface.h has the same layout and symbols, and runs on either server.
 * Every function returns 0 on success; every buffer a library hands out comes back through release(). */
#ifndef PYOVMS_TEST_CUSTOM_NODE_API_H
#define PYOVMS_TEST_CUSTOM_NODE_API_H

#include <stdint.h>

typedef enum {
    UNSPECIFIED, FP32, FP16, U8, I8, I16, U16, I32, FP64, I64
} CustomNodeTensorPrecision;

struct CustomNodeTensor {
    const char* name;
    uint8_t* data;
    uint64_t dataBytes;
    uint64_t* dims;
    uint64_t dimsCount;
    CustomNodeTensorPrecision precision;
};

struct CustomNodeTensorInfo {
    const char* name;
    uint64_t* dims;
    uint64_t dimsCount;
    CustomNodeTensorPrecision precision;
};

struct CustomNodeParam {
    const char* key;
    const char* value;
};

#ifdef __cplusplus
extern "C" {
#endif
int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount);
int deinitialize(void* manager);
int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* manager);
int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* manager);
int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* manager);
int release(void* ptr, void* manager);
#ifdef __cplusplus
}
#endif

#endif
