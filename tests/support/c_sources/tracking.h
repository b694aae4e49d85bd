/* Shared by the test libraries: a per-node manager that counts every buffer handed to the server and every buffer
 * given back through release(), so the tests can prove each came back exactly once. A buffer carries a header with
 * a magic word; release() of a pointer that is not a live buffer of this manager counts as bad and frees nothing.
 * At deinitialize() the counts are appended to the file named by the param "report" (when given):
 *   deinitialize <tag> handed=<n> released=<n> bad=<n> executes=<n>
 * and initialize() appends "initialize <tag>". Header-only, for C and C++. */
#ifndef PYOVMS_TEST_TRACKING_H
#define PYOVMS_TEST_TRACKING_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custom_node_api.h"

#define TRACK_ALIVE 0x5059564d414c4956ULL /* "PYVMALIV" */
#define TRACK_DEAD 0x5059564d44454144ULL  /* "PYVMDEAD" */

typedef struct {
    long handed, released, bad, executes;
    char report[1024];
    char tag[256];
    void* extra; /* what a library keeps besides the counts */
} track_manager;

typedef struct {
    uint64_t magic;
    track_manager* owner;
} track_header;

static inline const char* track_param(const struct CustomNodeParam* params, int count, const char* key, const char* fallback) {
    for (int i = 0; i < count; i++) {
        if (strcmp(params[i].key, key) == 0) return params[i].value;
    }
    return fallback;
}

static inline void track_append(track_manager* m, const char* line) {
    if (!m->report[0]) return;
    FILE* file = fopen(m->report, "a");
    if (!file) return;
    fputs(line, file);
    fclose(file);
}

static inline track_manager* track_create(const struct CustomNodeParam* params, int count) {
    track_manager* m = (track_manager*)calloc(1, sizeof(track_manager));
    if (!m) return NULL;
    snprintf(m->report, sizeof m->report, "%s", track_param(params, count, "report", ""));
    snprintf(m->tag, sizeof m->tag, "%s", track_param(params, count, "tag", "node"));
    char line[300];
    snprintf(line, sizeof line, "initialize %s\n", m->tag);
    track_append(m, line);
    return m;
}

static inline void track_destroy(track_manager* m) {
    char line[512];
    snprintf(line, sizeof line, "deinitialize %s handed=%ld released=%ld bad=%ld executes=%ld\n", m->tag,
             __atomic_load_n(&m->handed, __ATOMIC_SEQ_CST), __atomic_load_n(&m->released, __ATOMIC_SEQ_CST),
             __atomic_load_n(&m->bad, __ATOMIC_SEQ_CST), __atomic_load_n(&m->executes, __ATOMIC_SEQ_CST));
    track_append(m, line);
    free(m);
}

/* A buffer of `size` bytes (at least one) handed to the server; NULL when out of memory. */
static inline void* track_alloc(track_manager* m, size_t size) {
    track_header* header = (track_header*)malloc(sizeof(track_header) + (size ? size : 1));
    if (!header) return NULL;
    header->magic = TRACK_ALIVE;
    header->owner = m;
    __atomic_add_fetch(&m->handed, 1, __ATOMIC_SEQ_CST);
    return header + 1;
}

static inline int track_release(void* ptr, void* manager) {
    track_manager* m = (track_manager*)manager;
    if (!ptr || !m) return 1;
    track_header* header = (track_header*)ptr - 1;
    if (header->magic != TRACK_ALIVE || header->owner != m) {
        __atomic_add_fetch(&m->bad, 1, __ATOMIC_SEQ_CST);
        return 1;
    }
    header->magic = TRACK_DEAD;
    __atomic_add_fetch(&m->released, 1, __ATOMIC_SEQ_CST);
    free(header);
    return 0;
}

/* A dims array of this manager holding `count` values. */
static inline uint64_t* track_dims(track_manager* m, int count, const uint64_t* values) {
    uint64_t* dims = (uint64_t*)track_alloc(m, sizeof(uint64_t) * (size_t)count);
    if (dims) memcpy(dims, values, sizeof(uint64_t) * (size_t)count);
    return dims;
}

/* An info array of `count` entries, each given its name, dims and precision by the caller. */
static inline struct CustomNodeTensorInfo* track_infos(track_manager* m, int count) {
    return (struct CustomNodeTensorInfo*)track_alloc(m, sizeof(struct CustomNodeTensorInfo) * (size_t)count);
}

static inline void track_info(track_manager* m, struct CustomNodeTensorInfo* info, const char* name, int dimsCount,
                       const uint64_t* dims, CustomNodeTensorPrecision precision) {
    info->name = name;
    info->dims = track_dims(m, dimsCount, dims);
    info->dimsCount = (uint64_t)dimsCount;
    info->precision = precision;
}

/* One FP32 tensor of rank `dimsCount` declared as a library's inputs or outputs: the info array of one entry. */
static inline int track_declare_one(track_manager* m, struct CustomNodeTensorInfo** info, int* infoCount,
                                    const char* name, int dimsCount, const uint64_t* dims) {
    *info = track_infos(m, 1);
    if (!*info) return 1;
    track_info(m, &(*info)[0], name, dimsCount, dims, FP32);
    *infoCount = 1;
    return (*info)[0].dims ? 0 : 1;
}

/* initialize, deinitialize and release for a library whose manager holds the counts only. */
#define TRACK_PLAIN_LIFECYCLE                                                                  \
    int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) {    \
        *manager = track_create(params, paramsCount);                                          \
        return *manager ? 0 : 1;                                                               \
    }                                                                                          \
    int deinitialize(void* manager) {                                                          \
        track_destroy((track_manager*)manager);                                                \
        return 0;                                                                              \
    }                                                                                          \
    int release(void* ptr, void* manager) { return track_release(ptr, manager); }

/* Parses "1,0,10" into dims; the number of dims read. */
static inline int track_parse_dims(const char* text, uint64_t* dims, int capacity) {
    int count = 0;
    while (*text && count < capacity) {
        char* end;
        unsigned long long value = strtoull(text, &end, 10);
        if (end == text) break;
        dims[count++] = value;
        text = (*end == ',') ? end + 1 : end;
    }
    return count;
}

static inline const struct CustomNodeTensor* track_input(const struct CustomNodeTensor* inputs, int count, const char* name) {
    for (int i = 0; i < count; i++) {
        if (inputs[i].name && strcmp(inputs[i].name, name) == 0) return &inputs[i];
    }
    return NULL;
}

/* Fill `tensor` as an output of `dimsCount` dims with a fresh data buffer of `bytes`; 0 on success. */
static inline int track_output(track_manager* m, struct CustomNodeTensor* tensor, const char* name, int dimsCount,
                        const uint64_t* dims, CustomNodeTensorPrecision precision, uint64_t bytes) {
    tensor->name = name;
    tensor->dims = track_dims(m, dimsCount, dims);
    tensor->dimsCount = (uint64_t)dimsCount;
    tensor->precision = precision;
    tensor->data = (uint8_t*)track_alloc(m, (size_t)bytes);
    tensor->dataBytes = bytes;
    return (tensor->dims && tensor->data) ? 0 : 1;
}

#endif
