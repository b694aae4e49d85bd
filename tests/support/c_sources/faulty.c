/* faulty: a node that misbehaves as the param "mode" says, to check what the server does with it. With mode "ok"
 * (the default) "out" FP32 [1, N] is a copy of "in" and "address" INT64 [1, 1] holds the address the input data was
 * passed at. Modes: execute_error (returns the param "code", default 42), null_outputs, zero_count, bad_precision,
 * bad_size, no_dims, no_name, missing_output, bad_second (a good output, then one with no precision),
 * wrong_precision (INT32 data where FP32 is declared), init_error,
 * metadata_error, metadata_unspecified, crash (a segmentation fault), and rendezvous: every execution waits until
 * the param "parties" executions (of any node of this library) are inside execute() at once, and fails with 7 if that
 * has not happened within 60 s, so only executions that run in parallel succeed. */
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "tracking.h"

static const char* mode_of(const struct CustomNodeParam* params, int paramsCount) {
    return track_param(params, paramsCount, "mode", "ok");
}

static int is(const char* mode, const char* name) { return strcmp(mode, name) == 0; }

static pthread_mutex_t rendezvous_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rendezvous_met = PTHREAD_COND_INITIALIZER;
static long rendezvous_inside = 0, rendezvous_round = 0;

/* 0 once `parties` calls are waiting here together; 7 after 60 s without that. */
static int rendezvous(long parties) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    pthread_mutex_lock(&rendezvous_lock);
    long round = rendezvous_round;
    if (++rendezvous_inside >= parties) {
        rendezvous_inside = 0;
        rendezvous_round++;
        pthread_cond_broadcast(&rendezvous_met);
    }
    int failed = 0;
    while (round == rendezvous_round && !failed) {
        failed = pthread_cond_timedwait(&rendezvous_met, &rendezvous_lock, &deadline) != 0;
    }
    if (failed && round == rendezvous_round) rendezvous_inside--;
    pthread_mutex_unlock(&rendezvous_lock);
    return failed && round == rendezvous_round ? 7 : 0;
}

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) {
    if (is(mode_of(params, paramsCount), "init_error")) return 3;
    *manager = track_create(params, paramsCount);
    return *manager ? 0 : 1;
}

int deinitialize(void* manager) {
    track_destroy((track_manager*)manager);
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* manager) {
    track_manager* m = (track_manager*)manager;
    const char* mode = mode_of(params, paramsCount);
    if (is(mode, "metadata_error")) return 5;
    static const uint64_t dims[] = {1, 0};
    *info = track_infos(m, 1);
    track_info(m, &(*info)[0], "in", 2, dims, is(mode, "metadata_unspecified") ? UNSPECIFIED : FP32);
    *infoCount = 1;
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* manager) {
    track_manager* m = (track_manager*)manager;
    static const uint64_t dims[] = {1, 0}, address[] = {1, 1};
    *info = track_infos(m, 2);
    track_info(m, &(*info)[0], "out", 2, dims, FP32);
    track_info(m, &(*info)[1], "address", 2, address, I64);
    *infoCount = 2;
    return 0;
}

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    track_manager* m = (track_manager*)manager;
    __atomic_add_fetch(&m->executes, 1, __ATOMIC_SEQ_CST);
    const char* mode = mode_of(params, paramsCount);
    if (is(mode, "rendezvous") && rendezvous(strtol(track_param(params, paramsCount, "parties", "2"), NULL, 10))) {
        return 7;
    }
    if (is(mode, "crash")) raise(SIGSEGV);
    if (is(mode, "execute_error")) return (int)strtol(track_param(params, paramsCount, "code", "42"), NULL, 10);
    if (is(mode, "null_outputs")) {
        *outputs = NULL;
        *outputsCount = 1;
        return 0;
    }
    const struct CustomNodeTensor* in = track_input(inputs, inputsCount, "in");
    if (!in || in->precision != FP32) return 1;
    struct CustomNodeTensor* out = (struct CustomNodeTensor*)track_alloc(m, 2 * sizeof(struct CustomNodeTensor));
    if (!out) return 2;
    static const uint64_t address_dims[] = {1, 1};
    if (track_output(m, &out[0], "out", (int)in->dimsCount, in->dims, FP32, in->dataBytes) ||
        track_output(m, &out[1], "address", 2, address_dims, I64, sizeof(int64_t))) {
        return 3;
    }
    memcpy(out[0].data, in->data, in->dataBytes);
    *(int64_t*)out[1].data = (int64_t)(intptr_t)in->data;
    *outputs = out;
    *outputsCount = 2;
    if (is(mode, "zero_count")) {
        track_release(out[0].data, m);
        track_release(out[0].dims, m);
        track_release(out[1].data, m);
        track_release(out[1].dims, m);
        *outputsCount = 0;
    } else if (is(mode, "bad_precision")) {
        out[0].precision = UNSPECIFIED;
    } else if (is(mode, "bad_size")) {
        out[0].dataBytes += 4;
    } else if (is(mode, "no_dims")) {
        track_release(out[0].dims, m);
        out[0].dims = NULL;
    } else if (is(mode, "no_name")) {
        out[0].name = NULL;
    } else if (is(mode, "missing_output")) {
        out[0].name = "other";
    } else if (is(mode, "wrong_precision")) {
        out[0].precision = I32;
    } else if (is(mode, "bad_second")) {
        out[1].precision = UNSPECIFIED;
    }
    return 0;
}

int release(void* ptr, void* manager) { return track_release(ptr, manager); }
