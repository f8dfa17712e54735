//! Scatter plots as PNGs: 2-D points coloured by class, with a title and a legend. For
//! `selfsup map`.

use image::{Rgb, RgbImage};

use super::chart::PALETTE;
use super::font::draw_text;

const SIDE: u32 = 560;
const MARGIN: f64 = 16.0;
const TOP: u32 = 44;
const LEGEND: u32 = 150;

/// matplotlib's tab10, then further hues for more classes.
pub fn class_color(class: usize) -> Rgb<u8> {
    if let Some(c) = PALETTE.get(class) {
        return *c;
    }
    // Golden-angle hues, darker than tab10 so they read on white.
    let hue = (class as f64 * 137.508) % 360.0;
    let (r, g, b) = hsv(hue, 0.75, 0.8);
    Rgb([r, g, b])
}

fn hsv(h: f64, s: f64, v: f64) -> (u8, u8, u8) {
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    let byte = |t: f64| ((t + m) * 255.0).round() as u8;
    (byte(r), byte(g), byte(b))
}

/// One panel: points (x, y) with a class each (`None`: unlabelled, drawn grey).
pub struct Scatter<'a> {
    pub title: String,
    pub subtitle: String,
    pub points: &'a [(f32, f32)],
    pub classes: Option<&'a [u32]>,
}

impl Scatter<'_> {
    /// A square panel; each axis scaled to the points' own range (a map's axes carry no units).
    pub fn render(&self) -> RgbImage {
        let mut img = RgbImage::from_pixel(SIDE, SIDE + TOP, Rgb([255, 255, 255]));
        let black = Rgb([0, 0, 0]);
        draw_text(&mut img, 8, 8, &self.title, black);
        draw_text(&mut img, 8, 24, &self.subtitle, black);
        let range = |f: fn(&(f32, f32)) -> f32| {
            let lo = self.points.iter().map(f).fold(f32::INFINITY, f32::min);
            let hi = self.points.iter().map(f).fold(f32::NEG_INFINITY, f32::max);
            (lo as f64, ((hi - lo) as f64).max(1e-12))
        };
        let ((x0, xs), (y0, ys)) = (range(|p| p.0), range(|p| p.1));
        let span = SIDE as f64 - 2.0 * MARGIN;
        let frame = Rgb([200, 200, 200]);
        for t in 0..SIDE {
            for (x, y) in [
                (t, TOP),
                (t, TOP + SIDE - 1),
                (0, TOP + t),
                (SIDE - 1, TOP + t),
            ] {
                img.put_pixel(x, y, frame);
            }
        }
        for (i, &(x, y)) in self.points.iter().enumerate() {
            let color = match self.classes {
                Some(c) => class_color(c[i] as usize),
                None => Rgb([90, 90, 90]),
            };
            let cx = MARGIN + span * (x as f64 - x0) / xs;
            let cy = TOP as f64 + MARGIN + span * (1.0 - (y as f64 - y0) / ys);
            for dx in -1..=1 {
                for dy in -1..=1 {
                    let (px, py) = (cx as i64 + dx, cy as i64 + dy);
                    if px >= 0 && py >= 0 && (px as u32) < SIDE && (py as u32) < SIDE + TOP {
                        img.put_pixel(px as u32, py as u32, color);
                    }
                }
            }
        }
        img
    }
}

/// Panels side by side, then a legend of the class names in their colours.
pub fn panels_with_legend(panels: &[RgbImage], class_names: &[String]) -> RgbImage {
    let width: u32 = panels.iter().map(|p| p.width()).sum::<u32>()
        + if class_names.is_empty() { 0 } else { LEGEND };
    let height = panels
        .iter()
        .map(|p| p.height())
        .max()
        .unwrap_or(SIDE + TOP);
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let mut x = 0;
    for p in panels {
        image::imageops::replace(&mut img, p, i64::from(x), 0);
        x += p.width();
    }
    for (i, name) in class_names.iter().enumerate() {
        let y = TOP as i64 + 8 + 14 * i as i64;
        let color = class_color(i);
        for dx in 0..8 {
            for dy in 0..8 {
                let (px, py) = (x + 10 + dx, y as u32 + dy);
                if px < width && py < height {
                    img.put_pixel(px, py, color);
                }
            }
        }
        draw_text(&mut img, i64::from(x) + 24, y, name, Rgb([0, 0, 0]));
    }
    img
}
