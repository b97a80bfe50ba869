//! The toolkit of the report's charts (`charts.rs`): SVG rendering with
//! `plotters`' SVG backend (text is SVG `<text>` in `sans-serif`, no font
//! files), the shared layout and x axis (seconds since the run's origin),
//! the shaded fault windows, step lines with gaps, legends.

use std::error::Error;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::Report;

/// A chart's size, pixels.
const SIZE: (u32, u32) = (960, 300);
/// The right axis' width (only the GCS chart has one; the others leave
/// the room empty so every chart's x axis lines up).
pub(super) const RIGHT_AXIS: u32 = 60;
/// Fault class colours (no red: red is for failures).
const CLASS_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];
/// Line colours of the data series.
pub(super) const LINE_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];
/// The failures line.
pub(super) const FAILURE_RED: RGBColor = RGBColor(214, 39, 40);

/// A drawing step's result.
pub(super) type Res<T> = Result<T, Box<dyn Error>>;
/// A whole chart's drawing area.
pub(super) type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;
/// A chart with seconds on its x axis.
pub(super) type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;
/// A line as segments (gaps between them), points in (seconds, value).
pub(super) type Segments = Vec<Vec<(f64, f64)>>;

/// A fault window to shade, in seconds.
struct Band {
    class: String,
    start: f64,
    end: f64,
    color: RGBColor,
}

/// What every chart shares: the x extent and the shaded fault windows.
pub(super) struct Frame {
    /// The x axis' end, seconds.
    pub(super) x_end: f64,
    bands: Vec<Band>,
}

impl Frame {
    /// The x extent and the bands of a report.
    pub(super) fn new(report: &Report) -> Frame {
        let s = &report.series;
        let mut end_ms = report.duration_ms;
        if let Some(last) = s.per_second.iter().map(|b| (b.t_s + 1) * 1000).max() {
            end_ms = end_ms.max(last);
        }
        for p in &s.probes {
            end_ms = end_ms.max(p.at_ms);
        }
        for f in s.faults.iter().filter(|f| f.skipped.is_none()) {
            end_ms = end_ms.max(f.start_ms).max(f.heal_ms.unwrap_or(0));
        }
        let x_end = (end_ms as f64 / 1000.0).max(1.0);
        let mut classes: Vec<&str> = Vec::new();
        let mut bands = Vec::new();
        for f in s.faults.iter().filter(|f| f.skipped.is_none()) {
            let idx = match classes.iter().position(|c| *c == f.class) {
                Some(i) => i,
                None => {
                    classes.push(&f.class);
                    classes.len() - 1
                }
            };
            let start = f.start_ms as f64 / 1000.0;
            let end = f.heal_ms.map_or(x_end, |h| h as f64 / 1000.0);
            bands.push(Band {
                class: f.class.clone(),
                start,
                end: end.max(start),
                color: CLASS_COLORS[idx % CLASS_COLORS.len()],
            });
        }
        Frame { x_end, bands }
    }
}

/// Draws one chart into a fresh SVG document.
pub(super) fn render(draw: impl FnOnce(&Area<'_>) -> Res<()>) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// The chart layout every chart shares (the same plotting width).
pub(super) fn builder<'a, 'b>(
    root: &'a Area<'b>,
    caption: &str,
) -> ChartBuilder<'a, 'static, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(caption, ("sans-serif", 18))
        .margin(10)
        .margin_right(RIGHT_AXIS + 10)
        .x_label_area_size(40)
        .y_label_area_size(60);
    b
}

/// Seconds on the x axis.
pub(super) fn fmt_x(x: &f64) -> String {
    fmt_log(x)
}

/// Integer ticks only (counts, terms, node indexes).
pub(super) fn fmt_int(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// Ticks without trailing zeros: `0.1`, `1`, `20`, ...
pub(super) fn fmt_log(v: &f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Shades every fault window (`labels` false: before the data is drawn),
/// or writes each one's class at its top (`labels` true: after the data),
/// staggered over three rows so close windows stay readable.
pub(super) fn shade<Y: Ranged>(chart: &Chart<'_, '_, Y>, f: &Frame, labels: bool) -> Res<()>
where
    Y::ValueType: Clone,
{
    let area = chart.plotting_area().use_screen_coord();
    let (_, ys) = area.get_pixel_range();
    let y0 = chart.y_range().start;
    for (i, b) in f.bands.iter().enumerate() {
        let x0 = chart.backend_coord(&(b.start, y0.clone())).0;
        let x1 = chart.backend_coord(&(b.end, y0.clone())).0.max(x0 + 2);
        if !labels {
            let fill = b.color.mix(0.18).filled();
            area.draw(&Rectangle::new([(x0, ys.start), (x1, ys.end)], fill))?;
            continue;
        }
        let top = ys.start + 2 + 15 * (i % 3) as i32;
        let width = 13 * b.class.chars().count() as i32 / 2 + 4;
        let back = WHITE.mix(0.75).filled();
        area.draw(&Rectangle::new(
            [(x0 + 1, top), (x0 + 1 + width, top + 14)],
            back,
        ))?;
        let style = ("sans-serif", 12).into_font().color(&b.color);
        area.draw(&Text::new(b.class.clone(), (x0 + 3, top + 1), style))?;
    }
    Ok(())
}

/// "no data" in the middle of the plotting area.
fn no_data<Y: Ranged>(chart: &Chart<'_, '_, Y>) -> Res<()> {
    let area = chart.plotting_area().use_screen_coord();
    let (xs, ys) = area.get_pixel_range();
    let style = ("sans-serif", 16).into_font().color(&BLACK.mix(0.6));
    area.draw(&Text::new(
        "no data".to_string(),
        ((xs.start + xs.end) / 2 - 25, (ys.start + ys.end) / 2),
        style,
    ))?;
    Ok(())
}

/// An empty chart: the axes, the shaded windows and "no data".
pub(super) fn empty(root: &Area<'_>, caption: &str, f: &Frame, y_desc: &str) -> Res<()> {
    let mut chart = builder(root, caption).build_cartesian_2d(0.0..f.x_end, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(y_desc)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&|_| String::new())
        .light_line_style(RGBColor(244, 244, 244))
        .max_light_lines(2)
        .draw()?;
    shade(&chart, f, false)?;
    shade(&chart, f, true)?;
    no_data(&chart)
}

/// Step-line segments: each value holds from its time until the next
/// sample's (when that comes within `max_gap` s; else for `width` s).
/// `None` and longer silences break the line.
pub(super) fn steps(samples: &[(f64, Option<f64>)], width: f64, max_gap: f64) -> Segments {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for (i, &(t, v)) in samples.iter().enumerate() {
        let Some(v) = v else { continue };
        let next = samples.get(i + 1);
        let end = match next {
            Some(&(n, _)) if n - t <= max_gap && n >= t => n,
            _ => t + width,
        };
        cur.push((t, v));
        cur.push((end, v));
        if !matches!(next, Some(&(n, Some(_))) if n <= end + 1e-9) {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// Draws a line (its segments) with a legend entry.
pub(super) fn line<CT>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, CT>,
    segs: Segments,
    style: ShapeStyle,
    label: &str,
) -> Res<()>
where
    CT: CoordTranslate<From = (f64, f64)>,
{
    chart
        .draw_series(segs.into_iter().map(move |s| PathElement::new(s, style)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    Ok(())
}

/// Draws a dashed line (its segments) with a legend entry.
pub(super) fn dashed<CT>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, CT>,
    segs: Segments,
    style: ShapeStyle,
    label: &str,
) -> Res<()>
where
    CT: CoordTranslate<From = (f64, f64)>,
{
    for (i, s) in segs.into_iter().enumerate() {
        let anno = chart.draw_series(DashedLineSeries::new(s, 6, 4, style))?;
        if i == 0 {
            anno.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 6, y), (x + 10, y)], style)
            });
        }
    }
    Ok(())
}

/// The legend, top right.
pub(super) fn legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
) -> Res<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_hold_values_and_break_on_gaps() {
        let s = [
            (0.0, Some(1.0)),
            (1.0, Some(2.0)),
            (2.0, None),
            (3.0, Some(3.0)),
        ];
        let segs = steps(&s, 1.0, 5.0);
        assert_eq!(
            segs,
            vec![
                vec![(0.0, 1.0), (1.0, 1.0), (1.0, 2.0), (2.0, 2.0)],
                vec![(3.0, 3.0), (4.0, 3.0)],
            ]
        );
        // A silence longer than max_gap breaks the line too.
        let s = [(0.0, Some(1.0)), (9.0, Some(1.0))];
        assert_eq!(steps(&s, 1.0, 5.0).len(), 2);
    }
}
