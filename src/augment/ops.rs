//! Image operations with torchvision semantics, driven by an explicit RNG so runs are repeatable.

use rand::Rng;

use super::image::{Image, Planes, Texel};

/// Picks the crop window of torchvision's `RandomResizedCrop.get_params`: (top, left, h, w).
pub fn resized_crop_window<R: Rng>(
    rng: &mut R,
    height: usize,
    width: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
) -> (usize, usize, usize, usize) {
    let area = (height * width) as f32;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale.0..=scale.1);
        let aspect = rng.random_range(log_lo..=log_hi).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if w > 0 && h > 0 && w <= width && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return (top, left, h, w);
        }
    }
    // Fallback: the largest central crop with an allowed aspect ratio.
    let in_ratio = width as f32 / height as f32;
    let (h, w) = if in_ratio < ratio.0 {
        ((width as f32 / ratio.0).round() as usize, width)
    } else if in_ratio > ratio.1 {
        (height, (height as f32 * ratio.1).round() as usize)
    } else {
        (height, width)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// Bilinear resize (align_corners = false) of the window (top, left, h, w) to `out_h × out_w`,
/// read straight from `img`'s pixels (u8 or f32). Shrinking by more than 2× on an axis filters
/// with a triangle as wide as the scale (PIL's antialiased bilinear, torchvision's default for
/// photos); up to 2× the two bilinear taps already read every source pixel.
pub fn crop_resize<T: Texel>(
    img: &Planes<T>,
    window: (usize, usize, usize, usize),
    out_h: usize,
    out_w: usize,
) -> Image {
    let (_, _, h, w) = window;
    if h as f32 / out_h as f32 > 2.0 || w as f32 / out_w as f32 > 2.0 {
        return filtered_crop_resize(img, window, out_h, out_w);
    }
    bilinear_crop_resize(img, window, out_h, out_w)
}

fn bilinear_crop_resize<T: Texel>(
    img: &Planes<T>,
    (top, left, h, w): (usize, usize, usize, usize),
    out_h: usize,
    out_w: usize,
) -> Image {
    let sy = h as f32 / out_h as f32;
    let sx = w as f32 / out_w as f32;
    let axis = |i: usize, scale: f32, len: usize| -> (usize, usize, f32) {
        let src = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
        let lo = src.floor() as usize;
        (lo, (lo + 1).min(len - 1), src - lo as f32)
    };
    let xs: Vec<_> = (0..out_w).map(|x| axis(x, sx, w)).collect();
    let ys: Vec<_> = (0..out_h).map(|y| axis(y, sy, h)).collect();
    // Separable: resize each source row the output reads along x once (an upscaling crop reads
    // few rows many times), then blend pairs of those rows along y, whole rows at a time.
    let mut resized = vec![0f32; h * out_w];
    let mut done = vec![false; h];
    let mut data = vec![0f32; img.channels * out_h * out_w];
    for (c, out) in data.chunks_exact_mut(out_h * out_w).enumerate() {
        let plane = img.channel(c);
        done.fill(false);
        for &(y0, y1, _) in &ys {
            for y in [y0, y1] {
                if std::mem::replace(&mut done[y], true) {
                    continue;
                }
                let src = &plane[(top + y) * img.width + left..][..w];
                for (o, &(x0, x1, fx)) in resized[y * out_w..][..out_w].iter_mut().zip(&xs) {
                    let (a, b) = (src[x0].unit(), src[x1].unit());
                    *o = a + (b - a) * fx;
                }
            }
        }
        for (row, &(y0, y1, fy)) in out.chunks_exact_mut(out_w).zip(&ys) {
            let (a, b) = (
                &resized[y0 * out_w..][..out_w],
                &resized[y1 * out_w..][..out_w],
            );
            for ((o, &a), &b) in row.iter_mut().zip(a).zip(b) {
                *o = a + (b - a) * fy;
            }
        }
    }
    Image {
        channels: img.channels,
        height: out_h,
        width: out_w,
        data,
    }
}

/// The source pixels (from `start`) and normalised weights of each output pixel on one axis.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

fn axis_taps(out: usize, len: usize, scale: f32) -> Vec<Taps> {
    let support = scale.max(1.0);
    (0..out)
        .map(|i| {
            let centre = (i as f32 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(len);
            let mut weights: Vec<f32> = (lo..hi)
                .map(|j| (1.0 - ((j as f32 + 0.5 - centre) / support).abs()).max(0.0))
                .collect();
            let sum: f32 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= sum);
            Taps { start: lo, weights }
        })
        .collect()
}

fn filtered_crop_resize<T: Texel>(
    img: &Planes<T>,
    (top, left, h, w): (usize, usize, usize, usize),
    out_h: usize,
    out_w: usize,
) -> Image {
    let xs = axis_taps(out_w, w, w as f32 / out_w as f32);
    let ys = axis_taps(out_h, h, h as f32 / out_h as f32);
    let mut rows = vec![0f32; h * out_w];
    let mut data = vec![0f32; img.channels * out_h * out_w];
    for (c, out) in data.chunks_exact_mut(out_h * out_w).enumerate() {
        let plane = img.channel(c);
        for (y, row) in rows.chunks_exact_mut(out_w).enumerate() {
            let src = &plane[(top + y) * img.width + left..][..w];
            for (o, taps) in row.iter_mut().zip(&xs) {
                *o = src[taps.start..]
                    .iter()
                    .zip(&taps.weights)
                    .map(|(p, wt)| p.unit() * wt)
                    .sum();
            }
        }
        for (row, taps) in out.chunks_exact_mut(out_w).zip(&ys) {
            row.fill(0.0);
            for (k, &wt) in taps.weights.iter().enumerate() {
                let src = &rows[(taps.start + k) * out_w..][..out_w];
                for (o, &s) in row.iter_mut().zip(src) {
                    *o += s * wt;
                }
            }
        }
    }
    Image {
        channels: img.channels,
        height: out_h,
        width: out_w,
        data,
    }
}

pub fn hflip(img: &mut Image) {
    let w = img.width;
    for row in img.data.chunks_exact_mut(w) {
        row.reverse();
    }
}

fn blend(img: &mut Image, other: impl Fn(usize, usize) -> f32, factor: f32) {
    let plane = img.plane();
    for (i, v) in img.data.iter_mut().enumerate() {
        let o = other(i / plane, i % plane);
        *v = (factor * *v + (1.0 - factor) * o).clamp(0.0, 1.0);
    }
}

pub fn adjust_brightness(img: &mut Image, factor: f32) {
    blend(img, |_, _| 0.0, factor);
}

pub fn adjust_contrast(img: &mut Image, factor: f32) {
    let luma = img.luma();
    let mean = luma.iter().sum::<f32>() / luma.len() as f32;
    blend(img, |_, _| mean, factor);
}

/// Saturation blends with the grayscale image; a single-channel image has none to change.
pub fn adjust_saturation(img: &mut Image, factor: f32) {
    if img.channels != 3 {
        return;
    }
    let luma = img.luma();
    blend(img, |_, i| luma[i], factor);
}

/// Hue rotation in HSV space by `shift` turns (in [-0.5, 0.5]); no-op for single-channel images.
///
/// Written with selects instead of branches so that it vectorises.
pub fn adjust_hue(img: &mut Image, shift: f32) {
    if img.channels != 3 {
        return;
    }
    let plane = img.plane();
    let (r_plane, rest) = img.data.split_at_mut(plane);
    let (g_plane, b_plane) = rest.split_at_mut(plane);
    crate::kernels::vectorized(
        #[inline(always)]
        || {
            for ((r, g), b) in r_plane
                .iter_mut()
                .zip(g_plane.iter_mut())
                .zip(b_plane.iter_mut())
            {
                let (rv, gv, bv) = (*r, *g, *b);
                let max = rv.max(gv).max(bv);
                let min = rv.min(gv).min(bv);
                let delta = max - min;
                let v = max;
                let s = if max > 0.0 { delta / max } else { 0.0 };
                let inv = if delta > 0.0 { 1.0 / delta } else { 0.0 };
                // Hue in sextants, then in turns, rotated, wrapped to [0, 1).
                let sextant = if max == rv {
                    (gv - bv) * inv
                } else if max == gv {
                    (bv - rv) * inv + 2.0
                } else {
                    (rv - gv) * inv + 4.0
                };
                let h = sextant / 6.0 + shift;
                let h = h - h.floor();
                let hi = (h * 6.0).floor();
                let f = h * 6.0 - hi;
                // h < 1 keeps hi below 6 but for rounding: sector 6 is sector 0.
                let hi = if hi >= 6.0 { hi - 6.0 } else { hi };
                let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
                let pick = |c: [f32; 6]| {
                    let mut out = c[5];
                    for (sector, &value) in c.iter().enumerate().take(5).rev() {
                        out = if hi == sector as f32 { value } else { out };
                    }
                    out
                };
                *r = pick([v, q, p, p, t, v]);
                *g = pick([t, v, v, q, p, p]);
                *b = pick([p, p, t, v, v, q]);
            }
        },
    )
}

/// torchvision's `ColorJitter`: the four adjustments in a random order, each factor drawn
/// uniformly from [1 − s, 1 + s] (hue: [−h, h]).
pub fn color_jitter<R: Rng>(
    rng: &mut R,
    img: &mut Image,
    brightness: f32,
    contrast: f32,
    saturation: f32,
    hue: f32,
) {
    let mut order = [0usize, 1, 2, 3];
    for i in (1..4).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    for op in order {
        match op {
            0 if brightness > 0.0 => {
                let f = rng.random_range((1.0 - brightness).max(0.0)..=1.0 + brightness);
                adjust_brightness(img, f);
            }
            1 if contrast > 0.0 => {
                let f = rng.random_range((1.0 - contrast).max(0.0)..=1.0 + contrast);
                adjust_contrast(img, f);
            }
            2 if saturation > 0.0 => {
                let f = rng.random_range((1.0 - saturation).max(0.0)..=1.0 + saturation);
                adjust_saturation(img, f);
            }
            3 if hue > 0.0 => {
                let f = rng.random_range(-hue..=hue);
                adjust_hue(img, f);
            }
            _ => {}
        }
    }
}

/// Replaces every channel by the luma (keeps the channel count, as torchvision does).
pub fn grayscale(img: &mut Image) {
    if img.channels != 3 {
        return;
    }
    let luma = img.luma();
    for c in 0..3 {
        let plane = img.plane();
        img.data[c * plane..(c + 1) * plane].copy_from_slice(&luma);
    }
}

/// Separable Gaussian blur with reflect padding (torchvision's `gaussian_blur`).
///
/// Each pass is a sum of shifted, scaled copies of whole rows (one per kernel tap), which the
/// compiler vectorises; the row is reflect-padded once instead of per tap.
pub fn gaussian_blur(img: &mut Image, kernel_size: usize, sigma: f32) {
    let half = kernel_size / 2;
    let mut kernel: Vec<f32> = (-(half as isize)..=half as isize)
        .map(|x| (-(x * x) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    let reflect = |i: isize, len: usize| -> usize {
        let len = len as isize;
        let mut i = i;
        if len == 1 {
            return 0;
        }
        while i < 0 || i >= len {
            i = if i < 0 { -i } else { 2 * (len - 1) - i };
        }
        i as usize
    };
    let (h, w) = (img.height, img.width);
    let mut tmp = vec![0f32; h * w];
    let mut padded = vec![0f32; w + 2 * half];
    let rows: Vec<Vec<usize>> = (0..h)
        .map(|y| {
            (0..kernel_size)
                .map(|k| reflect((y + k) as isize - half as isize, h))
                .collect()
        })
        .collect();
    crate::kernels::vectorized(
        #[inline(always)]
        || {
            for c in 0..img.channels {
                let plane = &mut img.data[c * h * w..(c + 1) * h * w];
                // Along rows: out[x] = Σ_k kernel[k] · row[reflect(x + k − half)].
                for (src, dst) in plane.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
                    for (i, p) in padded.iter_mut().enumerate() {
                        *p = src[reflect(i as isize - half as isize, w)];
                    }
                    dst.fill(0.0);
                    for (k, &kv) in kernel.iter().enumerate() {
                        for (d, &v) in dst.iter_mut().zip(&padded[k..k + w]) {
                            *d += kv * v;
                        }
                    }
                }
                // Along columns: out row y = Σ_k kernel[k] · row reflect(y + k − half).
                for (dst, taps) in plane.chunks_exact_mut(w).zip(&rows) {
                    dst.fill(0.0);
                    for (&kv, &row) in kernel.iter().zip(taps) {
                        for (d, &v) in dst.iter_mut().zip(&tmp[row * w..(row + 1) * w]) {
                            *d += kv * v;
                        }
                    }
                }
            }
        },
    )
}

pub fn solarize(img: &mut Image, threshold: f32) {
    for v in img.data.iter_mut() {
        if *v >= threshold {
            *v = 1.0 - *v;
        }
    }
}

#[cfg(test)]
mod tests;
