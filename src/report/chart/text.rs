//! Text in the charts: the embedded font, measuring and fitting strings,
//! and placing them.
//!
//! # The plotters bug this works around
//!
//! plotters 0.3.7's `ab_glyph` text renderer (the one that draws into the
//! PNG's bitmap) positions each glyph at the pen position but ignores the
//! glyph's left side bearing, so small PNG text looks unevenly spaced (a
//! colon sticks to the letter before it). [`put_text`] therefore draws
//! bitmap text glyph by glyph, each at the pen position plus its bearing
//! read from the embedded font's `hmtx` table ([`FontMetrics`]), with the
//! kerning of the text before it; SVG text, which the viewer lays out,
//! stays whole strings ([`TextMode`]). Remove this module's per-glyph path
//! when plotters' renderer honours the bearing.

use super::*;

/// Registers the embedded font once as plotters' `sans-serif` family;
/// `false` if it could not be parsed. Anything else in the process that
/// draws with plotters (criterion's benchmark charts) needs it too, since
/// plotters is built without system fonts.
pub fn font_registered() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok())
}

pub(super) fn font(size: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FONT_FAMILY), size, FontStyle::Normal)
}

/// Width in pixels of `text` at `size` in the embedded font, to 1/8 px
/// (plotters measures in whole pixels, linearly in the size).
pub(super) fn text_width(text: &str, size: f64) -> f64 {
    const OVERSAMPLE: f64 = 8.0;
    match font(size * OVERSAMPLE).box_size(text) {
        Ok((w, _)) => f64::from(w) / OVERSAMPLE,
        // Only reachable if the font is missing, which Layout::new rules out;
        // a rough estimate keeps the layout sane regardless.
        Err(_) => text.chars().count() as f64 * size * 0.6,
    }
}

/// The largest size from `max` down to `min` (in 1 px steps) at which all
/// `texts` fit in `width` pixels, or `min` if none does.
pub(super) fn fitting_size(texts: &[&str], max: f64, min: f64, width: f64) -> f64 {
    let mut size = max;
    while size > min {
        if texts.iter().all(|t| text_width(t, size) <= width) {
            return size;
        }
        size -= 1.0;
    }
    min
}

/// `text`, shortened with an ellipsis until it fits in `width` pixels.
pub(super) fn truncate_to(text: &str, size: f64, width: f64) -> String {
    if text_width(text, size) <= width {
        return text.to_owned();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let candidate: String = chars.iter().collect::<String>() + "…";
        if text_width(&candidate, size) <= width {
            return candidate;
        }
    }
    "…".to_owned()
}

/// Greedy word wrap into at most `max_lines` lines of `width` pixels; text
/// that does not fit ends in an ellipsis.
pub(super) fn wrap(text: &str, size: f64, width: f64, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut overflow = false;
    for word in text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_owned()
        } else {
            format!("{current} {word}")
        };
        if current.is_empty() || text_width(&candidate, size) <= width {
            current = candidate;
        } else if lines.len() + 1 < max_lines {
            lines.push(std::mem::take(&mut current));
            current = word.to_owned();
        } else {
            current = candidate;
            overflow = true;
            break;
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    let mut lines: Vec<String> = lines.iter().map(|l| truncate_to(l, size, width)).collect();
    if overflow
        && let Some(last) = lines.last_mut()
        && !last.ends_with('…')
    {
        *last = truncate_to(&format!("{last}…"), size, width);
    }
    lines
}

/// The few metrics of the embedded font that plotters does not expose.
pub(super) struct FontMetrics {
    data: &'static [u8],
    /// Offset of the (3, 1) format 4 `cmap` subtable.
    cmap4: usize,
    /// Offset of the `hmtx` table.
    hmtx: usize,
    n_hmetrics: usize,
    /// Ascent minus descent in font units: ab_glyph scales this to the
    /// requested pixel size.
    pub(super) height: f64,
    /// Capital height in font units.
    pub(super) cap_height: f64,
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn read_i16(data: &[u8], at: usize) -> Option<i16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(i16::from_be_bytes([bytes[0], bytes[1]]))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

impl FontMetrics {
    pub(super) fn get() -> Option<&'static FontMetrics> {
        static METRICS: OnceLock<Option<FontMetrics>> = OnceLock::new();
        METRICS
            .get_or_init(|| FontMetrics::parse(FONT_BYTES))
            .as_ref()
    }

    pub(super) fn parse(data: &'static [u8]) -> Option<FontMetrics> {
        let n_tables = usize::from(read_u16(data, 4)?);
        let table = |tag: &[u8; 4]| -> Option<usize> {
            (0..n_tables).find_map(|i| {
                let record = 12 + 16 * i;
                if data.get(record..record + 4)? == tag {
                    usize::try_from(read_u32(data, record + 8)?).ok()
                } else {
                    None
                }
            })
        };
        let hhea = table(b"hhea")?;
        let ascent = f64::from(read_i16(data, hhea + 4)?);
        let descent = f64::from(read_i16(data, hhea + 6)?);
        let n_hmetrics = usize::from(read_u16(data, hhea + 34)?);
        let hmtx = table(b"hmtx")?;
        let os2 = table(b"OS/2");
        let cap_height = os2
            .filter(|&o| read_u16(data, o).is_some_and(|version| version >= 2))
            .and_then(|o| read_i16(data, o + 88))
            .map_or(0.7 * ascent, f64::from);
        let cmap = table(b"cmap")?;
        let n_subtables = usize::from(read_u16(data, cmap + 2)?);
        let cmap4 = (0..n_subtables).find_map(|i| {
            let record = cmap + 4 + 8 * i;
            let platform = read_u16(data, record)?;
            let encoding = read_u16(data, record + 2)?;
            let offset = cmap + usize::try_from(read_u32(data, record + 4)?).ok()?;
            (platform == 3 && encoding == 1 && read_u16(data, offset)? == 4).then_some(offset)
        })?;
        let height = ascent - descent;
        (height > 0.0).then_some(FontMetrics {
            data,
            cmap4,
            hmtx,
            n_hmetrics,
            height,
            cap_height,
        })
    }

    pub(super) fn glyph_id(&self, c: char) -> Option<usize> {
        let code = u16::try_from(u32::from(c)).ok()?;
        let (data, table) = (self.data, self.cmap4);
        let seg_x2 = usize::from(read_u16(data, table + 6)?);
        let ends = table + 14;
        let starts = ends + seg_x2 + 2;
        let deltas = starts + seg_x2;
        let range_offsets = deltas + seg_x2;
        let seg =
            (0..seg_x2 / 2).find(|&i| read_u16(data, ends + 2 * i).is_some_and(|e| e >= code))?;
        let start = read_u16(data, starts + 2 * seg)?;
        if start > code {
            return None;
        }
        let delta = read_u16(data, deltas + 2 * seg)?;
        let range_at = range_offsets + 2 * seg;
        let range_offset = usize::from(read_u16(data, range_at)?);
        let glyph = if range_offset == 0 {
            code.wrapping_add(delta)
        } else {
            let at = range_at + range_offset + 2 * usize::from(code - start);
            match read_u16(data, at)? {
                0 => 0,
                g => g.wrapping_add(delta),
            }
        };
        Some(usize::from(glyph))
    }

    /// Left side bearing of `c` in font units (0 if unknown).
    pub(super) fn bearing(&self, c: char) -> f64 {
        let Some(glyph) = self.glyph_id(c) else {
            return 0.0;
        };
        let at = if glyph < self.n_hmetrics {
            self.hmtx + 4 * glyph + 2
        } else {
            self.hmtx + 4 * self.n_hmetrics + 2 * (glyph - self.n_hmetrics)
        };
        read_i16(self.data, at).map_or(0.0, f64::from)
    }
}

/// How text reaches the backend.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TextMode {
    /// One text element per string (SVG: the viewer lays the text out).
    Whole,
    /// One element per glyph, placed with its bearing (bitmap backend).
    PerGlyph,
}

/// Where and how to draw a piece of text.
#[derive(Clone, Copy)]
pub(super) struct Label {
    pub(super) size: f64,
    pub(super) colour: RGBColor,
    /// Alignment along the text.
    pub(super) h: HPos,
    /// Alignment across the text: `Top` puts the top of the capitals at the
    /// anchor, `Center` centres the capitals on it, `Bottom` puts the
    /// baseline on it.
    pub(super) v: VPos,
    /// Rotated 90 degrees counter-clockwise, reading upwards.
    pub(super) rotated: bool,
}

impl Label {
    pub(super) fn new(size: f64, h: HPos, v: VPos) -> Label {
        Label {
            size,
            colour: TEXT,
            h,
            v,
            rotated: false,
        }
    }
}

/// plotters' SVG backend puts the baseline of `VPos::Top` text at
/// `0.76em` below the anchor, with a font size of `size / 1.24`.
pub(super) const SVG_TOP_TO_BASELINE: f64 = 0.76 / 1.24;

pub(super) fn put_text<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mode: TextMode,
    text: &str,
    (ax, ay): (f64, f64),
    label: Label,
) -> DrawResult<DB> {
    if text.trim().is_empty() {
        return Ok(());
    }
    let size = label.size;
    let metrics = FontMetrics::get();
    let px_per_unit = metrics.map_or(0.0, |m| size / m.height);
    let cap = metrics.map_or(0.63 * size, |m| m.cap_height * px_per_unit);
    // Text-frame coordinates: u along the text, v downwards across it.
    let baseline = match label.v {
        VPos::Top => cap,
        VPos::Center => cap / 2.0,
        VPos::Bottom => 0.0,
    };
    let to_screen = |u: f64, v: f64| {
        let (x, y) = if label.rotated {
            (ax + v, ay - u)
        } else {
            (ax + u, ay + v)
        };
        (x.round() as i32, y.round() as i32)
    };
    let transform = if label.rotated {
        FontTransform::Rotate270
    } else {
        FontTransform::None
    };
    match mode {
        TextMode::Whole => {
            let style = font(size)
                .transform(transform)
                .color(&label.colour)
                .pos(Pos::new(label.h, VPos::Top));
            let at = to_screen(0.0, baseline - SVG_TOP_TO_BASELINE * size);
            root.draw(&Text::new(text.to_owned(), at, style))
        }
        TextMode::PerGlyph => {
            let width = text_width(text, size);
            let start = match label.h {
                HPos::Left => 0.0,
                HPos::Center => -width / 2.0,
                HPos::Right => -width,
            };
            // ab_glyph puts the baseline of a glyph drawn at `VPos::Top`
            // half the pixel size below the anchor, and the left edge of the
            // glyph's bounding box (not its pen position) at the anchor.
            let top = baseline - size / 2.0;
            let style = font(size)
                .transform(transform)
                .color(&label.colour)
                .pos(Pos::new(HPos::Left, VPos::Top));
            let mut prefix = String::with_capacity(text.len());
            for c in text.chars() {
                prefix.push(c);
                if c.is_whitespace() {
                    continue;
                }
                let glyph = c.to_string();
                // Pen position including the kerning against the previous
                // glyph, as plotters measures it.
                let pen = text_width(&prefix, size) - text_width(&glyph, size);
                let bearing = metrics.map_or(0.0, |m| (m.bearing(c) * px_per_unit).floor());
                let at = to_screen(start + pen + bearing, top);
                root.draw(&Text::new(glyph, at, style.clone()))?;
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Numbers
