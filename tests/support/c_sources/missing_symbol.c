/* missing_symbol: everything of the interface but release(), so the server must refuse to load it. */
#include "custom_node_api.h"

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) { return 0; }
int deinitialize(void* manager) { return 0; }
int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    return 1;
}
int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* manager) {
    return 1;
}
int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* manager) {
    return 1;
}
