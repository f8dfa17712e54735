//! A float image in CHW order with values in [0, 1].

#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Image {
    pub fn from_u8(pixels: &[u8], channels: usize, height: usize, width: usize) -> Self {
        Image {
            channels,
            height,
            width,
            data: pixels.iter().map(|&p| p as f32 * (1.0 / 255.0)).collect(),
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
