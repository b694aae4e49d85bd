/* add_one: a C custom node (OVMS's ABI, docs/custom_nodes.md). "out" = "in" + value, FP32 of any shape of rank 2;
 * the param "value" defaults to 1. Build:
 *   cc -shared -fPIC -O2 -I examples/custom_nodes -o libadd_one.so examples/custom_nodes/add_one.c */
#include <stdlib.h>
#include <string.h>

#include "custom_node_api.h"

typedef struct {
    float value;
} add_one_state;

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) {
    add_one_state* state = malloc(sizeof *state);
    if (!state) return 1;
    state->value = 1.0f;
    for (int i = 0; i < paramsCount; i++) {
        if (strcmp(params[i].key, "value") == 0) state->value = strtof(params[i].value, NULL);
    }
    *manager = state;
    return 0;
}

int deinitialize(void* manager) {
    free(manager);
    return 0;
}

/* One FP32 tensor of rank 2, any size (0), named `name`: the info array and its dims, both released by the server. */
static int describe(struct CustomNodeTensorInfo** info, int* infoCount, const char* name) {
    *info = malloc(sizeof **info);
    if (!*info) return 1;
    (*info)->name = name;
    (*info)->dimsCount = 2;
    (*info)->dims = calloc(2, sizeof(uint64_t)); /* {0, 0}: any size */
    (*info)->precision = FP32;
    *infoCount = 1;
    return (*info)->dims ? 0 : 1;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* manager) {
    return describe(info, infoCount, "in");
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* manager) {
    return describe(info, infoCount, "out");
}

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    if (inputsCount != 1 || inputs[0].precision != FP32 || inputs[0].dimsCount != 2) return 1;
    const struct CustomNodeTensor* in = &inputs[0];
    struct CustomNodeTensor* out = malloc(sizeof *out);
    uint64_t* dims = malloc(2 * sizeof(uint64_t));
    float* data = malloc(in->dataBytes ? in->dataBytes : 1);
    if (!out || !dims || !data) {
        free(out);
        free(dims);
        free(data);
        return 2;
    }
    memcpy(dims, in->dims, 2 * sizeof(uint64_t));
    const float* x = (const float*)in->data;
    float value = ((add_one_state*)manager)->value;
    for (uint64_t i = 0; i < in->dataBytes / sizeof(float); i++) data[i] = x[i] + value;
    out->name = "out";
    out->data = (uint8_t*)data;
    out->dataBytes = in->dataBytes;
    out->dims = dims;
    out->dimsCount = 2;
    out->precision = FP32;
    *outputs = out;
    *outputsCount = 1;
    return 0;
}

int release(void* ptr, void* manager) {
    free(ptr);
    return 0;
}
