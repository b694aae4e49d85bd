/* gather_max: "max" FP32 [1, N] is the elementwise maximum over the gathered branches of "in" FP32 [n, 1, N]. */
#include "tracking.h"

TRACK_PLAIN_LIFECYCLE

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* manager) {
    static const uint64_t dims[] = {0, 1, 0};
    return track_declare_one((track_manager*)manager, info, infoCount, "in", 3, dims);
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 0};
    return track_declare_one((track_manager*)manager, info, infoCount, "max", 2, dims);
}

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    track_manager* m = (track_manager*)manager;
    __atomic_add_fetch(&m->executes, 1, __ATOMIC_SEQ_CST);
    const struct CustomNodeTensor* in = track_input(inputs, inputsCount, "in");
    if (!in || in->precision != FP32 || in->dimsCount != 3 || in->dims[0] == 0) return 1;
    uint64_t branches = in->dims[0], width = in->dims[1] * in->dims[2];
    const float* x = (const float*)in->data;
    struct CustomNodeTensor* out = (struct CustomNodeTensor*)track_alloc(m, sizeof(struct CustomNodeTensor));
    if (!out) return 2;
    uint64_t dims[] = {1, width};
    if (track_output(m, &out[0], "max", 2, dims, FP32, width * sizeof(float))) return 3;
    float* y = (float*)out[0].data;
    for (uint64_t j = 0; j < width; j++) {
        float best = x[j];
        for (uint64_t i = 1; i < branches; i++) best = x[i * width + j] > best ? x[i * width + j] : best;
        y[j] = best;
    }
    *outputs = out;
    *outputsCount = 1;
    return 0;
}
