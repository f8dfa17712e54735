//! The sizes of one convolution, shared by the im2col and the Winograd kernels.

use burn::tensor::ops::ConvOptions;

/// Every size of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// Padding before (top, left); the end padding only shows in the output size.
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeometry {
    /// `x_dims` is `[batch, c_in, h, w]`, `w_dims` is `[c_out, c_in / groups, kh, kw]`.
    pub fn new(x_dims: [usize; 4], w_dims: [usize; 4], options: &ConvOptions<2>) -> Self {
        let [batch, c_in, h, w] = x_dims;
        let [c_out, cg, kh, kw] = w_dims;
        let groups = options.groups;
        assert!(
            groups >= 1 && c_in == cg * groups && c_out % groups == 0,
            "conv2d: {c_in} input channels, weight expects {cg} per group × {groups} groups"
        );
        let out = |size: usize, k: usize, i: usize| {
            let (begin, end) = options.padding[i];
            let span = options.dilation[i] * (k - 1) + 1;
            let padded = size + begin + end;
            assert!(
                padded >= span,
                "conv2d: kernel larger than the padded input"
            );
            (padded - span) / options.stride[i] + 1
        };
        ConvGeometry {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride: options.stride,
            pad: [options.padding[0].0, options.padding[1].0],
            dilation: options.dilation,
            groups,
            oh: out(h, kh, 0),
            ow: out(w, kw, 1),
        }
    }

    pub(super) fn cg(&self) -> usize {
        self.c_in / self.groups
    }

    pub(super) fn cog(&self) -> usize {
        self.c_out / self.groups
    }

    /// Rows of the column matrix: one per weight entry of a group.
    pub(super) fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }

    /// Output positions per image.
    pub(super) fn p(&self) -> usize {
        self.oh * self.ow
    }

    pub(super) fn x_image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    pub(super) fn y_image(&self) -> usize {
        self.c_out * self.p()
    }

    /// 1×1, stride 1, no padding: the input image already is the column matrix.
    pub(super) fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.oh == self.h
            && self.ow == self.w
    }

    /// For stride 1, the input gradient is itself a convolution: of `dy` with the flipped,
    /// transposed weight ([`flip_transpose`]) under this geometry.
    pub(super) fn input_grad_as_conv(&self) -> Option<ConvGeometry> {
        if self.stride != [1, 1] {
            return None;
        }
        let mut pad = [0; 2];
        for (axis, mirrored) in pad.iter_mut().enumerate() {
            let (k, size, out) = if axis == 0 {
                (self.kh, self.h, self.oh)
            } else {
                (self.kw, self.w, self.ow)
            };
            let begin = (k - 1) * self.dilation[axis];
            // Both the mirrored begin and end padding must be non-negative.
            if self.pad[axis] > begin || size + self.pad[axis] < out {
                return None;
            }
            *mirrored = begin - self.pad[axis];
        }
        Some(ConvGeometry {
            c_in: self.c_out,
            h: self.oh,
            w: self.ow,
            c_out: self.c_in,
            pad,
            oh: self.h,
            ow: self.w,
            ..*self
        })
    }

    /// [`Self::valid`] for every kernel row and every kernel column.
    #[allow(clippy::type_complexity)]
    pub(super) fn valid_ranges(&self) -> (Vec<(usize, usize, isize)>, Vec<(usize, usize, isize)>) {
        (
            (0..self.kh).map(|k| self.valid(0, k)).collect(),
            (0..self.kw).map(|k| self.valid(1, k)).collect(),
        )
    }

    /// For kernel offset `k` along one axis: the output range whose input index
    /// `o·stride + k·dilation − pad` lies in `[0, size)`, and that index at `o = 0`.
    pub(super) fn valid(&self, axis: usize, k: usize) -> (usize, usize, isize) {
        let (size, out) = if axis == 0 {
            (self.h, self.oh)
        } else {
            (self.w, self.ow)
        };
        let (s, d, p) = (
            self.stride[axis] as isize,
            self.dilation[axis] as isize,
            self.pad[axis] as isize,
        );
        let offset = k as isize * d - p;
        // smallest o with o·s + offset ≥ 0, and first o with o·s + offset ≥ size
        let first = if offset >= 0 {
            0
        } else {
            (-offset + s - 1) / s
        };
        let end = ((size as isize - offset + s - 1) / s).clamp(0, out as isize);
        let first = first.min(end);
        (first as usize, end as usize, offset)
    }
}

/// A thread's scratch value, taken from its slot `home` for the guard's life and put back on
/// drop: buffers keep their capacity, and their place in cache, from one call to the next. A
/// nested take of the same slot gets a fresh default. Users must write every value they read.
pub(super) struct Kept<T: Default + 'static> {
    value: T,
    home: &'static std::thread::LocalKey<std::cell::Cell<T>>,
}

impl<T: Default + 'static> Kept<T> {
    pub(super) fn take(home: &'static std::thread::LocalKey<std::cell::Cell<T>>) -> Self {
        Kept {
            value: home.take(),
            home,
        }
    }
}

impl<T: Default + 'static> std::ops::Deref for Kept<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Default + 'static> std::ops::DerefMut for Kept<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Default + 'static> Drop for Kept<T> {
    fn drop(&mut self) {
        self.home.set(std::mem::take(&mut self.value));
    }
}

/// The first `len` values of a reusable scratch buffer, grown as needed.
pub(super) fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len, 0.0);
    &mut buffer[..len]
}

/// Values per parallel task of [`zeroed`]; below two of them one thread zeroes the buffer
/// faster than waking another.
const ZERO_CHUNK: usize = 1 << 17;

/// `vec![0.0; len]` with the zeroing split over the thread pool: a large output zeroed on the
/// calling thread alone leaves the other cores idle for that long (≈ 5 % of a small-network step).
pub(super) fn zeroed(len: usize) -> Vec<f32> {
    use rayon::prelude::*;
    if len < 2 * ZERO_CHUNK {
        return vec![0.0; len];
    }
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(ZERO_CHUNK)
        .for_each(|chunk| chunk.fill(std::mem::MaybeUninit::new(0.0)));
    // SAFETY: the chunks cover all `len` values, each written just above.
    unsafe { v.set_len(len) };
    v
}

/// Room for `len` values that a kernel writes whole before `set_len`: a fresh output needs no
/// zero-filling. Unit tests fill it with NaN first, so an output left unwritten shows in their
/// comparisons.
pub(super) fn output_buffer(len: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    if cfg!(test) {
        v.spare_capacity_mut()[..len].fill(std::mem::MaybeUninit::new(f32::NAN));
    }
    v
}

/// [`sized`] for a scratch buffer that may be large: grown with [`zeroed`].
pub(super) fn sized_zeroed(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        *buffer = zeroed(len);
    }
    &mut buffer[..len]
}

/// Deterministic test values in [−1, 1]: `i·step mod period`, centred and scaled (distinct
/// multipliers and periods give unrelated-looking inputs, weights and gradients).
#[cfg(test)]
pub(super) fn test_values(len: usize, step: usize, period: usize) -> Vec<f32> {
    let half = (period / 2) as f32;
    (0..len)
        .map(|i| ((i * step % period) as f32 - half) / half)
        .collect()
}
