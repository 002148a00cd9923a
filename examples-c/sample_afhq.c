/*
 * sample_afhq.c: class-conditional image generation with classifier-free guidance.
 *
 * The reference setting: guidance w = 7.5 ((1 + w) eps_c - w eps_null, one batch of 2B),
 * DPM-Solver-2 at 20 NFE (DPM-Solver-1 with --dpm1, any preset with --solver), random labels
 * in 1..K, images written as PNG files and a grid. The bundled demo model by default; any model
 * exported by `dpm train` (an AFHQ model, say) with --model. Strong guidance pushes data
 * predictions out of range; --threshold R adds the dynamic thresholding of Imagen (quantile R
 * of |x0| per sample) to a DPM-Solver++ preset, as the DPM-Solver++ paper recommends for
 * guided sampling (make demo: --solver dpm++2m --threshold 0.995).
 *
 *   sample_afhq [--model M.onnx] [--dpm1] [--solver NAME] [--threshold R] [--nfe 20]
 *               [--num 16] [--batch 16] [--w 7.5] [--seed 0] [--out DIR] [--provider cpu|cuda]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dpm.h"

#ifndef DPM_DEMO_MODEL
#define DPM_DEMO_MODEL "onnx/models/demo/unet_small.onnx"
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int32_t progress(void *user, const dpm_progress *p) {
    (void)user;
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "\rbatch %zu: %zu/%zu evaluations, %zu/%zu images done", p->batch_index, p->nfe_done,
                p->nfe_total, p->samples_done, p->samples_total);
    return 0; /* nonzero would stop the run */
}

/* A count from the command line: a positive integer up to 2^20, else 0. */
static size_t count_arg(const char *v) {
    char *end;
    long n = strtol(v, &end, 10);
    return *v && !*end && n > 0 && n <= (1L << 20) ? (size_t)n : 0;
}

#define CHECK(call)                                                                                    \
    do {                                                                                               \
        dpm_status st_ = (call);                                                                       \
        if (st_ != DPM_OK) {                                                                           \
            fprintf(stderr, "\n%s: %s: %s\n", #call, dpm_status_name(st_), dpm_last_error());          \
            return 1;                                                                                  \
        }                                                                                              \
    } while (0)

int main(int argc, char **argv) {
    const char *model_path = DPM_DEMO_MODEL, *out_dir = "out/sample_afhq", *provider = "cpu";
    const char *solver = "dpm2";
    size_t nfe = 20, num = 16, batch = 16;
    double w = 7.5, threshold = 0;
    unsigned long long seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dpm1")) { solver = "dpm1"; continue; }
        if (!v) { fprintf(stderr, "usage: see the comment at the top of sample_afhq.c\n"); return 2; }
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--solver")) solver = v;
        else if (!strcmp(a, "--threshold")) threshold = atof(v);
        else if (!strcmp(a, "--nfe")) nfe = count_arg(v);
        else if (!strcmp(a, "--num")) num = count_arg(v);
        else if (!strcmp(a, "--batch")) batch = count_arg(v);
        else if (!strcmp(a, "--w")) w = atof(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--out")) out_dir = v;
        else if (!strcmp(a, "--provider")) provider = v;
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
        i++;
    }
    if (!nfe || !num || !batch) { fprintf(stderr, "--nfe, --num and --batch take a positive count\n"); return 2; }

    dpm_runtime_params rp;
    CHECK(dpm_runtime_params_init(&rp));
    rp.provider = strcmp(provider, "cuda") ? DPM_PROVIDER_CPU : DPM_PROVIDER_CUDA;
    dpm_runtime *rt = NULL;
    CHECK(dpm_runtime_create(&rp, &rt));
    dpm_model *model = NULL;
    CHECK(dpm_model_load(rt, model_path, &model));
    dpm_model_info info = {.struct_size = sizeof info};
    CHECK(dpm_model_get_info(model, &info));
    if (info.ndim != 3 || !info.conditional || info.num_classes == 0) {
        fprintf(stderr, "%s is not a class-conditional image model\n", model_path);
        return 1;
    }
    size_t c = info.shape[0], h = info.shape[1], wd = info.shape[2];

    dpm_sampler_params sp;
    CHECK(dpm_sampler_params_init(&sp));
    CHECK(dpm_sampler_params_preset(&sp, solver, nfe));
    if (threshold > 0) {
        sp.thresholding = 1;
        sp.threshold_ratio = threshold;
    }
    sp.guidance = 1;
    sp.guidance_scale = w;
    sp.guidance_convention = DPM_GUIDANCE_HO;

    /* Random labels in 1..K from a seeded generator, so a run is reproducible. */
    int64_t *labels = malloc(sizeof(int64_t) * num);
    unsigned long long st = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = 0; i < num; i++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        labels[i] = 1 + (int64_t)((st >> 33) % info.num_classes);
    }
    dpm_generate_params gp;
    CHECK(dpm_generate_params_init(&gp));
    gp.num_samples = num;
    gp.batch_size = batch;
    gp.seed = seed;
    gp.labels = labels;
    gp.progress = progress;

    size_t len = num * info.dim;
    float *images = malloc(sizeof(float) * len);
    printf("%s: %zu images of %zux%zux%zu, %s at %zu NFE%s, guidance w = %.2f\n", model_path, num, c, h, wd, solver,
           nfe, threshold > 0 ? " with dynamic thresholding" : "", w);
    double t0 = now();
    CHECK(dpm_generate(model, &sp, &gp, images, len));
    double dt = now() - t0;
    if (isatty(STDERR_FILENO)) fprintf(stderr, "\n");

    mkdir(out_dir, 0755);
    CHECK(dpm_write_pngs(images, len, num, c, h, wd, out_dir, "img_"));
    char grid[4096];
    snprintf(grid, sizeof grid, "%s/grid.png", out_dir);
    CHECK(dpm_write_grid(images, len, num, c, h, wd, num < 8 ? num : 8, grid));
    printf("labels:");
    for (size_t i = 0; i < num; i++) printf(" %lld", (long long)labels[i]);
    printf("\n%.3f s in all, %.1f ms per image; wrote %s/img_*.png and %s\n", dt, 1000 * dt / (double)num, out_dir, grid);

    free(images);
    free(labels);
    dpm_model_free(model);
    dpm_runtime_free(rt);
    return 0;
}
