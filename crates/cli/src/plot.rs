//! Quality-vs-LLM-share plots as SVG: one line per strategy, the small-only, large-only and
//! random references, a legend. No plotting dependency: a handful of SVG elements.

/// One named curve of (LLM share, quality) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

/// The plot: every series, the random diagonal from small-only (share 0) to large-only
/// (share 1), and those two points marked.
pub fn quality_vs_share_svg(series: &[Series], small: f64, large: f64) -> String {
    let (w, h, pad, legend_w) = (640.0, 400.0, 48.0, 190.0);
    let all_q = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain([small, large]);
    let (mut lo, mut hi) = all_q.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), q| {
        (lo.min(q), hi.max(q))
    });
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let margin = ((hi - lo) * 0.05).max(0.01);
    let (lo, hi) = (lo - margin, hi + margin);
    let plot_w = w - legend_w - 2.0 * pad;
    let x = |share: f64| pad + share.clamp(0.0, 1.0) * plot_w;
    let y = |q: f64| h - pad - (q - lo) / (hi - lo) * (h - 2.0 * pad);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="{cx}" y="{ty}" text-anchor="middle">share of requests sent to the large model</text>
<text x="4" y="{pad}">{hi:.2}</text><text x="4" y="{b}">{lo:.2}</text>
<text x="{pad}" y="{lab}" text-anchor="middle">0</text><text x="{r}" y="{lab}" text-anchor="middle">1</text>
<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y1:.1}" stroke="gray" stroke-dasharray="4 3"/>
<circle cx="{x0:.1}" cy="{y0:.1}" r="4" fill="black"/><circle cx="{x1:.1}" cy="{y1:.1}" r="4" fill="black"/>
<text x="{x0l:.1}" y="{y0l:.1}">small only</text><text x="{x1l:.1}" y="{y1l:.1}" text-anchor="end">large only</text>
"##,
        b = h - pad,
        r = pad + plot_w,
        cx = pad + plot_w / 2.0,
        ty = h - 10.0,
        lab = h - pad + 14.0,
        x0 = x(0.0),
        y0 = y(small),
        x1 = x(1.0),
        y1 = y(large),
        x0l = x(0.0) + 6.0,
        y0l = y(small) - 6.0,
        x1l = x(1.0) - 6.0,
        y1l = y(large) - 8.0,
    );
    let legend_x = w - legend_w + 8.0;
    svg.push_str(&format!(
        r##"<line x1="{legend_x}" y1="{ly}" x2="{lx2}" y2="{ly}" stroke="gray" stroke-dasharray="4 3"/><text x="{tx}" y="{ty}">random</text>
"##,
        ly = pad,
        lx2 = legend_x + 24.0,
        tx = legend_x + 30.0,
        ty = pad + 4.0
    ));
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(sh, q)| format!("{:.1},{:.1}", x(sh), y(q)))
            .collect();
        let ly = pad + 18.0 * (i as f64 + 1.0);
        svg.push_str(&format!(
            r##"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>
<line x1="{legend_x}" y1="{ly}" x2="{lx2}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{tx}" y="{ty}">{name}</text>
"##,
            pts = points.join(" "),
            lx2 = legend_x + 24.0,
            tx = legend_x + 30.0,
            ty = ly + 4.0,
            name = escape(&s.name),
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_drawn_and_named() {
        let series = vec![
            Series {
                name: "cascade <a>".into(),
                points: vec![(0.0, 0.3), (0.5, 0.6), (1.0, 0.7)],
            },
            Series {
                name: "router".into(),
                points: vec![(0.0, 0.3), (1.0, 0.7)],
            },
        ];
        let svg = quality_vs_share_svg(&series, 0.3, 0.7);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("cascade &lt;a&gt;") && svg.contains("random"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(!quality_vs_share_svg(&[], 0.5, 0.5).contains("NaN"));
    }
}
