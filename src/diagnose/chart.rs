//! Line charts as PNGs: several labelled series, a linear or log10 y axis, an optional horizontal
//! threshold, a legend. For the spectrum plot and the lab's curves.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::font::draw_text;
use super::plot::write_png;
use crate::error::Result;

const W: u32 = 760;
const H: u32 = 460;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 56.0;

/// Series with at most this many points are drawn with a dot at each.
const MARKED_POINTS: usize = 12;

/// Distinct colours (matplotlib's tab10).
pub const PALETTE: [Rgb<u8>; 10] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([127, 127, 127]),
    Rgb([188, 189, 34]),
    Rgb([23, 190, 207]),
];

#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: Rgb<u8>,
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Plot log10 of y (values at or below zero are clipped to the smallest positive one).
    pub log_y: bool,
    pub series: Vec<Series>,
    /// A dashed horizontal line at this y, labelled.
    pub threshold: Option<(f64, String)>,
    /// A line of text under the x axis label.
    pub note: String,
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), color: Rgb<u8>) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x as i64 + dx, y as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < W && (py as u32) < H {
                img.put_pixel(px as u32, py as u32, color);
            }
        }
    }
}

fn dashed(img: &mut RgbImage, y: f64, color: Rgb<u8>) {
    let mut x = LEFT;
    while x < W as f64 - RIGHT {
        line(img, (x, y), ((x + 6.0).min(W as f64 - RIGHT), y), color);
        x += 12.0;
    }
}

/// A short label for a tick value.
fn tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Tick positions at 1, 2 or 5 × a power of ten, about five of them over `lo..=hi`.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    let mut ticks = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-9 {
        ticks.push(t);
        t += step;
    }
    ticks
}

impl Chart {
    fn y_value(&self, y: f64, floor: f64) -> f64 {
        if self.log_y { y.max(floor).log10() } else { y }
    }

    pub fn render(&self) -> RgbImage {
        let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
        let (black, grey) = (Rgb([0, 0, 0]), Rgb([215, 215, 215]));
        let points = || self.series.iter().flat_map(|s| s.points.iter().copied());
        let smallest_positive = points()
            .map(|(_, y)| y)
            .chain(self.threshold.iter().map(|(y, _)| *y))
            .filter(|y| *y > 0.0)
            .fold(f64::INFINITY, f64::min);
        let floor = if smallest_positive.is_finite() {
            smallest_positive
        } else {
            1e-6
        };
        let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
        for (x, y) in points() {
            (x0, x1) = (x0.min(x), x1.max(x));
            let v = self.y_value(y, floor);
            (y0, y1) = (y0.min(v), y1.max(v));
        }
        if let Some((t, _)) = &self.threshold {
            let v = self.y_value(*t, floor);
            (y0, y1) = (y0.min(v), y1.max(v));
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if self.log_y {
            (y0, y1) = (y0.floor(), y1.ceil());
        } else {
            let pad = 0.1 * (y1 - y0).max(1e-9);
            (y0, y1) = (y0 - pad, y1 + pad);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        let (pw, ph) = (W as f64 - LEFT - RIGHT, H as f64 - TOP - BOTTOM);
        let px = |x: f64| LEFT + pw * (x - x0) / (x1 - x0);
        let py = |v: f64| TOP + ph * (1.0 - (v - y0) / (y1 - y0));
        // Grid and y ticks: decades on a log axis, fifths on a linear one.
        let ticks: Vec<f64> = if self.log_y {
            (y0 as i64..=y1 as i64).map(|d| d as f64).collect()
        } else {
            nice_ticks(y0, y1)
        };
        for v in ticks {
            line(&mut img, (LEFT, py(v)), (LEFT + pw, py(v)), grey);
            let label = if self.log_y {
                format!("1E{v:.0}")
            } else {
                tick(v)
            };
            draw_text(&mut img, 6, py(v) as i64 - 3, &label, black);
        }
        for x in nice_ticks(x0, x1) {
            line(&mut img, (px(x), TOP + ph), (px(x), TOP + ph + 4.0), black);
            let label = tick(x);
            draw_text(
                &mut img,
                px(x) as i64 - 3 * label.len() as i64,
                (TOP + ph + 8.0) as i64,
                &label,
                black,
            );
        }
        line(&mut img, (LEFT, TOP), (LEFT, TOP + ph), black);
        line(&mut img, (LEFT, TOP + ph), (LEFT + pw, TOP + ph), black);
        if let Some((t, label)) = &self.threshold {
            let y = py(self.y_value(*t, floor));
            dashed(&mut img, y, Rgb([120, 120, 120]));
            draw_text(
                &mut img,
                LEFT as i64 + 4,
                y as i64 - 10,
                label,
                Rgb([90, 90, 90]),
            );
        }
        for s in &self.series {
            for w in s.points.windows(2) {
                let a = (px(w[0].0), py(self.y_value(w[0].1, floor)));
                let b = (px(w[1].0), py(self.y_value(w[1].1, floor)));
                line(&mut img, a, b, s.color);
            }
            // Sparse series get a dot at each point (a single point has no line to show it).
            if s.points.len() <= MARKED_POINTS {
                for &(x, y) in &s.points {
                    let (cx, cy) = (px(x) as i64, py(self.y_value(y, floor)) as i64);
                    for (dx, dy) in (-2..=2).flat_map(|dx| (-2..=2).map(move |dy| (dx, dy))) {
                        let (x, y) = (cx + dx, cy + dy);
                        if x >= 0 && y >= 0 && (x as u32) < W && (y as u32) < H {
                            img.put_pixel(x as u32, y as u32, s.color);
                        }
                    }
                }
            }
        }
        // Legend, top right.
        let width = self.series.iter().map(|s| s.label.len()).max().unwrap_or(0) as f64 * 6.0;
        let lx = LEFT + pw - width - 30.0;
        let labelled: Vec<&Series> = self.series.iter().filter(|s| !s.label.is_empty()).collect();
        if !labelled.is_empty() {
            // A white box under the legend keeps it readable over the lines.
            let (bx, by) = (lx - 6.0, TOP + 2.0);
            let bh = 11.0 * labelled.len() as f64 + 8.0;
            for y in by as u32..(by + bh) as u32 {
                for x in bx as u32..(LEFT + pw) as u32 {
                    img.put_pixel(x, y, Rgb([255, 255, 255]));
                }
            }
            let edge = Rgb([180, 180, 180]);
            line(&mut img, (bx, by), (LEFT + pw - 1.0, by), edge);
            line(&mut img, (bx, by + bh), (LEFT + pw - 1.0, by + bh), edge);
            line(&mut img, (bx, by), (bx, by + bh), edge);
        }
        for (i, s) in labelled.into_iter().enumerate() {
            let y = TOP + 8.0 + 11.0 * i as f64;
            line(&mut img, (lx, y + 3.0), (lx + 18.0, y + 3.0), s.color);
            draw_text(&mut img, lx as i64 + 24, y as i64, &s.label, black);
        }
        draw_text(&mut img, LEFT as i64, 14, &self.title, black);
        let x_label = (LEFT + pw / 2.0) as i64 - 3 * self.x_label.len() as i64;
        draw_text(
            &mut img,
            x_label,
            (TOP + ph + 22.0) as i64,
            &self.x_label,
            black,
        );
        draw_text(&mut img, 6, 26, &self.y_label, black);
        draw_text(&mut img, LEFT as i64, (H - 14) as i64, &self.note, black);
        img
    }

    /// Renders the chart and writes it atomically to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_png(&self.render(), path)
    }
}
