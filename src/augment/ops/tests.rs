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
    assert_eq!(crop_resize(&img.planes(), (0, 0, 5, 7), 5, 7), img);
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
    let out = crop_resize(&img.planes(), (0, 0, 1, 2), 1, 4);
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
        (img.data[0] - 0.1).abs() < 1e-6 && (img.data[1] - 0.5).abs() < 1e-6 && img.data[2] == 0.1
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

/// HSV rotation written out with branches, per pixel: the reference for [`adjust_hue`].
fn hue_reference(r: f32, g: f32, b: f32, shift: f32) -> [f32; 3] {
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let (delta, v) = (max - min, max);
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
    match hi as i32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

#[test]
fn hue_matches_the_per_pixel_definition() {
    // Every ordering of the channels, ties, gray, black, and shifts of both signs.
    let n = 300;
    let data: Vec<f32> = (0..3 * n)
        .map(|i| ((i * 7919) % 101) as f32 / 100.0)
        .collect();
    for shift in [-0.5, -0.13, 0.0, 0.07, 0.33, 0.5] {
        let mut img = Image {
            channels: 3,
            height: 1,
            width: n,
            data: data.clone(),
        };
        adjust_hue(&mut img, shift);
        for i in 0..n {
            let want = hue_reference(data[i], data[n + i], data[2 * n + i], shift);
            for (c, w) in want.iter().enumerate() {
                let got = img.data[c * n + i];
                assert!(
                    (got - w).abs() < 1e-5,
                    "pixel {i} channel {c} shift {shift}: {got} vs {w}"
                );
            }
        }
    }
}

#[test]
fn blur_matches_the_direct_separable_sum_with_reflection() {
    let (h, w, k, sigma) = (7, 9, 5, 1.3f32);
    // Not a ramp: a blur leaves a ramp's interior unchanged.
    let img = Image {
        channels: 2,
        height: h,
        width: w,
        data: (0..2 * h * w)
            .map(|i| ((i * 7919) % 101) as f32 / 100.0)
            .collect(),
    };
    let mut got = img.clone();
    gaussian_blur(&mut got, k, sigma);
    let half = (k / 2) as isize;
    let weights: Vec<f64> = (-half..=half)
        .map(|x| (-(x * x) as f64 / (2.0 * sigma as f64 * sigma as f64)).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    // Reflection without repeating the edge: index −1 is 1, index len is len − 2.
    let reflect = |i: isize, len: isize| {
        if i < 0 {
            -i
        } else if i >= len {
            2 * (len - 1) - i
        } else {
            i
        }
    };
    for c in 0..2 {
        let at = |y: isize, x: isize| img.data[c * h * w + (y as usize) * w + x as usize] as f64;
        for y in 0..h as isize {
            for x in 0..w as isize {
                let mut want = 0.0;
                for (i, wy) in weights.iter().enumerate() {
                    for (j, wx) in weights.iter().enumerate() {
                        let yy = reflect(y + i as isize - half, h as isize);
                        let xx = reflect(x + j as isize - half, w as isize);
                        want += wy * wx * at(yy, xx);
                    }
                }
                let got = got.data[c * h * w + (y as usize) * w + x as usize] as f64;
                assert!(
                    (got - want / (total * total)).abs() < 1e-5,
                    "({c}, {y}, {x})"
                );
            }
        }
    }
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

#[test]
fn shrinking_more_than_twice_averages_like_pil() {
    // 1×8 → 1×2 (scale 4): PIL's triangle of radius 4 around centres 2 and 6.
    let img = Image {
        channels: 1,
        height: 1,
        width: 8,
        data: (0..8).map(|v| v as f32).collect(),
    };
    let out = crop_resize(&img.planes(), (0, 0, 1, 8), 1, 2);
    // Weights 1 − |j + 0.5 − 2| / 4 for j = 0..6: 0.625 0.875 0.875 0.625 0.375 0.125 → sum 3.5.
    let w = [0.625f32, 0.875, 0.875, 0.625, 0.375, 0.125];
    let first: f32 = w.iter().enumerate().map(|(j, w)| j as f32 * w).sum::<f32>() / 3.5;
    assert!(
        (out.data[0] - first).abs() < 1e-5,
        "{} vs {first}",
        out.data[0]
    );
    // Symmetric: the second output mirrors the first around 3.5.
    assert!((out.data[1] - (7.0 - first)).abs() < 1e-5, "{:?}", out.data);
    // A constant image stays constant, u8 pixels read as v / 255.
    let grey = vec![51u8; 3 * 40 * 30];
    let planes = Planes {
        channels: 3,
        height: 40,
        width: 30,
        data: &grey[..],
    };
    let out = crop_resize(&planes, (0, 0, 40, 30), 7, 5);
    assert!(out.data.iter().all(|v| (v - 0.2).abs() < 1e-6));
}
