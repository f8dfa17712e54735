//! Compute devices: burn's flex backend on the CPU, or Vulkan with the `gpu` feature.

use burn::tensor::Device;

#[cfg(not(feature = "gpu"))]
use crate::error::Error;
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Gpu,
}

/// The device for inference (no autodiff).
pub fn device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::flex()),
        #[cfg(feature = "gpu")]
        DeviceChoice::Gpu => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(not(feature = "gpu"))]
        DeviceChoice::Gpu => Err(Error::Usage(
            "the GPU device needs selfsup built with the `gpu` feature: cargo build --release --features gpu".into(),
        )),
    }
}

/// The device for training (autodiff on).
pub fn train_device(choice: DeviceChoice) -> Result<Device> {
    Ok(device(choice)?.autodiff())
}
