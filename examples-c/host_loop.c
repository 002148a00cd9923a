/*
 * host_loop.c: a host that runs its own "network" and uses only libdpm's solvers.
 *
 * The model here is the exact noise prediction of a 2D Gaussian N(mu, s^2 I) (any inference
 * engine would take its place). The host asks libdpm where the model is needed
 * (dpm_sampler_next), evaluates it, hands the output back (dpm_sampler_submit) until done,
 * and checks the samples' mean and spread against mu and s.
 *
 *   ./host_loop [solver] [nfe]      e.g. ./host_loop dpm++2m 20
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dpm.h"

#define BATCH 4096
#define DIM 2

static const double MU[DIM] = {1.5, -0.5};
static const double S = 0.5;

/* eps*(x, t) = sigma (x - alpha mu) / (alpha^2 s^2 + sigma^2) for a Gaussian. */
static void model(const dpm_schedule *sched, const float *x, double t, size_t rows, float *out) {
    double alpha, sigma;
    dpm_schedule_eval(sched, t, &alpha, &sigma, NULL);
    double v = alpha * alpha * S * S + sigma * sigma;
    for (size_t r = 0; r < rows; r++)
        for (int k = 0; k < DIM; k++)
            out[r * DIM + k] = (float)(sigma * (x[r * DIM + k] - alpha * MU[k]) / v);
}

/* A count from the command line: a positive integer up to 2^20, else 0. */
static size_t count_arg(const char *v) {
    char *end;
    long n = strtol(v, &end, 10);
    return *v && !*end && n > 0 && n <= (1L << 20) ? (size_t)n : 0;
}

#define CHECK(call)                                                                     \
    do {                                                                                \
        dpm_status st_ = (call);                                                        \
        if (st_ != DPM_OK) {                                                            \
            fprintf(stderr, "%s failed: %s: %s\n", #call, dpm_status_name(st_), dpm_last_error()); \
            return 1;                                                                   \
        }                                                                               \
    } while (0)

int main(int argc, char **argv) {
    const char *solver = argc > 1 ? argv[1] : "dpm2";
    size_t nfe = argc > 2 ? count_arg(argv[2]) : 20;
    if (nfe == 0) { fprintf(stderr, "usage: host_loop [solver] [nfe > 0]\n"); return 2; }
    if (dpm_version_number() / 100 != DPM_VERSION_NUMBER / 100) {
        fprintf(stderr, "libdpm %s does not match the header this was built with\n", dpm_version());
        return 1;
    }
    printf("libdpm %s: host-driven sampling with %s at %zu NFE\n", dpm_version(), solver, nfe);

    dpm_schedule *sched = NULL;
    CHECK(dpm_schedule_create("linear", 1000, &sched));
    dpm_sampler_params p;
    CHECK(dpm_sampler_params_init(&p));
    CHECK(dpm_sampler_params_preset(&p, solver, nfe));

    dpm_sampler *s = NULL;
    CHECK(dpm_sampler_create(sched, &p, BATCH, DIM, /*seed*/ 42, /*first_index*/ 0, NULL, &s));
    float *out = malloc(sizeof(float) * BATCH * DIM);
    dpm_query q;
    for (;;) {
        CHECK(dpm_sampler_next(s, &q));
        if (q.done) break;
        model(sched, q.x, q.t, q.rows, out);
        CHECK(dpm_sampler_submit(s, out, q.rows * q.dim));
    }
    float *x = malloc(sizeof(float) * BATCH * DIM);
    CHECK(dpm_sampler_read(s, x, BATCH * DIM));

    int ok = 1;
    for (int k = 0; k < DIM; k++) {
        double m = 0, var = 0;
        for (int r = 0; r < BATCH; r++) m += x[r * DIM + k];
        m /= BATCH;
        for (int r = 0; r < BATCH; r++) var += (x[r * DIM + k] - m) * (x[r * DIM + k] - m);
        double sd = sqrt(var / BATCH);
        printf("dim %d: mean %.4f (want %.4f), std %.4f (want %.4f)\n", k, m, MU[k], sd, S);
        if (fabs(m - MU[k]) > 0.05 || fabs(sd - S) > 0.05) ok = 0;
    }
    printf("%zu network evaluations; %s\n", q.nfe, ok ? "samples match the target" : "MISMATCH");
    free(out);
    free(x);
    dpm_sampler_free(s);
    dpm_schedule_free(sched);
    return ok ? 0 : 1;
}
