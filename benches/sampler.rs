//! The sampler's own cost: one tick (CPU time and RSS of every process of
//! an instance, plus PSS on PSS ticks) for a small process, and for a
//! process with 256 MiB of touched memory (a VM's QEMU has its guest memory
//! mapped; PSS makes the kernel walk it). The sampler must stay under 1% of
//! a core at its default 10 ms interval with PSS every 10th tick: per tick,
//! `(stat cost + pss cost / 10) / 10 ms`.

use criterion::{Criterion, criterion_group, criterion_main};
use isobench::sample::sample_once;
use std::path::Path;
use std::process::{Command, Stdio};

fn sampler(c: &mut Criterion) {
    isobench::report::chart::font_registered();
    let mut group = c.benchmark_group("sampler");
    // A small instance: one sleeping process.
    let mut small = Command::new("sleep")
        .arg("600")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting sleep");
    let pid = small.id();
    group.bench_function("tick/small", |b| {
        b.iter(|| sample_once(Path::new("/proc"), pid, false).expect("sleep is alive"))
    });
    group.bench_function("tick+pss/small", |b| {
        b.iter(|| sample_once(Path::new("/proc"), pid, true).expect("sleep is alive"))
    });
    let _ = small.kill();
    let _ = small.wait();

    // A big one: this process with 256 MiB touched.
    let big: Vec<u8> = vec![1u8; 256 << 20];
    let me = std::process::id();
    group.bench_function("tick/256mib", |b| {
        b.iter(|| sample_once(Path::new("/proc"), me, false).expect("self"))
    });
    group.bench_function("tick+pss/256mib", |b| {
        b.iter(|| sample_once(Path::new("/proc"), me, true).expect("self"))
    });
    std::hint::black_box(&big);
    group.finish();
}

criterion_group!(benches, sampler);
criterion_main!(benches);
