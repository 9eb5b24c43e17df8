//! seccomp: Docker's default system-call filter for isobench's containers,
//! and profiles in Docker's JSON format, compiled to classic BPF.
//!
//! A profile lists system calls by name, each entry with an action
//! (`SCMP_ACT_ALLOW`, `SCMP_ACT_ERRNO`, ...), perhaps argument conditions,
//! and perhaps `includes`/`excludes` that make it apply only with some
//! capabilities, on some architectures or from some kernel version on.
//! [`compile`] resolves those against the container the way Docker does
//! (moby's `setupSeccomp`, then runc's `matchCall`): the capability set is
//! the one the container keeps, the architecture is `amd64`, the kernel is
//! the running one; names this architecture lacks (`chown32`, ...) are
//! skipped, as libseccomp skips them. Names become x86_64 numbers through
//! the `syscalls` crate, and `seccompiler` (Firecracker's pure-Rust BPF
//! compiler) turns the rules into programs: no libseccomp at run time.
//!
//! ## One profile, several stacked filters
//!
//! A seccompiler filter has one action for a match and one for a miss, but
//! a profile has several actions (Docker's default: allow most calls,
//! `ERRNO(ENOSYS)` for `clone3`, `ERRNO(EPERM)` for everything else). The
//! kernel runs *every* installed filter on each call and keeps the result
//! of highest precedence (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO >
//! TRACE > LOG > ALLOW); among results of equal precedence, the one from
//! the most recently installed filter wins. So a profile becomes:
//!
//! 1. a **base** filter, installed first: every syscall (and argument
//!    condition) that *any* rule names → ALLOW, anything else → the
//!    profile's default action;
//! 2. one filter per other action, in the order the profile first uses
//!    it: that action's rules → the action, anything else → ALLOW.
//!
//! For a call no rule names, the base gives the default and every other
//! filter ALLOW, so the default wins (it is never below ALLOW). For a call
//! that rules of one action name, the base gives ALLOW and that action's
//! filter gives the action, which wins over ALLOW whatever its precedence —
//! so `clone3 → ERRNO(ENOSYS)` beats the default `ERRNO(EPERM)` (the base
//! says ALLOW for clone3), and a `LOG` rule under an `ERRNO` default still
//! logs. Only calls that rules of *different* actions name at once depend
//! on precedence: the higher action wins, and between two ERRNO (or TRACE)
//! values the later filter's, i.e. the later entry of the profile.
//!
//! [`Filters::install`] loads the programs in the container's child, after
//! `no_new_privs` and the capability drop and just before execve; it makes
//! no allocation.
//!
//! Not translated: the profile's other architectures. The programs check
//! that a call is x86_64; an i386 (`int 0x80`) call is killed, and an x32
//! call (numbers with bit 30 set) matches no rule and gets the default
//! action — where Docker, which lists x86 and x32 as sub-architectures,
//! would filter them by their own numbers.
//!
//! Cost: the kernel caches, per syscall number, a verdict that is ALLOW
//! whatever the arguments, so no BPF runs for most calls; but a task with
//! a filter takes the slower system-call entry (+80–100 ns per call on the
//! nested-virtualization machines this was measured on). A call with
//! argument conditions (`socket`, `personality`, `clone`) runs the
//! programs, which test syscall numbers one after another (+300 ns for
//! `personality` there).

use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Docker's default profile (see `assets/seccomp/README.md`).
pub const DEFAULT_PROFILE: &str = include_str!("../assets/seccomp/default.json");

/// The architecture as Docker names it in `includes.arches`.
const ARCH: &str = "amd64";
/// The architecture as libseccomp names it in `architectures`.
const SCMP_ARCH: &str = "SCMP_ARCH_X86_64";
/// The errno of SCMP_ACT_ERRNO without `errnoRet` (EPERM).
const DEFAULT_ERRNO: u32 = 1;
/// The largest errno a filter can return (the kernel's MAX_ERRNO).
const MAX_ERRNO: u32 = 4095;

/// Which filter a container gets: `"default"`, `"none"` or a path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SeccompChoice {
    /// Docker's default profile (built in).
    #[default]
    Default,
    /// No filter at all.
    None,
    /// A JSON profile in Docker's format.
    Profile(PathBuf),
}

impl FromStr for SeccompChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(SeccompChoice::Default),
            "none" => Ok(SeccompChoice::None),
            "" => Err(
                "expected \"default\", \"none\" or the path of a JSON profile in Docker's format"
                    .into(),
            ),
            path => Ok(SeccompChoice::Profile(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for SeccompChoice {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            SeccompChoice::Default => f.write_str("default"),
            SeccompChoice::None => f.write_str("none"),
            SeccompChoice::Profile(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Serialize for SeccompChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SeccompChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A profile that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile file could not be read.
    #[error(
        "cannot read seccomp profile {}: {source} (give the path of a JSON profile in Docker's format, or \"default\", or \"none\" for no filter)",
        path.display()
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON of the expected shape.
    #[error("seccomp profile {profile}: not a profile in Docker's JSON format: {source}")]
    Parse {
        /// The profile's name or path.
        profile: String,
        /// Where and why.
        source: serde_json::Error,
    },
    /// A value in the profile is not usable.
    #[error("seccomp profile {profile}: {place}: {message}")]
    Invalid {
        /// The profile's name or path.
        profile: String,
        /// The key or entry (`syscalls[3] (personality)`).
        place: String,
        /// What is wrong, and what would be right.
        message: String,
    },
    /// seccompiler refused a filter (too many instructions, ...).
    #[error("seccomp profile {profile}: compiling the {filter} filter: {source}")]
    Compile {
        /// The profile's name or path.
        profile: String,
        /// Which filter (its match action).
        filter: String,
        /// seccompiler's reason.
        source: BackendError,
    },
}

/// The profile as written (Docker's `types.Seccomp`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    #[serde(default)]
    default_action: String,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<ArchMap>>,
    syscalls: Option<Vec<Entry>>,
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    names: Option<Vec<String>>,
    name: Option<String>,
    #[serde(default)]
    action: String,
    errno_ret: Option<u32>,
    args: Option<Vec<Arg>>,
    includes: Option<Conditions>,
    excludes: Option<Conditions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conditions {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u64,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// What a filter tells the kernel to do with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    KillProcess,
    KillThread,
    Trap,
    Errno(u32),
    Trace(u32),
    Log,
    Allow,
}

impl Action {
    fn parse(name: &str, errno: Option<u32>) -> Result<Action, String> {
        let errno = |default: u32| match errno {
            Some(e) if e > MAX_ERRNO => Err(format!(
                "errnoRet {e} is not an errno (the kernel takes 1 to {MAX_ERRNO})"
            )),
            Some(e) => Ok(e),
            None => Ok(default),
        };
        Ok(match name {
            "SCMP_ACT_ALLOW" => Action::Allow,
            "SCMP_ACT_ERRNO" => Action::Errno(errno(DEFAULT_ERRNO)?),
            "SCMP_ACT_TRACE" => Action::Trace(errno(DEFAULT_ERRNO)?),
            "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
            "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
            "SCMP_ACT_TRAP" => Action::Trap,
            "SCMP_ACT_LOG" => Action::Log,
            "SCMP_ACT_NOTIFY" => {
                return Err(
                    "SCMP_ACT_NOTIFY needs a seccomp agent listening on a socket; isobench has none (use SCMP_ACT_ERRNO)"
                        .into(),
                );
            }
            "" => return Err("the action is missing".into()),
            other => {
                return Err(format!(
                    "unknown action `{other}` (use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_TRACE or SCMP_ACT_LOG)"
                ));
            }
        })
    }

    fn seccompiler(self) -> SeccompAction {
        match self {
            Action::KillProcess => SeccompAction::KillProcess,
            Action::KillThread => SeccompAction::KillThread,
            Action::Trap => SeccompAction::Trap,
            Action::Errno(e) => SeccompAction::Errno(e),
            Action::Trace(e) => SeccompAction::Trace(e),
            Action::Log => SeccompAction::Log,
            Action::Allow => SeccompAction::Allow,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Action::KillProcess => f.write_str("SCMP_ACT_KILL_PROCESS"),
            Action::KillThread => f.write_str("SCMP_ACT_KILL_THREAD"),
            Action::Trap => f.write_str("SCMP_ACT_TRAP"),
            Action::Errno(e) => write!(f, "SCMP_ACT_ERRNO({e})"),
            Action::Trace(e) => write!(f, "SCMP_ACT_TRACE({e})"),
            Action::Log => f.write_str("SCMP_ACT_LOG"),
            Action::Allow => f.write_str("SCMP_ACT_ALLOW"),
        }
    }
}

/// A comparison of one 64-bit argument, as libseccomp makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cond {
    index: u8,
    op: SeccompCmpOpKind,
    value: u64,
    value_two: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeccompCmpOpKind {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    MaskedEq,
}

impl Cond {
    fn parse(arg: &Arg) -> Result<Cond, String> {
        let op = match arg.op.as_str() {
            "SCMP_CMP_EQ" => SeccompCmpOpKind::Eq,
            "SCMP_CMP_NE" => SeccompCmpOpKind::Ne,
            "SCMP_CMP_LT" => SeccompCmpOpKind::Lt,
            "SCMP_CMP_LE" => SeccompCmpOpKind::Le,
            "SCMP_CMP_GT" => SeccompCmpOpKind::Gt,
            "SCMP_CMP_GE" => SeccompCmpOpKind::Ge,
            "SCMP_CMP_MASKED_EQ" => SeccompCmpOpKind::MaskedEq,
            other => {
                return Err(format!(
                    "unknown operator `{other}` (use SCMP_CMP_EQ, SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_GT, SCMP_CMP_GE or SCMP_CMP_MASKED_EQ)"
                ));
            }
        };
        if arg.index > 5 {
            return Err(format!(
                "argument index {} does not exist (a system call has arguments 0 to 5)",
                arg.index
            ));
        }
        Ok(Cond {
            index: arg.index as u8,
            op,
            value: arg.value,
            value_two: arg.value_two,
        })
    }

    /// The seccompiler condition. For SCMP_CMP_MASKED_EQ, Docker's `value`
    /// is libseccomp's first datum, the mask, and `valueTwo` the value the
    /// masked argument must equal: `(arg & value) == valueTwo`.
    fn seccompiler(self) -> Result<SeccompCondition, BackendError> {
        let (op, value) = match self.op {
            SeccompCmpOpKind::Eq => (SeccompCmpOp::Eq, self.value),
            SeccompCmpOpKind::Ne => (SeccompCmpOp::Ne, self.value),
            SeccompCmpOpKind::Lt => (SeccompCmpOp::Lt, self.value),
            SeccompCmpOpKind::Le => (SeccompCmpOp::Le, self.value),
            SeccompCmpOpKind::Gt => (SeccompCmpOp::Gt, self.value),
            SeccompCmpOpKind::Ge => (SeccompCmpOp::Ge, self.value),
            SeccompCmpOpKind::MaskedEq => (SeccompCmpOp::MaskedEq(self.value), self.value_two),
        };
        SeccompCondition::new(self.index, SeccompCmpArgLen::Qword, op, value)
    }
}

/// One rule: a syscall, its conditions (all must hold; none: always) and
/// what happens when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    name: String,
    nr: i64,
    conds: Vec<Cond>,
    action: Action,
}

/// What the profile says for this container.
#[derive(Debug)]
struct Resolved {
    default: Action,
    rules: Vec<Rule>,
    entries_applied: usize,
    entries_skipped: usize,
    unknown_names: BTreeSet<String>,
    architectures: Vec<String>,
    flags: u32,
}

/// What the includes/excludes of the entries are evaluated against.
#[derive(Debug, Clone)]
struct Target<'a> {
    caps: &'a [&'a str],
    arch: &'a str,
    kernel: (u32, u32, u32),
}

/// `major.minor[.patch]` from a kernel release or a `minKernel` value
/// (`6.1.0-18-cloud-amd64` → (6, 1, 0); `4.8` → (4, 8, 0)).
fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let numeric: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').filter(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    Some((major, minor, patch))
}

fn running_kernel() -> (u32, u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| parse_version(&u.release().to_string_lossy()))
        // Unknown: treat every minKernel as met, as on any current kernel.
        .unwrap_or((u32::MAX, 0, 0))
}

const FLAGS: &[(&str, u32)] = &[
    ("SECCOMP_FILTER_FLAG_TSYNC", 1),
    ("SECCOMP_FILTER_FLAG_LOG", 2),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", 4),
];

fn resolve(profile: &Profile, label: &str, target: &Target) -> Result<Resolved, SeccompError> {
    let invalid = |place: String, message: String| SeccompError::Invalid {
        profile: label.to_string(),
        place,
        message,
    };
    if profile.default_action.is_empty() {
        return Err(invalid(
            "defaultAction".into(),
            "missing (SCMP_ACT_ERRNO denies what no rule allows; use seccomp = \"none\" for no filter)"
                .into(),
        ));
    }
    let default = Action::parse(&profile.default_action, profile.default_errno_ret)
        .map_err(|m| invalid("defaultAction".into(), m))?;
    if let Some(path) = profile.listener_path.as_deref().filter(|p| !p.is_empty()) {
        return Err(invalid(
            "listenerPath".into(),
            format!("`{path}`: seccomp agents are not supported"),
        ));
    }
    let mut flags = 0;
    for f in profile.flags.iter().flatten() {
        let bit = FLAGS.iter().find(|(n, _)| n == f).map(|(_, b)| *b);
        flags |= bit.ok_or_else(|| {
            invalid(
                "flags".into(),
                format!(
                    "`{f}` is not supported (known: {})",
                    FLAGS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
    }

    let arches = profile.architectures.as_deref().unwrap_or_default();
    let map = profile.arch_map.as_deref().unwrap_or_default();
    if !arches.is_empty() && !map.is_empty() {
        return Err(invalid(
            "architectures".into(),
            "both `architectures` and `archMap` are given; use one of them".into(),
        ));
    }
    let mut architectures: Vec<String> = arches.to_vec();
    if let Some(m) = map.iter().find(|m| m.architecture == SCMP_ARCH) {
        architectures.push(m.architecture.clone());
        architectures.extend(m.sub_architectures.iter().flatten().cloned());
    }

    let mut resolved = Resolved {
        default,
        rules: Vec::new(),
        entries_applied: 0,
        entries_skipped: 0,
        unknown_names: BTreeSet::new(),
        architectures,
        flags,
    };
    let none = Conditions::default();
    for (i, entry) in profile.syscalls.iter().flatten().enumerate() {
        let names: Vec<&str> = match (&entry.name, &entry.names) {
            (Some(_), Some(n)) if !n.is_empty() => {
                return Err(invalid(
                    format!("syscalls[{i}]"),
                    "both `name` and `names` are given; use one of them".into(),
                ));
            }
            (Some(n), _) => vec![n.as_str()],
            (None, Some(n)) => n.iter().map(String::as_str).collect(),
            (None, None) => Vec::new(),
        };
        let place = match names.as_slice() {
            [] => format!("syscalls[{i}]"),
            [one] => format!("syscalls[{i}] ({one})"),
            [first, ..] => format!("syscalls[{i}] ({first}, ...)"),
        };
        let action =
            Action::parse(&entry.action, entry.errno_ret).map_err(|m| invalid(place.clone(), m))?;
        let conds = entry
            .args
            .iter()
            .flatten()
            .map(Cond::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| invalid(place.clone(), m))?;
        let kernel_at_least = |v: &str| {
            parse_version(v).map(|v| target.kernel >= v).ok_or_else(|| {
                invalid(
                    place.clone(),
                    format!("minKernel `{v}` is not a kernel version such as \"4.8\""),
                )
            })
        };
        let inc = entry.includes.as_ref().unwrap_or(&none);
        let exc = entry.excludes.as_ref().unwrap_or(&none);
        let has = |list: &Option<Vec<String>>, what: &str| list.iter().flatten().any(|x| x == what);
        let applies = !has(&exc.arches, target.arch)
            && !exc
                .caps
                .iter()
                .flatten()
                .any(|c| target.caps.contains(&c.as_str()))
            && !match &exc.min_kernel {
                Some(v) => kernel_at_least(v)?,
                None => false,
            }
            && inc
                .arches
                .as_ref()
                .is_none_or(|a| a.is_empty() || a.iter().any(|x| x == target.arch))
            && inc
                .caps
                .iter()
                .flatten()
                .all(|c| target.caps.contains(&c.as_str()))
            && match &inc.min_kernel {
                Some(v) => kernel_at_least(v)?,
                None => true,
            };
        if !applies {
            resolved.entries_skipped += 1;
            continue;
        }
        resolved.entries_applied += 1;
        // runc: a rule with the default's action is redundant.
        if action == default {
            continue;
        }
        // runc: conditions on distinct arguments must all hold (one rule);
        // if an argument is named twice, each condition is a rule of its own.
        let repeated = conds
            .iter()
            .enumerate()
            .any(|(j, c)| conds[..j].iter().any(|d| d.index == c.index));
        let sets: Vec<Vec<Cond>> = if repeated {
            conds.iter().map(|c| vec![*c]).collect()
        } else {
            vec![conds]
        };
        for name in names {
            let Ok(sysno) = syscalls::Sysno::from_str(name) else {
                resolved.unknown_names.insert(name.to_string());
                continue;
            };
            for set in &sets {
                resolved.rules.push(Rule {
                    name: name.to_string(),
                    nr: i64::from(sysno.id()),
                    conds: set.clone(),
                    action,
                });
            }
        }
    }
    Ok(resolved)
}

/// Rules by syscall number; `None` means unconditional (which covers any
/// conditional rule of the same syscall).
type RuleMap = BTreeMap<i64, Option<Vec<Vec<Cond>>>>;

fn add(map: &mut RuleMap, rule: &Rule) {
    let slot = map.entry(rule.nr).or_insert_with(|| Some(Vec::new()));
    if rule.conds.is_empty() {
        *slot = None;
    } else if let Some(sets) = slot
        && !sets.contains(&rule.conds)
    {
        sets.push(rule.conds.clone());
    }
}

/// One filter to build: which calls it matches, and its two answers.
#[derive(Debug)]
struct Plan {
    on_match: Action,
    otherwise: Action,
    rules: RuleMap,
}

/// The filters, in installation order (see the module doc).
fn plan(resolved: &Resolved) -> Vec<Plan> {
    let mut plans = Vec::new();
    if resolved.default != Action::Allow {
        let mut rules = RuleMap::new();
        for r in &resolved.rules {
            add(&mut rules, r);
        }
        plans.push(Plan {
            on_match: Action::Allow,
            otherwise: resolved.default,
            rules,
        });
    }
    let mut actions: Vec<Action> = Vec::new();
    for r in &resolved.rules {
        if r.action != Action::Allow && !actions.contains(&r.action) {
            actions.push(r.action);
        }
    }
    for action in actions {
        let mut rules = RuleMap::new();
        for r in resolved.rules.iter().filter(|r| r.action == action) {
            add(&mut rules, r);
        }
        plans.push(Plan {
            on_match: action,
            otherwise: Action::Allow,
            rules,
        });
    }
    plans
}

fn build(plan: &Plan) -> Result<BpfProgram, BackendError> {
    let mut rules = BTreeMap::new();
    for (nr, sets) in &plan.rules {
        let chain = match sets {
            None => Vec::new(),
            Some(sets) => sets
                .iter()
                .map(|set| {
                    let conds = set
                        .iter()
                        .map(|c| c.seccompiler())
                        .collect::<Result<Vec<_>, _>>()?;
                    SeccompRule::new(conds)
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        rules.insert(*nr, chain);
    }
    let filter = SeccompFilter::new(
        rules,
        plan.otherwise.seccompiler(),
        plan.on_match.seccompiler(),
        TargetArch::x86_64,
    )?;
    BpfProgram::try_from(filter)
}

/// What a compiled profile amounts to, for `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileSummary {
    /// `default` (Docker's, built in) or the profile's path.
    pub profile: String,
    /// SHA-256 of the profile's text.
    pub sha256: String,
    /// What a call no rule names gets.
    pub default_action: String,
    /// Syscalls allowed whatever their arguments.
    pub syscalls_allowed: usize,
    /// Syscalls allowed only for some arguments (`socket`, `clone`, ...).
    pub syscalls_allowed_conditionally: usize,
    /// Syscalls with an action other than ALLOW and the default
    /// (`clone3 → SCMP_ACT_ERRNO(38)`).
    pub other_actions: Vec<String>,
    /// Entries that apply to this container / that its capabilities,
    /// architecture or kernel rule out.
    pub entries_applied: usize,
    /// See `entries_applied`.
    pub entries_skipped: usize,
    /// Names the profile lists that x86_64 does not have (skipped).
    pub names_unknown_here: usize,
    /// The architectures the profile names for x86_64 hosts.
    pub architectures: Vec<String>,
    /// What isobench translates of them (see the module doc).
    pub translated: &'static str,
    /// The filters in installation order.
    pub filters: Vec<FilterSummary>,
}

/// One installed filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterSummary {
    /// The answer for the calls it names.
    pub on_match: String,
    /// The answer for every other call.
    pub otherwise: String,
    /// How many syscalls it names.
    pub syscalls: usize,
    /// Its length in BPF instructions.
    pub instructions: usize,
}

/// A profile compiled for one container configuration: the BPF programs
/// in installation order, and what they amount to.
#[derive(Debug, Clone)]
pub struct Filters {
    programs: Vec<BpfProgram>,
    flags: u32,
    summary: ProfileSummary,
}

impl Filters {
    /// The programs, in installation order.
    pub fn programs(&self) -> &[BpfProgram] {
        &self.programs
    }

    /// The programs as text for an environment variable: each instruction
    /// as 16 hex digits (code, jt, jf, k, little-endian), programs joined
    /// by `,`. [`install_encoded`] reads it.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, program) in self.programs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            for ins in program {
                let mut bytes = [0u8; 8];
                bytes[..2].copy_from_slice(&ins.code.to_le_bytes());
                bytes[2] = ins.jt;
                bytes[3] = ins.jf;
                bytes[4..].copy_from_slice(&ins.k.to_le_bytes());
                for b in bytes {
                    out.push_str(&format!("{b:02x}"));
                }
            }
        }
        out
    }

    /// What they amount to.
    pub fn summary(&self) -> &ProfileSummary {
        &self.summary
    }

    /// Installs the programs on the calling thread, in order, with
    /// `seccomp(SECCOMP_SET_MODE_FILTER)`. `no_new_privs` (or
    /// CAP_SYS_ADMIN) must already be in place. Makes no allocation, so
    /// the container's child can call it between clone and execve.
    pub fn install(&self) -> nix::Result<()> {
        for program in &self.programs {
            let prog = libc::sock_fprog {
                len: program.len() as libc::c_ushort,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            // SAFETY: `prog` points at `len` instructions of a live
            // program; seccompiler's `sock_filter` is `#[repr(C)]` with the
            // kernel's layout (u16 code, u8 jt, u8 jf, u32 k), as is
            // libc's. The kernel copies the program and keeps no pointer.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    self.flags as libc::c_ulong,
                    &prog as *const libc::sock_fprog,
                )
            };
            if r != 0 {
                return Err(nix::errno::Errno::last());
            }
        }
        Ok(())
    }
}

/// Installs programs encoded by [`Filters::encode`] on the calling thread,
/// in order (`no_new_privs` must be set). Needs only libc, so the agent
/// carries no profile compiler: the host compiles, the agent installs.
pub fn install_encoded(text: &str) -> Result<(), String> {
    for (n, hex) in text.split(',').enumerate() {
        if hex.is_empty() || !hex.len().is_multiple_of(16) || !hex.is_ascii() {
            return Err(format!("seccomp program {n}: not whole instructions"));
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16);
        let mut program = Vec::with_capacity(hex.len() / 16);
        for at in (0..hex.len()).step_by(16) {
            let b: Vec<u8> = (0..8)
                .map(|j| byte(at + 2 * j))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("seccomp program {n}: {e}"))?;
            program.push(libc::sock_filter {
                code: u16::from_le_bytes([b[0], b[1]]),
                jt: b[2],
                jf: b[3],
                k: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            });
        }
        let prog = libc::sock_fprog {
            len: program.len() as libc::c_ushort,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `len` instructions of a live vector; the
        // kernel copies the program and keeps no pointer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(format!(
                "installing seccomp program {n}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Compiles the chosen profile for a container that keeps the
/// capabilities `caps` (names such as `CAP_CHOWN`), on this machine's
/// kernel. `None` for [`SeccompChoice::None`].
pub fn compile(choice: &SeccompChoice, caps: &[&str]) -> Result<Option<Filters>, SeccompError> {
    let (text, label) = match choice {
        SeccompChoice::None => return Ok(None),
        SeccompChoice::Default => (DEFAULT_PROFILE.to_string(), "default".to_string()),
        SeccompChoice::Profile(path) => (
            std::fs::read_to_string(path).map_err(|source| SeccompError::Read {
                path: path.clone(),
                source,
            })?,
            path.display().to_string(),
        ),
    };
    let target = Target {
        caps,
        arch: ARCH,
        kernel: running_kernel(),
    };
    compile_text(&text, &label, &target).map(Some)
}

fn compile_text(text: &str, label: &str, target: &Target) -> Result<Filters, SeccompError> {
    let profile: Profile = serde_json::from_str(text).map_err(|source| SeccompError::Parse {
        profile: label.to_string(),
        source,
    })?;
    let resolved = resolve(&profile, label, target)?;
    let plans = plan(&resolved);
    let mut programs = Vec::new();
    let mut filters = Vec::new();
    for p in &plans {
        let program = build(p).map_err(|source| SeccompError::Compile {
            profile: label.to_string(),
            filter: p.on_match.to_string(),
            source,
        })?;
        filters.push(FilterSummary {
            on_match: p.on_match.to_string(),
            otherwise: p.otherwise.to_string(),
            syscalls: p.rules.len(),
            instructions: program.len(),
        });
        programs.push(program);
    }
    let mut allowed = BTreeMap::new();
    for r in resolved.rules.iter().filter(|r| r.action == Action::Allow) {
        add(&mut allowed, r);
    }
    let mut other_actions: Vec<String> = resolved
        .rules
        .iter()
        .filter(|r| r.action != Action::Allow)
        .map(|r| {
            let when = if r.conds.is_empty() {
                ""
            } else {
                " (some arguments)"
            };
            format!("{}{when} → {}", r.name, r.action)
        })
        .collect();
    other_actions.dedup();
    let summary = ProfileSummary {
        profile: label.to_string(),
        sha256: Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        default_action: resolved.default.to_string(),
        syscalls_allowed: allowed.values().filter(|s| s.is_none()).count(),
        syscalls_allowed_conditionally: allowed.values().filter(|s| s.is_some()).count(),
        other_actions,
        entries_applied: resolved.entries_applied,
        entries_skipped: resolved.entries_skipped,
        names_unknown_here: resolved.unknown_names.len(),
        architectures: resolved.architectures,
        translated: "SCMP_ARCH_X86_64 only: an i386 call is killed, an x32 call gets the default action",
        filters,
    };
    Ok(Filters {
        programs,
        flags: resolved.flags,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use seccompiler::sock_filter;
    use std::path::Path;

    /// `struct seccomp_data` as the kernel hands it to a filter.
    #[derive(Debug, Clone, Copy)]
    struct Data {
        nr: i32,
        arch: u32,
        args: [u64; 6],
    }

    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_LOG: u32 = 0x7ffc_0000;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;

    fn call(nr: i64, args: &[u64]) -> Data {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        Data {
            nr: nr as i32,
            arch: AUDIT_ARCH_X86_64,
            args: a,
        }
    }

    fn word(d: &Data, offset: u32) -> u32 {
        match offset {
            0 => d.nr as u32,
            4 => d.arch,
            // instruction_pointer (8..16) is never read by these programs.
            o if (16..64).contains(&o) && o % 4 == 0 => {
                let arg = d.args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            o => panic!("load from offset {o} of seccomp_data"),
        }
    }

    /// A classic-BPF interpreter for the instructions seccompiler emits.
    fn run(program: &[sock_filter], d: &Data) -> u32 {
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = &program[pc];
            pc += 1;
            let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
            match i.code {
                0x20 => acc = word(d, i.k),         // LD W ABS
                0x54 => acc &= i.k,                 // ALU AND K
                0x05 => pc += i.k as usize,         // JA
                0x15 => pc += jump(acc == i.k),     // JEQ K
                0x25 => pc += jump(acc > i.k),      // JGT K
                0x35 => pc += jump(acc >= i.k),     // JGE K
                0x45 => pc += jump(acc & i.k != 0), // JSET K
                0x06 => return i.k,                 // RET K
                code => panic!("BPF opcode {code:#x} at {}", pc - 1),
            }
        }
    }

    /// The kernel's verdict over a filter stack: every program runs, newest
    /// first, and a result replaces the one so far only when its action has
    /// strictly higher precedence (a lower signed value of its top 16 bits).
    fn verdict(f: &Filters, d: &Data) -> u32 {
        let action = |r: u32| (r & 0xffff_0000) as i32;
        let mut ret = RET_ALLOW;
        for p in f.programs().iter().rev() {
            let r = run(p, d);
            if action(r) < action(ret) {
                ret = r;
            }
        }
        ret
    }

    fn errno(e: i32) -> u32 {
        RET_ERRNO | e as u32
    }

    fn caps() -> Vec<&'static str> {
        crate::env::container::DEFAULT_CAPS
            .iter()
            .map(|(_, n)| *n)
            .collect()
    }

    fn target<'a>(caps: &'a [&'static str]) -> Target<'a> {
        Target {
            caps,
            arch: ARCH,
            kernel: (6, 1, 0),
        }
    }

    fn default_filters(caps: &[&'static str]) -> Filters {
        compile_text(DEFAULT_PROFILE, "default", &target(caps)).unwrap()
    }

    use libc::*;

    #[test]
    fn the_default_profile_behaves_like_dockers() {
        let caps = caps();
        let f = default_filters(&caps);
        let v = |nr: i64, args: &[u64]| verdict(&f, &call(nr, args));
        assert_eq!(v(SYS_read, &[0, 0, 0]), RET_ALLOW);
        assert_eq!(v(SYS_execve, &[]), RET_ALLOW);
        assert_eq!(v(SYS_getppid, &[]), RET_ALLOW);
        assert_eq!(v(SYS_keyctl, &[0]), errno(EPERM));
        assert_eq!(v(SYS_add_key, &[]), errno(EPERM));
        assert_eq!(v(SYS_request_key, &[]), errno(EPERM));
        assert_eq!(v(SYS_io_uring_setup, &[1, 0]), errno(EPERM));
        assert_eq!(v(SYS_perf_event_open, &[]), errno(EPERM));
        assert_eq!(v(SYS_unshare, &[CLONE_NEWUSER as u64]), errno(EPERM));
        assert_eq!(v(SYS_mount, &[]), errno(EPERM));
        assert_eq!(v(SYS_setns, &[]), errno(EPERM));
        assert_eq!(v(SYS_bpf, &[]), errno(EPERM));
        // ENOSYS, so that glibc falls back to clone, whose flags a filter can read.
        assert_eq!(v(SYS_clone3, &[]), errno(ENOSYS));
        let sigchld = SIGCHLD as u64;
        assert_eq!(v(SYS_clone, &[sigchld]), RET_ALLOW, "fork");
        let thread = (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD) as u64;
        assert_eq!(v(SYS_clone, &[thread]), RET_ALLOW, "a thread");
        for ns in [
            CLONE_NEWUSER,
            CLONE_NEWNS,
            CLONE_NEWNET,
            CLONE_NEWPID,
            CLONE_NEWCGROUP,
        ] {
            assert_eq!(
                v(SYS_clone, &[sigchld | ns as u64]),
                errno(EPERM),
                "{ns:#x}"
            );
        }
        for p in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(v(SYS_personality, &[p]), RET_ALLOW, "personality({p:#x})");
        }
        assert_eq!(v(SYS_personality, &[0x0040000]), errno(EPERM));
        assert_eq!(v(SYS_personality, &[6]), errno(EPERM));
        assert_eq!(
            v(SYS_socket, &[AF_VSOCK as u64, SOCK_STREAM as u64]),
            errno(EPERM)
        );
        assert_eq!(
            v(SYS_socket, &[AF_INET as u64, SOCK_STREAM as u64]),
            RET_ALLOW
        );
        assert_eq!(
            v(SYS_socket, &[AF_UNIX as u64, SOCK_DGRAM as u64]),
            RET_ALLOW
        );
        assert_eq!(v(SYS_arch_prctl, &[]), RET_ALLOW, "amd64 only");
        assert_eq!(v(SYS_chroot, &[]), RET_ALLOW, "CAP_SYS_CHROOT is kept");
        assert_eq!(v(SYS_ptrace, &[]), RET_ALLOW, "minKernel 4.8");
        assert_eq!(v(SYS_reboot, &[]), errno(EPERM), "no CAP_SYS_BOOT");
        assert_eq!(v(SYS_open_by_handle_at, &[]), errno(EPERM));
        assert_eq!(v(SYS_kexec_load, &[]), errno(EPERM));
        // An i386 call is killed: only x86_64 is translated.
        let mut i386 = call(3, &[]);
        i386.arch = AUDIT_ARCH_I386;
        assert_eq!(verdict(&f, &i386), RET_KILL_PROCESS);
        // An x32 call matches no rule.
        assert_eq!(v(0x4000_0000 | SYS_read, &[]), errno(EPERM));

        let s = f.summary();
        assert_eq!(s.default_action, "SCMP_ACT_ERRNO(1)");
        assert_eq!(s.other_actions, ["clone3 → SCMP_ACT_ERRNO(38)"]);
        assert!(s.syscalls_allowed > 300, "{s:?}");
        // socket, personality, clone.
        assert_eq!(s.syscalls_allowed_conditionally, 3, "{s:?}");
        assert!(s.names_unknown_here > 0, "chown32 and friends");
        assert_eq!(s.architectures[0], "SCMP_ARCH_X86_64");
        assert_eq!(s.filters.len(), 2);
        assert_eq!(s.filters[0].on_match, "SCMP_ACT_ALLOW");
        assert_eq!(s.filters[1].on_match, "SCMP_ACT_ERRNO(38)");
        assert_eq!(s.sha256.len(), 64);
    }

    #[test]
    fn capabilities_and_the_kernel_version_select_entries() {
        let mut caps = caps();
        caps.push("CAP_SYS_ADMIN");
        let f = default_filters(&caps);
        let v = |nr: i64, args: &[u64]| verdict(&f, &call(nr, args));
        assert_eq!(v(SYS_clone3, &[]), RET_ALLOW);
        assert_eq!(v(SYS_unshare, &[]), RET_ALLOW);
        assert_eq!(v(SYS_clone, &[CLONE_NEWUSER as u64]), RET_ALLOW);
        assert_eq!(v(SYS_perf_event_open, &[]), RET_ALLOW);
        assert_eq!(f.summary().filters.len(), 1, "no ENOSYS filter");

        let caps = self::caps();
        let old = Target {
            kernel: (4, 4, 0),
            ..target(&caps)
        };
        let f = compile_text(DEFAULT_PROFILE, "default", &old).unwrap();
        assert_eq!(verdict(&f, &call(SYS_ptrace, &[])), errno(EPERM));
    }

    fn profile(syscalls: &str) -> String {
        format!(r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{syscalls}]}}"#)
    }

    fn compiled(text: &str) -> Result<Filters, SeccompError> {
        let caps = caps();
        compile_text(text, "test.json", &target(&caps))
    }

    #[test]
    fn an_action_below_the_default_still_wins_for_its_calls() {
        let f = compiled(&profile(
            r#"{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
               {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
               {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}"#,
        ))
        .unwrap();
        assert_eq!(verdict(&f, &call(SYS_read, &[])), RET_ALLOW);
        assert_eq!(verdict(&f, &call(SYS_getpid, &[])), RET_LOG);
        assert_eq!(verdict(&f, &call(SYS_getppid, &[])), RET_KILL_PROCESS);
        assert_eq!(verdict(&f, &call(SYS_gettid, &[])), errno(EPERM), "default");
        assert_eq!(f.summary().filters.len(), 3);
    }

    #[test]
    fn an_allow_default_needs_no_base_filter() {
        let f = compiled(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        assert_eq!(f.programs().len(), 1);
        assert_eq!(verdict(&f, &call(SYS_mkdir, &[])), errno(EACCES));
        assert_eq!(verdict(&f, &call(SYS_gettid, &[])), RET_ALLOW);
    }

    #[test]
    fn arguments_compare_as_libseccomp_does() {
        let f = compiled(&profile(
            r#"{"name": "personality", "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                         {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
               {"name": "mmap", "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                         {"index": 2, "value": 4, "op": "SCMP_CMP_LT"}]},
               {"name": "kill", "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 1, "value": 255, "valueTwo": 9, "op": "SCMP_CMP_MASKED_EQ"}]},
               {"name": "lseek", "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 1, "value": 4294967296, "op": "SCMP_CMP_GE"}]}"#,
        ))
        .unwrap();
        let v = |nr: i64, args: &[u64]| verdict(&f, &call(nr, args));
        // The same argument twice: either condition (runc's rule).
        assert_eq!(v(SYS_personality, &[1]), RET_ALLOW);
        assert_eq!(v(SYS_personality, &[2]), RET_ALLOW);
        assert_eq!(v(SYS_personality, &[3]), errno(EPERM));
        // Distinct arguments: both conditions.
        assert_eq!(v(SYS_mmap, &[0, 0, 3]), RET_ALLOW);
        assert_eq!(v(SYS_mmap, &[0, 0, 4]), errno(EPERM));
        assert_eq!(v(SYS_mmap, &[8, 0, 3]), errno(EPERM));
        // (arg & value) == valueTwo.
        assert_eq!(v(SYS_kill, &[0, 0x109]), RET_ALLOW);
        assert_eq!(v(SYS_kill, &[0, 15]), errno(EPERM));
        // 64-bit comparisons.
        assert_eq!(v(SYS_lseek, &[0, 1 << 32]), RET_ALLOW);
        assert_eq!(v(SYS_lseek, &[0, u32::MAX as u64]), errno(EPERM));
    }

    #[test]
    fn unknown_names_and_other_arches_are_skipped() {
        let f = compiled(&profile(
            r#"{"names": ["read", "chown32", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
               {"names": ["write"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
               {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
               {"names": ["gettid"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
               {"names": ["uname"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "3.10"}}"#,
        ))
        .unwrap();
        assert_eq!(verdict(&f, &call(SYS_read, &[])), RET_ALLOW);
        for nr in [SYS_write, SYS_getpid, SYS_gettid, SYS_uname] {
            assert_eq!(verdict(&f, &call(nr, &[])), errno(EPERM), "{nr}");
        }
        let s = f.summary();
        assert_eq!(s.names_unknown_here, 2);
        assert_eq!((s.entries_applied, s.entries_skipped), (1, 4));
    }

    #[test]
    fn bad_profiles_are_refused_with_the_entry_named() {
        let err = |text: &str| compiled(text).unwrap_err().to_string();
        let e = err(&profile(r#"{"names": ["read"], "action": "SCMP_ACT_FOO"}"#));
        assert!(
            e.contains("test.json") && e.contains("syscalls[0] (read)"),
            "{e}"
        );
        assert!(
            e.contains("SCMP_ACT_FOO") && e.contains("SCMP_ACT_ERRNO"),
            "{e}"
        );
        let e = err(&profile(
            r#"{"name": "read", "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}"#,
        ));
        assert!(e.contains("index 6"), "{e}");
        let e = err(&profile(
            r#"{"name": "read", "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_BETWEEN"}]}"#,
        ));
        assert!(e.contains("SCMP_CMP_BETWEEN"), "{e}");
        let e = err(&profile(
            r#"{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}"#,
        ));
        assert!(e.contains("`name` and `names`"), "{e}");
        let e = err(&profile(r#"{"name": "read", "action": "SCMP_ACT_NOTIFY"}"#));
        assert!(e.contains("seccomp agent"), "{e}");
        let e = err(&profile(
            r#"{"name": "read", "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}"#,
        ));
        assert!(e.contains("minKernel `new`"), "{e}");
        let e = err(r#"{"syscalls": []}"#);
        assert!(e.contains("defaultAction") && e.contains("none"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#);
        assert!(e.contains("70000"), "{e}");
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
        );
        assert!(e.contains("archMap"), "{e}");
        let e = err(r#"{"defaultAction": 3}"#);
        assert!(
            e.contains("Docker's JSON format") && e.contains("line 1"),
            "{e}"
        );
        let e = compile(
            &SeccompChoice::Profile("/nonexistent/profile.json".into()),
            &caps(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/nonexistent/profile.json") && e.contains("\"none\""),
            "{e}"
        );
    }

    #[test]
    fn the_choice_parses_and_prints_as_written() {
        for s in ["default", "none", "/etc/seccomp.json", "rel/p.json"] {
            let c: SeccompChoice = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
            assert_eq!(serde_json::to_value(&c).unwrap(), s);
        }
        assert_eq!("none".parse(), Ok(SeccompChoice::None));
        assert!("".parse::<SeccompChoice>().is_err());
        assert_eq!(
            compile(&SeccompChoice::None, &caps()).unwrap().map(|_| ()),
            None
        );
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_version("4.8"), Some((4, 8, 0)));
        assert_eq!(parse_version("6.1.0-18-cloud-amd64"), Some((6, 1, 0)));
        assert_eq!(parse_version("6.18.44-fc-v669"), Some((6, 18, 44)));
        assert_eq!(parse_version("5.10-rc1"), Some((5, 10, 0)));
        assert_eq!(parse_version("5"), None);
        assert_eq!(parse_version("x"), None);
    }

    /// podman's and Debian's profile (containers-common), when installed:
    /// a real third-party file in Docker's format.
    #[test]
    fn a_third_party_profile_compiles_when_present() {
        let path = Path::new("/usr/share/containers/seccomp.json");
        if !path.exists() {
            eprintln!(
                "skipped: {} is not installed (apt-get install golang-github-containers-common)",
                path.display()
            );
            return;
        }
        let f = compile(&SeccompChoice::Profile(path.into()), &caps())
            .unwrap()
            .unwrap();
        // Its default is ENOSYS; what it names as dangerous gets EPERM.
        assert_eq!(f.summary().default_action, "SCMP_ACT_ERRNO(38)");
        assert_eq!(verdict(&f, &call(SYS_read, &[])), RET_ALLOW);
        assert_eq!(verdict(&f, &call(SYS_kexec_load, &[])), errno(EPERM));
        assert_eq!(verdict(&f, &call(SYS_perf_event_open, &[])), errno(EPERM));
        assert_eq!(verdict(&f, &call(500, &[])), errno(ENOSYS));
    }

    #[test]
    fn installing_filters_restricts_a_forked_child() {
        let caps = caps();
        let f = default_filters(&caps);
        // SAFETY: the child only makes system calls on data prepared before
        // the fork and ends in _exit; it neither allocates nor unwinds.
        let pid = unsafe { fork() };
        if pid == 0 {
            // SAFETY: integer arguments only; _exit ends the child.
            unsafe {
                let code = if prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || f.install().is_err() {
                    10
                } else if syscall(SYS_keyctl, 0, 0, 0) != -1 || *__errno_location() != EPERM {
                    11
                } else if syscall(SYS_clone3, 0, 0) != -1 || *__errno_location() != ENOSYS {
                    12
                } else if getppid() <= 0 {
                    13
                } else if socket(AF_VSOCK, SOCK_STREAM, 0) != -1 || *__errno_location() != EPERM {
                    14
                } else if socket(AF_UNIX, SOCK_DGRAM, 0) < 0 {
                    15
                } else if syscall(SYS_personality, 0x0040000) != -1 {
                    16
                } else if syscall(SYS_personality, 0xffff_ffffu64) < 0 {
                    17
                } else {
                    0
                };
                _exit(code);
            }
        }
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        unsafe { waitpid(pid, &mut status, 0) };
        assert!(WIFEXITED(status), "status {status:#x}");
        assert_eq!(WEXITSTATUS(status), 0);
    }
}
