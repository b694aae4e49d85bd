/* add_sub: output_numbers = input_numbers + add - sub (FP32), params "add" and "sub" (default 0) and "dims" (the
 * shape of both tensors, default "1,0": 0 is any size). A second output, "counters" INT64 [1,3], holds this node's
 * buffers handed out, released and released wrongly before the call; pipelines need not connect it. Built with
 * -DADD_SUB_EXTRA=<n>, it adds n more (a changed build of the same library, for the reload tests). */
#include "tracking.h"

#ifndef ADD_SUB_EXTRA
#define ADD_SUB_EXTRA 0
#endif

typedef struct {
    float add, sub;
    int dimsCount;
    uint64_t dims[8];
} add_sub_state;

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) {
    track_manager* m = track_create(params, paramsCount);
    add_sub_state* state = (add_sub_state*)calloc(1, sizeof(add_sub_state));
    if (!m || !state) return 1;
    state->add = strtof(track_param(params, paramsCount, "add", "0"), NULL);
    state->sub = strtof(track_param(params, paramsCount, "sub", "0"), NULL);
    state->dimsCount = track_parse_dims(track_param(params, paramsCount, "dims", "1,0"), state->dims, 8);
    m->extra = state;
    *manager = m;
    return 0;
}

int deinitialize(void* manager) {
    track_manager* m = (track_manager*)manager;
    free(m->extra);
    track_destroy(m);
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* manager) {
    track_manager* m = (track_manager*)manager;
    add_sub_state* state = (add_sub_state*)m->extra;
    *info = track_infos(m, 1);
    track_info(m, &(*info)[0], "input_numbers", state->dimsCount, state->dims, FP32);
    *infoCount = 1;
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* manager) {
    track_manager* m = (track_manager*)manager;
    add_sub_state* state = (add_sub_state*)m->extra;
    static const uint64_t counters[] = {1, 3};
    *info = track_infos(m, 2);
    track_info(m, &(*info)[0], "output_numbers", state->dimsCount, state->dims, FP32);
    track_info(m, &(*info)[1], "counters", 2, counters, I64);
    *infoCount = 2;
    return 0;
}

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    track_manager* m = (track_manager*)manager;
    add_sub_state* state = (add_sub_state*)m->extra;
    long before[3] = {__atomic_load_n(&m->handed, __ATOMIC_SEQ_CST), __atomic_load_n(&m->released, __ATOMIC_SEQ_CST),
                      __atomic_load_n(&m->bad, __ATOMIC_SEQ_CST)};
    __atomic_add_fetch(&m->executes, 1, __ATOMIC_SEQ_CST);
    const struct CustomNodeTensor* in = track_input(inputs, inputsCount, "input_numbers");
    if (!in || in->precision != FP32) return 1;
    uint64_t count = in->dataBytes / sizeof(float);
    struct CustomNodeTensor* out = (struct CustomNodeTensor*)track_alloc(m, 2 * sizeof(struct CustomNodeTensor));
    if (!out) return 2;
    static const uint64_t counters_dims[] = {1, 3};
    if (track_output(m, &out[0], "output_numbers", (int)in->dimsCount, in->dims, FP32, in->dataBytes) ||
        track_output(m, &out[1], "counters", 2, counters_dims, I64, 3 * sizeof(int64_t))) {
        return 3;
    }
    const float* x = (const float*)in->data;
    float* y = (float*)out[0].data;
    for (uint64_t i = 0; i < count; i++) y[i] = x[i] + state->add - state->sub + ADD_SUB_EXTRA;
    int64_t* c = (int64_t*)out[1].data;
    for (int i = 0; i < 3; i++) c[i] = before[i];
    *outputs = out;
    *outputsCount = 2;
    return 0;
}

int release(void* ptr, void* manager) { return track_release(ptr, manager); }
