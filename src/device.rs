//! Compute devices: burn's flex backend on the CPU, or Vulkan with the `gpu` feature.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Whether `device` computes on this machine's CPU cores (burn's flex backend, with or without
/// autodiff).
pub fn on_cpu(device: &Device) -> bool {
    let cpu = Device::flex();
    *device == cpu || *device == cpu.autodiff()
}

/// Makes the calling thread one of rayon's worker threads (index 0 of the global pool); call it
/// first thing in `main`. False when the pool already exists.
///
/// The CPU kernels split each operation over rayon's pool. From a thread outside the pool every
/// split is injected and the caller sleeps until it is done: three threads on two cores and two
/// thread wake-ups per operation (a tenth of a small ViT step). A caller inside the pool takes its
/// own share and the other thread is usually still awake. Steps stay on this one thread, which
/// burn's BatchNorm needs: it keeps running-statistics updates per thread and averages them
/// (the methods that step halves of a batch on two threads have no BatchNorm).
pub fn compute_on_this_thread() -> bool {
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
        .is_ok()
}

/// While alive, rayon's other worker threads poll for work instead of going to sleep between
/// operations.
///
/// A sleeping worker takes 40–90 µs to wake on a VM (its idle virtual CPU halts and needs an
/// interrupt), longer than many operations of a small network: the calling thread then does most
/// of each split alone (a tenth of a width-8 ResNet epoch on two cores). Polling, the other
/// thread joins a split within a microsecond. It keeps the other cores busy while alive, yielding
/// to the OS between polls so that other threads (the data loader) still get them.
///
/// Only from a worker of the global pool (the CLI's thread, see [`compute_on_this_thread`]):
/// from outside, work is injected and its caller sleeps anyway, and pollers would compete with
/// other threads of the process (a test harness running several trainings at once).
pub struct WorkersPolling {
    stop: Option<Arc<AtomicBool>>,
}

impl WorkersPolling {
    pub fn start() -> Self {
        let caller = match rayon::current_thread_index() {
            Some(index) if rayon::current_num_threads() > 1 => index,
            _ => return WorkersPolling { stop: None },
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        rayon::spawn_broadcast(move |ctx| {
            if ctx.index() != caller {
                poll_until(&flag);
            }
        });
        WorkersPolling { stop: Some(stop) }
    }
}

impl Drop for WorkersPolling {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs the pool's pending jobs as they appear until `stop` is set.
fn poll_until(stop: &AtomicBool) {
    let mut idle_polls = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_polls = 0;
            continue;
        }
        idle_polls = idle_polls.wrapping_add(1);
        if idle_polls.is_multiple_of(64) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}
