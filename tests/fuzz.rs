//! Property tests ("fuzzing") of everything that reads input isobench did
//! not write itself: the scenario parser and the readers of run
//! directories (`results.csv`, `meta.json`, `instances.jsonl`, and
//! `compare::load` / `report::render` over a whole directory).
//!
//! Inputs are arbitrary bytes and text, and valid files mutated: lines
//! deleted, duplicated, swapped, cut, replaced; values replaced by huge
//! numbers, NaN, infinities, odd TOML and JSON, and unusual Unicode. Every
//! call must return (an error is fine) without panicking, within a time
//! bound, and without allocating more than a bound on the calling thread
//! (a counting global allocator measures it).
//!
//! The case counts keep the whole file at a second or two in release
//! mode; `ISOBENCH_FUZZ_SCALE=50 cargo test --release --test fuzz` runs 50
//! times as many cases for a longer search.

use isobench::compare;
use isobench::env::EnvKind;
use isobench::meta::Meta;
use isobench::record;
use isobench::scenario::{BUILTIN_TEXT, Overrides, Plan};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes the current thread holds.
struct Counting;

thread_local! {
    /// Bytes allocated and not yet freed by this thread (frees of memory
    /// another thread allocated make it drift, which the tests do not do).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The most `LIVE` has been since the last [`bounded`] call began.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// bookkeeping only touches const-initialized thread-locals without
// destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Longest one call may take. Generous: the host is small and shared, and
/// the calls take milliseconds.
const TIME_LIMIT: Duration = Duration::from_secs(5);

/// Most memory one call may hold at once. The inputs are a few KiB.
const MEMORY_LIMIT: isize = 64 << 20;

/// Runs `f`, failing the case when it takes longer than [`TIME_LIMIT`] or
/// holds more than [`MEMORY_LIMIT`] bytes at some point. (A panic in `f`
/// fails the case by itself: proptest catches it and shrinks the input.)
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    let held = PEAK.with(Cell::get) - base;
    prop_assert!(took < TIME_LIMIT, "{what} took {took:?}");
    prop_assert!(held < MEMORY_LIMIT, "{what} held {held} bytes at once");
    Ok(out)
}

/// A configuration of `n` cases, times `ISOBENCH_FUZZ_SCALE` when set.
fn cases(n: u32) -> ProptestConfig {
    let scale = std::env::var("ISOBENCH_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    ProptestConfig::with_cases(n.saturating_mul(scale))
}

/// Values that break parsers: huge and special numbers, odd TOML and
/// JSON, unusual Unicode, and arbitrary short text.
fn weird_value() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "NaN",
        "nan",
        "inf",
        "-inf",
        "+inf",
        "infinity",
        "1e308",
        "1e309",
        "-1e400",
        "4.9e-324",
        "-0",
        "0",
        "-1",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "9223372036854775807",
        "-9223372036854775808",
        "0x7fffffff",
        "1_000_000",
        "1.5e",
        "\"\"",
        "\"NaN\"",
        "[]",
        "[[]]",
        "{}",
        "{ a = 1 }",
        "true",
        "null",
        "1979-05-27T07:32:00Z",
        "\"\\u0000\"",
        "\"\\uD800\"",
        "'''",
        "\"\"\"",
        "\u{202e}evil",
        "\u{0}",
        "\u{feff}",
        "\u{10ffff}",
        "é",
        "e\u{301}",
        "𝕏𝕐",
        "😀",
        "\"😀\"",
        "\"\u{202e}x\"",
        "\r",
        "\\",
        "\"",
        ",",
        "=",
    ])
    .prop_map(String::from);
    prop_oneof![
        4 => fixed,
        1 => "[0-9]{15,60}",
        1 => "-?[0-9]{1,3}\\.[0-9]{0,3}e-?[0-9]{1,4}",
        2 => any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

/// One change to a file's lines.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// Cut the line after this many characters.
    Cut(usize, usize),
    Replace(usize, String),
    Insert(usize, String),
    /// Replace the `k`-th field (split at the separator) with a value.
    Field(usize, usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let i = any::<usize>();
    prop_oneof![
        i.prop_map(Edit::Delete),
        i.prop_map(Edit::Duplicate),
        (i, i).prop_map(|(a, b)| Edit::Swap(a, b)),
        (i, 0usize..40).prop_map(|(a, n)| Edit::Cut(a, n)),
        (i, weird_value()).prop_map(|(a, v)| Edit::Replace(a, v)),
        (i, weird_value()).prop_map(|(a, v)| Edit::Insert(a, v)),
        (i, 0usize..8, weird_value()).prop_map(|(a, k, v)| Edit::Field(a, k, v)),
        (i, 0usize..8, weird_value()).prop_map(|(a, k, v)| Edit::Field(a, k, v)),
    ]
}

/// `text` with `edits` applied to its lines; `sep` splits a line into
/// fields (`,` for CSV, `=` and `:` for TOML and JSON).
fn mutate(text: &str, edits: &[Edit], sep: char) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::Delete(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::Duplicate(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::Cut(i, at) if !lines.is_empty() => {
                let l = &mut lines[i % n];
                *l = l.chars().take(*at).collect();
            }
            Edit::Replace(i, v) if !lines.is_empty() => lines[i % n] = v.clone(),
            Edit::Insert(i, v) => lines.insert(i % (lines.len() + 1), v.clone()),
            Edit::Field(i, k, v) if !lines.is_empty() => {
                let l = &mut lines[i % n];
                let mut fields: Vec<String> = l.split(sep).map(String::from).collect();
                let k = k % fields.len();
                fields[k] = v.clone();
                *l = fields.join(&sep.to_string());
            }
            _ => {}
        }
    }
    lines.join("\n") + "\n"
}

/// The type of a scenario key, for values that mostly fit it.
#[derive(Debug, Clone, Copy)]
enum Ty {
    Int,
    Float,
    Str,
    Size,
    Volumes,
    Envs,
    Args,
    Machine,
    Cgroups,
    Target,
    Metrics,
    /// `max_reps` and, on the next line, `target_rsd` (each needs the other).
    Adaptive,
}

/// A value for a key of type `ty`: mostly a good one, often an edge case
/// of the type, sometimes anything.
fn value_of(ty: Ty) -> BoxedStrategy<String> {
    let pick = |v: &[&'static str]| prop::sample::select(v.to_vec()).prop_map(String::from);
    let (good, edge) = match ty {
        Ty::Int => (
            pick(&["1", "2", "3", "16"]),
            pick(&[
                "0",
                "-1",
                "4294967295",
                "4294967296",
                "9223372036854775807",
                "1.5",
            ]),
        ),
        Ty::Float => (
            pick(&["0.05", "2.5", "1"]),
            pick(&["0.0", "-1.0", "1e308", "nan", "inf", "-inf", "5e-324"]),
        ),
        Ty::Str => (
            pick(&["\"x\"", "\"a-b_1\""]),
            pick(&[
                "\"\"",
                "\"é\u{202e}😀\"",
                "\"\\u0000\"",
                "\"a/b\"",
                "\"x x\"",
            ]),
        ),
        Ty::Size => (
            pick(&["\"64M\"", "\"1G\"", "\"512K\""]),
            pick(&[
                "\"0\"",
                "\"-5\"",
                "\"99999999999999T\"",
                "\"1.5G\"",
                "\"G\"",
            ]),
        ),
        Ty::Volumes => (
            pick(&["[]", "[\"/tmp:/data\"]", "[\"/tmp:/data:ro\"]"]),
            pick(&[
                "[\"rel:/x\"]",
                "[\"/tmp:/d\", \"/tmp:/d\"]",
                "[\"/tmp\"]",
                "[\":\"]",
            ]),
        ),
        Ty::Envs => (
            pick(&[
                "[\"native\"]",
                "[\"native\", \"container\", \"vm\"]",
                "[\"vm\"]",
            ]),
            pick(&["[]", "[\"vm\", \"vm\"]", "[\"docker\"]", "\"native\""]),
        ),
        Ty::Args => (
            pick(&["[\"/bin/true\"]", "[\"ls\", \"-l\"]"]),
            pick(&["[]", "[\"\"]", "[\"rel/path\"]", "[1]", "[\"a\\u0000b\"]"]),
        ),
        Ty::Machine => (
            pick(&["\"microvm\"", "\"pc\"", "\"q35\""]),
            pick(&["\"virt\"", "\"\""]),
        ),
        Ty::Cgroups => (
            pick(&["\"auto\"", "\"all\"", "\"none\""]),
            pick(&["\"v1\"", "\"\""]),
        ),
        Ty::Target => (
            pick(&["\"rootfs\"", "\"volume\""]),
            pick(&["\"tmpfs\"", "\"\""]),
        ),
        Ty::Adaptive => (
            pick(&["8\ntarget_rsd = 0.05", "16\ntarget_rsd = 0.1"]),
            pick(&[
                "1\ntarget_rsd = 0.05",
                "8\ntarget_rsd = 0",
                "8\ntarget_rsd = nan",
                "8\ntarget_rsd = -1.0",
                "4294967295\ntarget_rsd = 1e-300",
                "8",
            ]),
        ),
        Ty::Metrics => (
            pick(&[
                "[{ name = \"t\", unit = \"s\", regex = \"took (\\\\d+)\", better = \"lower\" }]",
            ]),
            pick(&[
                "[]",
                "[{ name = \"t\", unit = \"s\", regex = \"(\", better = \"lower\" }]",
                "[{ name = \"t\", unit = \"s\", regex = \"a{99999}(b)\", better = \"lower\" }]",
                "[{ name = \"t\", unit = \"s\", regex = \"no group\", better = \"lower\" }]",
                "[{ name = \"startup_ms\", unit = \"s\", regex = \"(1)\", better = \"higher\" }]",
                "[{ name = \"t\", unit = \"s\", regex = \"(1)\", better = \"up\" }]",
                "[{ name = \"t t\", unit = \"s\", regex = \"(1)\", better = \"lower\" }]",
                "[{ name = \"t\", unit = \"s\", regex = \"(1)\", better = \"lower\" }, { name = \"t\", unit = \"s\", regex = \"(2)\", better = \"lower\" }]",
            ]),
        ),
    };
    prop_oneof![24 => good, 2 => edge, 1 => weird_value()].boxed()
}

type Keys = &'static [(&'static str, Ty)];

const TOP_KEYS: Keys = &[
    ("description", Ty::Str),
    ("environments", Ty::Envs),
    ("reps", Ty::Int),
    ("max_reps", Ty::Adaptive),
    ("warmups", Ty::Int),
    ("timeout_s", Ty::Int),
    ("sample_ms", Ty::Int),
];
const VM_KEYS: Keys = &[
    ("memory_mib", Ty::Int),
    ("cpus", Ty::Int),
    ("boot_timeout_s", Ty::Int),
    ("machine", Ty::Machine),
    ("kernel_args", Ty::Args),
    ("disk_mib", Ty::Int),
];
const CONTAINER_KEYS: Keys = &[
    ("memory", Ty::Size),
    ("cpus", Ty::Float),
    ("pids", Ty::Int),
    ("volumes", Ty::Volumes),
    ("cgroups", Ty::Cgroups),
];
/// Keys every workload may have.
const WORKLOAD_KEYS: Keys = &[
    ("name", Ty::Str),
    ("reps", Ty::Int),
    ("max_reps", Ty::Adaptive),
    ("warmups", Ty::Int),
    ("timeout_s", Ty::Int),
];
/// Each kind, the lines it needs, and its own keys.
const KINDS: &[(&str, &str, Keys)] = &[
    ("noop", "", &[]),
    ("idle", "", &[("duration_ms", Ty::Int)]),
    (
        "cpu",
        "",
        &[
            ("rounds", Ty::Int),
            ("buffer_kib", Ty::Int),
            ("threads", Ty::Int),
        ],
    ),
    ("memory", "", &[("array_mib", Ty::Int), ("passes", Ty::Int)]),
    ("pagefault", "", &[("mib", Ty::Int)]),
    ("syscall", "", &[("iterations", Ty::Int)]),
    ("fork", "", &[("count", Ty::Int)]),
    ("net", "", &[("requests", Ty::Int), ("bulk_mib", Ty::Int)]),
    (
        "fileio",
        "",
        &[
            ("file_mib", Ty::Int),
            ("block_kib", Ty::Int),
            ("ops", Ty::Int),
            ("target", Ty::Target),
        ],
    ),
    (
        "density",
        "",
        &[("instances", Ty::Int), ("settle_ms", Ty::Int)],
    ),
    (
        "command",
        "argv = [\"/bin/echo\", \"took 5\"]\n",
        &[("files", Ty::Args), ("metrics", Ty::Metrics)],
    ),
];

/// Lines `key = value` for up to `max` keys of `keys` (each at most once).
fn section(keys: Keys, max: usize) -> BoxedStrategy<String> {
    if keys.is_empty() {
        return Just(String::new()).boxed();
    }
    prop::collection::vec(0..keys.len(), 0..=max)
        .prop_flat_map(move |picks| {
            let mut seen = std::collections::BTreeSet::new();
            let lines: Vec<BoxedStrategy<String>> = picks
                .into_iter()
                .filter(|i| seen.insert(keys[*i].0))
                .map(|i| {
                    let (key, ty) = keys[i];
                    value_of(ty)
                        .prop_map(move |v| format!("{key} = {v}\n"))
                        .boxed()
                })
                .collect();
            lines.prop_map(|l| l.concat())
        })
        .boxed()
}

/// One `[[workload]]` table: a kind, some of its own keys, some common
/// ones.
fn workload_table() -> BoxedStrategy<String> {
    (0..KINDS.len())
        .prop_flat_map(|k| {
            let (kind, needed, own) = KINDS[k];
            (section(own, 3), section(WORKLOAD_KEYS, 2)).prop_map(move |(own, common)| {
                format!("[[workload]]\nkind = \"{kind}\"\n{needed}{own}{common}")
            })
        })
        .boxed()
}

/// A scenario built from isobench's own keys with values that mostly fit
/// them: it reaches the validation behind the TOML parser.
fn structured_scenario() -> impl Strategy<Value = String> {
    (
        section(TOP_KEYS, 3),
        prop::option::weighted(0.3, section(VM_KEYS, 3)),
        prop::option::weighted(0.3, section(CONTAINER_KEYS, 3)),
        prop::collection::vec(workload_table(), 1..5),
    )
        .prop_map(|(top, vm, container, workloads)| {
            let mut s = format!("name = \"fz\"\n{top}");
            if let Some(vm) = vm {
                s += &format!("[vm]\n{vm}");
            }
            if let Some(c) = container {
                s += &format!("[container]\n{c}");
            }
            s + &workloads.concat()
        })
}

/// Command-line overrides: mostly none, sometimes odd ones.
fn overrides() -> impl Strategy<Value = Overrides> {
    let envs = prop::collection::vec(prop::sample::select(EnvKind::ALL.to_vec()), 0..4);
    let names = prop::collection::vec(
        prop::sample::select(vec!["noop", "cpu", "x", "fz", "command", ""]).prop_map(String::from),
        0..3,
    );
    prop_oneof![
        3 => Just(Overrides::default()),
        1 => (
            prop::option::of(envs),
            prop::option::of(names),
            prop::option::of(prop_oneof![Just(0u64), Just(1), Just(u64::from(u32::MAX) + 1), any::<u64>()]),
        )
            .prop_map(|(environments, workloads, reps)| Overrides {
                environments,
                workloads,
                reps,
                warmups: None,
            }),
    ]
}

/// A valid `results.csv`: 2 workloads, 3 environments, 4 repetitions and
/// 2 metrics (48 rows).
fn valid_results() -> String {
    let mut s = String::from("workload,environment,repetition,metric,unit,value\n");
    for w in ["noop", "cpu"] {
        for (k, e) in ["native", "container", "vm"].iter().enumerate() {
            for rep in 1..=4 {
                let f = 1.0 + k as f64 + rep as f64 / 10.0;
                s += &format!("{w},{e},{rep},startup_ms,ms,{}\n", 2.5 * f);
                s += &format!("{w},{e},{rep},score,ops/s,{}\n", 1000.0 / f);
            }
        }
    }
    s
}

/// A valid `meta.json`, one field a line where possible.
const VALID_META: &str = r#"{
  "run_id": "20260101T000000Z-abcd",
  "status": "complete",
  "started": "2026-01-01T00:00:00Z",
  "finished": "2026-01-01T00:01:00Z",
  "wall_s": 60.0,
  "isobench": "0.1.0 (fuzz)",
  "host": {
    "cpu_model": "CPU",
    "cores": 2,
    "kernel": "6.1.0",
    "os": "Debian 12",
    "memory_mib": 4096,
    "cgroup_mode": "hybrid"
  },
  "qemu": null,
  "accelerator": null,
  "guest_kernel": null,
  "image": null,
  "scenario": {
    "name": "fz",
    "workloads": [
      {"name": "noop", "spec": {"kind": "noop"}},
      {"name": "cpu", "spec": {"kind": "cpu", "rounds": 10}}
    ]
  },
  "environments": {},
  "metrics": {
    "startup_ms": {"unit": "ms", "better": "lower"},
    "score": {"unit": "ops/s", "better": "higher"}
  },
  "order": "interleaved",
  "notes": []
}
"#;

/// Scenarios to mutate: the built-in one and those shipped beside it.
const SCENARIOS: [&str; 4] = [
    BUILTIN_TEXT,
    include_str!("../scenarios/teaching.toml"),
    include_str!("../scenarios/apps.toml"),
    include_str!("../scenarios/density.toml"),
];

/// A scratch directory for this process and `tag`, emptied; removed by
/// the property that uses it.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("isobench-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a run directory and reads it the way `compare` does, then
/// compares it with itself and renders the comparison.
fn load_and_compare(dir: &Path, meta: &str, results: &str) -> Result<(), TestCaseError> {
    std::fs::write(dir.join("meta.json"), meta).unwrap();
    std::fs::write(dir.join("results.csv"), results).unwrap();
    let loaded = bounded("compare::load", || compare::load("current", dir))?;
    if let Ok(run) = loaded {
        let compared = bounded("compare::compare", || {
            compare::compare(&run, &run, compare::Thresholds::default()).map(|c| c.markdown())
        })?;
        if let Ok(md) = compared {
            prop_assert!(md.contains("isobench compare"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn scenario_parser_survives_arbitrary_text(text in any::<String>()) {
        let _ = bounded("Plan::parse", || Plan::parse(&text, "fuzz.toml", &Overrides::default()))?;
    }

    #[test]
    fn scenario_parser_survives_mutated_scenarios(
        which in 0..SCENARIOS.len(),
        edits in prop::collection::vec(edit(), 1..8),
        sep in prop::sample::select(vec!['=', ',', '"']),
    ) {
        let text = mutate(SCENARIOS[which], &edits, sep);
        let _ = bounded("Plan::parse", || Plan::parse(&text, "fuzz.toml", &Overrides::default()))?;
    }

    #[test]
    fn scenario_parser_survives_structured_scenarios(
        text in structured_scenario(),
        overrides in overrides(),
    ) {
        let plan = bounded("Plan::parse", || Plan::parse(&text, "fuzz.toml", &overrides))?;
        // A plan is written into meta.json as it is.
        if let Ok(plan) = plan {
            bounded("serializing the plan", || serde_json::to_string(&plan))?.unwrap();
        }
    }

    #[test]
    fn results_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut with_header = b"workload,environment,repetition,metric,unit,value\n".to_vec();
        with_header.extend(&bytes);
        for input in [&bytes[..], &with_header[..]] {
            let _ = bounded("parse_results", || {
                record::parse_results(input, Path::new("results.csv"))
            })?;
        }
    }

    #[test]
    fn results_parser_survives_mutated_results(edits in prop::collection::vec(edit(), 1..8)) {
        let text = mutate(&valid_results(), &edits, ',');
        let parsed = bounded("parse_results", || {
            record::parse_results(text.as_bytes(), Path::new("results.csv"))
        })?;
        // What is accepted holds only finite values and known environments.
        if let Ok(records) = parsed {
            for r in &records {
                prop_assert!(r.value.is_finite(), "{r:?}");
                prop_assert!(["native", "container", "vm"].contains(&r.environment.as_str()));
            }
        }
    }

    #[test]
    fn meta_parser_survives_arbitrary_and_mutated_json(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let path = Path::new("meta.json");
        let _ = bounded("Meta::parse", || Meta::parse(&bytes, path))?;
        let text = mutate(VALID_META, &edits, ':');
        let _ = bounded("Meta::parse", || Meta::parse(text.as_bytes(), path))?;
    }
}

proptest! {
    // Whole directories: files written, bootstrap and permutation tests run.
    #![proptest_config(cases(128))]

    #[test]
    fn compare_load_survives_mutated_run_directories(
        meta_edits in prop::collection::vec(edit(), 0..3),
        result_edits in prop::collection::vec(edit(), 0..6),
        instances in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let dir = scratch("load");
        let meta = mutate(VALID_META, &meta_edits, ':');
        let results = mutate(&valid_results(), &result_edits, ',');
        let outcome = load_and_compare(&dir, &meta, &results);
        std::fs::write(dir.join("instances.jsonl"), &instances).unwrap();
        let read = bounded("read_instances", || record::read_instances(&dir.join("instances.jsonl")));
        std::fs::remove_dir_all(&dir).unwrap();
        outcome?;
        let _ = read?;
    }
}

proptest! {
    // A report draws charts (SVG and PNG) of names and values from the
    // files: slower, so fewer cases.
    #![proptest_config(cases(24))]

    #[test]
    fn report_render_survives_mutated_run_directories(
        result_edits in prop::collection::vec(edit(), 1..5),
    ) {
        let dir = scratch("render");
        std::fs::write(dir.join("meta.json"), VALID_META).unwrap();
        std::fs::write(dir.join("results.csv"), mutate(&valid_results(), &result_edits, ',')).unwrap();
        let rendered = bounded("report::render", || isobench::report::render(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        let _ = rendered?;
    }
}

/// A name as a run's files could hold it: isobench's own, or odd text.
fn odd_name(own: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(own).prop_map(String::from),
        1 => weird_value().prop_filter("a name", |s| !s.is_empty()),
    ]
}

/// Finite values, the extremes included.
fn odd_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => 0.001f64..1e4,
        1 => prop::sample::select(vec![
            0.0,
            -0.0,
            f64::MAX,
            -f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1e300,
            -1e300,
            1e-300,
            -1.0,
        ]),
        1 => any::<f64>().prop_filter("finite", |v| v.is_finite()),
    ]
}

type Row = (String, String, u32, String, String, f64);

/// The rows of a run that passes every check but holds odd names and
/// extreme values: what `compare` and `report` then compute on.
fn odd_rows() -> impl Strategy<Value = Vec<Row>> {
    let row = (
        odd_name(&["noop", "cpu"]),
        prop::sample::select(vec!["native", "container", "vm"]).prop_map(String::from),
        prop_oneof![3 => 1u32..6, 1 => any::<u32>()],
        odd_name(&[
            "startup_ms",
            "score",
            "pss_mib",
            "boot_kernel_ms",
            "vmm_overhead_mib",
            "host_cpu_ms",
        ]),
        odd_name(&["ms", "MiB", "ops/s"]),
        odd_value(),
    );
    prop::collection::vec(row, 1..40).prop_map(|rows| {
        // One row per (workload, environment, repetition, metric), and one
        // unit per (workload, metric): what a valid run holds.
        let mut seen = std::collections::BTreeSet::new();
        let mut units = std::collections::BTreeMap::new();
        rows.into_iter()
            .filter(|r| seen.insert((r.0.clone(), r.1.clone(), r.2, r.3.clone())))
            .map(|mut r| {
                r.4 = units
                    .entry((r.0.clone(), r.3.clone()))
                    .or_insert_with(|| r.4.clone())
                    .clone();
                r
            })
            .collect()
    })
}

/// A run directory with `rows` and a `meta.json` that knows (most of)
/// their metrics, in either direction.
fn write_odd_run(dir: &Path, rows: &[Row], lower: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(VALID_META).unwrap();
    for (i, r) in rows.iter().enumerate() {
        if i % 5 != 4 {
            meta["metrics"][&r.3] = serde_json::json!({
                "unit": r.4,
                "better": if lower == (i % 2 == 0) { "lower" } else { "higher" },
            });
        }
    }
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    let mut w = csv::Writer::from_path(dir.join("results.csv")).unwrap();
    w.write_record(record::RESULTS_HEADER).unwrap();
    for r in rows {
        // The direction of a series, as its unit says (one per series).
        let better = isobench::workload::Better::legacy_for_unit(&r.4).as_str();
        let value = r.5.to_string();
        let rep = r.2.to_string();
        w.write_record([&r.0, &r.1, &rep, &r.3, &r.4, better, &value])
            .unwrap();
    }
    w.flush().unwrap();
}

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn compare_survives_odd_but_valid_runs(
        base in odd_rows(),
        current in odd_rows(),
        lower in any::<bool>(),
    ) {
        let dir = scratch("odd");
        write_odd_run(&dir.join("base"), &base, lower);
        write_odd_run(&dir.join("cur"), &current, lower);
        let outcome = (|| {
            let a = bounded("compare::load", || compare::load("baseline", &dir.join("base")))?;
            let b = bounded("compare::load", || compare::load("current", &dir.join("cur")))?;
            prop_assert!(a.is_ok() && b.is_ok(), "valid runs refused: {a:?} {b:?}");
            let (a, b) = (a.unwrap(), b.unwrap());
            for (x, y) in [(&a, &b), (&a, &a)] {
                let _ = bounded("compare::compare", || {
                    compare::compare(x, y, compare::Thresholds::default()).map(|c| c.markdown())
                })?;
            }
            Ok(())
        })();
        std::fs::remove_dir_all(&dir).unwrap();
        outcome?;
    }
}

proptest! {
    // A report draws charts (SVG and PNG): slower, so fewer cases.
    #![proptest_config(cases(24))]

    #[test]
    fn report_survives_odd_but_valid_runs(rows in odd_rows(), lower in any::<bool>()) {
        let dir = scratch("odd-render");
        write_odd_run(&dir, &rows, lower);
        let rendered = bounded("report::render", || isobench::report::render(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        let rendered = rendered?;
        prop_assert!(rendered.is_ok(), "{:?}", rendered.err());
    }
}

#[test]
fn the_valid_inputs_are_valid() {
    // Otherwise the mutations above start from something already refused.
    let records = record::parse_results(valid_results().as_bytes(), Path::new("r.csv")).unwrap();
    assert_eq!(records.len(), 48);
    Meta::parse(VALID_META.as_bytes(), Path::new("meta.json")).unwrap();
    for s in SCENARIOS {
        Plan::parse(s, "s.toml", &Overrides::default()).unwrap();
    }
    let dir = scratch("valid");
    let r = load_and_compare(&dir, VALID_META, &valid_results());
    std::fs::remove_dir_all(&dir).unwrap();
    r.unwrap();
}
