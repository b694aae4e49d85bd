// scale (C++): "out" FP32 = "in" FP32 times the param "factor" (default 2), any shape of rank 2. The node keeps its
// factor in a C++ object and builds its outputs with std::vector before handing them over.
#include <string>
#include <vector>

#include "tracking.h"

namespace {

struct Scale {
    float factor;
};

Scale* scale_of(void* manager) { return static_cast<Scale*>(static_cast<track_manager*>(manager)->extra); }

}  // namespace

extern "C" {

int initialize(void** manager, const CustomNodeParam* params, int paramsCount) {
    track_manager* m = track_create(params, paramsCount);
    if (!m) return 1;
    try {
        m->extra = new Scale{std::stof(std::string(track_param(params, paramsCount, "factor", "2")))};
    } catch (...) {
        track_destroy(m);
        return 2;
    }
    *manager = m;
    return 0;
}

int deinitialize(void* manager) {
    track_manager* m = static_cast<track_manager*>(manager);
    delete scale_of(manager);
    track_destroy(m);
    return 0;
}

const uint64_t ANY_2D[] = {0, 0};

int getInputsInfo(CustomNodeTensorInfo** info, int* infoCount, const CustomNodeParam*, int, void* manager) {
    return track_declare_one(static_cast<track_manager*>(manager), info, infoCount, "in", 2, ANY_2D);
}

int getOutputsInfo(CustomNodeTensorInfo** info, int* infoCount, const CustomNodeParam*, int, void* manager) {
    return track_declare_one(static_cast<track_manager*>(manager), info, infoCount, "out", 2, ANY_2D);
}

int execute(const CustomNodeTensor* inputs, int inputsCount, CustomNodeTensor** outputs, int* outputsCount,
            const CustomNodeParam*, int, void* manager) {
    track_manager* m = static_cast<track_manager*>(manager);
    __atomic_add_fetch(&m->executes, 1, __ATOMIC_SEQ_CST);
    const CustomNodeTensor* in = track_input(inputs, inputsCount, "in");
    if (!in || in->precision != FP32) return 1;
    const float* x = reinterpret_cast<const float*>(in->data);
    std::vector<float> scaled(x, x + in->dataBytes / sizeof(float));
    for (float& value : scaled) value *= scale_of(manager)->factor;
    auto* out = static_cast<CustomNodeTensor*>(track_alloc(m, sizeof(CustomNodeTensor)));
    if (!out || track_output(m, out, "out", static_cast<int>(in->dimsCount), in->dims, FP32, in->dataBytes)) return 2;
    std::copy(scaled.begin(), scaled.end(), reinterpret_cast<float*>(out->data));
    *outputs = out;
    *outputsCount = 1;
    return 0;
}

int release(void* ptr, void* manager) { return track_release(ptr, manager); }

}  // extern "C"
