//! `report.html`: one self-contained page for a reader who wants to
//! understand the numbers, not only see them.
//!
//! The page needs no network and no other file: styles are inline and the
//! charts are embedded as SVG. It shows the host and every knob, a visible
//! warning when the VM ran under TCG, and one section per family that ran
//! (see [`super::family`]) with a few plain sentences on what the difference
//! means and why it arises, what this run measured, the family's charts and
//! a table of every statistic with the raw repetitions (folded when long,
//! with × native beside the median so that it shows without scrolling in a
//! 1280-px window). Every piece of text
//! that comes from a run (names, the CPU model, the scenario's description,
//! error messages) is HTML-escaped with [`escape`].

use super::family::Family;
use super::{
    Exporter, HOW_TO_READ, ReportData, ReportError, SeriesSummary, TCG_WARNING, chart, figures,
    findings, fmt_value,
};
use crate::env::EnvKind;
use crate::workload::Better;
use std::fmt::Write as _;

/// `report.html`.
pub struct Html;

impl Exporter for Html {
    fn file_name(&self) -> &'static str {
        "report.html"
    }
    fn export(&self, data: &ReportData) -> Result<Vec<u8>, ReportError> {
        Ok(page(data)?.into_bytes())
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn code(text: &str) -> String {
    format!("<code>{}</code>", escape(text))
}

/// Series with more repetitions than this show their values folded away.
const VALUES_INLINE: usize = 12;

const STYLE: &str = r#"
:root { --fg: #222; --muted: #666; --line: #ddd; --accent: #0072b2; --warn-bg: #fff4e5; --warn: #b35900; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       max-width: 1100px; margin: 0 auto; padding: 1.5rem; line-height: 1.5; }
h1 { margin-bottom: 0.2rem; } h1 small { font-weight: normal; color: var(--muted); font-size: 60%; }
h2 { border-bottom: 2px solid var(--line); padding-bottom: 0.2rem; margin-top: 2.5rem; }
.meta, figcaption, .note { color: var(--muted); font-size: 0.9rem; }
.warning { background: var(--warn-bg); border-left: 6px solid var(--warn); padding: 0.8rem 1rem; margin: 1rem 0; }
.warning strong { color: var(--warn); }
.caveat { border-left: 4px solid var(--warn); padding-left: 0.8rem; }
nav ul { display: flex; flex-wrap: wrap; gap: 0.4rem 1.2rem; list-style: none; padding: 0; }
figure { margin: 1.2rem 0; } figure svg { max-width: 100%; height: auto; border: 1px solid var(--line); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88rem; margin: 0.8rem 0; }
details.table > summary { cursor: pointer; font-weight: 600; margin: 0.8rem 0 0.3rem; }
table.stats th, table.stats td { padding: 0.25rem 0.4rem; }
td.values { min-width: 8rem; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { font-weight: 600; white-space: nowrap; }
.dir { color: var(--muted); font-size: 0.8rem; }
mark.outlier { background: #fde0e0; color: #a00; font-weight: 600; }
.findings li { margin: 0.3rem 0; }
dl.claims dt { font-weight: 600; margin-top: 0.8rem; } dl.claims dd { margin-left: 1.2rem; } dl.claims p { margin: 0.2rem 0; }
code { background: #f3f3f3; padding: 0 0.2rem; border-radius: 3px; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }
footer { margin-top: 3rem; color: var(--muted); font-size: 0.85rem; border-top: 1px solid var(--line); padding-top: 0.8rem; }
"#;

fn page(data: &ReportData) -> Result<String, ReportError> {
    let m = &data.meta;
    let mut s = String::new();
    let title = format!("isobench report: {} ({})", data.scenario_name(), m.run_id);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = writeln!(
        s,
        "<header>\n<h1>What does isolation cost? <small>scenario {}</small></h1>",
        code(data.scenario_name())
    );
    if let Some(desc) = m.scenario.get("description").and_then(|v| v.as_str())
        && !desc.is_empty()
    {
        let _ = writeln!(s, "<p>{}</p>", escape(desc));
    }
    let _ = writeln!(
        s,
        "<p class=\"meta\">Run {} · status <strong>{}</strong> · started {} · wall time {} · \
         isobench {}</p>\n</header>",
        code(&m.run_id),
        escape(m.status.as_str()),
        escape(&m.started),
        m.wall_s.map_or("—".into(), |w| format!("{w:.0} s")),
        escape(&m.isobench)
    );
    if data.tcg() {
        let _ = writeln!(
            s,
            "<div class=\"warning\" role=\"alert\" id=\"tcg-warning\"><strong>Warning:</strong> \
             {}</div>",
            escape(TCG_WARNING)
        );
    }

    let families = data.families();
    let other = data.in_family(None);
    s.push_str(
        "<nav><ul>\n<li><a href=\"#system\">Host and system</a></li>\n\
         <li><a href=\"#claims\">The usual claims</a></li>\n",
    );
    for f in &families {
        let _ = writeln!(s, "<li><a href=\"#{}\">{}</a></li>", f.slug(), f.title());
    }
    if !other.is_empty() {
        s.push_str("<li><a href=\"#other\">Other figures</a></li>\n");
    }
    if !data.failures.is_empty() {
        s.push_str("<li><a href=\"#failures\">Failures</a></li>\n");
    }
    s.push_str("</ul></nav>\n");

    system(&mut s, data);
    let _ = writeln!(
        s,
        "<section id=\"reading\">\n<h2>How to read this report</h2>\n<p>{}</p>\n</section>",
        escape(HOW_TO_READ)
    );
    claims(&mut s, data);
    kernels(&mut s, data);

    let figures = figures::all(data);
    for family in families {
        section(&mut s, data, family, &figures)?;
    }
    if !other.is_empty() {
        s.push_str(
            "<section id=\"other\">\n<h2>Other figures</h2>\n<p>Series that belong to none of the \
             families above.</p>\n",
        );
        table(&mut s, &other);
        s.push_str("</section>\n");
    }
    if !data.failures.is_empty() {
        s.push_str("<section id=\"failures\">\n<h2>Failures</h2>\n<ul>\n");
        for f in &data.failures {
            let _ = writeln!(
                s,
                "<li>{} in {}, {} {}: {} (log: {})</li>",
                code(&f.workload),
                code(f.environment.as_str()),
                if f.warmup { "warm-up" } else { "repetition" },
                f.repetition,
                escape(f.error.as_deref().unwrap_or("?")),
                code(&f.log)
            );
        }
        s.push_str("</ul>\n</section>\n");
    }
    if !m.notes.is_empty() {
        s.push_str("<section id=\"notes\">\n<h2>Notes</h2>\n<ul>\n");
        for n in &m.notes {
            let _ = writeln!(s, "<li>{}</li>", escape(n));
        }
        s.push_str("</ul>\n</section>\n");
    }
    let _ = writeln!(
        s,
        "<footer>Rendered by isobench {} from the run's <code>results.csv</code>, \
         <code>instances.jsonl</code>, <code>meta.json</code> and <code>samples.csv</code>; \
         <code>isobench report \
         DIR</code> renders it again. The same tables are in <code>report.md</code>, the \
         statistics in <code>summary.json</code>.</footer>\n</body>\n</html>",
        escape(&m.isobench)
    );
    Ok(s)
}

/// The usual claims about containers and VMs, each met with this run's figures.
fn claims(s: &mut String, data: &ReportData) {
    s.push_str(
        "<section id=\"claims\">\n<h2>The usual claims, checked against this run</h2>\n<dl class=\"claims\">\n",
    );
    for c in super::claims::claims(data) {
        let _ = writeln!(
            s,
            "<dt>{}</dt>\n<dd><p><strong>Measured:</strong> {}</p><p><strong>Verdict:</strong> \
             {}</p><p class=\"note\"><strong>Cannot tell:</strong> {}</p></dd>",
            escape(c.claim),
            escape(&c.measured),
            escape(&c.verdict),
            escape(&c.cannot_tell)
        );
    }
    s.push_str("</dl>\n</section>\n");
    let notes = super::runtimes::notes(data);
    if !notes.is_empty() {
        s.push_str(
            "<section id=\"runtimes\">\n<h2>Where each runtime's start-up time and memory go</h2>\n<ul>\n",
        );
        for n in notes {
            let n = escape(&n);
            // The paragraph's lead-in, `**env**`, in bold.
            let n = n
                .replacen("**", "<strong>", 1)
                .replacen("**", "</strong>", 1);
            let _ = writeln!(s, "<li>{n}</li>");
        }
        s.push_str("</ul>\n</section>\n");
    }
}

/// The two guest kernels side by side, when the run has both.
fn kernels(s: &mut String, data: &ReportData) {
    let Some(k) = super::kernels::section(data) else {
        return;
    };
    s.push_str(
        "<section id=\"kernels\">\n<h2>Guest kernels side by side: vm and vm-minimal</h2>\n",
    );
    for line in &k.sentences {
        let _ = writeln!(s, "<p>{}</p>", escape(line));
    }
    s.push_str(
        "<table>\n<tr><th>median</th><th>vm (distro)</th><th>vm-minimal</th><th>minimal ÷ distro</th></tr>\n",
    );
    for r in &k.rows {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r[0]),
            escape(&r[1]),
            escape(&r[2]),
            escape(&r[3])
        );
    }
    s.push_str("</table>\n</section>\n");
}

fn row(s: &mut String, key: &str, value: &str) {
    let _ = writeln!(s, "<tr><th>{}</th><td>{value}</td></tr>", escape(key));
}

/// The host, the tools and the knobs.
fn system(s: &mut String, data: &ReportData) {
    let m = &data.meta;
    s.push_str("<section id=\"system\">\n<h2>Host and system</h2>\n<table class=\"kv\">\n");
    let h = &m.host;
    let mhz = h.cpu_mhz.map_or(String::new(), |f| format!(", {f} MHz"));
    row(s, "CPU", &format!("{}{mhz}", escape(&h.cpu_model)));
    let mut cores = h.cores.to_string();
    if let (Some(logical), Some(physical)) = (h.logical_cores, h.physical_cores) {
        let _ = write!(
            cores,
            " available to isobench (host: {logical} logical, {physical} physical)"
        );
    }
    row(s, "cores", &cores);
    row(s, "memory", &format!("{} MiB", h.memory_mib));
    row(s, "host kernel", &escape(&h.kernel));
    row(s, "operating system", &escape(&h.os));
    row(s, "cgroups", &escape(&m.host.cgroup_mode));
    row(s, "isobench", &escape(&m.isobench));
    let source = m.scenario.get("source").and_then(|v| v.as_str());
    let sha = m.scenario.get("source_sha256").and_then(|v| v.as_str());
    if let Some(source) = source {
        let sha = sha.map(|h| format!(" (SHA-256 {})", code(h)));
        row(
            s,
            "scenario",
            &format!("{}{}", escape(source), sha.unwrap_or_default()),
        );
    }
    let envs: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for x in &data.series {
            if !v.contains(&x.environment.as_str()) {
                v.push(x.environment.as_str());
            }
        }
        v
    };
    row(
        s,
        "environments measured",
        &envs.iter().map(|e| code(e)).collect::<Vec<_>>().join(", "),
    );
    if let Some(q) = &m.qemu {
        row(s, "QEMU", &escape(q));
    }
    if let Some(a) = &m.accelerator {
        let name = a.accel.as_str().to_uppercase();
        row(
            s,
            "VM accelerator",
            &format!("<strong>{}</strong>: {}", escape(&name), escape(&a.reason)),
        );
    }
    if let Some(k) = &m.guest_kernel {
        row(s, "guest kernel", &escape(k));
    }
    if let Some(line) = super::markdown::image_line(m) {
        row(s, "image", &escape(&line));
    }
    if let Some(vm) = m
        .environments
        .get(EnvKind::Vm.as_str())
        .and_then(|v| v.get("config"))
    {
        let field = |k: &str| {
            vm.get(k)
                .map(|v| v.to_string().trim_matches('"').to_string())
        };
        let mut parts = Vec::new();
        if let Some(machine) = field("machine") {
            parts.push(format!("machine {}", escape(&machine)));
        }
        if let Some(cpus) = field("cpus") {
            parts.push(format!("{} vCPU", escape(&cpus)));
        }
        if let Some(mem) = field("memory_mib") {
            parts.push(format!("{} MiB guest RAM", escape(&mem)));
        }
        if !parts.is_empty() {
            row(s, "VM", &parts.join(", "));
        }
    }
    row(s, "order", &escape(&m.order));
    s.push_str("</table>\n");
    if !m.environments.is_empty() {
        let knobs = serde_json::to_string_pretty(&m.environments).unwrap_or_default();
        let _ = writeln!(
            s,
            "<details><summary>Every environment's knobs (from <code>meta.json</code>)</summary>\
             <pre>{}</pre></details>",
            escape(&knobs)
        );
    }
    s.push_str("</section>\n");
}

fn section(
    s: &mut String,
    data: &ReportData,
    family: Family,
    figures: &[figures::Figure],
) -> Result<(), ReportError> {
    let series = data.in_family(Some(family));
    let _ = writeln!(
        s,
        "<section id=\"{}\" class=\"family\">\n<h2>{}</h2>",
        family.slug(),
        family.title()
    );
    for p in family.lecture() {
        let _ = writeln!(s, "<p>{}</p>", escape(p));
    }
    let vm_here = series.iter().any(|x| x.environment.is_vm());
    if data.tcg() && vm_here {
        let _ = writeln!(s, "<p class=\"caveat\">{}</p>", escape(family.tcg_caveat()));
    }
    let lines = findings(data, family, &code, &escape);
    if !lines.is_empty() {
        s.push_str("<p><strong>What this run measured:</strong></p>\n<ul class=\"findings\">\n");
        for l in lines {
            let _ = writeln!(s, "<li>{l}</li>");
        }
        s.push_str("</ul>\n");
    }
    for f in figures.iter().filter(|f| f.family == family) {
        figure(s, f)?;
    }
    if family == Family::Density {
        density_table(s, data);
    }
    table(s, &series);
    s.push_str("</section>\n");
    Ok(())
}

/// The per-instance density table, folded.
fn density_table(s: &mut String, data: &ReportData) {
    let rows = super::density_rows(data);
    if rows.is_empty() {
        return;
    }
    s.push_str(
        "<details open><summary>Instance by instance (k: instances alive once the k-th has \
         started)</summary>\n<div class=\"scroll\"><table class=\"stats\">\n<thead><tr>\
         <th>workload</th><th>environment</th><th class=\"num\">k</th>",
    );
    for (_, header) in super::DENSITY_COLUMNS {
        let _ = write!(s, "<th class=\"num\">{}</th>", escape(header));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        s.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            if i < 2 {
                let _ = write!(s, "<td>{}</td>", code(c));
            } else {
                let _ = write!(s, "<td class=\"num\">{}</td>", escape(c));
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table></div></details>\n");
}

fn figure(s: &mut String, f: &figures::Figure) -> Result<(), ReportError> {
    let svg = chart::render_svg(&f.chart)?;
    // The chart's own text is escaped by the SVG backend; label it for
    // screen readers.
    let svg = svg.replacen(
        "<svg ",
        &format!(
            "<svg role=\"img\" aria-label=\"{}\" ",
            escape(f.chart.title())
        ),
        1,
    );
    let _ = writeln!(
        s,
        "<figure id=\"chart-{}\">\n{}\n<figcaption>{} (also <code>charts/{}.svg</code> and \
         <code>.png</code>)</figcaption>\n</figure>",
        escape(&f.name),
        svg.trim_end(),
        escape(f.chart.title()),
        escape(&f.name)
    );
    Ok(())
}

fn values(x: &SeriesSummary) -> String {
    let items: Vec<String> = x
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if x.stats.outliers.contains(&i) {
                format!(
                    "<mark class=\"outlier\" title=\"outlier: modified Z-score &gt; 3.5\">{}</mark>",
                    fmt_value(*v)
                )
            } else {
                fmt_value(*v)
            }
        })
        .collect();
    let list = items.join(", ");
    if items.len() > VALUES_INLINE {
        format!(
            "<details><summary>{} values</summary>{list}</details>",
            items.len()
        )
    } else {
        list
    }
}

/// A table folds (shows only its summary line until opened) from this
/// many rows on.
const FOLD_ROWS: usize = 10;

/// The statistics of a section's series, in a `<details>` that is open
/// when the table is short: the columns a reader compares (median, × native
/// next to it, the interval and what it is, outliers, the repetitions),
/// narrow enough to need no horizontal scrolling at 1280 px; mean, standard
/// deviation, MAD, min and max are folded into a second table below it.
fn table(s: &mut String, rows: &[&SeriesSummary]) {
    let open = if rows.len() < FOLD_ROWS { " open" } else { "" };
    let _ = writeln!(
        s,
        "<details class=\"table\"{open}><summary>Every statistic of the {} series of this \
         section (median, × native, interval, repetitions)</summary>",
        rows.len()
    );
    s.push_str(
        "<div class=\"scroll\"><table class=\"stats\">\n<thead><tr><th>workload</th>\
         <th>environment</th><th>metric</th><th class=\"num\">n</th><th class=\"num\">median</th>\
         <th class=\"num\">× native<br><span class=\"dir\">(95% CI from n ≥ 6)</span></th>\
         <th class=\"num\">interval</th><th class=\"num\">outliers</th>\
         <th>repetitions (outliers marked)</th></tr></thead>\n<tbody>\n",
    );
    for x in rows {
        let st = &x.stats;
        let ratio = match (x.ratio_to_native, &x.ratio_ci95) {
            (Some(r), Some(ci)) => format!(
                "{:.2}×<br><span class=\"dir\">[{:.2}, {:.2}]</span>",
                r, ci.lo, ci.hi
            ),
            (Some(r), None) => format!("{r:.2}×"),
            _ => "—".into(),
        };
        let better = match x.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        };
        let spread = st.spread();
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}<br><span class=\"dir\">{}, {better}</span></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{ratio}</td>\
             <td class=\"num\">[{}, {}]<br><span class=\"dir\">{}</span></td>\
             <td class=\"num\">{}</td><td class=\"values\">{}</td></tr>",
            code(&x.workload),
            code(x.environment.as_str()),
            code(&x.metric),
            escape(&x.unit),
            st.n,
            fmt_value(st.median),
            fmt_value(spread.lo),
            fmt_value(spread.hi),
            escape(&spread.label()),
            st.outliers.len(),
            values(x)
        );
    }
    s.push_str("</tbody>\n</table></div>\n");
    s.push_str(
        "<details><summary>More statistics: mean, standard deviation, relative standard \
         deviation, MAD, min, max</summary>\n<div class=\"scroll\"><table class=\"more\">\n\
         <thead><tr><th>workload</th><th>environment</th><th>metric</th>\
         <th class=\"num\">mean</th><th class=\"num\">stddev</th><th class=\"num\">RSD</th>\
         <th class=\"num\">MAD</th><th class=\"num\">min</th><th class=\"num\">max</th></tr>\
         </thead>\n<tbody>\n",
    );
    for x in rows {
        let st = &x.stats;
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{:.1}%</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            code(&x.workload),
            code(x.environment.as_str()),
            code(&x.metric),
            fmt_value(st.mean),
            fmt_value(st.stddev),
            100.0 * st.rsd,
            fmt_value(st.mad),
            fmt_value(st.min),
            fmt_value(st.max),
        );
    }
    s.push_str("</tbody>\n</table></div></details>\n</details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    fn html(vm: bool) -> String {
        String::from_utf8(Html.export(&fixture::data(vm)).unwrap()).unwrap()
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn hostile_text_from_a_run_is_escaped_everywhere() {
        let page = html(true);
        let lower = page.to_lowercase();
        // No markup from the run survives: not in the text, not in the
        // embedded charts (plotters escapes SVG text), not in attributes.
        assert!(!lower.contains("<script"), "a <script> element got through");
        assert!(!lower.contains("<img"), "an <img> element got through");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(page.contains("Evil &lt;img src=x onerror=alert(1)&gt; CPU &amp; &quot;co&quot;"));
        assert!(page.contains("fixture &lt;script&gt;alert(2)&lt;/script&gt; &amp; more"));
        assert!(page.contains("forced &lt;b&gt;by&lt;/b&gt; test"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = html(true);
        assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
        // Nothing to fetch: no external scripts, styles, images or fonts.
        // (The SVG namespace is an identifier, not a request.)
        let without_ns = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for needle in ["http://", "https://", " src=\"", "<link", "@import", "url("] {
            assert!(!without_ns.contains(needle), "{needle} in the page");
        }
    }

    #[test]
    fn every_family_that_ran_has_its_section_and_chart() {
        let page = html(true);
        for f in Family::ALL {
            let start = page
                .find(&format!("<section id=\"{}\" class=\"family\">", f.slug()))
                .unwrap_or_else(|| panic!("no section for {f}"));
            let end = start + page[start..].find("</section>").unwrap();
            let section = &page[start..end];
            assert!(
                section.contains("<figure id=\"chart-") && section.contains("<svg "),
                "{f}"
            );
            assert!(section.contains("<table class=\"stats\">"), "{f}");
            assert!(section.contains(&escape(f.lecture()[0])), "{f}");
        }
        assert!(
            page.contains("id=\"chart-vm_boot\"") && page.contains("id=\"chart-vmm_overhead\"")
        );
        assert!(page.contains("<section id=\"other\">"));
    }

    #[test]
    fn tcg_is_warned_about_visibly_and_only_when_it_ran() {
        let page = html(true);
        assert!(page.contains("<div class=\"warning\" role=\"alert\" id=\"tcg-warning\">"));
        assert!(page.contains("<p class=\"caveat\">"));
        let page = html(false);
        assert!(!page.contains("tcg-warning") && !page.contains("class=\"caveat\""));
        assert!(!page.contains("id=\"chart-vm_boot\""));
    }

    #[test]
    fn long_tables_fold_and_the_ratio_sits_next_to_the_median() {
        let page = html(true);
        let section = |slug: &str| {
            let start = page
                .find(&format!("<section id=\"{slug}\" class=\"family\">"))
                .unwrap();
            let end = start + page[start..].find("</section>").unwrap();
            page[start..end].to_string()
        };
        // The startup section has 10 series: folded, summary line shown.
        let startup = section("startup");
        assert!(
            startup.contains("<details class=\"table\"><summary>Every statistic of the 10 series"),
            "{startup}"
        );
        // The network section has 3: open.
        assert!(section("network").contains("<details class=\"table\" open><summary>"));
        // × native is the column after the median, in the header and in
        // every row; mean and stddev are in the folded second table.
        let header = startup.split("<thead>").nth(1).unwrap();
        let header = header.split("</thead>").next().unwrap();
        let columns: Vec<&str> = header.split("<th").collect();
        let median = columns.iter().position(|c| c.contains(">median<")).unwrap();
        assert!(columns[median + 1].contains(">× native<br>"), "{header}");
        assert!(startup.contains("<table class=\"more\">") && startup.contains(">mean</th>"));
        let row = startup
            .lines()
            .find(|l| {
                l.starts_with(
                    "<tr><td><code>noop</code></td><td><code>vm</code></td><td><code>startup_ms",
                )
            })
            .unwrap();
        let cells: Vec<&str> = row.split("<td").collect();
        assert!(cells[6].contains("×"), "{row}");
    }

    #[test]
    fn outliers_are_marked_among_the_repetitions() {
        let page = html(false);
        // Every startup series of the fixture ends with a 1.5× repetition,
        // which the modified Z-score flags.
        assert!(
            page.contains("<mark class=\"outlier\""),
            "no outlier marked"
        );
    }
}
