//! Patch masks for masked image modeling, drawn on the host from an explicit RNG so a resumed run
//! masks exactly as an uninterrupted one: MAE's per-sample random shuffle, SimMIM's random large
//! blocks, BEiT's block-wise masking.

use rand::Rng;

/// MAE's random masking of one sample: a uniform random permutation of the `patches` (what the
/// paper's argsort of uniform noise gives); the first `keep` positions stay visible.
#[derive(Clone, Debug, PartialEq)]
pub struct Shuffle {
    /// Patch indices in shuffled order: `order[..keep]` are visible, the rest masked.
    pub order: Vec<usize>,
    pub keep: usize,
}

impl Shuffle {
    /// Draws a shuffle keeping `round(patches · (1 − ratio))` patches (at least one).
    pub fn draw<R: Rng>(rng: &mut R, patches: usize, ratio: f64) -> Shuffle {
        let keep = ((patches as f64 * (1.0 - ratio)).round() as usize).clamp(1, patches);
        let noise: Vec<f32> = (0..patches).map(|_| rng.random()).collect();
        let mut order: Vec<usize> = (0..patches).collect();
        order.sort_by(|&a, &b| noise[a].total_cmp(&noise[b]));
        Shuffle { order, keep }
    }

    /// Where each patch went: `restore[p]` is the position of patch `p` in `order`.
    pub fn restore(&self) -> Vec<usize> {
        let mut restore = vec![0; self.order.len()];
        for (pos, &p) in self.order.iter().enumerate() {
            restore[p] = pos;
        }
        restore
    }

    /// The mask in patch order: true where masked.
    pub fn mask(&self) -> Vec<bool> {
        let mut mask = vec![true; self.order.len()];
        for &p in &self.order[..self.keep] {
            mask[p] = false;
        }
        mask
    }
}

/// SimMIM's masking: the `grid × grid` patch grid is cut into `block × block` squares, and
/// `round(squares · ratio)` of them, chosen uniformly, are masked whole. Returns the mask in patch
/// order (true where masked).
pub fn block_random<R: Rng>(rng: &mut R, grid: usize, block: usize, ratio: f64) -> Vec<bool> {
    assert!(
        block > 0 && grid.is_multiple_of(block),
        "validated by the recipe"
    );
    let side = grid / block;
    let squares = side * side;
    let count = ((squares as f64 * ratio).round() as usize).min(squares);
    let mut ids: Vec<usize> = (0..squares).collect();
    for i in 0..count {
        let j = rng.random_range(i..squares);
        ids.swap(i, j);
    }
    let mut mask = vec![false; grid * grid];
    for &s in &ids[..count] {
        let (br, bc) = (s / side, s % side);
        for r in br * block..(br + 1) * block {
            for c in bc * block..(bc + 1) * block {
                mask[r * grid + c] = true;
            }
        }
    }
    mask
}

/// BEiT's block-wise masking (Bao et al. 2021, Algorithm 1): rectangles of at least `min_block`
/// patches with aspect ratio in [0.3, 1/0.3] are added at random until
/// `round(patches · ratio)` patches are masked; a rectangle never overshoots the target by
/// masking more new patches than are still needed. Returns the mask in patch order.
pub fn blockwise<R: Rng>(rng: &mut R, grid: usize, ratio: f64, min_block: usize) -> Vec<bool> {
    let total = grid * grid;
    let target = ((total as f64 * ratio).round() as usize).min(total);
    let mut mask = vec![false; total];
    let mut count = 0;
    let (log_lo, log_hi) = (0.3f64.ln(), (1.0f64 / 0.3).ln());
    let mut failures = 0;
    while count < target && failures < 100 {
        let left = target - count;
        let min = min_block.min(left).max(1) as f64;
        let area = rng.random_range(min..=left as f64);
        let aspect = rng.random_range(log_lo..=log_hi).exp();
        let h = ((area * aspect).sqrt().round() as usize).max(1);
        let w = ((area / aspect).sqrt().round() as usize).max(1);
        if h > grid || w > grid {
            failures += 1;
            continue;
        }
        let top = rng.random_range(0..=grid - h);
        let left_col = rng.random_range(0..=grid - w);
        let fresh = (top..top + h)
            .flat_map(|r| (left_col..left_col + w).map(move |c| r * grid + c))
            .filter(|&i| !mask[i])
            .count();
        if fresh == 0 || fresh > left {
            failures += 1;
            continue;
        }
        for r in top..top + h {
            for c in left_col..left_col + w {
                mask[r * grid + c] = true;
            }
        }
        count += fresh;
        failures = 0;
    }
    // Rare on small grids: top up with single patches so every sample masks the same count.
    while count < target {
        let i = rng.random_range(0..total);
        if !mask[i] {
            mask[i] = true;
            count += 1;
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn shuffle_keeps_a_quarter_and_restores() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let s = Shuffle::draw(&mut rng, 64, 0.75);
        assert_eq!(s.keep, 16);
        let mut sorted = s.order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..64).collect::<Vec<_>>(), "a permutation");
        let restore = s.restore();
        for (p, &pos) in restore.iter().enumerate() {
            assert_eq!(s.order[pos], p);
        }
        let mask = s.mask();
        assert_eq!(mask.iter().filter(|&&m| m).count(), 48);
        assert!(s.order[..16].iter().all(|&p| !mask[p]));
        // Seeded: the same RNG state gives the same shuffle, another a different one.
        let again = Shuffle::draw(&mut ChaCha8Rng::seed_from_u64(1), 64, 0.75);
        assert_eq!(again, s);
        assert_ne!(Shuffle::draw(&mut rng, 64, 0.75), s);
    }

    #[test]
    fn block_random_masks_whole_blocks() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let grid = 8;
        let mask = block_random(&mut rng, grid, 2, 0.6);
        // 16 squares of 2×2 patches, round(9.6) = 10 masked → 40 patches.
        assert_eq!(mask.iter().filter(|&&m| m).count(), 40);
        for br in 0..4 {
            for bc in 0..4 {
                let first = mask[br * 2 * grid + bc * 2];
                for (r, c) in [(0, 1), (1, 0), (1, 1)] {
                    assert_eq!(mask[(br * 2 + r) * grid + bc * 2 + c], first);
                }
            }
        }
    }

    #[test]
    fn blockwise_hits_the_target_with_rectangles() {
        let grid = 14;
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mask = blockwise(&mut rng, grid, 0.4, 16);
            assert_eq!(mask.iter().filter(|&&m| m).count(), 78, "seed {seed}");
        }
        // Blocks, not scattered patches: most masked patches have a masked 4-neighbour.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mask = blockwise(&mut rng, grid, 0.4, 16);
        let neighbours = |i: usize| {
            let (r, c) = (i / grid, i % grid);
            [(0i64, 1i64), (1, 0), (0, -1), (-1, 0)]
                .iter()
                .filter(|(dr, dc)| {
                    let (nr, nc) = (r as i64 + dr, c as i64 + dc);
                    (0..grid as i64).contains(&nr)
                        && (0..grid as i64).contains(&nc)
                        && mask[nr as usize * grid + nc as usize]
                })
                .count()
        };
        let masked: Vec<usize> = (0..grid * grid).filter(|&i| mask[i]).collect();
        let clustered = masked.iter().filter(|&&i| neighbours(i) >= 2).count();
        assert!(
            clustered * 10 >= masked.len() * 8,
            "{clustered} of {}",
            masked.len()
        );
    }
}
