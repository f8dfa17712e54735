//! A float image in CHW order with values in [0, 1], and borrowed planes of any pixel type.

#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// A pixel value that reads as a float in [0, 1].
pub trait Texel: Copy + Send + Sync {
    fn unit(self) -> f32;
}

impl Texel for f32 {
    #[inline(always)]
    fn unit(self) -> f32 {
        self
    }
}

impl Texel for u8 {
    #[inline(always)]
    fn unit(self) -> f32 {
        self as f32 * (1.0 / 255.0)
    }
}

/// A borrowed CHW image: what crops read from, at its original resolution and pixel type (so a
/// decoded photo is never converted to floats in full).
#[derive(Clone, Copy, Debug)]
pub struct Planes<'a, T> {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: &'a [T],
}

impl<T: Texel> Planes<'_, T> {
    pub fn channel(&self, c: usize) -> &[T] {
        let plane = self.height * self.width;
        &self.data[c * plane..(c + 1) * plane]
    }
}

impl Image {
    pub fn from_u8(pixels: &[u8], channels: usize, height: usize, width: usize) -> Self {
        Image {
            channels,
            height,
            width,
            data: pixels.iter().map(|&p| p.unit()).collect(),
        }
    }

    pub fn planes(&self) -> Planes<'_, f32> {
        Planes {
            channels: self.channels,
            height: self.height,
            width: self.width,
            data: &self.data,
        }
    }

    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    pub fn channel(&self, c: usize) -> &[f32] {
        &self.data[c * self.plane()..(c + 1) * self.plane()]
    }

    /// ITU-R 601 luma, as torchvision's `rgb_to_grayscale`; the image itself when single-channel.
    pub fn luma(&self) -> Vec<f32> {
        if self.channels != 3 {
            return self.channel(0).to_vec();
        }
        let (r, g, b) = (self.channel(0), self.channel(1), self.channel(2));
        (0..self.plane())
            .map(|i| 0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i])
            .collect()
    }
}
