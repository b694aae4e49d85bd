/* demultiplexer: "tiles" FP32 [n, 1, N] holds n copies of "in" FP32 [1, N], the i-th plus i. n is the param
 * "count", or, when "count" is "input", the first value of "in" (0 gives no branch at all). Declared dims are 0
 * (any size) where they vary, as a dynamic demultiplexer's are. */
#include "tracking.h"

TRACK_PLAIN_LIFECYCLE

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 0};
    return track_declare_one((track_manager*)manager, info, infoCount, "in", 2, dims);
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* manager) {
    static const uint64_t dims[] = {0, 1, 0};
    return track_declare_one((track_manager*)manager, info, infoCount, "tiles", 3, dims);
}

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    track_manager* m = (track_manager*)manager;
    __atomic_add_fetch(&m->executes, 1, __ATOMIC_SEQ_CST);
    const struct CustomNodeTensor* in = track_input(inputs, inputsCount, "in");
    if (!in || in->precision != FP32 || in->dimsCount != 2) return 1;
    const float* x = (const float*)in->data;
    uint64_t width = in->dims[1];
    const char* count_text = track_param(params, paramsCount, "count", "1");
    long n = strcmp(count_text, "input") == 0 ? (long)x[0] : strtol(count_text, NULL, 10);
    if (n < 0) return 2;
    struct CustomNodeTensor* out = (struct CustomNodeTensor*)track_alloc(m, sizeof(struct CustomNodeTensor));
    if (!out) return 3;
    uint64_t dims[] = {(uint64_t)n, 1, width};
    if (track_output(m, &out[0], "tiles", 3, dims, FP32, (uint64_t)n * width * sizeof(float))) return 4;
    float* y = (float*)out[0].data;
    for (long i = 0; i < n; i++) {
        for (uint64_t j = 0; j < width; j++) y[(uint64_t)i * width + j] = x[j] + (float)i;
    }
    *outputs = out;
    *outputsCount = 1;
    return 0;
}
