//! `report.md`: the report's sections and tables in Markdown, fit for a
//! pull-request comment, and the escaping every Markdown table of isobench
//! uses ([`cell`], [`code`]; `compare` and `check` too).

use super::family::Family;
use super::{
    DENSITY_COLUMNS, Exporter, HOW_TO_READ, ReportData, ReportError, SeriesSummary, TCG_WARNING,
    claims, density_rows, figures, findings, fmt_ratio, fmt_value,
};
use crate::workload::Better;
use std::fmt::Write as _;

/// `report.md`: the summary tables, fit for a pull-request comment.
pub struct Markdown;

impl Exporter for Markdown {
    fn file_name(&self) -> &'static str {
        "report.md"
    }
    fn export(&self, data: &ReportData) -> Result<Vec<u8>, ReportError> {
        Ok(markdown(data).into_bytes())
    }
}

/// Escapes free text for Markdown: characters that would break a table
/// cell, and the angle brackets that would open raw HTML.
pub fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}

/// A name as Markdown inline code. A name with characters that could
/// start HTML or end the span is written as escaped plain text instead, so
/// the output holds no raw markup whichever renderer reads it.
pub fn code(text: &str) -> String {
    if text.contains(['`', '<', '>', '&', '|', '\n', '\r']) {
        cell(text)
    } else {
        format!("`{text}`")
    }
}

/// The per-instance density table, in Markdown.
fn density_table(s: &mut String, data: &ReportData) {
    let rows = density_rows(data);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "Instance by instance (k: instances alive once the k-th has started):\n"
    );
    let _ = writeln!(
        s,
        "| workload | environment | k | {} |",
        DENSITY_COLUMNS.map(|c| c.1).join(" | ")
    );
    let _ = writeln!(s, "|---|---|---:|{}", "---:|".repeat(DENSITY_COLUMNS.len()));
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| if i < 2 { code(c) } else { cell(c) })
            .collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    s.push('\n');
}

pub(crate) fn markdown(data: &ReportData) -> String {
    let m = &data.meta;
    let mut s = String::new();
    let _ = writeln!(s, "# isobench report: {}\n", code(data.scenario_name()));
    if let Some(desc) = m.scenario.get("description").and_then(|v| v.as_str())
        && !desc.is_empty()
    {
        let _ = writeln!(s, "{}\n", cell(desc));
    }
    let _ = writeln!(
        s,
        "Run {} · status **{}** · started {} · wall time {} · isobench {}\n",
        code(&m.run_id),
        cell(m.status.as_str()),
        cell(&m.started),
        m.wall_s.map_or("—".into(), |w| format!("{w:.0} s")),
        cell(&m.isobench)
    );
    let _ = writeln!(
        s,
        "Host: {} ({} cores, {} MiB) · kernel {} · {} · cgroups {}",
        cell(&m.host.cpu_model),
        m.host.cores,
        m.host.memory_mib,
        cell(&m.host.kernel),
        cell(&m.host.os),
        cell(&m.host.cgroup_mode)
    );
    if let Some(acc) = &m.accelerator {
        let _ = writeln!(
            s,
            "\nVM: {} · accelerator **{}** ({}) · guest kernel {}",
            cell(m.qemu.as_deref().unwrap_or("QEMU")),
            acc.accel.as_str(),
            cell(&acc.reason),
            cell(m.guest_kernel.as_deref().unwrap_or("?"))
        );
        if data.tcg() {
            let _ = writeln!(s, "\n> **Warning:** {TCG_WARNING}");
        }
    }
    if let Some(line) = image_line(m) {
        let _ = writeln!(s, "\nImage: {}", cell(&line));
    }
    let _ = writeln!(s, "\n{HOW_TO_READ}\n");
    let _ = writeln!(s, "## The usual claims, checked against this run\n");
    for c in claims::claims(data) {
        let _ = writeln!(
            s,
            "- **{}** Measured: {} {} *Cannot tell:* {}",
            cell(c.claim),
            cell(&c.measured),
            cell(&c.verdict),
            cell(&c.cannot_tell)
        );
    }
    s.push('\n');
    let notes = super::runtimes::notes(data);
    if !notes.is_empty() {
        let _ = writeln!(s, "## Where each runtime's start-up time and memory go\n");
        for n in notes {
            let _ = writeln!(s, "- {}", cell(&n));
        }
        s.push('\n');
    }

    if let Some(k) = super::kernels::section(data) {
        let _ = writeln!(s, "## Guest kernels side by side: vm and vm-minimal\n");
        for line in &k.sentences {
            let _ = writeln!(s, "- {}", cell(line));
        }
        let _ = writeln!(
            s,
            "\n| median | vm (distro) | vm-minimal | minimal ÷ distro |\n|---|---:|---:|---:|"
        );
        for r in &k.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                cell(&r[0]),
                cell(&r[1]),
                cell(&r[2]),
                cell(&r[3])
            );
        }
        s.push('\n');
    }

    let figures = figures::all(data);
    for family in data.families() {
        let _ = writeln!(s, "## {}\n", family.title());
        for f in figures.iter().filter(|f| f.family == family) {
            let _ = writeln!(s, "![{}](charts/{}.svg)\n", cell(f.chart.title()), f.name);
        }
        for line in findings(data, family, &|x| code(x), &|x| cell(x)) {
            let _ = writeln!(s, "- {line}");
        }
        s.push('\n');
        if family == Family::Density {
            density_table(&mut s, data);
        }
        if family == Family::Network
            && let Some(paths) = super::network::section(data)
        {
            s.push_str(&paths);
        }
        table(&mut s, &data.in_family(Some(family)));
    }
    let other = data.in_family(None);
    if !other.is_empty() {
        let _ = writeln!(s, "## Other figures\n");
        table(&mut s, &other);
    }
    if !data.failures.is_empty() {
        let _ = writeln!(s, "## Failures\n");
        for f in &data.failures {
            let _ = writeln!(
                s,
                "- {} in {}, {} {}: {} (log: {})",
                code(&f.workload),
                code(f.environment.as_str()),
                if f.warmup { "warm-up" } else { "repetition" },
                f.repetition,
                cell(f.error.as_deref().unwrap_or("?")),
                code(&f.log)
            );
        }
        s.push('\n');
    }
    if !m.notes.is_empty() {
        let _ = writeln!(s, "## Notes\n");
        for n in &m.notes {
            let _ = writeln!(s, "- {}", cell(n));
        }
        s.push('\n');
    }
    s
}

fn table(s: &mut String, rows: &[&SeriesSummary]) {
    let _ = writeln!(
        s,
        "| workload | environment | metric | n | median | × native | interval | min | max | outliers |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for x in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} ({}, {} is better) | {} | {} | {} | {} [{}, {}] | {} | {} | {} |",
            cell(&x.workload),
            cell(x.environment.as_str()),
            cell(&x.metric),
            cell(&x.unit),
            match x.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
            },
            x.stats.n,
            fmt_value(x.stats.median),
            fmt_ratio(x),
            x.stats.spread().label(),
            fmt_value(x.stats.spread().lo),
            fmt_value(x.stats.spread().hi),
            fmt_value(x.stats.min),
            fmt_value(x.stats.max),
            x.stats.outliers.len()
        );
    }
    s.push('\n');
}

/// The real image a run used (`--image`), in one line: path, format,
/// digests, layers with their sizes, unpacked size; `None` without one.
pub(super) fn image_line(m: &crate::meta::Meta) -> Option<String> {
    let oci = m.image.as_ref()?.get("oci")?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    let short = |d: &serde_json::Value| {
        let d = text(d);
        d.get(..19).map_or(d.clone(), |p| format!("{p}…"))
    };
    let mib = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as f64 / 1048576.0;
    let layers: Vec<String> = oci
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "{} {:.1} → {:.1} MiB",
                short(&l["digest"]),
                mib(&l["bytes"]),
                mib(&l["unpacked_bytes"])
            )
        })
        .collect();
    Some(format!(
        "{} ({}, manifest {}, config {}; {} layer(s), bottom first: {}; {:.1} MiB unpacked)",
        text(&oci["path"]),
        text(&oci["format"]),
        short(&oci["manifest_digest"]),
        short(&oci["config_digest"]),
        layers.len(),
        layers.join(", "),
        mib(&oci["unpacked_bytes"])
    ))
}
