/*
 * inpaint.c: inpainting with the C API.
 *
 * Generates images of one class, then keeps their left half and regenerates the right half
 * (here without a class label, the null class, so the model completes what it sees). The mask
 * is one per-pixel mask for every sample (1 = keep), broadcast over the channels; the kept
 * half comes out exactly (checked below). Writes the sources, the mask and the results.
 *
 *   inpaint [--model M.onnx] [--nfe 10] [--num 4] [--label 1] [--out DIR]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dpm.h"

#ifndef DPM_DEMO_MODEL
#define DPM_DEMO_MODEL "onnx/models/demo/unet_small.onnx"
#endif

#define CHECK(call)                                                                                    \
    do {                                                                                               \
        dpm_status st_ = (call);                                                                       \
        if (st_ != DPM_OK) {                                                                           \
            fprintf(stderr, "%s: %s: %s\n", #call, dpm_status_name(st_), dpm_last_error());            \
            return 1;                                                                                  \
        }                                                                                              \
    } while (0)

/* A count from the command line: a positive integer up to 2^20, else 0. */
static size_t count_arg(const char *v) {
    char *end;
    long n = strtol(v, &end, 10);
    return *v && !*end && n > 0 && n <= (1L << 20) ? (size_t)n : 0;
}

int main(int argc, char **argv) {
    const char *model_path = DPM_DEMO_MODEL, *out_dir = "out/inpaint";
    size_t nfe = 10, num = 4;
    int label = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--nfe")) nfe = count_arg(v);
        else if (!strcmp(a, "--num")) num = count_arg(v);
        else if (!strcmp(a, "--label")) label = atoi(v);
        else if (!strcmp(a, "--out")) out_dir = v;
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
    if (num == 0 || nfe == 0) { fprintf(stderr, "--num and --nfe must be positive\n"); return 2; }

    dpm_runtime_params rp;
    CHECK(dpm_runtime_params_init(&rp));
    dpm_runtime *rt = NULL;
    CHECK(dpm_runtime_create(&rp, &rt));
    dpm_model *model = NULL;
    CHECK(dpm_model_load(rt, model_path, &model));
    dpm_model_info info = {.struct_size = sizeof info};
    CHECK(dpm_model_get_info(model, &info));
    if (info.ndim != 3 || !info.conditional) {
        fprintf(stderr, "%s is not a class-conditional image model\n", model_path);
        return 1;
    }
    size_t c = info.shape[0], h = info.shape[1], w = info.shape[2];
    size_t len = num * info.dim, pixels = h * w;
    float *source = malloc(sizeof(float) * len), *result = malloc(sizeof(float) * len);
    float *mask = malloc(sizeof(float) * pixels);
    int64_t *labels = malloc(sizeof(int64_t) * num);
    for (size_t p = 0; p < pixels; p++) mask[p] = (p % w) < w / 2 ? 1.0f : 0.0f;

    dpm_sampler_params sp;
    CHECK(dpm_sampler_params_init(&sp));
    CHECK(dpm_sampler_params_preset(&sp, "dpm++2m", nfe));
    dpm_generate_params gp;
    CHECK(dpm_generate_params_init(&gp));
    gp.num_samples = num;
    gp.batch_size = num;
    gp.labels = labels;

    /* 1. Sources of class `label`, with guidance. */
    for (size_t i = 0; i < num; i++) labels[i] = label;
    sp.guidance = 1;
    sp.guidance_scale = 3.0;
    CHECK(dpm_generate(model, &sp, &gp, source, len));

    /* 2. Keep the left half, regenerate the right half with the null label (no guidance). */
    for (size_t i = 0; i < num; i++) labels[i] = 0;
    sp.guidance = 0;
    gp.seed = 1;
    gp.known = source;
    gp.known_len = len;
    gp.mask = mask;
    gp.mask_len = pixels;
    CHECK(dpm_generate(model, &sp, &gp, result, len));

    size_t kept = 0, differ = 0;
    for (size_t i = 0; i < len; i++) {
        if (mask[i % pixels] == 1.0f) {
            kept += result[i] == source[i];
        } else {
            differ += result[i] != source[i];
        }
    }
    printf("kept half: %zu of %zu values exact; generated half: %zu values new\n", kept, len / 2, differ);

    mkdir(out_dir, 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/sources.png", out_dir);
    CHECK(dpm_write_grid(source, len, num, c, h, w, num, path));
    snprintf(path, sizeof path, "%s/mask.png", out_dir);
    float *mask_img = malloc(sizeof(float) * pixels);
    for (size_t p = 0; p < pixels; p++) mask_img[p] = 2.0f * mask[p] - 1.0f;
    CHECK(dpm_write_grid(mask_img, pixels, 1, 1, h, w, 1, path));
    snprintf(path, sizeof path, "%s/results.png", out_dir);
    CHECK(dpm_write_grid(result, len, num, c, h, w, num, path));
    printf("wrote %s/sources.png, mask.png and results.png\n", out_dir);

    free(mask_img);
    free(labels);
    free(mask);
    free(result);
    free(source);
    dpm_model_free(model);
    dpm_runtime_free(rt);
    return kept == len / 2 ? 0 : 1;
}
