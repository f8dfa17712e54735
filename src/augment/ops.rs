//! Image operations with torchvision semantics, driven by an explicit RNG so runs are repeatable.

use rand::Rng;

use super::image::Image;

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

/// Bilinear resize (align_corners = false) of the window (top, left, h, w) to `out_h × out_w`.
pub fn crop_resize(
    img: &Image,
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
    let mut data = Vec::with_capacity(img.channels * out_h * out_w);
    for c in 0..img.channels {
        let plane = img.channel(c);
        for &(y0, y1, fy) in &ys {
            let row0 = &plane[(top + y0) * img.width + left..];
            let row1 = &plane[(top + y1) * img.width + left..];
            for &(x0, x1, fx) in &xs {
                let a = row0[x0] + (row0[x1] - row0[x0]) * fx;
                let b = row1[x0] + (row1[x1] - row1[x0]) * fx;
                data.push(a + (b - a) * fy);
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
pub fn adjust_hue(img: &mut Image, shift: f32) {
    if img.channels != 3 {
        return;
    }
    let plane = img.plane();
    for i in 0..plane {
        let (r, g, b) = (img.data[i], img.data[plane + i], img.data[2 * plane + i]);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        let v = max;
        let s = if max > 0.0 { delta / max } else { 0.0 };
        let mut h = if delta == 0.0 {
            0.0
        } else if max == r {
            ((g - b) / delta).rem_euclid(6.0) / 6.0
        } else if max == g {
            ((b - r) / delta + 2.0) / 6.0
        } else {
            ((r - g) / delta + 4.0) / 6.0
        };
        h = (h + shift).rem_euclid(1.0);
        let hi = (h * 6.0).floor();
        let f = h * 6.0 - hi;
        let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let (r, g, b) = match hi as i32 % 6 {
            0 => (v, t, p),
            1 => (q, v, p),
            2 => (p, v, t),
            3 => (p, q, v),
            4 => (t, p, v),
            _ => (v, p, q),
        };
        img.data[i] = r;
        img.data[plane + i] = g;
        img.data[2 * plane + i] = b;
    }
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
pub fn gaussian_blur(img: &mut Image, kernel_size: usize, sigma: f32) {
    let half = (kernel_size / 2) as isize;
    let mut kernel: Vec<f32> = (-half..=half)
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
    for c in 0..img.channels {
        let plane = &mut img.data[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                tmp[y * w + x] = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, kv)| kv * plane[y * w + reflect(x as isize + k as isize - half, w)])
                    .sum();
            }
        }
        for y in 0..h {
            for x in 0..w {
                plane[y * w + x] = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, kv)| kv * tmp[reflect(y as isize + k as isize - half, h) * w + x])
                    .sum();
            }
        }
    }
}

pub fn solarize(img: &mut Image, threshold: f32) {
    for v in img.data.iter_mut() {
        if *v >= threshold {
            *v = 1.0 - *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ramp(channels: usize, h: usize, w: usize) -> Image {
        let n = channels * h * w;
        Image {
            channels,
            height: h,
            width: w,
            data: (0..n).map(|i| i as f32 / n as f32).collect(),
        }
    }

    #[test]
    fn crop_windows_stay_inside_and_respect_scale() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..500 {
            let (top, left, h, w) =
                resized_crop_window(&mut rng, 28, 28, (0.2, 1.0), (0.75, 4.0 / 3.0));
            assert!(top + h <= 28 && left + w <= 28 && h > 0 && w > 0);
            let area = (h * w) as f32 / 784.0;
            assert!((0.15..=1.0).contains(&area), "area {area}");
        }
    }

    #[test]
    fn crop_resize_of_the_full_window_is_identity() {
        let img = ramp(3, 5, 7);
        assert_eq!(crop_resize(&img, (0, 0, 5, 7), 5, 7), img);
    }

    #[test]
    fn bilinear_upsampling_matches_align_corners_false() {
        // 1×2 → 1×4: sources at -0.25, 0.25, 0.75, 1.25 → clamped 0, 0.25, 0.75, 1.
        let img = Image {
            channels: 1,
            height: 1,
            width: 2,
            data: vec![0.0, 1.0],
        };
        let out = crop_resize(&img, (0, 0, 1, 2), 1, 4);
        assert_eq!(out.data, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn flip_grayscale_solarize_and_brightness() {
        let mut img = Image {
            channels: 1,
            height: 1,
            width: 3,
            data: vec![0.1, 0.5, 0.9],
        };
        hflip(&mut img);
        assert_eq!(img.data, vec![0.9, 0.5, 0.1]);
        solarize(&mut img, 0.5);
        assert!(
            (img.data[0] - 0.1).abs() < 1e-6
                && (img.data[1] - 0.5).abs() < 1e-6
                && img.data[2] == 0.1
        );
        adjust_brightness(&mut img, 2.0);
        assert!((img.data[0] - 0.2).abs() < 1e-6 && img.data[1] == 1.0);
        let mut rgb = Image {
            channels: 3,
            height: 1,
            width: 1,
            data: vec![1.0, 0.0, 0.0],
        };
        grayscale(&mut rgb);
        assert!(rgb.data.iter().all(|&v| (v - 0.299).abs() < 1e-6));
    }

    #[test]
    fn contrast_blends_towards_the_mean() {
        let mut img = Image {
            channels: 1,
            height: 1,
            width: 2,
            data: vec![0.2, 0.6],
        };
        adjust_contrast(&mut img, 0.5);
        assert!((img.data[0] - 0.3).abs() < 1e-6 && (img.data[1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn hue_shift_of_a_full_turn_is_identity_and_gray_is_fixed() {
        let mut img = Image {
            channels: 3,
            height: 1,
            width: 2,
            data: vec![0.8, 0.3, 0.2, 0.5, 0.1, 0.5],
        };
        let orig = img.clone();
        adjust_hue(&mut img, 0.5);
        assert_ne!(img, orig);
        adjust_hue(&mut img, 0.5);
        for (a, b) in img.data.iter().zip(&orig.data) {
            assert!((a - b).abs() < 1e-5);
        }
        // Pure red shifted by 1/3 turn is pure green.
        let mut red = Image {
            channels: 3,
            height: 1,
            width: 1,
            data: vec![1.0, 0.0, 0.0],
        };
        adjust_hue(&mut red, 1.0 / 3.0);
        assert!((red.data[0]).abs() < 1e-5 && (red.data[1] - 1.0).abs() < 1e-5);
    }

    #[test]
    fn blur_preserves_constants_and_mass() {
        let mut flat = Image {
            channels: 1,
            height: 6,
            width: 6,
            data: vec![0.4; 36],
        };
        gaussian_blur(&mut flat, 3, 1.0);
        assert!(flat.data.iter().all(|v| (v - 0.4).abs() < 1e-6));
        let mut dot = Image {
            channels: 1,
            height: 7,
            width: 7,
            data: vec![0.0; 49],
        };
        dot.data[24] = 1.0;
        gaussian_blur(&mut dot, 5, 1.0);
        let sum: f32 = dot.data.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5 && dot.data[24] < 0.5 && dot.data[23] > 0.0);
    }
}
