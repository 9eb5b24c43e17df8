//! The sampler's own cost: one tick (CPU time and RSS of every process of
//! an instance, plus PSS on PSS ticks) for a small process, and for a
//! process with 256 MiB of touched memory (a VM's QEMU has its guest memory
//! mapped; PSS makes the kernel walk it). The sampler must stay under 1% of
//! a core at its default 10 ms interval with PSS every 10th tick: per tick,
//! `(stat cost + pss cost / 10) / 10 ms`.
//!
//! `parse/...` sets the sampler's hand parsers of `stat` and
//! `smaps_rollup` beside `procfs`'s on the same bytes (this process's own
//! files, read once): the reason the sampler keeps its own (see
//! `isobench::sample`).

use criterion::{Criterion, criterion_group, criterion_main};
use isobench::sample::{parse_rollup_pss_kib, parse_stat, sample_once};
use procfs::process::{SmapsRollup, Stat};
use procfs::{FromBufRead, FromRead};
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

fn parsers(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let stat = std::fs::read_to_string("/proc/self/stat").expect("own stat");
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").expect("own smaps_rollup");
    group.bench_function("stat/hand", |b| {
        b.iter(|| parse_stat(std::hint::black_box(&stat)).expect("stat"))
    });
    group.bench_function("stat/procfs", |b| {
        b.iter(|| Stat::from_read(std::hint::black_box(stat.as_bytes())).expect("stat"))
    });
    group.bench_function("smaps_rollup/hand", |b| {
        b.iter(|| parse_rollup_pss_kib(std::hint::black_box(&rollup)).expect("pss"))
    });
    group.bench_function("smaps_rollup/procfs", |b| {
        b.iter(|| SmapsRollup::from_buf_read(std::hint::black_box(rollup.as_bytes())).expect("pss"))
    });
    group.finish();
}

criterion_group!(benches, sampler, parsers);
criterion_main!(benches);
