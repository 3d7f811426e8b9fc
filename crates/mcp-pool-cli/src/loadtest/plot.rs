//! The SVG plot: calls/s and errors/s over time, one panel per mode, with
//! the outage shaded and the ceiling drawn.

use std::path::Path;

use plotters::prelude::*;

use super::LoadtestReport;

/// Draws `report` to `path` as SVG, or says why it could not.
pub fn draw(report: &LoadtestReport, path: &Path) -> Result<(), String> {
    let panels = report.modes.len().max(1);
    let root = SVGBackend::new(path, (960, 280 * panels as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x_max = report
        .modes
        .iter()
        .map(|m| m.timeline.len())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let calls = RGBColor(31, 119, 180);
    let errors = RGBColor(214, 39, 40);
    let shade = RGBColor(150, 150, 150);
    for (area, mode) in root.split_evenly((panels, 1)).iter().zip(&report.modes) {
        let y_max = mode
            .timeline
            .iter()
            .map(|s| s.calls.max(s.failed()))
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        // Headroom above the lines for the legend.
        let y_max = y_max.max(report.ceiling.unwrap_or(0.0)) * 1.8;
        let title = match report.ceiling {
            Some(c) => format!("{}: calls/s and errors/s (ceiling {c:.1}/s)", mode.mode),
            None => format!("{}: calls/s and errors/s", mode.mode),
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds from the start of the mode")
            .y_desc("per second")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        if let Some(o) = mode.outage {
            // An instant restart still gets a visible band.
            let back = o.back_at_s.max(o.down_at_s + x_max / 300.0);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(o.down_at_s, 0.0), (back, y_max)],
                    shade.mix(0.5).filled(),
                )))
                .map_err(|e| e.to_string())?
                .label("backend down")
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], shade.mix(0.5).filled())
                });
        }
        if let Some(ceiling) = report.ceiling {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, ceiling), (x_max, ceiling)],
                    shade.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?
                .label("ceiling")
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], shade.stroke_width(1))
                });
        }
        let series = |value: &dyn Fn(&super::record::Second) -> u64| -> Vec<(f64, f64)> {
            mode.timeline
                .iter()
                .map(|s| (s.t as f64 + 0.5, value(s) as f64))
                .collect()
        };
        chart
            .draw_series(LineSeries::new(series(&|s| s.calls), calls.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label("calls/s")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], calls.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                series(&|s| s.failed()),
                errors.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("errors/s")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], errors.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_panel_per_mode_with_the_outage_and_the_ceiling() {
        let path = std::env::temp_dir().join(format!("mcp-pool-plot-{}.svg", std::process::id()));
        draw(&super::super::sample_report(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        for text in [
            "pool: calls/s",
            "naive: calls/s",
            "backend down",
            "errors/s",
            "ceiling",
        ] {
            assert!(svg.contains(text), "no {text}");
        }
        assert!(svg.matches("<polyline").count() >= 6);
        assert!(draw(
            &super::super::sample_report(),
            Path::new("/no/such/dir/x.svg")
        )
        .is_err());
    }
}
