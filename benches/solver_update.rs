//! One solver update over a large batch, in bytes per second, against a plain memory copy of
//! the same size. The update is memory-bound: this shows how close it gets to the copy.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dpm::solver::kernels::{lincomb, lincomb_inplace};

const N: usize = 16 << 20; // 16 Mi f32 = 64 MiB per buffer: far beyond the caches

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("update_64MiB");
    g.sample_size(10);
    let x: Vec<f32> = (0..N).map(|i| (i % 97) as f32 * 0.01).collect();
    let m0: Vec<f32> = (0..N).map(|i| (i % 89) as f32 * 0.02).collect();
    let m1: Vec<f32> = (0..N).map(|i| (i % 83) as f32 * 0.03).collect();
    let mut out = vec![0f32; N];
    // Bytes moved: copy reads 1 and writes 1 buffer.
    g.throughput(Throughput::Bytes((2 * N * 4) as u64));
    g.bench_function("memcpy", |b| b.iter(|| out.copy_from_slice(&x)));
    for threads in [1usize, 2] {
        // DPM-Solver-1 step in place: x = a x + c m0 (reads 2, writes 1).
        g.throughput(Throughput::Bytes((3 * N * 4) as u64));
        let mut xs = x.clone();
        g.bench_with_input(
            BenchmarkId::new("first_order_inplace", threads),
            &threads,
            |b, &t| b.iter(|| lincomb_inplace(&mut xs, 0.999, &[(-0.01, &m0)], t)),
        );
        // DPM-Solver-2 final update: out = a x + c0 m0 + c1 m1 (reads 3, writes 1).
        g.throughput(Throughput::Bytes((4 * N * 4) as u64));
        g.bench_with_input(
            BenchmarkId::new("second_order", threads),
            &threads,
            |b, &t| b.iter(|| lincomb(&mut out, 0.999, &x, &[(-0.01, &m0), (0.02, &m1)], t)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
