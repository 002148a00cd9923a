/*
 * test_api.c: every function of dpm.h, in normal use and with every kind of bad argument.
 * Compiled and run by tests/c_api.rs (cargo test) with the fixtures of tests/data.
 * Prints "N passed, M failed" and exits nonzero on any failure.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dpm.h"

static int passed, failed;
static const char *data_dir = "tests/data";

#define EXPECT(cond, ...)                                            \
    do {                                                             \
        if (cond) {                                                  \
            passed++;                                                \
        } else {                                                     \
            failed++;                                                \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                            \
            fprintf(stderr, "\n");                                   \
        }                                                            \
    } while (0)

/* A call must return `want` and leave a message (or "" on success). */
#define STATUS(call, want)                                                                  \
    do {                                                                                    \
        dpm_status got_ = (call);                                                           \
        EXPECT(got_ == (want), "%s returned %s, expected %s (%s)", #call, dpm_status_name(got_), \
               dpm_status_name(want), dpm_last_error());                                    \
        if ((want) != DPM_OK)                                                               \
            EXPECT(strlen(dpm_last_error()) > 0, "%s left no message", #call);              \
    } while (0)

static char *path(const char *name) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 1024, "%s/%s", data_dir, name);
    return b;
}

static dpm_runtime *rt;

static void test_basics(void) {
    /* The library is the header's version: as a string, as one number, at compile time. */
    char v[64];
    snprintf(v, sizeof v, "%d.%d.%d", DPM_VERSION_MAJOR, DPM_VERSION_MINOR, DPM_VERSION_PATCH);
    EXPECT(strcmp(dpm_version(), v) == 0, "version %s, header %s", dpm_version(), v);
    EXPECT(DPM_VERSION_NUMBER == DPM_VERSION_MAJOR * 10000 + DPM_VERSION_MINOR * 100 + DPM_VERSION_PATCH,
           "DPM_VERSION_NUMBER %d", DPM_VERSION_NUMBER);
    EXPECT(dpm_version_number() == DPM_VERSION_NUMBER, "dpm_version_number() %d, header %d", dpm_version_number(),
           DPM_VERSION_NUMBER);
    typedef char version_number_is_a_constant[DPM_VERSION_NUMBER >= 0 ? 1 : -1];
    EXPECT(sizeof(version_number_is_a_constant) == 1, "DPM_VERSION_NUMBER in a constant expression");
    EXPECT(strcmp(dpm_status_name(DPM_OK), "DPM_OK") == 0, "status name");
    EXPECT(strcmp(dpm_status_name(DPM_ERR_BUSY), "DPM_ERR_BUSY") == 0, "status name");
    EXPECT(strcmp(dpm_status_name(-7), "DPM_UNKNOWN_STATUS") == 0, "unknown status");
    for (int s = DPM_OK; s <= DPM_ERR_INTERNAL; s++)
        EXPECT(strncmp(dpm_status_name(s), "DPM_", 4) == 0 && strcmp(dpm_status_name(s), "DPM_UNKNOWN_STATUS") != 0,
               "status %d has a name", s);
    EXPECT(strcmp(dpm_prediction_name(DPM_PREDICTION_V), "v") == 0, "prediction name");
    EXPECT(dpm_prediction_name(7) == NULL, "out-of-range prediction name");
    EXPECT(dpm_prediction_from_name("x0") == DPM_PREDICTION_X0, "prediction from name");
    EXPECT(dpm_prediction_from_name("nope") == -2 && dpm_prediction_from_name(NULL) == -2, "unknown prediction");
}

/* The presets from C: every listed name is one dpm_sampler_params_preset takes, with a
   one-line description; an index out of range gives NULL. */
static void test_presets(void) {
    size_t n = dpm_preset_count();
    EXPECT(n >= 16, "%zu presets", n);
    int has_dpm2m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = dpm_preset_name(i), *desc = dpm_preset_description(i);
        EXPECT(name != NULL && desc != NULL, "preset %zu", i);
        if (!name || !desc) continue;
        EXPECT(strlen(desc) > 10 && strchr(desc, '\n') == NULL, "%s: one line: '%s'", name, desc);
        dpm_sampler_params p;
        dpm_sampler_params_init(&p);
        STATUS(dpm_sampler_params_preset(&p, name, 20), DPM_OK);
        /* Each is a configuration a sampler accepts. */
        dpm_sampler *s = NULL;
        STATUS(dpm_sampler_create(NULL, &p, 2, 2, 1, 0, NULL, &s), DPM_OK);
        dpm_sampler_free(s);
        for (size_t j = 0; j < i; j++) EXPECT(strcmp(name, dpm_preset_name(j)) != 0, "%s listed twice", name);
        has_dpm2m |= strcmp(name, "dpm++2m") == 0;
    }
    EXPECT(has_dpm2m, "dpm++2m is listed");
    EXPECT(dpm_preset_name(n) == NULL && dpm_preset_description(n) == NULL, "index %zu: NULL", n);
    EXPECT(dpm_preset_name(n + 1) == NULL && dpm_preset_description(SIZE_MAX) == NULL, "out of range: NULL");
    EXPECT(dpm_preset_name(SIZE_MAX) == NULL, "SIZE_MAX: NULL");
}

static void test_runtime(void) {
    dpm_runtime_params p;
    STATUS(dpm_runtime_params_init(NULL), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_runtime_params_init(&p), DPM_OK);
    EXPECT(p.struct_size == sizeof p && p.provider == DPM_PROVIDER_CPU && p.library_path == NULL, "defaults");
    dpm_runtime *r = NULL;
    STATUS(dpm_runtime_create(NULL, &r), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_runtime_create(&p, NULL), DPM_ERR_NULL_ARGUMENT);
    dpm_runtime_params bad = p;
    bad.struct_size = 0;
    STATUS(dpm_runtime_create(&bad, &r), DPM_ERR_INVALID_ARGUMENT);
    /* A size that cuts library_path in half (found by fuzzing: the torn pointer crashed). */
    bad = p;
    bad.library_path = "/nonexistent/libonnxruntime.so";
    bad.struct_size = offsetof(dpm_runtime_params, library_path) + 4;
    STATUS(dpm_runtime_create(&bad, &r), DPM_ERR_INVALID_ARGUMENT);
    EXPECT(r == NULL, "no runtime from a cut struct");
    /* A caller built against a newer, larger header: the known fields are read. */
    struct {
        dpm_runtime_params p;
        uint64_t newer_field;
    } newer = {p, 0};
    newer.p.struct_size = sizeof newer;
    newer.p.library_path = "/nonexistent/libonnxruntime.so";
    STATUS(dpm_runtime_create(&newer.p, &r), DPM_ERR_RUNTIME_UNAVAILABLE);
    bad = p;
    bad.provider = 9;
    STATUS(dpm_runtime_create(&bad, &r), DPM_ERR_INVALID_ARGUMENT);
    /* A caller built against the 0.1 header (32-bit counts, a 40-byte struct) is refused. */
    bad = p;
    bad.struct_size = 40;
    STATUS(dpm_runtime_create(&bad, &r), DPM_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(dpm_last_error(), "struct_size") != NULL, "names struct_size: %s", dpm_last_error());
    bad = p;
    bad.library_path = "/nonexistent/libonnxruntime.so";
    STATUS(dpm_runtime_create(&bad, &r), DPM_ERR_RUNTIME_UNAVAILABLE);
    EXPECT(strstr(dpm_last_error(), "setup") || strstr(dpm_last_error(), "DPM_ORT_LIB"), "fix hint: %s",
           dpm_last_error());
    STATUS(dpm_runtime_create(&p, &rt), DPM_OK);
    EXPECT(rt != NULL && dpm_runtime_provider(rt) == DPM_PROVIDER_CPU, "cpu runtime");
    EXPECT(dpm_runtime_provider(NULL) == -1, "provider of NULL");
    /* A thread count is a ceiling: (size_t)-1, what -1 becomes, is capped to the machine. */
    bad = p;
    bad.intra_threads = (size_t)-1;
    STATUS(dpm_runtime_create(&bad, &r), DPM_OK);
    dpm_runtime_free(r);
    r = NULL;
    bad = p;
    bad.provider = DPM_PROVIDER_CUDA;
    STATUS(dpm_runtime_create(&bad, &r), DPM_ERR_PROVIDER_UNAVAILABLE);
    bad.device_id = -1;
    STATUS(dpm_runtime_create(&bad, &r), DPM_ERR_INVALID_ARGUMENT);
    bad.device_id = 0;
    bad.cpu_fallback = 1;
    STATUS(dpm_runtime_create(&bad, &r), DPM_OK);
    EXPECT(dpm_runtime_provider(r) == DPM_PROVIDER_CPU, "fallback to cpu");
    dpm_runtime_free(r);
    dpm_runtime_free(NULL);
}

static void test_schedule(void) {
    dpm_schedule *s = NULL;
    STATUS(dpm_schedule_create(NULL, 1000, &s), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_schedule_create("linear", 1000, NULL), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_schedule_create("wavy", 1000, &s), DPM_ERR_UNKNOWN_NAME);
    STATUS(dpm_schedule_create("linear", 0, &s), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_schedule_create("linear", 1, &s), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_schedule_create("linear", (size_t)-5, &s), DPM_ERR_INVALID_ARGUMENT); /* a negative int */
    STATUS(dpm_schedule_create("linear", ((size_t)1 << 20) + 1, &s), DPM_ERR_INVALID_ARGUMENT); /* the cap */
    EXPECT(s == NULL, "no schedule from a refused size");
    STATUS(dpm_schedule_create("linear", 1000, &s), DPM_OK);
    double a, sg, l;
    STATUS(dpm_schedule_eval(s, 0, &a, &sg, &l), DPM_OK);
    EXPECT(fabs(l - 4.605) < 1e-3 && fabs(a * a + sg * sg - 1) < 1e-12, "lambda(0) = %f", l);
    STATUS(dpm_schedule_eval(s, 999, NULL, NULL, &l), DPM_OK);
    EXPECT(fabs(l + 5.059) < 1e-3, "lambda(999) = %f", l);
    STATUS(dpm_schedule_eval(s, 1000.5, &a, NULL, NULL), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_schedule_eval(s, NAN, &a, NULL, NULL), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_schedule_eval(NULL, 3, &a, NULL, NULL), DPM_ERR_NULL_ARGUMENT);
    EXPECT(dpm_schedule_len(s) == 1000 && dpm_schedule_len(NULL) == 0, "len");
    dpm_schedule_free(s);
    STATUS(dpm_schedule_create("cosine", 100, &s), DPM_OK);
    dpm_schedule_free(s);
    STATUS(dpm_schedule_create("scaled_linear", 100, &s), DPM_OK);
    dpm_schedule_free(s);
    double betas[4] = {0.1, 0.2, 0.3, 0.4}, badb[2] = {0.1, 1.5};
    STATUS(dpm_schedule_from_betas(NULL, 4, &s), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_schedule_from_betas(badb, 2, &s), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_schedule_from_betas(betas, 0, &s), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_schedule_from_betas(betas, 4, &s), DPM_OK);
    EXPECT(dpm_schedule_len(s) == 4, "len 4");
    dpm_schedule_free(s);
    double ab[3] = {0.9, 0.5, 0.1}, abad[3] = {0.5, 0.9, 0.1};
    STATUS(dpm_schedule_from_alpha_bar(abad, 3, &s), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_schedule_from_alpha_bar(ab, 3, &s), DPM_OK);
    STATUS(dpm_schedule_eval(s, 1, &a, NULL, NULL), DPM_OK);
    EXPECT(fabs(a * a - 0.5) < 1e-12, "alpha_bar(1) = %f", a * a);
    dpm_schedule_free(s);
    dpm_schedule_free(NULL);
}

/* Model-space images to 8-bit pixels in memory (textures): values, formats, and every
   argument checked before anything is read or written. */
static void test_pixels(void) {
    /* Two 1-channel 2 x 2 images: -1 -> 0, 1 -> 255, 0 -> 127.5 -> 128 (half to even), 0.5 ->
       191.25 -> 191, -0.5 -> 63.75 -> 64, clamped outside [-1, 1]. */
    const float gray[8] = {-1, 0, 1, 0.5f, -0.5f, 2, -3, 0};
    const uint8_t want[8] = {0, 128, 255, 191, 64, 255, 0, 128};
    uint8_t px[64];
    STATUS(dpm_images_to_pixels(gray, 8, 2, 1, 2, 2, DPM_PIXELS_GRAY8, px, 8), DPM_OK);
    EXPECT(memcmp(px, want, 8) == 0, "gray to GRAY8 as is");
    STATUS(dpm_images_to_pixels(gray, 8, 2, 1, 2, 2, DPM_PIXELS_RGBA8, px, 32), DPM_OK);
    int ok = 1;
    for (int i = 0; i < 8; i++)
        ok &= px[4 * i] == want[i] && px[4 * i + 1] == want[i] && px[4 * i + 2] == want[i] && px[4 * i + 3] == 255;
    EXPECT(ok, "gray to RGBA8: replicated, alpha 255");
    STATUS(dpm_images_to_pixels(gray, 8, 2, 1, 2, 2, DPM_PIXELS_RGB8, px, 24), DPM_OK);
    ok = 1;
    for (int i = 0; i < 8; i++) ok &= px[3 * i] == want[i] && px[3 * i + 1] == want[i] && px[3 * i + 2] == want[i];
    EXPECT(ok, "gray to RGB8: replicated");
    /* One 3-channel 1 x 2 image (CHW: the R plane, then G, then B) to interleaved HWC. */
    const float rgb[6] = {1, -1, /* R */ -1, 1, /* G */ 0, -1 /* B */};
    STATUS(dpm_images_to_pixels(rgb, 6, 1, 3, 1, 2, DPM_PIXELS_RGB8, px, 6), DPM_OK);
    EXPECT(memcmp(px, (uint8_t[]){255, 0, 128, 0, 255, 0}, 6) == 0, "RGB8 %u %u %u %u %u %u", px[0], px[1],
           px[2], px[3], px[4], px[5]);
    STATUS(dpm_images_to_pixels(rgb, 6, 1, 3, 1, 2, DPM_PIXELS_RGBA8, px, 8), DPM_OK);
    EXPECT(memcmp(px, (uint8_t[]){255, 0, 128, 255, 0, 255, 0, 255}, 8) == 0, "RGBA8");
    /* Rec. 601 luma of the 8-bit values, rounded: (299 R + 587 G + 114 B + 500) / 1000. */
    STATUS(dpm_images_to_pixels(rgb, 6, 1, 3, 1, 2, DPM_PIXELS_GRAY8, px, 2), DPM_OK);
    EXPECT(px[0] == 91 && px[1] == 150, "luma %u %u", px[0], px[1]);

    /* Argument errors; a refused call writes nothing. */
    static float img[3 * 8 * 8]; /* one 3 x 8 x 8 image */
    const size_t len = 3 * 8 * 8, out_len = 8 * 8 * 4;
    static uint8_t out[8 * 8 * 4];
    memset(out, 0xab, sizeof out);
    STATUS(dpm_images_to_pixels(NULL, len, 1, 3, 8, 8, DPM_PIXELS_RGBA8, out, out_len), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_images_to_pixels(img, len, 1, 3, 8, 8, DPM_PIXELS_RGBA8, NULL, out_len), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_images_to_pixels(img, len - 1, 1, 3, 8, 8, DPM_PIXELS_RGBA8, out, out_len), DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len + 1, 1, 3, 8, 8, DPM_PIXELS_RGBA8, out, out_len), DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len, 1, 3, 8, 8, DPM_PIXELS_RGBA8, out, out_len - 1), DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len, 1, 3, 8, 8, DPM_PIXELS_RGBA8, out, out_len + 1), DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len, 1, 3, 8, 8, DPM_PIXELS_RGB8, out, out_len), DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len, 1, 3, 8, 8, DPM_PIXELS_GRAY8, out, 0), DPM_ERR_SHAPE);
    /* Dimensions far beyond the buffer: refused, not read (this was a SIGSEGV in the writers). */
    STATUS(dpm_images_to_pixels(img, len, 1, 3, 4096, 4096, DPM_PIXELS_RGBA8, out, out_len), DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len, 1, 3, 4096, 4096, DPM_PIXELS_RGBA8, out, (size_t)4096 * 4096 * 4),
           DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len, 2147483647, 3, 2147483647, 2147483647, DPM_PIXELS_RGBA8, out, out_len),
           DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len, 1, 3, 8, 8, 3, out, out_len), DPM_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(dpm_last_error(), "format") != NULL, "names the format: %s", dpm_last_error());
    STATUS(dpm_images_to_pixels(img, len, 1, 3, 8, 8, -1, out, out_len), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_images_to_pixels(img, len, 1, 2, 8, 12, DPM_PIXELS_RGBA8, out, 8 * 12 * 4), DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len, 0, 3, 8, 8, DPM_PIXELS_RGBA8, out, out_len), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_images_to_pixels(img, len, 1, 0, 8, 8, DPM_PIXELS_RGBA8, out, out_len), DPM_ERR_INVALID_ARGUMENT);
    /* Sizes are size_t: a negative int becomes a huge size, whose product cannot match. */
    STATUS(dpm_images_to_pixels(img, len, 1, 3, (size_t)-8, (size_t)-8, DPM_PIXELS_RGBA8, out, out_len), DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len, SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX, DPM_PIXELS_RGBA8, out, out_len),
           DPM_ERR_SHAPE);
    STATUS(dpm_images_to_pixels(img, len, 1, SIZE_MAX, 8, 8, DPM_PIXELS_RGBA8, out, out_len), DPM_ERR_SHAPE);
    ok = 1;
    for (size_t i = 0; i < sizeof out; i++) ok &= out[i] == 0xab;
    EXPECT(ok, "refused calls wrote to out");
    STATUS(dpm_images_to_pixels(img, len, 1, 3, 8, 8, DPM_PIXELS_RGBA8, out, out_len), DPM_OK);
    EXPECT(out[0] == 128 && out[3] == 255 && out[out_len - 1] == 255, "zeros are 128, alpha 255");
}

/* eps*(x, t) of N(mu, s^2 I) in 2D, on a schedule. */
static void gauss_eps(const dpm_schedule *s, const float *x, double t, size_t rows, float *out) {
    double a, sg;
    dpm_schedule_eval(s, t, &a, &sg, NULL);
    double v = a * a * 0.25 + sg * sg;
    for (size_t i = 0; i < rows * 2; i++) out[i] = (float)(sg * (x[i] - a * 1.0) / v);
}

/* Runs a host-driven batch of `b` 2D samples on the exact Gaussian model into `x`. */
static dpm_status host_run(const dpm_schedule *sch, const dpm_sampler_params *p, size_t b, float *x, float *buf) {
    dpm_sampler *s = NULL;
    dpm_status st = dpm_sampler_create(sch, p, b, 2, 11, 0, NULL, &s);
    dpm_query q;
    while (st == DPM_OK && (st = dpm_sampler_next(s, &q)) == DPM_OK && !q.done) {
        gauss_eps(sch, q.x, q.t, q.rows, buf);
        st = dpm_sampler_submit(s, buf, q.rows * q.dim);
    }
    if (st == DPM_OK) st = dpm_sampler_read(s, x, b * 2);
    dpm_sampler_free(s);
    return st;
}

/* Issue 14, item 2: every float field of dpm_sampler_params must be finite, used by the
   solver or not; the error names the field (NaN must never become a number on its way). */
static void test_sampler_floats(void) {
    dpm_schedule *sch = NULL;
    dpm_schedule_create("linear", 1000, &sch);
    dpm_sampler_params p;
    dpm_sampler_params_init(&p);
    const double bad_values[3] = {NAN, INFINITY, -INFINITY};
    const char *names[6] = {"params.eta", "params.threshold_ratio", "params.threshold_max",
                            "params.rtol", "params.atol", "params.guidance_scale"};
    int64_t lab[4] = {1, 2, 3, 1};
    for (int f = 0; f < 6; f++) {
        for (int v = 0; v < 3; v++) {
            dpm_sampler_params bad = p;
            double *field[6] = {&bad.eta, &bad.threshold_ratio, &bad.threshold_max,
                                &bad.rtol, &bad.atol, &bad.guidance_scale};
            *field[f] = bad_values[v];
            dpm_sampler *s = NULL;
            STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
            EXPECT(strstr(dpm_last_error(), names[f]) != NULL, "%s = %f: %s", names[f], bad_values[v],
                   dpm_last_error());
            EXPECT(s == NULL, "no sampler for %s = %f", names[f], bad_values[v]);
            /* The same where the solver does use the field. */
            bad = p;
            if (f == 0 || f == 1 || f == 2) {
                dpm_sampler_params_preset(&bad, "dpm++2m", 10);
                bad.thresholding = f != 0;
            } else if (f == 3 || f == 4) {
                dpm_sampler_params_preset(&bad, "adaptive23", 10);
            } else {
                bad.guidance = 1;
            }
            *field[f] = bad_values[v];
            STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, lab, &s), DPM_ERR_INVALID_ARGUMENT);
            EXPECT(strstr(dpm_last_error(), names[f]) != NULL, "%s = %f (in use): %s", names[f],
                   bad_values[v], dpm_last_error());
        }
    }
    /* Custom times: each one, by index (11 times: the 10 steps of DPM-Solver-2 at 20 NFE). */
    double times[11];
    for (int i = 0; i <= 10; i++) times[i] = 999.0 * (10 - i) / 10.0;
    dpm_sampler_params custom = p;
    STATUS(dpm_sampler_params_preset(&custom, "dpm2", 20), DPM_OK);
    custom.spacing = DPM_SPACING_CUSTOM;
    custom.custom_times = times;
    custom.num_custom_times = 11;
    dpm_sampler *ok = NULL;
    STATUS(dpm_sampler_create(sch, &custom, 4, 2, 1, 0, NULL, &ok), DPM_OK);
    dpm_sampler_free(ok);
    for (int v = 0; v < 3; v++) {
        double t = times[5];
        times[5] = bad_values[v];
        dpm_sampler *s = NULL;
        STATUS(dpm_sampler_create(sch, &custom, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
        EXPECT(strstr(dpm_last_error(), "params.custom_times[5]") != NULL, "custom time %f: %s", bad_values[v],
               dpm_last_error());
        times[5] = t;
    }
    /* Finite values out of range still name the field. */
    dpm_sampler_params bad = p;
    bad.eta = -0.5;
    dpm_sampler *s = NULL;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(dpm_last_error(), "params.eta") != NULL, "eta -0.5: %s", dpm_last_error());
    dpm_schedule_free(sch);
}

/* Issue 14, item 11: a thread count is a ceiling (the machine's threads, the work), never a
   number of threads to start, and the samples do not depend on it. 4096 threads on 65536
   values took seconds per step before; under valgrind it would not finish. */
static void test_sampler_threads(void) {
    enum { B = 32768 }; /* 65536 values: the kernels' parallel threshold */
    dpm_schedule *sch = NULL;
    dpm_schedule_create("linear", 1000, &sch);
    dpm_sampler_params p;
    dpm_sampler_params_init(&p);
    dpm_sampler_params_preset(&p, "dpm++2m", 6);
    float *one = malloc(sizeof(float) * B * 2), *many = malloc(sizeof(float) * B * 2);
    float *buf = malloc(sizeof(float) * B * 2);
    p.threads = 1;
    STATUS(host_run(sch, &p, B, one, buf), DPM_OK);
    p.threads = 4096;
    STATUS(host_run(sch, &p, B, many, buf), DPM_OK);
    EXPECT(memcmp(one, many, sizeof(float) * B * 2) == 0, "threads = 4096 equals threads = 1 bit for bit");
    p.threads = 2147483647;
    STATUS(host_run(sch, &p, B, many, buf), DPM_OK);
    EXPECT(memcmp(one, many, sizeof(float) * B * 2) == 0, "threads = INT_MAX equals threads = 1 bit for bit");
    p.threads = SIZE_MAX;
    STATUS(host_run(sch, &p, B, many, buf), DPM_OK);
    EXPECT(memcmp(one, many, sizeof(float) * B * 2) == 0, "threads = SIZE_MAX equals threads = 1 bit for bit");
    free(one);
    free(many);
    free(buf);
    dpm_schedule_free(sch);
}

static void test_sampler(void) {
    dpm_sampler_params p;
    STATUS(dpm_sampler_params_init(NULL), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_params_init(&p), DPM_OK);
    /* The defaults are the `auto` preset at 20 NFE. */
    dpm_sampler_params a = p;
    STATUS(dpm_sampler_params_preset(&a, "auto", 20), DPM_OK);
    EXPECT(p.struct_size == sizeof p && p.nfe == 20 && p.guidance == 0 &&
               p.method == DPM_METHOD_MULTISTEP && p.algorithm == a.algorithm &&
               p.order == a.order && p.spacing == a.spacing && p.unip == a.unip &&
               p.corrector == a.corrector && p.corrector != DPM_UNIPC_NONE,
           "sampler defaults");
    STATUS(dpm_sampler_params_preset(&p, "dpm9", 10), DPM_ERR_UNKNOWN_NAME);
    STATUS(dpm_sampler_params_preset(&p, NULL, 10), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_params_preset(NULL, "dpm1", 10), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_params_preset(&p, "dpm1", 0), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_sampler_params_preset(&p, "dpm1", ((size_t)1 << 20) + 1), DPM_ERR_INVALID_ARGUMENT); /* NFE cap */
    STATUS(dpm_sampler_params_preset(&p, "dpm1", (size_t)-1), DPM_ERR_INVALID_ARGUMENT); /* a negative int */
    EXPECT(p.nfe == 20, "a refused preset left nfe = %zu", p.nfe);
    STATUS(dpm_sampler_params_preset(&p, "dpm2-ref", 50), DPM_OK);
    EXPECT(p.algorithm == DPM_ALGORITHM_DPM_SOLVER && p.order == 2 && p.spacing == DPM_SPACING_REFERENCE &&
               p.reference_midpoint == 1 && p.nfe == 50,
           "dpm2-ref preset");
    STATUS(dpm_sampler_params_preset(&p, "dpm++2m", 12), DPM_OK);
    EXPECT(p.algorithm == DPM_ALGORITHM_DPM_SOLVER_PP && p.method == DPM_METHOD_MULTISTEP, "dpm++2m preset");

    dpm_schedule *sch = NULL;
    dpm_schedule_create("linear", 1000, &sch);
    dpm_sampler *s = NULL;
    STATUS(dpm_sampler_create(sch, &p, 0, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_sampler_create(sch, &p, 4, 0, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    /* Sizes against the caps (2^24 rows, 2^28 values): a negative int, now a huge size_t,
       is refused before anything is allocated. */
    STATUS(dpm_sampler_create(sch, &p, 4, (size_t)-2, 1, 0, NULL, &s), DPM_ERR_SHAPE);
    STATUS(dpm_sampler_create(sch, &p, ((size_t)1 << 24) + 1, 1, 1, 0, NULL, &s), DPM_ERR_SHAPE);
    STATUS(dpm_sampler_create(sch, &p, (size_t)1 << 14, ((size_t)1 << 14) + 1, 1, 0, NULL, &s), DPM_ERR_SHAPE);
    STATUS(dpm_sampler_create(sch, &p, SIZE_MAX, SIZE_MAX, 1, 0, NULL, &s), DPM_ERR_SHAPE);
    EXPECT(s == NULL, "no sampler from a refused size");
    STATUS(dpm_sampler_create(sch, NULL, 4, 2, 1, 0, NULL, &s), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_create(sch, &p, 4, 2, 1, 0, NULL, NULL), DPM_ERR_NULL_ARGUMENT);
    dpm_sampler_params bad = p;
    bad.algorithm = 99;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.order = 5;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.spacing = 17;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.spacing = DPM_SPACING_CUSTOM;
    bad.num_custom_times = 13;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_NULL_ARGUMENT);
    bad = p;
    bad.guidance = 1;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.guidance = 1;
    bad.guidance_convention = 5;
    int64_t lab[4] = {1, 2, 3, 1};
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, lab, &s), DPM_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.threads = 0;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.nfe = ((size_t)1 << 20) + 1; /* over the NFE cap */
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    bad.nfe = SIZE_MAX;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    bad.nfe = 0;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    /* A caller built against the 0.1 header: 144 bytes (136 before `strength`), refused. */
    bad = p;
    bad.struct_size = 144;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    bad.struct_size = 136;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.thresholding = 1;
    bad.algorithm = DPM_ALGORITHM_DPM_SOLVER;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_ERR_INVALID_ARGUMENT);

    /* A custom spacing with 12 + 1 times works. */
    double times[13];
    for (int i = 0; i <= 12; i++) times[i] = 999.0 * (12 - i) / 12.0;
    bad = p;
    bad.spacing = DPM_SPACING_CUSTOM;
    bad.custom_times = times;
    bad.num_custom_times = 13;
    STATUS(dpm_sampler_create(sch, &bad, 4, 2, 1, 0, NULL, &s), DPM_OK);
    dpm_sampler_free(s);

    /* Host-driven run on an exact Gaussian model. */
    enum { B = 512 };
    static float out[B * 2], x[B * 2];
    STATUS(dpm_sampler_create(sch, &p, B, 2, 7, 0, NULL, &s), DPM_OK);
    dpm_query q;
    /* Issue 14, item 13: an output needs a query the host received from dpm_sampler_next. */
    STATUS(dpm_sampler_submit(s, out, B * 2), DPM_ERR_STATE);
    EXPECT(strstr(dpm_last_error(), "dpm_sampler_next") != NULL, "says what to call: %s", dpm_last_error());
    STATUS(dpm_sampler_next(s, NULL), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_next(NULL, &q), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_next(s, &q), DPM_OK);
    EXPECT(!q.done && q.rows == B && q.dim == 2 && q.x && !q.labels && q.nfe == 0, "first query");
    STATUS(dpm_sampler_submit(s, out, 3), DPM_ERR_SHAPE);
    STATUS(dpm_sampler_submit(s, NULL, B * 2), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_submit(s, out, 0), DPM_ERR_SHAPE);
    for (int i = 0; i < B * 2; i++) out[i] = 0;
    out[2 * 37 + 1] = NAN;
    STATUS(dpm_sampler_submit(s, out, B * 2), DPM_ERR_NON_FINITE);
    EXPECT(strstr(dpm_sampler_last_error(s), "sample 37") != NULL, "names the sample: %s", dpm_sampler_last_error(s));
    int evals = 0;
    for (;;) {
        STATUS(dpm_sampler_next(s, &q), DPM_OK);
        if (q.done) break;
        gauss_eps(sch, q.x, q.t, q.rows, out);
        dpm_status st = dpm_sampler_submit(s, out, q.rows * q.dim);
        if (st != DPM_OK) { EXPECT(0, "submit: %s", dpm_last_error()); break; }
        evals++;
        /* A second submit without dpm_sampler_next would answer a query the host never saw:
           refused, and the run does not move (the count of evaluations below says so). */
        if (evals == 1 || evals == 5) {
            STATUS(dpm_sampler_submit(s, out, q.rows * q.dim), DPM_ERR_STATE);
            EXPECT(strstr(dpm_sampler_last_error(s), "dpm_sampler_next") != NULL, "double submit: %s",
                   dpm_sampler_last_error(s));
        }
    }
    EXPECT(evals == 12 && q.nfe == 12 && q.x == NULL, "12 evaluations, got %d", evals);
    STATUS(dpm_sampler_submit(s, out, B * 2), DPM_ERR_STATE);
    STATUS(dpm_sampler_read(s, x, 5), DPM_ERR_SHAPE);
    STATUS(dpm_sampler_read(s, NULL, B * 2), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_read(s, x, B * 2), DPM_OK);
    double m = 0;
    for (int i = 0; i < B * 2; i++) m += x[i];
    m /= B * 2;
    EXPECT(fabs(m - 1.0) < 0.05, "mean %f", m);
    EXPECT(dpm_sampler_last_error(NULL) == NULL, "last error of NULL");
    dpm_sampler_free(s);
    dpm_sampler_free(NULL);

    /* Guidance: the model sees 2B rows, conditional labels then null labels. */
    bad = p;
    bad.guidance = 1;
    STATUS(dpm_sampler_create(NULL, &bad, 4, 2, 1, 0, lab, &s), DPM_OK);
    STATUS(dpm_sampler_next(s, &q), DPM_OK);
    EXPECT(q.rows == 8 && q.labels && q.labels[0] == 1 && q.labels[3] == 1 && q.labels[4] == 0 && q.labels[7] == 0,
           "guided query");
    EXPECT(memcmp(q.x, q.x + 8, sizeof(float) * 8) == 0, "both halves hold the same x");
    dpm_sampler_free(s);
    dpm_schedule_free(sch);
}

/* A progress callback that cancels its own run at its `at`-th call. */
typedef struct {
    dpm_model *m;
    int at, calls;
} cancel_at;

static int32_t cancel_in_progress(void *user, const dpm_progress *p) {
    cancel_at *c = user;
    (void)p;
    if (++c->calls == c->at) dpm_cancel(c->m);
    return 0;
}

static void test_model(void) {
    dpm_model *m = NULL;
    STATUS(dpm_model_load(NULL, path("affine2d.onnx"), &m), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_model_load(rt, NULL, &m), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_model_load(rt, "", &m), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_model_load(rt, path("affine2d.onnx"), NULL), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_model_load(rt, path("missing.onnx"), &m), DPM_ERR_MODEL);
    STATUS(dpm_model_load(rt, path("bad_dtype.onnx"), &m), DPM_ERR_MODEL);
    EXPECT(strstr(dpm_last_error(), "float") != NULL, "names the dtype problem: %s", dpm_last_error());
    STATUS(dpm_model_load(rt, path("bad_names.onnx"), &m), DPM_ERR_MODEL);
    STATUS(dpm_model_load(rt, path("dynamic_dims.onnx"), &m), DPM_ERR_MODEL);
    STATUS(dpm_model_load(rt, path("make_fixtures.py"), &m), DPM_ERR_MODEL);
    STATUS(dpm_model_load(rt, path("affine2d.onnx"), &m), DPM_OK);

    dpm_model_info info;
    memset(&info, 0, sizeof info);
    STATUS(dpm_model_get_info(m, &info), DPM_ERR_INVALID_ARGUMENT);
    EXPECT(strlen(dpm_model_last_error(m)) > 0, "model last error");
    info.struct_size = 48; /* the 0.1 header's dpm_model_info: another layout, refused */
    STATUS(dpm_model_get_info(m, &info), DPM_ERR_INVALID_ARGUMENT);
    info.struct_size = sizeof info - 1;
    STATUS(dpm_model_get_info(m, &info), DPM_ERR_INVALID_ARGUMENT);
    info.struct_size = sizeof info;
    STATUS(dpm_model_get_info(m, NULL), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_model_get_info(NULL, &info), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_model_get_info(m, &info), DPM_OK);
    EXPECT(info.ndim == 1 && info.shape[0] == 2 && info.dim == 2 && !info.conditional && info.t_broadcast &&
               info.prediction == DPM_PREDICTION_EPS && !info.integer_time,
           "affine2d info");
    EXPECT(dpm_model_last_error(NULL) == NULL, "model last error of NULL");
    dpm_schedule *sch = NULL;
    STATUS(dpm_model_get_schedule(m, &sch), DPM_OK);
    EXPECT(dpm_schedule_len(sch) == 1000, "model schedule");
    dpm_schedule_free(sch);
    STATUS(dpm_model_get_schedule(m, NULL), DPM_ERR_NULL_ARGUMENT);

    dpm_sampler_params sp;
    dpm_sampler_params_init(&sp);
    dpm_generate_params gp;
    STATUS(dpm_generate_params_init(NULL), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_generate_params_init(&gp), DPM_OK);
    gp.num_samples = 10;
    gp.batch_size = 4;
    gp.seed = 3;
    float out[20], out2[20];
    STATUS(dpm_generate(m, &sp, &gp, out, 19), DPM_ERR_SHAPE);
    STATUS(dpm_generate(m, &sp, &gp, NULL, 20), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_generate(NULL, &sp, &gp, out, 20), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_generate(m, NULL, &gp, out, 20), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_generate(m, &sp, NULL, out, 20), DPM_ERR_NULL_ARGUMENT);
    int64_t lab[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    gp.labels = lab;
    STATUS(dpm_generate(m, &sp, &gp, out, 20), DPM_ERR_INVALID_ARGUMENT); /* unconditional model */
    gp.labels = NULL;
    gp.num_samples = 0;
    STATUS(dpm_generate(m, &sp, &gp, out, 0), DPM_ERR_INVALID_ARGUMENT);
    gp.num_samples = 10;
    STATUS(dpm_generate(m, &sp, &gp, out, 20), DPM_OK);
    /* Batch size does not change the samples. */
    gp.batch_size = 10;
    STATUS(dpm_generate(m, &sp, &gp, out2, 20), DPM_OK);
    EXPECT(memcmp(out, out2, sizeof out) == 0, "batch-size invariance");
    /* dpm_cancel stops only a run in progress. With none, it does nothing: the next run
       completes (a cancel used to be kept, and stopped the next run before its first step). */
    STATUS(dpm_cancel(NULL), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_cancel(m), DPM_OK);
    STATUS(dpm_cancel(m), DPM_OK);
    memset(out2, 0, sizeof out2);
    STATUS(dpm_generate(m, &sp, &gp, out2, 20), DPM_OK);
    EXPECT(memcmp(out, out2, sizeof out) == 0, "a run after a cancel with nothing running is complete");
    /* A cancel while the run is in progress (from its progress callback) stops that run,
       after the evaluation under way, and only that run; the handle stays usable. */
    cancel_at ca = {m, 2, 0};
    gp.progress = cancel_in_progress;
    gp.user_data = &ca;
    STATUS(dpm_generate(m, &sp, &gp, out2, 20), DPM_ERR_CANCELLED);
    EXPECT(ca.calls == 2, "cancelled at the second callback, stopped after %d", ca.calls);
    gp.progress = NULL;
    gp.user_data = NULL;
    STATUS(dpm_cancel(m), DPM_OK); /* after the run: nothing to stop */
    memset(out2, 0, sizeof out2);
    STATUS(dpm_generate(m, &sp, &gp, out2, 20), DPM_OK);
    EXPECT(memcmp(out, out2, sizeof out) == 0, "same result after a cancelled run");
    dpm_model_free(m);

    /* A conditional image model with guidance. */
    STATUS(dpm_model_load(rt, path("cond_image.onnx"), &m), DPM_OK);
    STATUS(dpm_model_get_info(m, &info), DPM_OK);
    EXPECT(info.ndim == 3 && info.shape[0] == 3 && info.shape[1] == 8 && info.conditional && info.num_classes == 3 &&
               info.integer_time && !info.t_broadcast,
           "cond_image info");
    sp.guidance = 1;
    gp.num_samples = 4;
    gp.batch_size = 3;
    float img[4 * 192];
    STATUS(dpm_generate(m, &sp, &gp, img, 4 * 192), DPM_ERR_INVALID_ARGUMENT); /* labels needed */
    int64_t lab4[4] = {1, 2, 3, 4};
    gp.labels = lab4;
    STATUS(dpm_generate(m, &sp, &gp, img, 4 * 192), DPM_ERR_INVALID_ARGUMENT); /* 4 > num_classes */
    EXPECT(strstr(dpm_last_error(), "sample 3") != NULL, "names the sample: %s", dpm_last_error());
    lab4[3] = 2;
    /* Label 0 is the null class: an unconditional sample without guidance; with guidance it
       is refused (it used to be accepted), naming the sample. */
    lab4[2] = 0;
    STATUS(dpm_generate(m, &sp, &gp, img, 4 * 192), DPM_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(dpm_last_error(), "sample 2") != NULL && strstr(dpm_last_error(), "null class") != NULL,
           "names the sample and the null class: %s", dpm_last_error());
    sp.guidance = 0;
    STATUS(dpm_generate(m, &sp, &gp, img, 4 * 192), DPM_OK);
    sp.guidance = 1;
    lab4[2] = 3;
    STATUS(dpm_generate(m, &sp, &gp, img, 4 * 192), DPM_OK);

    /* PNG output. */
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/dpm-c-test-%d", (int)getpid());
    mkdir(dir, 0755);
    const size_t img_len = 4 * 192;
    STATUS(dpm_write_pngs(img, img_len, 4, 3, 8, 8, dir, "s"), DPM_OK);
    char f[512];
    snprintf(f, sizeof f, "%s/s00003.png", dir);
    EXPECT(access(f, R_OK) == 0, "png written");
    snprintf(f, sizeof f, "%s/grid.png", dir);
    STATUS(dpm_write_grid(img, img_len, 4, 3, 8, 8, 2, f), DPM_OK);
    EXPECT(access(f, R_OK) == 0, "grid written");
    STATUS(dpm_write_grid(img, img_len, 4, 3, 8, 8, 0, f), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_write_grid(img, 4 * 2 * 64, 4, 2, 8, 8, 2, f), DPM_ERR_SHAPE); /* 2 channels */
    STATUS(dpm_write_grid(NULL, img_len, 4, 3, 8, 8, 2, f), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_write_pngs(img, img_len, 0, 3, 8, 8, dir, "s"), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_write_pngs(img, img_len, (size_t)-1, 3, 8, 8, dir, "s"), DPM_ERR_SHAPE); /* a negative int */
    STATUS(dpm_write_grid(img, img_len, 4, 3, 8, 8, SIZE_MAX, f), DPM_OK); /* more columns than images */
    STATUS(dpm_write_pngs(img, img_len, 4, 3, 8, 8, "/nonexistent/dir", "s"), DPM_ERR_IO);
    STATUS(dpm_write_pngs(img, img_len, 4, 3, 8, 8, dir, NULL), DPM_ERR_NULL_ARGUMENT);
    /* Found by fuzzing: "" meant the host's current folder, and a prefix could leave `dir`. */
    STATUS(dpm_write_pngs(img, img_len, 4, 3, 8, 8, "", "s"), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_write_pngs(img, img_len, 4, 3, 8, 8, dir, "../s"), DPM_ERR_INVALID_ARGUMENT);
    STATUS(dpm_write_grid(img, img_len, 4, 3, 8, 8, 2, ""), DPM_ERR_INVALID_ARGUMENT);
    /* The buffer's length is checked against n * c * h * w before anything is read: larger
       dimensions used to read past its end (valgrind: invalid read in dpm::imageio::pixels;
       4096 x 4096 on a 3 x 8 x 8 buffer was a SIGSEGV). Shorter and longer are both wrong,
       and a refused call writes no file. */
    char first[512];
    snprintf(first, sizeof first, "%s/s00000.png", dir);
    unlink(first);
    STATUS(dpm_write_pngs(img, img_len - 1, 4, 3, 8, 8, dir, "s"), DPM_ERR_SHAPE);
    STATUS(dpm_write_pngs(img, img_len + 1, 4, 3, 8, 8, dir, "s"), DPM_ERR_SHAPE);
    STATUS(dpm_write_grid(img, img_len - 1, 4, 3, 8, 8, 2, f), DPM_ERR_SHAPE);
    STATUS(dpm_write_grid(img, img_len + 1, 4, 3, 8, 8, 2, f), DPM_ERR_SHAPE);
    STATUS(dpm_write_pngs(img, 192, 1, 3, 4096, 4096, dir, "s"), DPM_ERR_SHAPE);
    STATUS(dpm_write_grid(img, 192, 1, 3, 4096, 4096, 1, f), DPM_ERR_SHAPE);
    STATUS(dpm_write_grid(img, img_len, 5, 3, 8, 8, 2, f), DPM_ERR_SHAPE);
    STATUS(dpm_write_grid(img, img_len, 2147483647, 3, 2147483647, 2147483647, 2, f), DPM_ERR_SHAPE);
    STATUS(dpm_write_pngs(NULL, 0, 4, 3, 8, 8, dir, "s"), DPM_ERR_SHAPE);
    STATUS(dpm_write_pngs(NULL, img_len, 4, 3, 8, 8, dir, "s"), DPM_ERR_NULL_ARGUMENT);
    EXPECT(access(first, F_OK) != 0, "a refused call wrote %s", first);
    for (int i = 0; i < 4; i++) {
        snprintf(f, sizeof f, "%s/s%05d.png", dir, i);
        unlink(f);
    }
    snprintf(f, sizeof f, "%s/grid.png", dir);
    unlink(f);
    rmdir(dir);
    dpm_model_free(m);
    dpm_model_free(NULL);
}

/* ---- threads ---------------------------------------------------------------------------- */

typedef struct {
    uint64_t seed;
    float out[64 * 2];
    dpm_status st;
} job;

/* The generation every thread job runs: 64 samples of affine2d in batches of 16. */
static void job_params(dpm_sampler_params *sp, dpm_generate_params *gp, uint64_t seed) {
    dpm_sampler_params_init(sp);
    dpm_generate_params_init(gp);
    gp->num_samples = 64;
    gp->batch_size = 16;
    gp->seed = seed;
}

static void *worker(void *arg) {
    job *j = arg;
    dpm_model *m = NULL;
    j->st = dpm_model_load(rt, path("affine2d.onnx"), &m);
    if (j->st != DPM_OK) return NULL;
    dpm_sampler_params sp;
    dpm_generate_params gp;
    job_params(&sp, &gp, j->seed);
    for (int rep = 0; rep < 5 && j->st == DPM_OK; rep++) j->st = dpm_generate(m, &sp, &gp, j->out, 128);
    dpm_model_free(m);
    return NULL;
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int in_progress, release;
} gate;

static int32_t hold_in_progress(void *user, const dpm_progress *p) {
    gate *g = user;
    (void)p;
    pthread_mutex_lock(&g->mu);
    if (!g->in_progress) {
        g->in_progress = 1;
        pthread_cond_broadcast(&g->cv);
        while (!g->release) pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    return 0;
}

typedef struct {
    dpm_model *m;
    gate *g;
    int n;
    dpm_status st;
    double seconds_after_cancel;
} long_run;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *run_long(void *arg) {
    long_run *l = arg;
    dpm_sampler_params sp;
    dpm_sampler_params_init(&sp);
    dpm_sampler_params_preset(&sp, "dpm1", 1000);
    dpm_generate_params gp;
    dpm_generate_params_init(&gp);
    gp.num_samples = l->n;
    gp.batch_size = 64;
    gp.progress = hold_in_progress;
    gp.user_data = l->g;
    float *out = malloc(sizeof(float) * 2 * l->n);
    l->st = dpm_generate(l->m, &sp, &gp, out, 2 * (size_t)l->n);
    free(out);
    return NULL;
}

/* Many threads on one model handle and one sampler handle at once (misuse the header
   forbids): every call either runs or is refused with DPM_ERR_BUSY, and every run that did go
   through gives exactly the sequential result: no corruption, no crash. */
typedef struct {
    dpm_model *m;
    dpm_sampler *s;
    uint64_t seed;
    int ok, busy, other;
    int mismatch;
    const float *expect;
} hammer;

static void *hammer_model(void *arg) {
    hammer *h = arg;
    dpm_sampler_params sp;
    dpm_generate_params gp;
    job_params(&sp, &gp, h->seed);
    float out[64 * 2];
    for (int rep = 0; rep < 40; rep++) {
        dpm_status st = dpm_generate(h->m, &sp, &gp, out, 128);
        if (st == DPM_OK) {
            h->ok++;
            if (memcmp(out, h->expect, sizeof out) != 0) h->mismatch++;
        } else if (st == DPM_ERR_BUSY) {
            h->busy++;
        } else {
            h->other++;
        }
    }
    return NULL;
}

static void *hammer_sampler(void *arg) {
    hammer *h = arg;
    float buf[8 * 2] = {0};
    for (int rep = 0; rep < 2000; rep++) {
        dpm_query q;
        dpm_status st = dpm_sampler_next(h->s, &q);
        if (st == DPM_OK && !q.done) st = dpm_sampler_submit(h->s, buf, 16);
        if (st == DPM_OK) st = dpm_sampler_read(h->s, buf, 16);
        if (st == DPM_OK || st == DPM_ERR_STATE) h->ok++;
        else if (st == DPM_ERR_BUSY) h->busy++;
        else h->other++;
    }
    return NULL;
}

static void test_shared_handles(void) {
    enum { T = 8 };
    dpm_model *m = NULL;
    STATUS(dpm_model_load(rt, path("affine2d.onnx"), &m), DPM_OK);
    job ref = {.seed = 7};
    worker(&ref);
    EXPECT(ref.st == DPM_OK, "reference run");
    hammer h[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        h[i] = (hammer){.m = m, .seed = 7, .expect = ref.out};
        pthread_create(&th[i], NULL, hammer_model, &h[i]);
    }
    int ok = 0, busy = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        EXPECT(h[i].other == 0 && h[i].mismatch == 0, "thread %d: %d other errors, %d corrupted runs", i,
               h[i].other, h[i].mismatch);
        ok += h[i].ok;
        busy += h[i].busy;
    }
    EXPECT(ok > 0 && ok + busy == T * 40, "shared model: %d runs, %d refused", ok, busy);
    dpm_model_free(m);

    dpm_sampler_params sp;
    dpm_sampler_params_init(&sp);
    dpm_sampler *s = NULL;
    STATUS(dpm_sampler_create(NULL, &sp, 8, 2, 1, 0, NULL, &s), DPM_OK);
    for (int i = 0; i < T; i++) {
        h[i] = (hammer){.s = s};
        pthread_create(&th[i], NULL, hammer_sampler, &h[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        EXPECT(h[i].other == 0, "sampler thread %d: %d unexpected statuses", i, h[i].other);
    }
    float x[16];
    STATUS(dpm_sampler_read(s, x, 16), DPM_OK);
    dpm_sampler_free(s);
}

static void test_threads(void) {
    enum { N = 16 };
    job seq[N], par[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        seq[i].seed = par[i].seed = 100 + i;
        worker(&seq[i]);
    }
    for (int i = 0; i < N; i++) pthread_create(&th[i], NULL, worker, &par[i]);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        EXPECT(seq[i].st == DPM_OK && par[i].st == DPM_OK, "thread %d status", i);
        EXPECT(memcmp(seq[i].out, par[i].out, sizeof seq[i].out) == 0, "thread %d equals the sequential run", i);
    }

    /* One handle used from two threads: the second call is refused with DPM_ERR_BUSY, and
       dpm_cancel from another thread stops the run promptly; the handle stays usable. */
    dpm_model *m = NULL;
    STATUS(dpm_model_load(rt, path("affine2d.onnx"), &m), DPM_OK);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    long_run l = {m, &g, 100000, -1, 0};
    pthread_t t;
    pthread_create(&t, NULL, run_long, &l);
    pthread_mutex_lock(&g.mu);
    while (!g.in_progress) pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    dpm_model_info info = {.struct_size = sizeof info};
    STATUS(dpm_model_get_info(m, &info), DPM_ERR_BUSY);
    STATUS(dpm_cancel(m), DPM_OK);
    /* A second dpm_generate refused as BUSY must leave the cancel for the running call (it
       used to clear the flag on its way out, and the run went on). */
    {
        dpm_sampler_params sp;
        dpm_sampler_params_init(&sp);
        dpm_generate_params gp;
        dpm_generate_params_init(&gp);
        gp.num_samples = 1;
        float one[2];
        STATUS(dpm_generate(m, &sp, &gp, one, 2), DPM_ERR_BUSY);
    }
    double t0 = now();
    pthread_mutex_lock(&g.mu);
    g.release = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(t, NULL);
    double dt = now() - t0;
    EXPECT(l.st == DPM_ERR_CANCELLED, "cancelled run returned %s", dpm_status_name(l.st));
    EXPECT(dt < 1.0, "cancel took %.3f s", dt);
    STATUS(dpm_model_get_info(m, &info), DPM_OK);
    dpm_model_free(m);
}

/* ---- freeing a model while a run is inside it (issue 14, item 14) ---------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started;   /* the run called its progress callback: it is inside libdpm */
    int inside;    /* a progress callback is running */
    long calls;    /* progress callbacks so far */
    dpm_model *m;  /* free_self: the model the callback frees */
} free_gate;

static int32_t count_progress(void *user, const dpm_progress *p) {
    free_gate *g = user;
    (void)p;
    pthread_mutex_lock(&g->mu);
    g->calls++;
    int first = !g->started;
    g->started = 1;
    g->inside = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    /* The first callback lingers, so that the free below comes while the run is in it: a
       free that did not wait for the run would return before it ends. */
    if (first) nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    pthread_mutex_lock(&g->mu);
    g->inside = 0;
    pthread_mutex_unlock(&g->mu);
    return 0;
}

/* A host's callback that frees its own model (e.g. a shutdown handler run from it). */
static int32_t free_self(void *user, const dpm_progress *p) {
    free_gate *g = user;
    (void)p;
    g->calls++;
    if (g->m) {
        dpm_model_free(g->m);
        g->m = NULL;
    }
    return 0;
}

typedef struct {
    dpm_model *m;
    free_gate *g;
    dpm_progress_fn progress;
    dpm_status st;
} free_run;

static void *run_until_freed(void *arg) {
    free_run *r = arg;
    dpm_sampler_params sp;
    dpm_sampler_params_init(&sp);
    dpm_sampler_params_preset(&sp, "dpm1", 1000);
    dpm_generate_params gp;
    dpm_generate_params_init(&gp);
    gp.num_samples = 100000; /* minutes of work: only a cancel ends it in time */
    gp.batch_size = 64;
    gp.progress = r->progress;
    gp.user_data = r->g;
    float *out = malloc(sizeof(float) * 2 * gp.num_samples);
    r->st = dpm_generate(r->m, &sp, &gp, out, 2 * (size_t)gp.num_samples);
    free(out);
    return NULL;
}

static void test_free_while_running(void) {
    /* The shutdown path: dpm_cancel, then dpm_model_free, while another thread is inside
       dpm_generate. It used to free the model under the run (SIGSEGV, a use after free under
       ASan and valgrind); now the free stops the run, waits for it, then frees. */
    for (int with_cancel = 1; with_cancel >= 0; with_cancel--) {
        free_gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL};
        free_run r = {NULL, &g, count_progress, -1};
        STATUS(dpm_model_load(rt, path("affine2d.onnx"), &r.m), DPM_OK);
        pthread_t t;
        pthread_create(&t, NULL, run_until_freed, &r);
        pthread_mutex_lock(&g.mu);
        while (!g.started) pthread_cond_wait(&g.cv, &g.mu);
        pthread_mutex_unlock(&g.mu);
        /* The run is inside libdpm, in its first progress callback. */
        if (with_cancel) STATUS(dpm_cancel(r.m), DPM_OK);
        dpm_model_free(r.m);
        /* Once dpm_model_free has returned the run has stopped: no callback is running and
           none comes any more. */
        pthread_mutex_lock(&g.mu);
        long calls_at_free = g.calls;
        int inside_at_free = g.inside;
        pthread_mutex_unlock(&g.mu);
        pthread_join(t, NULL);
        EXPECT(r.st == DPM_ERR_CANCELLED || r.st == DPM_OK, "the run returned %s", dpm_status_name(r.st));
        EXPECT(!inside_at_free, "dpm_model_free returned while the run was in its callback");
        EXPECT(g.calls == calls_at_free, "%ld callbacks after dpm_model_free returned", g.calls - calls_at_free);
    }
    /* Freed from the run's own progress callback: no deadlock, the run stops. */
    free_gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL};
    free_run r = {NULL, &g, free_self, -1};
    STATUS(dpm_model_load(rt, path("affine2d.onnx"), &r.m), DPM_OK);
    g.m = r.m;
    run_until_freed(&r);
    EXPECT(r.st == DPM_ERR_CANCELLED, "freed from its callback: the run returned %s", dpm_status_name(r.st));
    EXPECT(g.m == NULL && g.calls == 1, "%ld callbacks", g.calls);
}

static int32_t stop_at_10(void *user, size_t step, size_t total, float loss) {
    int *calls = user;
    (*calls)++;
    if (!(total == 30 && loss > 0 && loss < 10)) return 1;
    return step == 10;
}

static void test_train(void) {
    dpm_train_params tp;
    STATUS(dpm_train_params_init(NULL), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_train_params_init(&tp), DPM_OK);
    char model[1024];
    STATUS(dpm_train(rt, &tp, model, sizeof model), DPM_ERR_NULL_ARGUMENT); /* out_dir */
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/dpm-c-train-%d", (int)getpid());
    tp.out_dir = dir;
    tp.preset = "nope";
    STATUS(dpm_train(rt, &tp, model, sizeof model), DPM_ERR_UNKNOWN_NAME);
    tp.preset = "toy2d";
    tp.data = "moon";
    tp.steps = 30;
    tp.lr = -1;
    STATUS(dpm_train(rt, &tp, model, sizeof model), DPM_ERR_INVALID_ARGUMENT);
    tp.lr = 0;
    STATUS(dpm_train(NULL, &tp, model, sizeof model), DPM_ERR_NULL_ARGUMENT);
    int calls = 0;
    tp.progress = stop_at_10;
    tp.user_data = &calls;
    /* Issue 14, item 12: every argument is checked before training starts (the model path
       buffer was checked only after the run): no step taken, not even the folder made. */
    STATUS(dpm_train(rt, &tp, NULL, sizeof model), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_train(rt, &tp, model, 4), DPM_ERR_SHAPE);
    EXPECT(strstr(dpm_last_error(), "toy2d.onnx") != NULL, "names the path: %s", dpm_last_error());
    /* Issue 14, item 2: NaN and infinities are refused by name (a NaN cfg_dropout or
       ema_decay used to become 0 and train). */
    const double bad_values[3] = {NAN, INFINITY, -INFINITY};
    const char *names[3] = {"params.lr", "params.cfg_dropout", "params.ema_decay"};
    for (int f = 0; f < 3; f++) {
        for (int v = 0; v < 3; v++) {
            dpm_train_params bad = tp;
            double *field[3] = {&bad.lr, &bad.cfg_dropout, &bad.ema_decay};
            *field[f] = bad_values[v];
            STATUS(dpm_train(rt, &bad, model, sizeof model), DPM_ERR_INVALID_ARGUMENT);
            EXPECT(strstr(dpm_last_error(), names[f]) != NULL, "%s = %f: %s", names[f], bad_values[v],
                   dpm_last_error());
        }
    }
    /* A batch beyond the cap (2^24 samples) is refused before anything is allocated. */
    {
        dpm_train_params bad = tp;
        bad.batch = ((size_t)1 << 24) + 1;
        STATUS(dpm_train(rt, &bad, model, sizeof model), DPM_ERR_INVALID_ARGUMENT);
        EXPECT(strstr(dpm_last_error(), "params.batch") != NULL, "names the batch: %s", dpm_last_error());
        bad.batch = SIZE_MAX;
        STATUS(dpm_train(rt, &bad, model, sizeof model), DPM_ERR_INVALID_ARGUMENT);
        bad = tp;
        bad.struct_size = sizeof bad - 8; /* cuts user_data */
        STATUS(dpm_train(rt, &bad, model, sizeof model), DPM_ERR_INVALID_ARGUMENT);
    }
    EXPECT(calls == 0, "refused calls trained: progress called %d times", calls);
    struct stat sb;
    EXPECT(stat(dir, &sb) != 0, "refused calls created %s", dir);
    STATUS(dpm_train(rt, &tp, model, sizeof model), DPM_ERR_CANCELLED);
    EXPECT(calls == 10, "progress called %d times", calls);
    tp.resume = 1;
    tp.progress = NULL;
    STATUS(dpm_train(rt, &tp, model, 4), DPM_ERR_SHAPE); /* path buffer too small: refused up front */
    STATUS(dpm_train(rt, &tp, model, sizeof model), DPM_OK);
    EXPECT(strstr(model, "toy2d.onnx") != NULL, "model path %s", model);
    /* The up-front check and the path written agree: exactly its length + 1 is enough (the
       run is complete: resuming it exports again). */
    char exact[1024];
    size_t need = strlen(model) + 1;
    STATUS(dpm_train(rt, &tp, exact, need - 1), DPM_ERR_SHAPE);
    STATUS(dpm_train(rt, &tp, exact, need), DPM_OK);
    EXPECT(strcmp(exact, model) == 0, "model path %s", exact);
    dpm_model *m = NULL;
    STATUS(dpm_model_load(rt, model, &m), DPM_OK);
    dpm_model_free(m);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    EXPECT(system(cmd) == 0, "clean up");
}

/* ---- engine inputs: latents, img2img, inpainting, step previews, schedules (issue 15) ---- */

static int32_t count_steps(void *user, const dpm_step_info *s) {
    int *n = user;
    if (s->x == NULL || s->x0 == NULL || s->len == 0 || s->nfe < 1) return 1;
    (*n)++;
    return *n >= 1000; /* stop far beyond any run here */
}

static void test_engine_inputs(void) {
    dpm_model *m = NULL;
    STATUS(dpm_model_load(rt, path("affine2d.onnx"), &m), DPM_OK);
    enum { N = 4, D = 2 };
    float lat[N * D], img[N * D], known[N * D], mask[N * D], out[N * D], out2[N * D];
    for (int i = 0; i < N * D; i++) {
        lat[i] = (float)((i * 7) % 5) * 0.3f - 0.6f;
        img[i] = (float)((i * 3) % 4) * 0.25f - 0.4f;
        known[i] = 0.5f;
        mask[i] = (i % 2 == 0) ? 1.0f : 0.0f;
    }
    dpm_sampler_params sp;
    dpm_sampler_params_init(&sp);
    EXPECT(sp.strength == 1.0, "default strength %g", sp.strength);
    dpm_generate_params gp;
    dpm_generate_params_init(&gp);
    gp.num_samples = N;

    /* Latents: lengths checked; the same latents give the same samples at any batch size. */
    gp.latents = lat;
    gp.latents_len = N * D - 1;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_ERR_SHAPE);
    gp.latents_len = N * D;
    gp.batch_size = 4;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_OK);
    gp.batch_size = 1;
    STATUS(dpm_generate(m, &sp, &gp, out2, N * D), DPM_OK);
    EXPECT(memcmp(out, out2, sizeof out) == 0, "latents: batch size changed the samples");
    gp.latents = NULL;
    gp.latents_len = 0;

    /* img2img: strength out of range, a wrong length; strength 1 is plain generation. */
    gp.init_image = img;
    gp.init_image_len = N * D;
    double bad[] = {0.0, -0.1, 1.5, NAN, INFINITY};
    for (int i = 0; i < 5; i++) {
        sp.strength = bad[i];
        STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_ERR_INVALID_ARGUMENT);
    }
    sp.strength = 1.0;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_OK);
    gp.init_image = NULL;
    gp.init_image_len = 0;
    STATUS(dpm_generate(m, &sp, &gp, out2, N * D), DPM_OK);
    EXPECT(memcmp(out, out2, sizeof out) == 0, "strength 1 differs from plain generation");
    gp.init_image = img;
    gp.init_image_len = 3;
    sp.strength = 0.5;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_ERR_SHAPE);
    gp.init_image_len = N * D;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_OK);
    gp.init_image = NULL;
    gp.init_image_len = 0;
    sp.strength = 1.0;

    /* Inpainting: both buffers needed, mask sizes and values checked, known values exact. */
    gp.known = known;
    gp.known_len = N * D;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_ERR_INVALID_ARGUMENT); /* no mask */
    gp.mask = mask;
    gp.mask_len = 3;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_ERR_SHAPE);
    gp.mask_len = N * D;
    mask[1] = 1.5f;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_ERR_INVALID_ARGUMENT);
    mask[1] = 0.0f;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_OK);
    int exact = 1;
    for (int i = 0; i < N * D; i += 2) exact &= out[i] == 0.5f;
    EXPECT(exact, "known values are exact");
    gp.mask_len = D; /* one mask for every sample */
    STATUS(dpm_generate(m, &sp, &gp, out2, N * D), DPM_OK);
    EXPECT(memcmp(out, out2, sizeof out) == 0, "a shared mask equals the per-sample one");
    gp.known = NULL;
    gp.known_len = 0;
    gp.mask = NULL;
    gp.mask_len = 0;

    /* The step callback sees every evaluation; nonzero stops the run. */
    int steps = 0;
    gp.step = count_steps;
    gp.user_data = &steps;
    gp.batch_size = 4;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_OK);
    EXPECT((size_t)steps == sp.nfe, "%d step callbacks for %zu NFE", steps, sp.nfe);
    steps = 995;
    STATUS(dpm_generate(m, &sp, &gp, out, N * D), DPM_ERR_CANCELLED);
    gp.step = NULL;

    /* The caller's schedule for a model. */
    dpm_schedule *cos = NULL, *got = NULL;
    STATUS(dpm_schedule_create("cosine", 500, &cos), DPM_OK);
    STATUS(dpm_model_set_schedule(NULL, cos), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_model_set_schedule(m, NULL), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_model_set_schedule(m, cos), DPM_OK);
    dpm_schedule_free(cos);
    STATUS(dpm_model_get_schedule(m, &got), DPM_OK);
    EXPECT(dpm_schedule_len(got) == 500, "schedule length %zu", dpm_schedule_len(got));
    dpm_schedule_free(got);
    dpm_model_free(m);

    /* Host-driven: latents, init image and inpainting before the first query only. */
    dpm_sampler *s = NULL;
    sp.strength = 0.5;
    STATUS(dpm_sampler_create(NULL, &sp, 2, 2, 3, 0, NULL, &s), DPM_OK);
    STATUS(dpm_sampler_set_state(NULL, lat, 4), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_set_state(s, NULL, 4), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_set_state(s, lat, 5), DPM_ERR_SHAPE);
    STATUS(dpm_sampler_set_state(s, lat, 4), DPM_OK);
    STATUS(dpm_sampler_set_init_image(s, img, 3), DPM_ERR_SHAPE);
    STATUS(dpm_sampler_set_init_image(s, img, 4), DPM_OK);
    STATUS(dpm_sampler_set_inpaint(s, known, 4, mask, 3), DPM_ERR_SHAPE);
    STATUS(dpm_sampler_set_inpaint(s, known, 4, NULL, 4), DPM_ERR_NULL_ARGUMENT);
    STATUS(dpm_sampler_set_inpaint(s, known, 4, mask, 2), DPM_OK);
    dpm_query q;
    STATUS(dpm_sampler_next(s, &q), DPM_OK);
    STATUS(dpm_sampler_set_state(s, lat, 4), DPM_ERR_STATE);
    STATUS(dpm_sampler_set_init_image(s, img, 4), DPM_ERR_STATE);
    STATUS(dpm_sampler_set_inpaint(s, known, 4, mask, 4), DPM_ERR_STATE);
    dpm_sampler_free(s);
}

int main(int argc, char **argv) {
    if (argc > 1) data_dir = argv[1];
    test_basics();
    test_presets();
    test_runtime();
    if (!rt) {
        fprintf(stderr, "no runtime: %s\n", dpm_last_error());
        printf("%d passed, %d failed\n", passed, failed + 1);
        return 1;
    }
    test_schedule();
    test_pixels();
    test_sampler();
    test_sampler_floats();
    test_sampler_threads();
    test_model();
    test_threads();
    test_free_while_running();
    test_shared_handles();
    test_train();
    test_engine_inputs();
    dpm_runtime_free(rt);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
