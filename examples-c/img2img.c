/*
 * img2img.c: image-to-image (SDEdit) and step previews with the C API.
 *
 * Generates source images of one class with guidance, then runs img2img from them towards
 * another class at a strength S: the run starts at model time S x (N-1) from each source noised
 * there, with the NFE asked for over that shorter interval (S = 1 would be plain generation).
 * A step callback keeps the data prediction x0 of every evaluation: the preview an engine
 * would show, written as a grid of the first sample's previews. Prints the pixel distance of
 * the results to their sources for a few strengths.
 *
 *   img2img [--model M.onnx] [--strength 0.6] [--nfe 10] [--num 4] [--from 1] [--to 2]
 *           [--out DIR]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
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

/* The previews of sample 0: one x0 per evaluation of the first batch. */
typedef struct {
    float *frames;
    size_t dim, count, capacity;
} previews;

static int32_t keep_preview(void *user, const dpm_step_info *s) {
    previews *p = user;
    if (s->batch_index == 0 && p->count < p->capacity && s->len >= p->dim) {
        memcpy(p->frames + p->count * p->dim, s->x0, sizeof(float) * p->dim);
        p->count++;
    }
    return 0; /* nonzero would stop the run */
}

/* A count from the command line: a positive integer up to 2^20, else 0. */
static size_t count_arg(const char *v) {
    char *end;
    long n = strtol(v, &end, 10);
    return *v && !*end && n > 0 && n <= (1L << 20) ? (size_t)n : 0;
}

static double rms(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)(a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s / (double)n);
}

int main(int argc, char **argv) {
    const char *model_path = DPM_DEMO_MODEL, *out_dir = "out/img2img";
    double strength = 0.6;
    size_t nfe = 10, num = 4;
    int from = 1, to = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--strength")) strength = atof(v);
        else if (!strcmp(a, "--nfe")) nfe = count_arg(v);
        else if (!strcmp(a, "--num")) num = count_arg(v);
        else if (!strcmp(a, "--from")) from = atoi(v);
        else if (!strcmp(a, "--to")) to = atoi(v);
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
    size_t k = info.num_classes > 0 ? info.num_classes : 1;
    if (from < 1 || (size_t)from > k || to < 1 || (size_t)to > k) {
        fprintf(stderr, "labels are 1..%zu\n", k);
        return 2;
    }
    size_t c = info.shape[0], h = info.shape[1], w = info.shape[2];
    size_t len = num * info.dim;
    float *source = malloc(sizeof(float) * len), *result = malloc(sizeof(float) * len);
    int64_t *labels = malloc(sizeof(int64_t) * num);
    previews pv = {malloc(sizeof(float) * info.dim * nfe), info.dim, 0, nfe};

    dpm_sampler_params sp;
    CHECK(dpm_sampler_params_init(&sp));
    CHECK(dpm_sampler_params_preset(&sp, "dpm++2m", nfe));
    sp.guidance = 1;
    sp.guidance_scale = 3.0;
    dpm_generate_params gp;
    CHECK(dpm_generate_params_init(&gp));
    gp.num_samples = num;
    gp.batch_size = num;
    gp.labels = labels;

    /* 1. Sources: plain generation of class `from`. */
    for (size_t i = 0; i < num; i++) labels[i] = from;
    CHECK(dpm_generate(model, &sp, &gp, source, len));

    /* 2. img2img towards class `to` at a few strengths; previews for the asked one. */
    for (size_t i = 0; i < num; i++) labels[i] = to;
    gp.seed = 1;
    gp.init_image = source;
    gp.init_image_len = len;
    double strengths[] = {0.2, 0.4, strength, 0.8};
    for (int j = 0; j < 4; j++) {
        sp.strength = strengths[j];
        gp.step = j == 2 ? keep_preview : NULL;
        gp.user_data = j == 2 ? &pv : NULL;
        CHECK(dpm_generate(model, &sp, &gp, result, len));
        printf("strength %.2f: %zu NFE, RMS change from the sources %.3f\n", strengths[j], nfe,
               rms(result, source, len));
    }

    mkdir(out_dir, 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/sources.png", out_dir);
    CHECK(dpm_write_grid(source, len, num, c, h, w, num, path));
    snprintf(path, sizeof path, "%s/results.png", out_dir);
    CHECK(dpm_write_grid(result, len, num, c, h, w, num, path));
    snprintf(path, sizeof path, "%s/previews.png", out_dir);
    CHECK(dpm_write_grid(pv.frames, pv.count * info.dim, pv.count, c, h, w, pv.count, path));
    printf("class %d -> %d at strength %.2f: wrote %s/sources.png, results.png and previews.png "
           "(%zu x0 previews of sample 0)\n",
           from, to, strength, out_dir, pv.count);

    free(pv.frames);
    free(labels);
    free(result);
    free(source);
    dpm_model_free(model);
    dpm_runtime_free(rt);
    return 0;
}
