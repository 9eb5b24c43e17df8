//! The report's charts: grouped point charts, stacked bars and line charts.
//!
//! A [`BarChart`] shows one figure (for example startup time) for every
//! series (an environment: native, container, VM) inside every group (a
//! workload: noop, cpu, ...), in one of two [`Style`]s:
//!
//! * [`Style::Points`], for distributions, on any axis. Each [`Bar`] is
//!   drawn as a short thick line at its `median`, in the colour of its
//!   series (the same colour in every group, named in the legend above the
//!   plot); a whisker from `lo` to `hi` whose kind ([`Whisker`]) the legend
//!   names: a solid capped line for a 95% confidence interval, a dashed one
//!   for the range min–max; every repetition in `points` as a small black
//!   dot, spread evenly across the mark in the order given (no random
//!   jitter, so the output is deterministic and run-order trends stay
//!   visible); every value in `outliers` as a hollow red circle (in place
//!   of its dot when the value is also one of the `points`); and the median
//!   as text above the highest of these marks. No bar is drawn: on a
//!   logarithmic axis a bar's length means nothing (it depends on where the
//!   axis happens to start).
//! * [`Style::Stacked`], for parts of a whole, on a linear axis from 0
//!   only: the bars of a group are stacked into one bar, their medians from
//!   the bottom up, and the group's `total` (a separately measured whole)
//!   is drawn as a black line across the stack. A stacked chart on a log
//!   axis is refused with [`ChartError::StackedOnLogAxis`].
//!
//! A [`Reference`] line (say at 1× native) may cross either style. The y
//! axis is linear from 0 or, with [`BarChart::log_y`], logarithmic so that
//! 0.4 ms and 2500 ms fit on one axis.
//!
//! A [`LineChart`] draws values against a numeric x axis (time), one
//! [`Line`] per series, solid or dashed, for the sampler's time series.
//!
//! Output is a 960x540 SVG ([`render_svg`]) or PNG ([`render_png`]), or both
//! ([`write_both`]); each takes either kind of chart, or a [`Chart`] that
//! holds one. Invalid input is reported as a [`ChartError`], never a panic.
//!
//! # Why the font is embedded
//!
//! Rasterising text for the PNG needs a font file. plotters can look fonts up
//! through fontconfig (its `ttf` feature), but then the report would depend
//! on whatever fonts the build and CI machines happen to have, and on the
//! fontconfig/freetype libraries. Instead the crate's only font,
//! `assets/fonts/DejaVuSans.ttf`, is compiled into the binary with
//! `include_bytes!` and registered once with plotters' `ab_glyph` backend
//! under the family name `"sans-serif"`. Every text element drawn here uses
//! exactly that family; the `ab_glyph` backend looks fonts up only in its own
//! table of registered fonts, so no system font is ever searched for and a
//! chart renders identically everywhere. In the SVG, text is written as
//! `<text font-family="sans-serif">` and the viewer supplies the face; the
//! layout is measured with DejaVu Sans metrics.
//!
//! plotters 0.3.7's `ab_glyph` renderer ignores each glyph's left side
//! bearing, which makes small PNG text look unevenly spaced (a colon sticks
//! to the letter before it). For the PNG this module therefore places each
//! glyph itself, using the bearings from the embedded font's `hmtx` table;
//! the SVG keeps whole strings.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

mod text;
pub use text::font_registered;
use text::*;

/// Width of every rendered chart, in pixels.
pub const WIDTH: u32 = 960;
/// Height of every rendered chart, in pixels.
pub const HEIGHT: u32 = 540;

/// The family name under which the embedded font is registered; every text
/// element in this module uses it.
const FONT_FAMILY: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

const TITLE_H: f64 = 40.0;
const LEGEND_H: f64 = 28.0;
const CAPTION_LINE_H: f64 = 18.0;
const MAX_CAPTION_LINES: usize = 3;
const MARGIN_TOP: f64 = 10.0;
const MARGIN_BOTTOM: f64 = 4.0;
const MARGIN_LEFT: f64 = 12.0;
const MARGIN_RIGHT: f64 = 24.0;
const X_LABEL_AREA: f64 = 30.0;
const TICK_LEN: f64 = 5.0;

const TITLE_SIZE: f64 = 22.0;
const LEGEND_SIZE: f64 = 15.0;
const TICK_SIZE: f64 = 14.0;
const AXIS_DESC_SIZE: f64 = 16.0;
const GROUP_SIZE: f64 = 16.0;
const VALUE_SIZE: f64 = 13.0;
const CAPTION_SIZE: f64 = 13.0;
const MIN_TEXT_SIZE: f64 = 10.0;

/// Fraction of a group's width used by its bars.
const GROUP_FILL: f64 = 0.8;
/// Fraction of a bar's slot filled by the bar (the rest is the gap).
const BAR_FILL: f64 = 0.82;
/// Widest bar, in pixels (a lone bar would otherwise fill the plot).
const MAX_BAR_PX: f64 = 140.0;
/// Largest horizontal distance between the dots of one bar, in pixels.
const MAX_DOT_STEP: f64 = 14.0;
/// Gap in pixels between the centre of the highest mark of a bar and its
/// value label (an outlier marker has a radius of 6).
const VALUE_GAP: f64 = 10.0;

const TEXT: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x55, 0x55, 0x55);
const WHISKER: RGBColor = RGBColor(0x20, 0x20, 0x20);
const DOT: RGBColor = RGBColor(0x10, 0x10, 0x10);
const OUTLIER: RGBColor = RGBColor(0xd0, 0x10, 0x10);
const GRID: RGBColor = RGBColor(0xcc, 0xcc, 0xcc);
const GRID_LIGHT: RGBColor = RGBColor(0xee, 0xee, 0xee);

/// Okabe-Ito colours (colour-blind safe), minus red/vermillion, which is
/// reserved for outliers.
const PALETTE: [RGBColor; 9] = [
    RGBColor(0x00, 0x72, 0xb2),
    RGBColor(0xe6, 0x9f, 0x00),
    RGBColor(0x00, 0x9e, 0x73),
    RGBColor(0xcc, 0x79, 0xa7),
    RGBColor(0x56, 0xb4, 0xe9),
    RGBColor(0x99, 0x99, 0x99),
    RGBColor(0xf0, 0xe4, 0x42),
    RGBColor(0x00, 0x00, 0x00),
    RGBColor(0x88, 0x44, 0xaa),
];

/// An environment's place in [`PALETTE`]: native, container and vm keep
/// the first three (as before the real runtimes came), the runtimes the rest.
fn env_colour_index(kind: crate::env::EnvKind) -> usize {
    use crate::env::EnvKind;
    match kind {
        EnvKind::Native => 0,
        EnvKind::Container => 1,
        EnvKind::Vm => 2,
        EnvKind::Runc => 3,
        EnvKind::Crun => 4,
        EnvKind::Gvisor => 5,
        EnvKind::Docker => 6,
        EnvKind::Podman => 7,
        EnvKind::VmMinimal => 8,
    }
}

/// What a bar's whisker spans; the legend names each kind the chart uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whisker {
    /// A 95% confidence interval (of a median, or of a ratio of medians):
    /// a solid line with caps, "95% CI" in the legend.
    Ci95,
    /// The smallest to the largest repetition: a dashed line without caps,
    /// "min–max" in the legend. For series too short for an interval.
    Range,
    /// No whisker: the bar is one value.
    None,
}

/// How the bars of a [`BarChart`] are drawn; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub enum Style {
    /// Every bar as points: median mark, whisker, repetitions. Any axis.
    Points,
    /// The bars of each group stacked into one bar from 0, their medians
    /// from the bottom up; each group's `total` as a black line across the
    /// stack, named `total_label` in the legend. Whiskers, points and
    /// outliers are not drawn. Linear axis only, no negative median.
    Stacked {
        /// The legend's name for the total line, e.g. `startup_ms (median)`.
        total_label: String,
    },
}

/// A horizontal line across the whole plot, e.g. at 1× native.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Where the line is drawn, in the chart's unit.
    pub value: f64,
    /// Its name, printed at its right end, e.g. `native = 1×`.
    pub label: String,
}

/// One bar: a series (e.g. an environment) within a group (e.g. a workload).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Series name; bars with the same name share a colour across groups.
    pub series: String,
    /// The median mark (the segment's height in a stacked bar), printed
    /// above it.
    pub median: f64,
    /// Lower end of the whisker. On a log axis a value <= 0 is clamped to
    /// the bottom of the axis (a confidence interval may dip below zero); the
    /// whisker then runs off the bottom without a cap.
    pub lo: f64,
    /// Upper end of the whisker; must be >= `lo`.
    pub hi: f64,
    /// What `lo`–`hi` is, named in the legend.
    pub whisker: Whisker,
    /// Every individual measurement, drawn as a dot in the order given.
    pub points: Vec<f64>,
    /// Values drawn as hollow red circles. A value that is also in `points`
    /// replaces the dot of (the first unmarked) equal point; any other is
    /// drawn at the centre of the bar.
    pub outliers: Vec<f64>,
}

/// A group of bars drawn side by side (or stacked) under one x label.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The x-axis label of the group (e.g. a workload name). A label too
    /// long for its slot is broken onto two lines, then shortened.
    pub name: String,
    /// The bars, left to right (bottom to top when stacked).
    pub bars: Vec<Bar>,
    /// A stacked chart's whole, drawn as a line across the stack; ignored
    /// by [`Style::Points`].
    pub total: Option<f64>,
}

/// A grouped chart of bars, drawn as points or stacked; see the module
/// documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Printed above the plot and used in error messages.
    pub title: String,
    /// The y-axis description, e.g. `"startup time (ms)"`.
    pub y_label: String,
    /// The groups, left to right. A group without bars leaves an empty slot.
    pub groups: Vec<Group>,
    /// Logarithmic y axis. Every value must then be > 0, except `lo`.
    pub log_y: bool,
    /// How the bars are drawn.
    pub style: Style,
    /// A horizontal reference line, if any.
    pub reference: Option<Reference>,
    /// A note printed under the plot (wrapped, at most three lines), e.g.
    /// what the whiskers mean.
    pub caption: Option<String>,
}

/// One line of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Series name; lines with the same name share a colour (an
    /// environment's RSS and PSS, say), named in the legend.
    pub series: String,
    /// What the line shows, e.g. `RSS`; the legend names a solid and a
    /// dashed line by it when a chart has both.
    pub kind: String,
    /// Dashed rather than solid.
    pub dashed: bool,
    /// Also mark every point with a dot (for sparse readings).
    pub markers: bool,
    /// (x, y) points, drawn in the order given.
    pub points: Vec<(f64, f64)>,
}

/// Values against a numeric x axis (e.g. time), one [`Line`] per series: x
/// linear, y linear from 0 (or below, for a negative value) or
/// logarithmic.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Printed above the plot and used in error messages.
    pub title: String,
    /// The x-axis description, e.g. `"time since ready (s)"`.
    pub x_label: String,
    /// The y-axis description.
    pub y_label: String,
    /// The lines.
    pub lines: Vec<Line>,
    /// Logarithmic y axis; every y must then be > 0.
    pub log_y: bool,
    /// A note printed under the plot (wrapped, at most three lines).
    pub caption: Option<String>,
}

/// Either kind of chart, owned (what a report keeps of each figure).
#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// A grouped chart.
    Bars(BarChart),
    /// A line chart.
    Lines(LineChart),
}

impl Chart {
    /// The chart's title.
    pub fn title(&self) -> &str {
        ChartRef::from(self).title()
    }
}

/// Either kind of chart, borrowed: what the render functions take (a
/// `&BarChart`, a `&LineChart` or a `&Chart` converts into it).
#[derive(Debug, Clone, Copy)]
pub enum ChartRef<'a> {
    /// A grouped chart.
    Bars(&'a BarChart),
    /// A line chart.
    Lines(&'a LineChart),
}

impl<'a> ChartRef<'a> {
    fn title(self) -> &'a str {
        match self {
            ChartRef::Bars(c) => &c.title,
            ChartRef::Lines(c) => &c.title,
        }
    }
}

impl<'a> From<&'a BarChart> for ChartRef<'a> {
    fn from(c: &'a BarChart) -> Self {
        ChartRef::Bars(c)
    }
}

impl<'a> From<&'a LineChart> for ChartRef<'a> {
    fn from(c: &'a LineChart) -> Self {
        ChartRef::Lines(c)
    }
}

impl<'a> From<&'a Chart> for ChartRef<'a> {
    fn from(c: &'a Chart) -> Self {
        match c {
            Chart::Bars(b) => ChartRef::Bars(b),
            Chart::Lines(l) => ChartRef::Lines(l),
        }
    }
}

/// Why a chart could not be rendered or written. Every message starts with
/// the chart's title.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// There is nothing to draw: no groups, or no group has any bar.
    #[error("chart \"{title}\": nothing to draw (no groups, or no group has a bar)")]
    Empty {
        /// Title of the chart.
        title: String,
    },
    /// A value is NaN or infinite.
    #[error(
        "chart \"{title}\": {field} of series \"{series}\" in group \"{group}\" is {value}; every value must be a finite number"
    )]
    NonFinite {
        /// Title of the chart.
        title: String,
        /// Name of the group holding the bar.
        group: String,
        /// Series name of the bar.
        series: String,
        /// Which value: `median`, `lo`, `hi`, `points[i]` or `outliers[i]`.
        field: String,
        /// The offending value.
        value: f64,
    },
    /// On a log axis, a value other than `lo` is zero or negative. (`lo` is
    /// clamped to the bottom of the axis instead.)
    #[error(
        "chart \"{title}\": {field} of series \"{series}\" in group \"{group}\" is {value}, which a logarithmic axis cannot show; use a linear axis (log_y = false)"
    )]
    NonPositiveOnLogAxis {
        /// Title of the chart.
        title: String,
        /// Name of the group holding the bar.
        group: String,
        /// Series name of the bar.
        series: String,
        /// Which value: `median`, `hi`, `points[i]` or `outliers[i]`.
        field: String,
        /// The offending value.
        value: f64,
    },
    /// A whisker's `lo` is greater than its `hi`.
    #[error(
        "chart \"{title}\": whisker of series \"{series}\" in group \"{group}\" is inverted (lo = {lo} > hi = {hi})"
    )]
    InvertedWhisker {
        /// Title of the chart.
        title: String,
        /// Name of the group holding the bar.
        group: String,
        /// Series name of the bar.
        series: String,
        /// The whisker's lower end.
        lo: f64,
        /// The whisker's upper end.
        hi: f64,
    },
    /// A stacked chart was given a logarithmic axis, where the length of a
    /// segment (and so the sum the stack shows) means nothing.
    #[error(
        "chart \"{title}\": a stacked bar needs a linear axis from 0; a logarithmic axis would make its segments' lengths meaningless"
    )]
    StackedOnLogAxis {
        /// Title of the chart.
        title: String,
    },
    /// A segment of a stacked bar is negative (it cannot be stacked).
    #[error(
        "chart \"{title}\": segment \"{series}\" of the stacked bar of group \"{group}\" is {value}; a segment must be >= 0"
    )]
    NegativeSegment {
        /// Title of the chart.
        title: String,
        /// Name of the group holding the stack.
        group: String,
        /// Series name of the segment.
        series: String,
        /// The offending value.
        value: f64,
    },
    /// The embedded font could not be parsed (the binary was built with a
    /// damaged `assets/fonts/DejaVuSans.ttf`).
    #[error("chart \"{title}\": the embedded font DejaVuSans.ttf could not be loaded")]
    Font {
        /// Title of the chart.
        title: String,
    },
    /// plotters failed while drawing.
    #[error("chart \"{title}\": drawing failed: {message}")]
    Draw {
        /// Title of the chart.
        title: String,
        /// plotters' description of the failure.
        message: String,
    },
    /// An output file could not be written.
    #[error("chart \"{title}\": cannot write {}: {source}", path.display())]
    Write {
        /// Title of the chart.
        title: String,
        /// The file that was to be written.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

/// Renders the chart as a 960x540 SVG document.
pub fn render_svg<'a>(chart: impl Into<ChartRef<'a>>) -> Result<String, ChartError> {
    let chart = chart.into();
    let prepared = Prepared::new(chart)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        prepared
            .draw(&root, TextMode::Whole)
            .map_err(|e| draw_error(chart.title(), e))?;
        root.present().map_err(|e| draw_error(chart.title(), e))?;
    }
    Ok(svg)
}

/// Renders the chart as a 960x540 PNG file at `path`.
///
/// The image is written to a temporary file next to `path` and then renamed,
/// so `path` never holds a half-written image; any extension is accepted.
pub fn render_png<'a>(chart: impl Into<ChartRef<'a>>, path: &Path) -> Result<(), ChartError> {
    let chart = chart.into();
    let prepared = Prepared::new(chart)?;
    let write_error = |source: io::Error| ChartError::Write {
        title: chart.title().to_owned(),
        path: path.to_path_buf(),
        source,
    };
    let tmp = temp_png_path(path);
    // Creating the file ourselves reports a missing directory or a
    // permission problem as a plain io::Error.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(write_error)?;
    let drawn = {
        let root = BitMapBackend::new(&tmp, (WIDTH, HEIGHT)).into_drawing_area();
        match prepared.draw(&root, TextMode::PerGlyph) {
            Err(e) => Err(draw_error(chart.title(), e)),
            Ok(()) => root
                .present()
                .map_err(|e| write_error(io::Error::other(e.to_string()))),
        }
    };
    let result = drawn.and_then(|()| fs::rename(&tmp, path).map_err(write_error));
    if result.is_err() {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes the chart as SVG to `svg_path` and as PNG to `png_path`.
///
/// The chart is checked before anything is written, so invalid input leaves
/// both paths untouched.
pub fn write_both<'a>(
    chart: impl Into<ChartRef<'a>>,
    svg_path: &Path,
    png_path: &Path,
) -> Result<(), ChartError> {
    let chart = chart.into();
    let svg = render_svg(chart)?;
    crate::record::write_file(svg_path, svg.as_bytes()).map_err(|source| ChartError::Write {
        title: chart.title().to_owned(),
        path: svg_path.to_path_buf(),
        source,
    })?;
    render_png(chart, png_path)
}

/// A chart checked and laid out, ready to draw on any backend.
enum Prepared<'a> {
    Bars(&'a BarChart, Layout),
    Lines(&'a LineChart, LineLayout),
}

impl<'a> Prepared<'a> {
    fn new(chart: ChartRef<'a>) -> Result<Self, ChartError> {
        Ok(match chart {
            ChartRef::Bars(c) => Prepared::Bars(c, Layout::new(c)?),
            ChartRef::Lines(c) => Prepared::Lines(c, LineLayout::new(c)?),
        })
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        mode: TextMode,
    ) -> DrawResult<DB> {
        match self {
            Prepared::Bars(c, layout) => draw(root, mode, c, layout),
            Prepared::Lines(c, layout) => draw_lines(root, mode, c, layout),
        }
    }
}

fn draw_error<E: std::error::Error + Send + Sync>(
    title: &str,
    e: DrawingAreaErrorKind<E>,
) -> ChartError {
    ChartError::Draw {
        title: title.to_owned(),
        message: e.to_string(),
    }
}

fn temp_png_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "chart".to_owned());
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(".{name}.{}-{n}.tmp.png", std::process::id());
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(tmp_name),
        _ => PathBuf::from(tmp_name),
    }
}

// ---------------------------------------------------------------------------
// Font

/// Formats a median for printing above its bar: two significant digits
/// below 10, whole numbers above (`0.42`, `3.1`, `15`, `2304`); scientific
/// notation below 0.001 and from 10 million.
fn format_value(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    if !v.is_finite() {
        return format!("{v}");
    }
    let abs = v.abs();
    if !(1e-3..1e7).contains(&abs) {
        return format!("{v:.1e}");
    }
    let magnitude = abs.log10().floor() as i32;
    let decimals = (1 - magnitude).max(0) as usize;
    format!("{v:.decimals$}")
}

/// Maps values onto the y axis scale (log10 of them on a log axis).
#[derive(Clone, Copy)]
struct Scale {
    log: bool,
}

impl Scale {
    fn to_axis(self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }
}

/// The y axis: its range and ticks, at axis scale.
struct Axis {
    scale: Scale,
    min: f64,
    max: f64,
    ticks: Vec<f64>,
    light_ticks: Vec<f64>,
    /// Decimals of linear tick labels.
    decimals: usize,
}

impl Axis {
    /// The axis for `chart`, leaving `headroom` (a fraction of the plot
    /// height) above the highest mark for the value labels.
    fn new(chart: &BarChart, scale: Scale, headroom: f64) -> Axis {
        let (min, max) = y_range(chart, scale, headroom);
        let (ticks, light_ticks, decimals) = make_ticks(scale, min, max);
        Axis {
            scale,
            min,
            max,
            ticks,
            light_ticks,
            decimals,
        }
    }

    /// A logarithmic axis from 10^`min` to 10^`max` (`min` < `max`).
    fn log(min: f64, max: f64) -> Axis {
        let scale = Scale { log: true };
        let (ticks, light_ticks, decimals) = make_ticks(scale, min, max);
        Axis {
            scale,
            min,
            max,
            ticks,
            light_ticks,
            decimals,
        }
    }

    /// A linear axis from `min` to `max` (`min` < `max`).
    fn linear(min: f64, max: f64) -> Axis {
        let scale = Scale { log: false };
        let (ticks, light_ticks, decimals) = make_ticks(scale, min, max);
        Axis {
            scale,
            min,
            max,
            ticks,
            light_ticks,
            decimals,
        }
    }

    fn tick_label(&self, t: f64) -> String {
        if self.scale.log {
            log_tick_label(t)
        } else {
            let s = format!("{t:.*}", self.decimals);
            if s.trim_start_matches('-')
                .chars()
                .all(|c| c == '0' || c == '.')
            {
                "0".to_owned()
            } else {
                s
            }
        }
    }

    /// Width of the area left of the plot: axis description, tick labels,
    /// tick marks.
    fn label_area_width(&self) -> f64 {
        let widest = self
            .ticks
            .iter()
            .map(|&t| text_width(&self.tick_label(t), TICK_SIZE))
            .fold(0.0, f64::max);
        AXIS_DESC_SIZE + 12.0 + widest.ceil() + 4.0 + TICK_LEN
    }
}

/// The highest point, at axis scale, of everything drawn for a bar; the
/// value label goes above it.
fn bar_top(bar: &Bar, scale: Scale, y_min: f64) -> f64 {
    bar.points
        .iter()
        .chain(&bar.outliers)
        .chain([&bar.median, &bar.hi])
        .map(|&v| scale.to_axis(v))
        .fold(if scale.log { y_min } else { 0.0 }, f64::max)
}

/// Every value a chart draws, the reference line's included: for points
/// the marks, whiskers and repetitions; for stacks 0, the top of every
/// segment and the totals.
fn chart_values(chart: &BarChart) -> Vec<f64> {
    let mut values = Vec::new();
    for group in &chart.groups {
        match chart.style {
            Style::Points => {
                for b in &group.bars {
                    values.extend(b.points.iter().chain(&b.outliers));
                    values.extend([b.median, b.lo, b.hi]);
                }
            }
            Style::Stacked { .. } => {
                values.push(0.0);
                values.extend(stack_tops(group));
                values.extend(group.total);
            }
        }
    }
    values.extend(chart.reference.as_ref().map(|r| r.value));
    values
}

/// The top of every segment of a group's stack, bottom to top.
fn stack_tops(group: &Group) -> Vec<f64> {
    group
        .bars
        .iter()
        .scan(0.0, |sum, b| {
            *sum += b.median;
            Some(*sum)
        })
        .collect()
}

/// The top, at axis scale, of a group's stack and its total line.
fn stack_top(group: &Group) -> f64 {
    stack_tops(group)
        .into_iter()
        .chain(group.total)
        .fold(0.0, f64::max)
}

fn y_range(chart: &BarChart, scale: Scale, headroom: f64) -> (f64, f64) {
    let values = chart_values(chart);
    let (bottom, top_data) = if scale.log {
        // Validation guarantees every value but `lo` is > 0.
        let min_pos = values
            .iter()
            .copied()
            .filter(|&v| v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(min_pos, f64::max);
        let bottom = (min_pos.log10() - 0.05).floor();
        (bottom, max.log10())
    } else {
        let min = values.iter().copied().fold(0.0, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        let bottom = if min < 0.0 {
            min - 0.05 * (max - min)
        } else {
            0.0
        };
        (bottom, max)
    };
    let top_data = if top_data - bottom > 0.0 {
        top_data
    } else {
        bottom + 1.0
    };
    let top = (top_data - headroom * bottom) / (1.0 - headroom);
    (bottom, top)
}

/// Bold ticks, light grid lines and decimals for linear labels, at axis
/// scale.
fn make_ticks(scale: Scale, lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>, usize) {
    const EPS: f64 = 1e-9;
    const NONE: (Vec<f64>, Vec<f64>, usize) = (Vec::new(), Vec::new(), 0);
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        // Only with values near f64::MAX, whose range overflows.
        return NONE;
    }
    if scale.log {
        let first = lo.floor() as i64;
        let last = hi.ceil() as i64;
        let decades = (hi.floor() - lo.ceil()) as i64 + 1;
        let bold_mults: &[f64] = if decades >= 3 {
            &[1.0]
        } else {
            &[1.0, 2.0, 5.0]
        };
        let step = ((decades + 5) / 6).max(1);
        let mut bold = Vec::new();
        let mut light = Vec::new();
        for k in first..=last {
            for m in 1..10 {
                let m = f64::from(m);
                let t = k as f64 + m.log10();
                if t < lo - EPS || t > hi + EPS {
                    continue;
                }
                if bold_mults.contains(&m) && (m != 1.0 || k.rem_euclid(step) == 0) {
                    bold.push(t);
                } else if decades <= 8 {
                    light.push(t);
                }
            }
        }
        (bold, light, 0)
    } else {
        let raw = (hi - lo) / 6.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * magnitude);
        if !(step.is_finite() && step > 0.0) {
            return NONE;
        }
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        let first = (lo / step - EPS).ceil() as i64;
        let last = (hi / step + EPS).floor() as i64;
        if last.saturating_sub(first) > 100 {
            return NONE;
        }
        let ticks = (first..=last).map(|i| i as f64 * step).collect();
        (ticks, Vec::new(), decimals)
    }
}

/// Label of a log-axis tick at `t` = log10(value): `0.01`, `2`, `5000`, `1e6`.
fn log_tick_label(t: f64) -> String {
    let k = (t + 1e-9).floor();
    let mantissa = 10f64.powf(t - k).round();
    let k = k as i32;
    if (-4..=5).contains(&k) {
        let decimals = (-k).max(0) as usize;
        format!("{:.*}", decimals, mantissa * 10f64.powi(k))
    } else {
        format!("{mantissa}e{k}")
    }
}

// ---------------------------------------------------------------------------
// Layout

fn field_name(kind: &str, index: usize) -> String {
    format!("{kind}[{index}]")
}

fn validate(chart: &BarChart) -> Result<(), ChartError> {
    if chart.groups.iter().all(|g| g.bars.is_empty()) {
        return Err(ChartError::Empty {
            title: chart.title.clone(),
        });
    }
    let stacked = matches!(chart.style, Style::Stacked { .. });
    if stacked && chart.log_y {
        return Err(ChartError::StackedOnLogAxis {
            title: chart.title.clone(),
        });
    }
    let non_finite = |group: &str, series: &str, field: &str, value: f64| ChartError::NonFinite {
        title: chart.title.clone(),
        group: group.to_owned(),
        series: series.to_owned(),
        field: field.to_owned(),
        value,
    };
    if let Some(r) = &chart.reference {
        if !r.value.is_finite() {
            return Err(non_finite("", &r.label, "reference", r.value));
        }
        if chart.log_y && r.value <= 0.0 {
            return Err(ChartError::NonPositiveOnLogAxis {
                title: chart.title.clone(),
                group: String::new(),
                series: r.label.clone(),
                field: "reference".to_owned(),
                value: r.value,
            });
        }
    }
    for group in &chart.groups {
        if let Some(total) = group.total.filter(|t| !t.is_finite()) {
            return Err(non_finite(&group.name, "total", "total", total));
        }
        if stacked {
            if let Some(bar) = group.bars.iter().find(|b| b.median < 0.0) {
                return Err(ChartError::NegativeSegment {
                    title: chart.title.clone(),
                    group: group.name.clone(),
                    series: bar.series.clone(),
                    value: bar.median,
                });
            }
            // Finite parts can overflow when summed.
            if let Some(top) = stack_tops(group).last().filter(|t| !t.is_finite()) {
                return Err(non_finite(&group.name, "stack", "sum of medians", *top));
            }
        }
        for bar in &group.bars {
            let mut values = vec![
                ("median".to_owned(), bar.median),
                ("lo".to_owned(), bar.lo),
                ("hi".to_owned(), bar.hi),
            ];
            values.extend(
                bar.points
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (field_name("points", i), v)),
            );
            values.extend(
                bar.outliers
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (field_name("outliers", i), v)),
            );
            if let Some((field, value)) = values.iter().find(|(_, v)| !v.is_finite()) {
                return Err(ChartError::NonFinite {
                    title: chart.title.clone(),
                    group: group.name.clone(),
                    series: bar.series.clone(),
                    field: field.clone(),
                    value: *value,
                });
            }
            if bar.lo > bar.hi {
                return Err(ChartError::InvertedWhisker {
                    title: chart.title.clone(),
                    group: group.name.clone(),
                    series: bar.series.clone(),
                    lo: bar.lo,
                    hi: bar.hi,
                });
            }
            if chart.log_y
                && let Some((field, value)) =
                    values.iter().find(|(field, v)| field != "lo" && *v <= 0.0)
            {
                return Err(ChartError::NonPositiveOnLogAxis {
                    title: chart.title.clone(),
                    group: group.name.clone(),
                    series: bar.series.clone(),
                    field: field.clone(),
                    value: *value,
                });
            }
        }
    }
    Ok(())
}

/// Everything about the picture that can be decided before drawing; all
/// coordinates in pixels.
struct Layout {
    axis: Axis,
    /// Distinct series names in order of first appearance.
    series: Vec<String>,
    /// The plot rectangle.
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    title: String,
    title_size: f64,
    legend: Vec<(LegendMark, String)>,
    legend_size: f64,
    y_desc: String,
    y_desc_size: f64,
    /// Each group's label, on one or two lines.
    group_labels: Vec<Vec<String>>,
    group_label_size: f64,
    value_size: f64,
    value_rotated: bool,
    caption: Vec<String>,
    /// Width of a bar's slot in groups (one group is 1.0 wide).
    slot: f64,
}

impl Layout {
    fn new(chart: &BarChart) -> Result<Self, ChartError> {
        validate(chart)?;
        if !font_registered() {
            return Err(ChartError::Font {
                title: chart.title.clone(),
            });
        }
        let scale = Scale { log: chart.log_y };
        let bars = || chart.groups.iter().flat_map(|g| &g.bars);
        let stacked = matches!(chart.style, Style::Stacked { .. });

        let mut series: Vec<String> = Vec::new();
        for bar in bars() {
            if !series.contains(&bar.series) {
                series.push(bar.series.clone());
            }
        }
        let legend = bar_legend(chart, &series);

        let inner_w = f64::from(WIDTH) - 2.0 * MARGIN_LEFT;
        let title_size = fitting_size(&[&chart.title], TITLE_SIZE, 14.0, inner_w);
        let title = truncate_to(&chart.title, title_size, inner_w);
        let legend_size = legend_size(&legend, inner_w);
        let caption = match &chart.caption {
            Some(c) => wrap(c, CAPTION_SIZE, inner_w, MAX_CAPTION_LINES),
            None => Vec::new(),
        };

        let n_groups = chart.groups.len() as f64;
        let right = f64::from(WIDTH) - MARGIN_RIGHT;
        // The group labels' lines decide the height of the area under the
        // plot; their width is known closely enough before the y axis is.
        let rough_group_px = ((right - MARGIN_LEFT - 60.0) / n_groups - 6.0).max(1.0);
        let names: Vec<&str> = chart.groups.iter().map(|g| g.name.as_str()).collect();
        let (_, rough_lines) = group_label_lines(&names, rough_group_px);
        let x_label_area = X_LABEL_AREA + (rough_lines - 1) as f64 * (GROUP_SIZE + 2.0);

        let top = TITLE_H + LEGEND_H + MARGIN_TOP;
        let bottom =
            f64::from(HEIGHT) - caption_height(caption.len()) - MARGIN_BOTTOM - x_label_area;
        let plot_h = bottom - top;

        let max_bars = chart.groups.iter().map(|g| g.bars.len()).max().unwrap_or(1);
        let slot = if stacked {
            GROUP_FILL / 2.0
        } else {
            GROUP_FILL / max_bars.max(1) as f64
        };

        // First pass: room for horizontal value labels, to find how wide
        // the tick labels, and so the plot, will be.
        let value_labels: Vec<String> = if stacked {
            chart
                .groups
                .iter()
                .filter(|g| !g.bars.is_empty())
                .map(|g| format_value(g.total.unwrap_or_else(|| stack_top(g))))
                .collect()
        } else {
            bars().map(|b| format_value(b.median)).collect()
        };
        let value_labels: Vec<&str> = value_labels.iter().map(String::as_str).collect();
        let headroom = |px: f64| (px / plot_h).clamp(0.02, 0.45);
        let horizontal_px = |size: f64| size + VALUE_GAP + 4.0;
        let axis = Axis::new(chart, scale, headroom(horizontal_px(VALUE_SIZE)));
        // A little slack: the second pass may widen the tick labels.
        let plot_w = right - MARGIN_LEFT - axis.label_area_width() - 8.0;

        let slot_px = slot * plot_w / n_groups;
        let value_size = fitting_size(&value_labels, VALUE_SIZE, MIN_TEXT_SIZE, slot_px);
        let widest_value = value_labels
            .iter()
            .map(|l| text_width(l, value_size))
            .fold(0.0, f64::max);
        let value_rotated = widest_value > slot_px;
        let needed_px = if value_rotated {
            widest_value + VALUE_GAP + 4.0
        } else {
            horizontal_px(value_size)
        };

        let axis = Axis::new(chart, scale, headroom(needed_px));
        let left = MARGIN_LEFT + axis.label_area_width();

        let group_px = ((right - left) / n_groups - 6.0).max(1.0);
        let (group_label_size, mut group_labels) = group_label_lines_of(&names, group_px);
        // Never more lines than the area was sized for.
        if group_labels.iter().any(|l| l.len() > rough_lines) {
            group_labels = names
                .iter()
                .map(|n| vec![truncate_to(n, group_label_size, group_px)])
                .collect();
        }
        let (y_desc, y_desc_size) = axis_desc(&chart.y_label, plot_h);

        Ok(Layout {
            axis,
            series,
            left,
            right,
            top,
            bottom,
            title,
            title_size,
            legend,
            legend_size,
            y_desc,
            y_desc_size,
            group_labels,
            group_label_size,
            value_size,
            value_rotated,
            caption,
            slot,
        })
    }

    fn colour(&self, series: &str) -> RGBColor {
        series_colour(&self.series, series)
    }

    /// Pixel x of `x` groups from the left of the plot.
    fn x_px(&self, x: f64) -> f64 {
        let n = self.group_labels.len().max(1) as f64;
        self.left + x / n * (self.right - self.left)
    }

    /// Pixel y of `t` (at axis scale), clamped to the plot.
    fn y_px(&self, t: f64) -> f64 {
        let fraction = ((t - self.axis.min) / (self.axis.max - self.axis.min)).clamp(0.0, 1.0);
        self.bottom - fraction * (self.bottom - self.top)
    }
}

/// An axis description fitted into `width` pixels: smaller, down to 12 px,
/// then shortened. Returns the text and its size.
fn axis_desc(text: &str, width: f64) -> (String, f64) {
    let size = fitting_size(&[text], AXIS_DESC_SIZE, 12.0, width);
    (truncate_to(text, size, width), size)
}

/// The colour of `name` among `series` (in order of first appearance). An
/// environment keeps its colour in every chart (native the first of the
/// palette, container the second, vm the third); other series take the
/// palette's colours in order, skipping those of the environments the
/// chart shows.
fn series_colour(series: &[String], name: &str) -> RGBColor {
    let env = |s: &str| crate::env::EnvKind::from_name(s).map(env_colour_index);
    if let Some(i) = env(name) {
        return PALETTE[i];
    }
    let taken: Vec<usize> = series.iter().filter_map(|s| env(s)).collect();
    let mut free = (0..).filter(|i| !taken.contains(&(i % PALETTE.len())));
    let rank = series
        .iter()
        .filter(|s| env(s).is_none())
        .position(|s| s == name)
        .unwrap_or(0);
    free.nth(rank)
        .map_or(PALETTE[0], |i| PALETTE[i % PALETTE.len()])
}

/// Characters after which a group label may be broken onto a second line.
const BREAKS: [char; 5] = [' ', '-', '_', '/', '·'];

/// The two halves of `name` broken after the break character that makes
/// the wider half narrowest, or `None` without a break character.
fn split_label(name: &str, size: f64) -> Option<(String, String)> {
    name.char_indices()
        .filter(|(i, c)| BREAKS.contains(c) && *i > 0)
        .map(|(i, c)| {
            let cut = i + c.len_utf8();
            let first = name[..cut].trim_end().to_owned();
            let second = name[cut..].trim_start().to_owned();
            (first, second)
        })
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .min_by(|a, b| {
            let width = |p: &(String, String)| text_width(&p.0, size).max(text_width(&p.1, size));
            width(a).total_cmp(&width(b))
        })
}

/// How many lines (1 or 2) the group labels need at `width` pixels each:
/// `(size, lines)`.
fn group_label_lines(names: &[&str], width: f64) -> (f64, usize) {
    let (size, labels) = group_label_lines_of(names, width);
    (size, labels.iter().map(Vec::len).max().unwrap_or(1))
}

/// The group labels at `width` pixels each: on one line when all fit at a
/// readable size; else the ones that do not fit broken onto two lines;
/// whatever still does not fit is shortened with an ellipsis.
fn group_label_lines_of(names: &[&str], width: f64) -> (f64, Vec<Vec<String>>) {
    const READABLE: f64 = 13.0;
    let one_line = fitting_size(names, GROUP_SIZE, MIN_TEXT_SIZE + 1.0, width);
    if names.iter().all(|n| text_width(n, one_line) <= width) && one_line >= READABLE {
        return (
            one_line,
            names.iter().map(|n| vec![(*n).to_owned()]).collect(),
        );
    }
    let split: Vec<Vec<String>> = names
        .iter()
        .map(|n| {
            if text_width(n, READABLE) <= width {
                vec![(*n).to_owned()]
            } else {
                split_label(n, READABLE).map_or_else(|| vec![(*n).to_owned()], |(a, b)| vec![a, b])
            }
        })
        .collect();
    let lines: Vec<&str> = split.iter().flatten().map(String::as_str).collect();
    let size = fitting_size(&lines, GROUP_SIZE, MIN_TEXT_SIZE + 1.0, width);
    let labels = split
        .iter()
        .map(|l| l.iter().map(|t| truncate_to(t, size, width)).collect())
        .collect();
    (size, labels)
}

fn caption_height(lines: usize) -> f64 {
    if lines == 0 {
        0.0
    } else {
        lines as f64 * CAPTION_LINE_H + 8.0
    }
}

const SWATCH_W: f64 = 16.0;
const LEGEND_GAP: f64 = 6.0;
const LEGEND_SPACING: f64 = 22.0;

/// The symbol of a legend entry.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LegendMark {
    /// A filled rectangle: a stacked segment.
    Swatch(RGBColor),
    /// A short thick line: a median mark.
    Median(RGBColor),
    /// A line, solid or dashed: a line chart's series or kind.
    Line(RGBColor, bool),
    /// A repetition.
    Dot,
    /// An outlier.
    Outlier,
    /// A 95% CI whisker.
    Ci,
    /// A min–max whisker.
    Range,
    /// A stack's total.
    Total,
}

/// The legend of a grouped chart: the series, then the marks it uses.
fn bar_legend(chart: &BarChart, series: &[String]) -> Vec<(LegendMark, String)> {
    let bars = || chart.groups.iter().flat_map(|g| &g.bars);
    let colour = |s: &str| series_colour(series, s);
    match &chart.style {
        Style::Stacked { total_label } => {
            let mut entries: Vec<(LegendMark, String)> = series
                .iter()
                .map(|s| (LegendMark::Swatch(colour(s)), s.clone()))
                .collect();
            if chart.groups.iter().any(|g| g.total.is_some()) {
                entries.push((LegendMark::Total, total_label.clone()));
            }
            entries
        }
        Style::Points => {
            let mut entries: Vec<(LegendMark, String)> = series
                .iter()
                .map(|s| (LegendMark::Median(colour(s)), s.clone()))
                .collect();
            if bars().any(|b| !b.points.is_empty()) {
                entries.push((LegendMark::Dot, "repetitions".to_owned()));
            }
            if bars().any(|b| !b.outliers.is_empty()) {
                entries.push((LegendMark::Outlier, "outliers".to_owned()));
            }
            if bars().any(|b| b.whisker == Whisker::Ci95) {
                entries.push((LegendMark::Ci, "95% CI".to_owned()));
            }
            if bars().any(|b| b.whisker == Whisker::Range) {
                entries.push((LegendMark::Range, "min–max".to_owned()));
            }
            entries
        }
    }
}

fn legend_width(entries: &[(LegendMark, String)], size: f64) -> f64 {
    let spacing = entries.len().saturating_sub(1) as f64 * LEGEND_SPACING;
    entries
        .iter()
        .map(|(_, label)| SWATCH_W + LEGEND_GAP + text_width(label, size))
        .sum::<f64>()
        + spacing
}

/// The largest legend text size from [`LEGEND_SIZE`] down at which the
/// legend fits in `width`.
fn legend_size(entries: &[(LegendMark, String)], width: f64) -> f64 {
    let mut size = LEGEND_SIZE;
    while size > MIN_TEXT_SIZE && legend_width(entries, size) > width {
        size -= 1.0;
    }
    size
}

// ---------------------------------------------------------------------------
// Drawing

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Widest median mark, in pixels.
const MAX_MARK_PX: f64 = 48.0;
/// Dash and gap of a min–max whisker, a dashed line and the reference
/// line, in pixels.
const DASH: (u32, u32) = (5, 4);

fn px(p: (f64, f64)) -> (i32, i32) {
    (p.0.round() as i32, p.1.round() as i32)
}

fn line<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    from: (f64, f64),
    to: (f64, f64),
    style: ShapeStyle,
) -> DrawResult<DB> {
    root.draw(&PathElement::new(vec![px(from), px(to)], style))
}

fn dashed<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: Vec<(i32, i32)>,
    style: ShapeStyle,
) -> DrawResult<DB> {
    root.draw(&DashedPathElement::new(points, DASH.0, DASH.1, style))
}

fn draw_dot<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, at: (f64, f64)) -> DrawResult<DB> {
    // Filled circles: plotters' bitmap backend draws stroked ones unevenly.
    root.draw(&Circle::new(px(at), 4, WHITE.filled()))?;
    root.draw(&Circle::new(px(at), 3, DOT.filled()))
}

fn draw_outlier<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    at: (f64, f64),
) -> DrawResult<DB> {
    root.draw(&Circle::new(px(at), 6, OUTLIER.filled()))?;
    root.draw(&Circle::new(px(at), 3, WHITE.filled()))
}

/// A median mark: a short thick line in the series colour, outlined.
fn draw_median<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (f64, f64),
    width: f64,
    colour: RGBColor,
) -> DrawResult<DB> {
    let half = width / 2.0;
    root.draw(&Rectangle::new(
        [px((x - half - 1.0, y - 4.0)), px((x + half + 1.0, y + 4.0))],
        WHISKER.filled(),
    ))?;
    root.draw(&Rectangle::new(
        [px((x - half, y - 3.0)), px((x + half, y + 3.0))],
        colour.filled(),
    ))
}

/// A whisker from `lo` to `hi` (pixels) at `x`: solid with caps for a CI,
/// dashed without caps for a range; a cap is left off an end that runs off
/// the plot (`open_lo`).
fn draw_whisker<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    kind: Whisker,
    x: f64,
    (lo, hi): (f64, f64),
    cap: f64,
    open_lo: bool,
) -> DrawResult<DB> {
    match kind {
        Whisker::None => Ok(()),
        Whisker::Ci95 => {
            let style = WHISKER.stroke_width(2);
            line(root, (x, lo), (x, hi), style)?;
            line(root, (x - cap, hi), (x + cap, hi), style)?;
            if !open_lo {
                line(root, (x - cap, lo), (x + cap, lo), style)?;
            }
            Ok(())
        }
        Whisker::Range => dashed(
            root,
            vec![px((x, lo)), px((x, hi))],
            WHISKER.stroke_width(2),
        ),
    }
}

/// Which points are outliers (an outlier equal to a point marks that point,
/// each point at most once) and the outliers that match no point.
fn match_outliers(bar: &Bar) -> (Vec<bool>, Vec<f64>) {
    let mut marked = vec![false; bar.points.len()];
    let mut unmatched = Vec::new();
    for &outlier in &bar.outliers {
        let hit = bar
            .points
            .iter()
            .zip(marked.iter_mut())
            .find(|(p, m)| !**m && **p == outlier);
        match hit {
            Some((_, m)) => *m = true,
            None => unmatched.push(outlier),
        }
    }
    (marked, unmatched)
}

/// x positions of `n` marks spread evenly over `width` around `centre`.
fn spread(centre: f64, width: f64, n: usize) -> impl Iterator<Item = f64> {
    (0..n).map(move |i| {
        if n < 2 {
            centre
        } else {
            centre - width / 2.0 + width * i as f64 / (n - 1) as f64
        }
    })
}

/// Title, legend and caption: what every chart has around its plot.
fn draw_frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mode: TextMode,
    title: (&str, f64),
    legend: (&[(LegendMark, String)], f64),
    caption: &[String],
) -> DrawResult<DB> {
    put_text(
        root,
        mode,
        title.0,
        (f64::from(WIDTH) / 2.0, TITLE_H / 2.0 + 2.0),
        Label::new(title.1, HPos::Center, VPos::Center),
    )?;
    draw_legend(root, mode, legend.0, legend.1)?;
    let caption_top = f64::from(HEIGHT) - caption_height(caption.len()) + 6.0;
    for (i, line) in caption.iter().enumerate() {
        let label = Label {
            colour: MUTED,
            ..Label::new(CAPTION_SIZE, HPos::Left, VPos::Top)
        };
        let y = caption_top + i as f64 * CAPTION_LINE_H;
        put_text(root, mode, line, (MARGIN_LEFT, y), label)?;
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mode: TextMode,
    chart: &BarChart,
    layout: &Layout,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    draw_plot(root, mode, chart, layout)?;
    draw_axes(root, mode, layout)?;
    draw_frame(
        root,
        mode,
        (&layout.title, layout.title_size),
        (&layout.legend, layout.legend_size),
        &layout.caption,
    )
}

fn draw_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mode: TextMode,
    entries: &[(LegendMark, String)],
    size: f64,
) -> DrawResult<DB> {
    let total = legend_width(entries, size);
    let mut x = ((f64::from(WIDTH) - total) / 2.0).max(0.0).round();
    let mid = TITLE_H + LEGEND_H / 2.0;
    for (mark, label) in entries {
        let centre = (x + SWATCH_W / 2.0, mid);
        let (left, right) = (x, x + SWATCH_W);
        match *mark {
            LegendMark::Swatch(colour) => root.draw(&Rectangle::new(
                [px((left, mid - 6.0)), px((right, mid + 6.0))],
                colour.mix(0.85).filled(),
            ))?,
            LegendMark::Median(colour) => draw_median(root, centre, SWATCH_W - 2.0, colour)?,
            LegendMark::Line(colour, false) => {
                line(root, (left, mid), (right, mid), colour.stroke_width(3))?;
            }
            LegendMark::Line(colour, true) => dashed(
                root,
                vec![px((left, mid)), px((right, mid))],
                colour.stroke_width(3),
            )?,
            LegendMark::Dot => draw_dot(root, centre)?,
            LegendMark::Outlier => draw_outlier(root, centre)?,
            LegendMark::Ci => draw_whisker(
                root,
                Whisker::Ci95,
                centre.0,
                (mid + 7.0, mid - 7.0),
                4.0,
                false,
            )?,
            LegendMark::Range => draw_whisker(
                root,
                Whisker::Range,
                centre.0,
                (mid + 8.0, mid - 8.0),
                4.0,
                false,
            )?,
            LegendMark::Total => {
                line(root, (left, mid), (right, mid), BLACK.stroke_width(3))?;
            }
        }
        x += SWATCH_W + LEGEND_GAP;
        put_text(
            root,
            mode,
            label,
            (x, mid),
            Label::new(size, HPos::Left, VPos::Center),
        )?;
        x += (text_width(label, size) + LEGEND_SPACING).round();
    }
    Ok(())
}

/// The y axis line, its ticks and tick labels, and its description.
fn draw_y_axis<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mode: TextMode,
    axis: &Axis,
    (left, top, bottom): (f64, f64, f64),
    (desc, desc_size): (&str, f64),
    y_px: &dyn Fn(f64) -> f64,
) -> DrawResult<DB> {
    let axis_style = MUTED.stroke_width(1);
    line(root, (left, top), (left, bottom), axis_style)?;
    for &t in &axis.ticks {
        let y = y_px(t).round();
        line(root, (left - TICK_LEN, y), (left, y), axis_style)?;
        put_text(
            root,
            mode,
            &axis.tick_label(t),
            (left - TICK_LEN - 4.0, y),
            Label::new(TICK_SIZE, HPos::Right, VPos::Center),
        )?;
    }
    let desc_label = Label {
        rotated: true,
        ..Label::new(desc_size, HPos::Center, VPos::Top)
    };
    put_text(
        root,
        mode,
        desc,
        (MARGIN_LEFT, (top + bottom) / 2.0),
        desc_label,
    )
}

fn draw_axes<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mode: TextMode,
    layout: &Layout,
) -> DrawResult<DB> {
    line(
        root,
        (layout.left, layout.bottom),
        (layout.right, layout.bottom),
        MUTED.stroke_width(1),
    )?;
    let size = layout.group_label_size;
    for (i, lines) in layout.group_labels.iter().enumerate() {
        for (j, text) in lines.iter().enumerate() {
            put_text(
                root,
                mode,
                text,
                (
                    layout.x_px(i as f64 + 0.5),
                    layout.bottom + 9.0 + j as f64 * (size + 3.0),
                ),
                Label::new(size, HPos::Center, VPos::Top),
            )?;
        }
    }
    draw_y_axis(
        root,
        mode,
        &layout.axis,
        (layout.left, layout.top, layout.bottom),
        (&layout.y_desc, layout.y_desc_size),
        &|t| layout.y_px(t),
    )
}

/// Light and bold horizontal grid lines at the axis' ticks.
fn draw_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    axis: &Axis,
    (left, right): (f64, f64),
    y_px: &dyn Fn(f64) -> f64,
) -> DrawResult<DB> {
    for (ticks, colour) in [(&axis.light_ticks, GRID_LIGHT), (&axis.ticks, GRID)] {
        for &t in ticks {
            let y = y_px(t).round();
            line(root, (left, y), (right, y), colour.stroke_width(1))?;
        }
    }
    Ok(())
}

/// Dark text on light colours, white text on dark ones.
fn text_on(colour: RGBColor) -> RGBColor {
    let RGBColor(r, g, b) = colour;
    let luma = 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
    if luma > 140.0 { TEXT } else { WHITE }
}

fn draw_plot<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mode: TextMode,
    chart: &BarChart,
    layout: &Layout,
) -> DrawResult<DB> {
    let axis = &layout.axis;
    draw_grid(root, axis, (layout.left, layout.right), &|t| layout.y_px(t))?;
    for i in 1..chart.groups.len() {
        let x = layout.x_px(i as f64).round();
        line(
            root,
            (x, layout.top),
            (x, layout.bottom),
            GRID.stroke_width(1),
        )?;
    }
    let scale = axis.scale;
    let y = |v: f64| layout.y_px(scale.to_axis(v));
    if let Some(r) = &chart.reference {
        let at = y(r.value).round();
        dashed(
            root,
            vec![px((layout.left, at)), px((layout.right, at))],
            MUTED.stroke_width(2),
        )?;
        let label = Label {
            colour: MUTED,
            ..Label::new(VALUE_SIZE, HPos::Right, VPos::Bottom)
        };
        put_text(root, mode, &r.label, (layout.right - 4.0, at - 4.0), label)?;
    }
    match chart.style {
        Style::Points => draw_points(root, mode, chart, layout),
        Style::Stacked { .. } => draw_stacks(root, mode, chart, layout),
    }
}

/// Where a value label goes: rotated when the widest does not fit its slot.
fn value_label(layout: &Layout) -> Label {
    if layout.value_rotated {
        Label {
            rotated: true,
            ..Label::new(layout.value_size, HPos::Left, VPos::Center)
        }
    } else {
        Label::new(layout.value_size, HPos::Center, VPos::Bottom)
    }
}

fn draw_points<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mode: TextMode,
    chart: &BarChart,
    layout: &Layout,
) -> DrawResult<DB> {
    let axis = &layout.axis;
    let scale = axis.scale;
    let group_px = layout.x_px(1.0) - layout.x_px(0.0);
    let slot_px = layout.slot * group_px;
    let mark_px = (slot_px * BAR_FILL).clamp(4.0, MAX_MARK_PX);
    let y = |v: f64| layout.y_px(scale.to_axis(v));
    for (gi, group) in chart.groups.iter().enumerate() {
        let n = group.bars.len() as f64;
        let start = layout.x_px(gi as f64 + 0.5) - n * slot_px / 2.0;
        for (bi, bar) in group.bars.iter().enumerate() {
            let xc = start + (bi as f64 + 0.5) * slot_px;

            // Whisker; on a log axis a non-positive lo runs off the bottom.
            let clamped = scale.log && bar.lo <= 0.0;
            let lo = if clamped { layout.bottom } else { y(bar.lo) };
            let cap = (mark_px * 0.25).clamp(3.0, 8.0);
            draw_whisker(root, bar.whisker, xc, (lo, y(bar.hi)), cap, clamped)?;
            draw_median(
                root,
                (xc, y(bar.median)),
                mark_px,
                layout.colour(&bar.series),
            )?;

            // Dots at most MAX_DOT_STEP apart, within the mark's width;
            // outliers on top.
            let dots_w = |n: usize| (mark_px * 0.9).min(MAX_DOT_STEP * n.saturating_sub(1) as f64);
            let (marked, unmatched) = match_outliers(bar);
            let n = bar.points.len();
            let dots: Vec<(f64, f64, bool)> = spread(xc, dots_w(n), n)
                .zip(&bar.points)
                .zip(&marked)
                .map(|((x, &v), &outlier)| (x, y(v), outlier))
                .collect();
            for &(x, y, _) in dots.iter().filter(|d| !d.2) {
                draw_dot(root, (x, y))?;
            }
            for &(x, y, _) in dots.iter().filter(|d| d.2) {
                draw_outlier(root, (x, y))?;
            }
            let n = unmatched.len();
            for (x, v) in spread(xc, dots_w(n), n).zip(unmatched) {
                draw_outlier(root, (x, y(v)))?;
            }

            let top = layout.y_px(bar_top(bar, scale, axis.min)) - VALUE_GAP;
            put_text(
                root,
                mode,
                &format_value(bar.median),
                (xc, top),
                value_label(layout),
            )?;
        }
    }
    Ok(())
}

fn draw_stacks<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mode: TextMode,
    chart: &BarChart,
    layout: &Layout,
) -> DrawResult<DB> {
    let group_px = layout.x_px(1.0) - layout.x_px(0.0);
    let bar_px = (layout.slot * group_px * BAR_FILL).clamp(1.0, MAX_BAR_PX);
    let y = |v: f64| layout.y_px(v);
    for (gi, group) in chart.groups.iter().enumerate() {
        if group.bars.is_empty() {
            continue;
        }
        let xc = layout.x_px(gi as f64 + 0.5);
        let (left, right) = (xc - bar_px / 2.0, xc + bar_px / 2.0);
        let mut base = 0.0;
        for (bar, top) in group.bars.iter().zip(stack_tops(group)) {
            let colour = layout.colour(&bar.series);
            let (y0, y1) = (y(base), y(top));
            root.draw(&Rectangle::new(
                [px((left, y0)), px((right, y1))],
                colour.filled(),
            ))?;
            line(root, (left, y1), (right, y1), WHITE.stroke_width(1))?;
            // The segment's value inside it, where it fits.
            let text = format_value(bar.median);
            let size = layout.value_size;
            if y0 - y1 >= size + 4.0 && text_width(&text, size) <= bar_px - 6.0 {
                let label = Label {
                    colour: text_on(colour),
                    ..Label::new(size, HPos::Center, VPos::Center)
                };
                put_text(root, mode, &text, (xc, (y0 + y1) / 2.0), label)?;
            }
            base = top;
        }
        if let Some(total) = group.total {
            let at = y(total);
            let reach = (bar_px * 0.12).clamp(4.0, 14.0);
            line(
                root,
                (left - reach, at),
                (right + reach, at),
                BLACK.stroke_width(3),
            )?;
        }
        let top = y(stack_top(group)) - VALUE_GAP;
        let value = group.total.unwrap_or(base);
        put_text(
            root,
            mode,
            &format_value(value),
            (xc, top),
            value_label(layout),
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Line charts

/// The layout of a [`LineChart`], in pixels.
struct LineLayout {
    x_axis: Axis,
    y_axis: Axis,
    series: Vec<String>,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    title: String,
    title_size: f64,
    legend: Vec<(LegendMark, String)>,
    legend_size: f64,
    x_desc: String,
    y_desc: String,
    y_desc_size: f64,
    caption: Vec<String>,
}

/// Height of the x axis' description line of a line chart.
const X_DESC_H: f64 = 22.0;

impl LineLayout {
    fn new(chart: &LineChart) -> Result<Self, ChartError> {
        validate_lines(chart)?;
        if !font_registered() {
            return Err(ChartError::Font {
                title: chart.title.clone(),
            });
        }
        let mut series: Vec<String> = Vec::new();
        for l in &chart.lines {
            if !series.contains(&l.series) {
                series.push(l.series.clone());
            }
        }
        let mut legend: Vec<(LegendMark, String)> = series
            .iter()
            .map(|s| {
                (
                    LegendMark::Line(series_colour(&series, s), false),
                    s.clone(),
                )
            })
            .collect();
        let mut kinds: Vec<(&str, bool)> = Vec::new();
        for l in &chart.lines {
            if !kinds.contains(&(l.kind.as_str(), l.dashed)) {
                kinds.push((&l.kind, l.dashed));
            }
        }
        if kinds.len() > 1 {
            legend.extend(
                kinds
                    .iter()
                    .map(|(k, d)| (LegendMark::Line(MUTED, *d), (*k).to_owned())),
            );
        }
        let inner_w = f64::from(WIDTH) - 2.0 * MARGIN_LEFT;
        let title_size = fitting_size(&[&chart.title], TITLE_SIZE, 14.0, inner_w);
        let title = truncate_to(&chart.title, title_size, inner_w);
        let legend_size = legend_size(&legend, inner_w);
        let caption = match &chart.caption {
            Some(c) => wrap(c, CAPTION_SIZE, inner_w, MAX_CAPTION_LINES),
            None => Vec::new(),
        };
        let points = || chart.lines.iter().flat_map(|l| &l.points);
        let (x_lo, x_hi) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.0), hi.max(p.0))
        });
        let y_axis = if chart.log_y {
            // Validation guarantees every y is > 0.
            let (lo, hi) = points().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
                (lo.min(p.1), hi.max(p.1))
            });
            let (lo, hi) = (lo.log10(), hi.log10());
            let bottom = (lo - 0.05).floor();
            Axis::log(bottom, (hi + 0.03 * (hi - bottom)).max(bottom + 1.0))
        } else {
            let (lo, hi) =
                points().fold((0.0f64, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
            let pad = 0.06 * (hi - lo);
            Axis::linear(lo, if hi > lo { hi + pad } else { lo + 1.0 })
        };
        let x_axis = Axis::linear(x_lo, if x_hi > x_lo { x_hi } else { x_lo + 1.0 });
        let top = TITLE_H + LEGEND_H + MARGIN_TOP;
        let bottom = f64::from(HEIGHT)
            - caption_height(caption.len())
            - MARGIN_BOTTOM
            - X_LABEL_AREA
            - X_DESC_H;
        let left = MARGIN_LEFT + y_axis.label_area_width();
        let right = f64::from(WIDTH) - MARGIN_RIGHT;
        let (y_desc, y_desc_size) = axis_desc(&chart.y_label, bottom - top);
        Ok(LineLayout {
            x_desc: truncate_to(&chart.x_label, AXIS_DESC_SIZE, right - left),
            y_desc,
            y_desc_size,
            x_axis,
            y_axis,
            series,
            left,
            right,
            top,
            bottom,
            title,
            title_size,
            legend,
            legend_size,
            caption,
        })
    }

    fn x_px(&self, v: f64) -> f64 {
        let a = &self.x_axis;
        let fraction = ((v - a.min) / (a.max - a.min)).clamp(0.0, 1.0);
        self.left + fraction * (self.right - self.left)
    }

    /// Pixel y of `t`, at axis scale.
    fn y_px(&self, t: f64) -> f64 {
        let a = &self.y_axis;
        let fraction = ((t - a.min) / (a.max - a.min)).clamp(0.0, 1.0);
        self.bottom - fraction * (self.bottom - self.top)
    }

    /// Pixel y of the value `v`.
    fn y_of(&self, v: f64) -> f64 {
        self.y_px(self.y_axis.scale.to_axis(v))
    }
}

fn validate_lines(chart: &LineChart) -> Result<(), ChartError> {
    if chart.lines.iter().all(|l| l.points.is_empty()) {
        return Err(ChartError::Empty {
            title: chart.title.clone(),
        });
    }
    for l in &chart.lines {
        for (i, &(x, y)) in l.points.iter().enumerate() {
            for (field, value) in [(format!("points[{i}].x"), x), (format!("points[{i}].y"), y)] {
                if !value.is_finite() {
                    return Err(ChartError::NonFinite {
                        title: chart.title.clone(),
                        group: l.kind.clone(),
                        series: l.series.clone(),
                        field,
                        value,
                    });
                }
            }
        }
    }
    if chart.log_y
        && let Some((l, i, y)) = chart.lines.iter().find_map(|l| {
            l.points
                .iter()
                .enumerate()
                .find(|(_, p)| p.1 <= 0.0)
                .map(|(i, p)| (l, i, p.1))
        })
    {
        return Err(ChartError::NonPositiveOnLogAxis {
            title: chart.title.clone(),
            group: l.kind.clone(),
            series: l.series.clone(),
            field: format!("points[{i}].y"),
            value: y,
        });
    }
    // The axes' ranges must be finite too (f64::MAX - -f64::MAX is not).
    let points = || chart.lines.iter().flat_map(|l| &l.points);
    let span = |f: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = points().fold((0.0f64, 0.0f64), |(lo, hi), p| (lo.min(f(p)), hi.max(f(p))));
        hi - lo
    };
    for (axis, value) in [("x", span(|p| p.0)), ("y", span(|p| p.1))] {
        if !value.is_finite() {
            return Err(ChartError::NonFinite {
                title: chart.title.clone(),
                group: String::new(),
                series: format!("the {axis} axis"),
                field: "range".to_owned(),
                value,
            });
        }
    }
    Ok(())
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mode: TextMode,
    chart: &LineChart,
    layout: &LineLayout,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (left, right, top, bottom) = (layout.left, layout.right, layout.top, layout.bottom);
    draw_grid(root, &layout.y_axis, (left, right), &|t| layout.y_px(t))?;
    for &t in &layout.x_axis.ticks {
        let x = layout.x_px(t).round();
        line(root, (x, top), (x, bottom), GRID_LIGHT.stroke_width(1))?;
        line(
            root,
            (x, bottom),
            (x, bottom + TICK_LEN),
            MUTED.stroke_width(1),
        )?;
        put_text(
            root,
            mode,
            &layout.x_axis.tick_label(t),
            (x, bottom + TICK_LEN + 4.0),
            Label::new(TICK_SIZE, HPos::Center, VPos::Top),
        )?;
    }
    line(root, (left, bottom), (right, bottom), MUTED.stroke_width(1))?;
    put_text(
        root,
        mode,
        &layout.x_desc,
        ((left + right) / 2.0, bottom + X_LABEL_AREA),
        Label::new(AXIS_DESC_SIZE, HPos::Center, VPos::Top),
    )?;
    draw_y_axis(
        root,
        mode,
        &layout.y_axis,
        (left, top, bottom),
        (&layout.y_desc, layout.y_desc_size),
        &|t| layout.y_px(t),
    )?;
    for l in &chart.lines {
        let colour = series_colour(&layout.series, &l.series);
        let points: Vec<(i32, i32)> = l
            .points
            .iter()
            .map(|&(x, y)| px((layout.x_px(x), layout.y_of(y))))
            .collect();
        let style = colour.stroke_width(2);
        if l.dashed {
            dashed(root, points.clone(), style)?;
        } else {
            root.draw(&PathElement::new(points.clone(), style))?;
        }
        if l.markers {
            for p in points {
                root.draw(&Circle::new(p, 4, WHITE.filled()))?;
                root.draw(&Circle::new(p, 3, colour.filled()))?;
            }
        }
    }
    draw_frame(
        root,
        mode,
        (&layout.title, layout.title_size),
        (&layout.legend, layout.legend_size),
        &layout.caption,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The filled rectangles of an SVG taller than a legend swatch (12 px),
    /// the white background left out: bars. `(x, y, width, height)`.
    pub(crate) fn tall_rects(svg: &str) -> Vec<(f64, f64, f64, f64)> {
        let attr = |element: &str, name: &str| -> f64 {
            let key = format!(" {name}=\"");
            element
                .split_once(&key)
                .and_then(|(_, rest)| rest.split_once('"'))
                .and_then(|(v, _)| v.parse().ok())
                .unwrap_or(0.0)
        };
        svg.split("<rect")
            .skip(1)
            .map(|e| e.split_once('>').map_or(e, |(e, _)| e))
            .map(|e| {
                (
                    attr(e, "x"),
                    attr(e, "y"),
                    attr(e, "width"),
                    attr(e, "height"),
                )
            })
            .filter(|r| r.3 > 12.0 && !(r.2 == f64::from(WIDTH) && r.3 == f64::from(HEIGHT)))
            .collect()
    }

    fn bar(series: &str, median: f64, points: &[f64]) -> Bar {
        let lo = points.iter().copied().fold(median, f64::min);
        let hi = points.iter().copied().fold(median, f64::max);
        Bar {
            series: series.to_owned(),
            median,
            lo,
            hi,
            whisker: Whisker::Range,
            points: points.to_vec(),
            outliers: Vec::new(),
        }
    }

    fn startup_chart() -> BarChart {
        let mut vm_cpu = bar("vm", 2412.0, &[2398.0, 2412.0, 2431.0]);
        vm_cpu.outliers.push(2790.0);
        BarChart {
            title: "Startup time by environment".to_owned(),
            y_label: "startup time (ms)".to_owned(),
            groups: vec![
                Group {
                    name: "noop".to_owned(),
                    bars: vec![
                        bar("native", 0.42, &[0.41, 0.42, 0.47]),
                        bar("container", 3.1, &[2.9, 3.1, 3.4]),
                        bar("vm", 2304.0, &[2290.0, 2304.0, 2351.0]),
                    ],
                    total: None,
                },
                Group {
                    name: "cpu".to_owned(),
                    bars: vec![
                        bar("native", 0.55, &[0.52, 0.55, 0.61]),
                        bar("container", 3.3, &[3.2, 3.3, 3.6]),
                        vm_cpu,
                    ],
                    total: None,
                },
            ],
            log_y: true,
            style: Style::Points,
            reference: None,
            caption: Some(
                "Bars: median of 3 runs; whiskers: min to max; dots: individual runs.".to_owned(),
            ),
        }
    }

    /// The contents of every `<text>` element.
    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|element| {
                let (_, body) = element.split_once('>')?;
                let (text, _) = body.split_once("</text>")?;
                Some(text.trim().to_owned())
            })
            .collect()
    }

    fn png_size(bytes: &[u8]) -> (u32, u32) {
        const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        assert!(bytes.len() > 33, "PNG too short");
        assert_eq!(bytes[..8], SIGNATURE, "not a PNG");
        assert_eq!(&bytes[12..16], b"IHDR", "first chunk is not IHDR");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    #[test]
    fn renders_realistic_log_chart_to_svg_and_png() {
        let chart = startup_chart();
        let dir = crate::testutil::TempDir::new("both");
        let svg_path = dir.join("startup.svg");
        let png_path = dir.join("startup.png");
        write_both(&chart, &svg_path, &png_path).expect("render");

        let svg = fs::read_to_string(&svg_path).expect("read svg");
        let texts = svg_texts(&svg);
        let expected = [
            "Startup time by environment",
            "startup time (ms)",
            // series (legend) and groups (x labels)
            "native",
            "container",
            "vm",
            "noop",
            "cpu",
            // medians
            "0.42",
            "3.1",
            "2304",
            "0.55",
            "3.3",
            "2412",
            // one log tick per decade
            "0.1",
            "1",
            "10",
            "100",
            "1000",
        ];
        for text in expected {
            assert!(
                texts.iter().any(|t| t == text),
                "{text:?} missing: {texts:?}"
            );
        }
        assert!(texts.iter().any(|t| t.starts_with("Bars: median")));
        // Every text element uses the registered family.
        assert_eq!(
            svg.matches("<text").count(),
            svg.matches("font-family=\"sans-serif\"").count()
        );

        let png = fs::read(&png_path).expect("read png");
        assert_eq!(png_size(&png), (WIDTH, HEIGHT));
        // No temporary file is left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn renders_linear_single_bar() {
        let chart = BarChart {
            title: "One bar".to_owned(),
            y_label: "ms".to_owned(),
            groups: vec![Group {
                name: "only".to_owned(),
                bars: vec![bar("native", 12.5, &[12.0, 12.5, 13.0])],
                total: None,
            }],
            log_y: false,
            style: Style::Points,
            reference: None,
            caption: None,
        };
        let texts = svg_texts(&render_svg(&chart).expect("render"));
        assert!(texts.iter().any(|t| t == "12"), "median label: {texts:?}");
        assert!(texts.iter().any(|t| t == "only"));
        assert!(texts.iter().any(|t| t == "0"), "linear axis starts at 0");
    }

    #[test]
    fn png_accepts_any_extension() {
        let dir = crate::testutil::TempDir::new("ext");
        let path = dir.join("chart.out");
        render_png(&startup_chart(), &path).expect("render");
        let png = fs::read(&path).expect("read");
        assert_eq!(png_size(&png), (WIDTH, HEIGHT));
    }

    #[test]
    fn empty_chart_is_an_error() {
        let mut chart = startup_chart();
        chart.groups.clear();
        assert!(matches!(render_svg(&chart), Err(ChartError::Empty { .. })));
        chart.groups.push(Group {
            name: "none".to_owned(),
            bars: Vec::new(),
            total: None,
        });
        let err = render_svg(&chart).expect_err("empty");
        assert!(matches!(err, ChartError::Empty { .. }));
        assert!(err.to_string().contains("Startup time by environment"));
    }

    #[test]
    fn nan_names_group_and_series() {
        let mut chart = startup_chart();
        chart.groups[1].bars[1].points[2] = f64::NAN;
        let err = render_svg(&chart).expect_err("NaN");
        match &err {
            ChartError::NonFinite {
                group,
                series,
                field,
                ..
            } => {
                assert_eq!(group, "cpu");
                assert_eq!(series, "container");
                assert_eq!(field, "points[2]");
            }
            other => panic!("wrong error: {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("cpu") && message.contains("container"));

        let mut chart = startup_chart();
        chart.groups[0].bars[0].median = f64::INFINITY;
        assert!(matches!(
            render_svg(&chart),
            Err(ChartError::NonFinite { .. })
        ));
    }

    #[test]
    fn non_positive_on_log_axis() {
        let mut chart = startup_chart();
        chart.groups[0].bars[0].median = 0.0;
        let err = render_svg(&chart).expect_err("zero on log axis");
        assert!(matches!(
            &err,
            ChartError::NonPositiveOnLogAxis { field, .. } if field == "median"
        ));

        // The same chart is fine on a linear axis.
        chart.log_y = false;
        chart.groups[0].bars[0].lo = 0.0;
        render_svg(&chart).expect("linear axis accepts zero");

        // A negative lo (e.g. a wide confidence interval) is clamped.
        let mut chart = startup_chart();
        chart.groups[0].bars[1].lo = -1.0;
        render_svg(&chart).expect("negative lo is clamped");
    }

    #[test]
    fn inverted_whisker_is_an_error() {
        let mut chart = startup_chart();
        chart.groups[0].bars[2].lo = 9999.0;
        assert!(matches!(
            render_svg(&chart),
            Err(ChartError::InvertedWhisker { .. })
        ));
    }

    #[test]
    fn unwritable_path_names_the_path() {
        let dir = crate::testutil::TempDir::new("missing");
        let svg = dir.join("no-such-dir").join("c.svg");
        let png = dir.join("no-such-dir").join("c.png");
        let err = write_both(&startup_chart(), &svg, &png).expect_err("missing dir");
        match &err {
            ChartError::Write { path, source, .. } => {
                assert_eq!(path, &svg);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("wrong error: {other:?}"),
        }
        assert!(err.to_string().contains("no-such-dir"));

        let err = render_png(&startup_chart(), &png).expect_err("missing dir");
        assert!(matches!(&err, ChartError::Write { path, .. } if path == &png));
    }

    #[test]
    fn degenerate_values_do_not_panic() {
        // All zero on a linear axis, identical values, negative values.
        for values in [[0.0, 0.0], [5.0, 5.0], [-3.0, 2.0]] {
            let chart = BarChart {
                title: "degenerate".to_owned(),
                y_label: String::new(),
                groups: vec![Group {
                    name: String::new(),
                    bars: values.iter().map(|&v| bar("s", v, &[v])).collect(),
                    total: None,
                }],
                log_y: false,
                style: Style::Points,
                reference: None,
                caption: Some(String::new()),
            };
            render_svg(&chart).expect("render");
        }
        // One value on a log axis, many groups and series, long names.
        let mut chart = BarChart {
            title: "x".repeat(300),
            y_label: "y".repeat(300),
            groups: (0..12)
                .map(|g| Group {
                    name: format!("a-rather-long-workload-name-{g}"),
                    bars: (0..6)
                        .map(|s| bar(&format!("series-{s}"), 1234.5 * (s + 1) as f64, &[]))
                        .collect(),
                    total: None,
                })
                .collect(),
            log_y: true,
            style: Style::Points,
            reference: None,
            caption: Some("word ".repeat(200)),
        };
        render_svg(&chart).expect("crowded");
        chart.groups.truncate(1);
        chart.groups[0].bars.truncate(1);
        render_svg(&chart).expect("single");
        // Values whose range overflows f64, on both axes.
        chart.groups[0].bars = vec![
            bar("max", f64::MAX, &[]),
            bar("min", f64::MIN_POSITIVE, &[]),
        ];
        render_svg(&chart).expect("huge log range");
        chart.log_y = false;
        chart.groups[0].bars[1] = bar("min", -f64::MAX, &[]);
        render_svg(&chart).expect("huge linear range");
    }

    #[test]
    fn caption_wraps_and_ellipsizes() {
        assert!(font_registered());
        let lines = wrap(&"word ".repeat(500), CAPTION_SIZE, 300.0, 3);
        assert_eq!(lines.len(), 3);
        assert!(lines[2].ends_with('…'), "{lines:?}");
        assert!(lines.iter().all(|l| text_width(l, CAPTION_SIZE) <= 300.0));
        let long = "x".repeat(400);
        assert!(wrap(&long, CAPTION_SIZE, 300.0, 3)[0].ends_with('…'));
        assert!(wrap("   ", CAPTION_SIZE, 300.0, 3).is_empty());
    }

    #[test]
    fn embedded_font_metrics() {
        let metrics = FontMetrics::get().expect("metrics of the embedded font");
        assert!(metrics.height > 0.0 && metrics.cap_height > 0.0);
        assert!(metrics.glyph_id('A').is_some_and(|g| g != 0));
        assert!(metrics.glyph_id('…').is_some_and(|g| g != 0));
        // The colon sits well inside its advance; plotters would draw it
        // flush against the previous glyph.
        assert!(metrics.bearing(':') > metrics.bearing('s'));
        assert_eq!(metrics.bearing('\u{10FFFF}'), 0.0);
    }

    #[test]
    fn outliers_mark_their_points() {
        let mut b = bar("s", 2.0, &[1.0, 9.0, 2.0, 9.0]);
        b.outliers = vec![9.0, 30.0];
        assert_eq!(
            match_outliers(&b),
            (vec![false, true, false, false], vec![30.0])
        );
    }

    #[test]
    fn value_formatting() {
        assert_eq!(format_value(0.42), "0.42");
        assert_eq!(format_value(3.07), "3.1");
        assert_eq!(format_value(2304.4), "2304");
        assert_eq!(format_value(15.2), "15");
        assert_eq!(format_value(0.0042), "0.0042");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(0.00042), "4.2e-4");
        assert_eq!(format_value(-2.5), "-2.5");
        assert_eq!(log_tick_label(-1.0), "0.1");
        assert_eq!(log_tick_label(3.0), "1000");
        assert_eq!(log_tick_label(2.0f64.log10() - 2.0), "0.02");
        assert_eq!(log_tick_label(7.0), "1e7");
    }

    fn stacked_chart() -> BarChart {
        let part = |series: &str, v: f64| Bar {
            series: series.to_owned(),
            median: v,
            lo: v,
            hi: v,
            whisker: Whisker::None,
            points: Vec::new(),
            outliers: Vec::new(),
        };
        BarChart {
            title: "VM startup".to_owned(),
            y_label: "ms".to_owned(),
            groups: ["noop", "cpu"]
                .iter()
                .map(|name| Group {
                    name: (*name).to_owned(),
                    bars: vec![
                        part("vmm", 700.0),
                        part("kernel", 1150.0),
                        part("agent", 20.0),
                    ],
                    total: Some(1900.0),
                })
                .collect(),
            log_y: false,
            style: Style::Stacked {
                total_label: "startup_ms".to_owned(),
            },
            reference: None,
            caption: None,
        }
    }

    #[test]
    fn a_points_chart_draws_no_bars_and_names_its_whiskers() {
        let chart = startup_chart();
        let svg = render_svg(&chart).expect("render");
        assert!(tall_rects(&svg).is_empty(), "{:?}", tall_rects(&svg));
        let texts = svg_texts(&svg);
        assert!(texts.iter().any(|t| t == "min–max"), "{texts:?}");
        assert!(!texts.iter().any(|t| t.contains("95% CI")), "{texts:?}");
        assert!(texts.iter().any(|t| t == "repetitions"));
        let mut chart = chart;
        chart.groups[0].bars[0].whisker = Whisker::Ci95;
        let texts = svg_texts(&render_svg(&chart).expect("render"));
        assert!(texts.iter().any(|t| t == "95% CI") && texts.iter().any(|t| t == "min–max"));
        for bar in chart.groups.iter_mut().flat_map(|g| &mut g.bars) {
            bar.whisker = Whisker::None;
        }
        let texts = svg_texts(&render_svg(&chart).expect("render"));
        assert!(!texts.iter().any(|t| t == "95% CI" || t == "min–max"));
    }

    #[test]
    fn a_stacked_chart_stacks_from_zero_and_marks_the_total() {
        let chart = stacked_chart();
        let svg = render_svg(&chart).expect("render");
        let tall = tall_rects(&svg);
        // Three segments per group (the 20 ms one is thin).
        assert_eq!(tall.len(), 4, "{tall:?}");
        // The segments of a group sit on one another, bottom first.
        let (vmm, kernel) = (tall[0], tall[1]);
        assert!(
            (kernel.1 + kernel.3 - vmm.1).abs() <= 1.0,
            "{vmm:?} {kernel:?}"
        );
        let texts = svg_texts(&svg);
        for t in [
            "700",
            "1150",
            "1900",
            "startup_ms",
            "vmm",
            "kernel",
            "agent",
            "0",
        ] {
            assert!(texts.iter().any(|x| x == t), "{t} missing: {texts:?}");
        }
        render_png(
            &chart,
            &crate::testutil::TempDir::new("stack").join("s.png"),
        )
        .expect("png");
    }

    #[test]
    fn a_stacked_chart_refuses_a_log_axis_and_negative_parts() {
        let mut chart = stacked_chart();
        chart.log_y = true;
        let err = render_svg(&chart).expect_err("log");
        assert!(matches!(err, ChartError::StackedOnLogAxis { .. }));
        assert!(err.to_string().contains("linear axis from 0"), "{err}");
        let mut chart = stacked_chart();
        chart.groups[1].bars[2].median = -3.0;
        let err = render_svg(&chart).expect_err("negative");
        assert!(
            matches!(&err, ChartError::NegativeSegment { group, series, .. } if group == "cpu" && series == "agent"),
            "{err}"
        );
        let mut chart = stacked_chart();
        chart.groups[0].bars[0].median = f64::MAX;
        chart.groups[0].bars[1].median = f64::MAX;
        assert!(matches!(
            render_svg(&chart),
            Err(ChartError::NonFinite { .. })
        ));
        let mut chart = stacked_chart();
        chart.groups[0].total = Some(f64::NAN);
        assert!(matches!(
            render_svg(&chart),
            Err(ChartError::NonFinite { .. })
        ));
    }

    #[test]
    fn a_reference_line_is_drawn_and_checked() {
        let mut chart = startup_chart();
        chart.reference = Some(Reference {
            value: 1.0,
            label: "native = 1×".to_owned(),
        });
        let texts = svg_texts(&render_svg(&chart).expect("render"));
        assert!(texts.iter().any(|t| t == "native = 1×"));
        chart.reference.as_mut().unwrap().value = 0.0;
        assert!(matches!(
            render_svg(&chart),
            Err(ChartError::NonPositiveOnLogAxis { field, .. }) if field == "reference"
        ));
    }

    #[test]
    fn environments_keep_their_colours_in_every_chart() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let all = names(&["native", "container", "vm"]);
        let vm_only = names(&["vm"]);
        assert_eq!(series_colour(&all, "vm"), series_colour(&vm_only, "vm"));
        assert_eq!(series_colour(&vm_only, "vm"), PALETTE[2]);
        // Other series skip the colours of the environments shown.
        let mixed = names(&["vm", "parts", "more"]);
        assert_eq!(series_colour(&mixed, "parts"), PALETTE[0]);
        assert_eq!(series_colour(&mixed, "more"), PALETTE[1]);
        let with_native = names(&["native", "vm", "other"]);
        assert_eq!(series_colour(&with_native, "other"), PALETTE[1]);
    }

    #[test]
    fn long_group_labels_break_onto_two_lines() {
        assert!(font_registered());
        let names = ["fileio-volume · rand_read_iops", "net"];
        let (_, labels) = group_label_lines_of(&names, 130.0);
        assert_eq!(labels[0].len(), 2, "{labels:?}");
        assert_eq!(labels[1], ["net"]);
        assert!(labels[0].iter().all(|l| !l.ends_with('…')), "{labels:?}");
        // Short labels stay on one line at full size.
        let (size, labels) = group_label_lines_of(&["noop", "cpu"], 200.0);
        assert_eq!(size, GROUP_SIZE);
        assert!(labels.iter().all(|l| l.len() == 1));
        // A label without a break character is shortened, not lost.
        let (_, labels) = group_label_lines_of(&["x".repeat(80).as_str()], 100.0);
        assert!(labels[0][0].ends_with('…'));
        let mut chart = startup_chart();
        chart.groups[0].name = "fileio-volume · rand_read_p99_us".to_owned();
        for g in 1..8 {
            let mut group = chart.groups[1].clone();
            group.name = format!("workload-{g}");
            chart.groups.push(group);
        }
        let texts = svg_texts(&render_svg(&chart).expect("render"));
        assert!(
            texts.iter().any(|t| t.starts_with("fileio-volume")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("rand_read_p99_us")),
            "{texts:?}"
        );
    }

    fn line_chart() -> LineChart {
        let line = |series: &str, kind: &str, dashed: bool, f: f64| Line {
            series: series.to_owned(),
            kind: kind.to_owned(),
            dashed,
            markers: dashed,
            points: (0..50)
                .map(|i| (f64::from(i) * 10.0, f * (1.0 + f64::from(i) / 100.0)))
                .collect(),
        };
        LineChart {
            title: "Memory over time".to_owned(),
            x_label: "time (ms)".to_owned(),
            y_label: "MiB".to_owned(),
            lines: vec![
                line("native", "RSS", false, 1.5),
                line("vm", "RSS", false, 200.0),
                line("vm", "PSS", true, 170.0),
            ],
            log_y: true,
            caption: Some("RSS solid, PSS dashed".to_owned()),
        }
    }

    #[test]
    fn renders_a_line_chart() {
        let chart = line_chart();
        let dir = crate::testutil::TempDir::new("lines");
        write_both(&chart, &dir.join("l.svg"), &dir.join("l.png")).expect("render");
        let svg = fs::read_to_string(dir.join("l.svg")).expect("read");
        let texts = svg_texts(&svg);
        for t in [
            "Memory over time",
            "time (ms)",
            "MiB",
            "native",
            "vm",
            "RSS",
            "PSS",
            "100",
            "1",
            "0",
            "400",
        ] {
            assert!(texts.iter().any(|x| x == t), "{t} missing: {texts:?}");
        }
        assert_eq!(
            png_size(&fs::read(dir.join("l.png")).expect("read")),
            (WIDTH, HEIGHT)
        );
        // Through the owned enum too, as a report keeps it.
        render_svg(&Chart::Lines(chart.clone())).expect("enum");
        assert_eq!(Chart::Lines(chart).title(), "Memory over time");
    }

    #[test]
    fn a_line_chart_checks_its_values() {
        let mut chart = line_chart();
        chart.lines[1].points[3].1 = f64::NAN;
        assert!(matches!(
            render_svg(&chart),
            Err(ChartError::NonFinite { series, field, .. }) if series == "vm" && field == "points[3].y"
        ));
        let mut chart = line_chart();
        chart.lines[0].points[0].1 = 0.0;
        assert!(matches!(
            render_svg(&chart),
            Err(ChartError::NonPositiveOnLogAxis { .. })
        ));
        chart.log_y = false;
        render_svg(&chart).expect("0 on a linear axis");
        chart.lines[0].points = vec![(0.0, f64::MAX), (1.0, -f64::MAX)];
        assert!(matches!(
            render_svg(&chart),
            Err(ChartError::NonFinite { .. })
        ));
        chart.lines.iter_mut().for_each(|l| l.points.clear());
        assert!(matches!(render_svg(&chart), Err(ChartError::Empty { .. })));
        // One point, one line: drawn without a panic.
        let mut chart = line_chart();
        chart.lines.truncate(1);
        chart.lines[0].points.truncate(1);
        render_svg(&chart).expect("one point");
    }
}
