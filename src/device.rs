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

/// Makes the calling thread one of rayon's worker threads (index 0 of the global pool); call it
/// first thing in `main`. False when the pool already exists.
///
/// The CPU kernels split each operation over rayon's pool. From a thread outside the pool every
/// split is injected and the caller sleeps until it is done: three threads on two cores and two
/// thread wake-ups per operation (a tenth of a small ViT step). A caller inside the pool takes its
/// own share and the other thread is usually still awake. Steps stay on this one thread, which
/// burn's BatchNorm needs: it keeps running-statistics updates per thread and averages them.
pub fn compute_on_this_thread() -> bool {
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
        .is_ok()
}
