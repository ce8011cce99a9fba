//! The batch size a CUDA worker runs at, probed at start from the device's free memory
//! (seed 003: "the safe value probed by the ML service at runtime"), instead of a number
//! someone tuned for another card.
//!
//! 1. One image is run, so the weights and the provider's workspace are in place; the
//!    memory then free is the budget's base.
//! 2. A batch of [`SAMPLE`] is run; the memory the arena grew by, per extra image, is what
//!    an image costs (at least the floor: its input and output buffers).
//! 3. batch = `fraction` × free ÷ cost, at most `max`, rounded down to a multiple of 8.
//! 4. That batch is run once; should it still not fit, it is halved until one does.
//!
//! The sessions grow their arena by what is asked (`SameAsRequested`, see `runtime.rs`),
//! so step 2 measures images, not a power-of-two reservation.

use super::vision::{EmbedError, VisionEncoder};

/// The sample batch of step 2.
pub const SAMPLE: usize = 16;

/// What the probe runs on: the encoder on its device, or a model of one in tests.
pub trait ProbeDevice {
    /// Runs one batch of `n` images.
    fn run(&mut self, n: usize) -> Result<(), EmbedError>;
    /// `(free, total)` bytes of device memory now.
    fn memory(&mut self) -> Result<(u64, u64), EmbedError>;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeLimits {
    /// Largest batch to choose (`worker.max_batch_size`).
    pub max: usize,
    /// Share of the free memory the batches may use (`worker.batch_memory_fraction`).
    pub fraction: f64,
    /// Least an image is taken to cost, in bytes (its input and output buffers).
    pub floor_bytes: u64,
}

/// What the probe found, for the log and the benchmark report.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BatchProbe {
    pub batch_size: usize,
    /// Device memory one image of a batch takes, as measured (or the floor).
    pub bytes_per_image: u64,
    /// Device memory free once the model was loaded and had run.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Halvings step 4 needed (0 when the first choice fit).
    pub halvings: u32,
}

pub fn probe(device: &mut impl ProbeDevice, limits: ProbeLimits) -> Result<BatchProbe, EmbedError> {
    let max = limits.max.max(1);
    device.run(1)?;
    let (free, total) = device.memory()?;
    let sample = SAMPLE.min(max);
    let mut per_image = limits.floor_bytes.max(1);
    if sample > 1 {
        device.run(sample)?;
        let (after, _) = device.memory()?;
        per_image = per_image.max(free.saturating_sub(after) / (sample as u64 - 1));
    }
    let mut batch = choose(free, per_image, limits.fraction, max);
    let mut halvings = 0;
    loop {
        match device.run(batch) {
            Ok(()) => break,
            Err(e) if batch > 1 => {
                tracing::warn!(batch, error = %e, "probed batch does not fit the device; halving it");
                batch /= 2;
                halvings += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(BatchProbe { batch_size: batch, bytes_per_image: per_image, free_bytes: free, total_bytes: total, halvings })
}

impl VisionEncoder {
    /// On CUDA, the batch size the device's free memory allows, probed with blank images;
    /// None on CPU (no device memory to size for).
    pub fn probe_batch_size(&self, max: usize, fraction: f64) -> Result<Option<BatchProbe>, EmbedError> {
        let Some(device) = self.device() else { return Ok(None) };
        let side = self.manifest().image_size as u64;
        // Its input and its output, each staged on the host and on the device.
        let floor_bytes = 2 * 4 * (3 * side * side + self.manifest().embedding_dim as u64);
        probe(&mut OnDevice { encoder: self, device }, ProbeLimits { max, fraction, floor_bytes }).map(Some)
    }
}

struct OnDevice<'a> {
    encoder: &'a VisionEncoder,
    device: i32,
}

impl ProbeDevice for OnDevice<'_> {
    fn run(&mut self, n: usize) -> Result<(), EmbedError> {
        let side = self.encoder.manifest().image_size as usize;
        let blank = vec![0.0f32; 3 * side * side];
        let mut batch = self.encoder.batch(n)?;
        for _ in 0..n {
            batch.push(&blank)?;
        }
        self.encoder.embed_batch(batch).map(|_| ())
    }

    fn memory(&mut self) -> Result<(u64, u64), EmbedError> {
        super::cuda_libs::device_memory(self.device).map_err(EmbedError::Runtime)
    }
}

/// `fraction` of `free` in images of `per_image` bytes, within 1..=`max`, a multiple of 8 from 8 up.
pub fn choose(free: u64, per_image: u64, fraction: f64, max: usize) -> usize {
    let budget = (free as f64 * fraction.clamp(0.0, 1.0)) as u64;
    let fits = usize::try_from(budget / per_image.max(1)).unwrap_or(usize::MAX);
    let batch = fits.clamp(1, max.max(1));
    if batch >= 8 {
        batch / 8 * 8
    } else {
        batch
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A device whose arena keeps the largest batch run so far, as ONNX Runtime's does.
    struct Model {
        total: u64,
        weights: u64,
        per_image: u64,
        peak: u64,
        /// The real cost of a batch this big or more jumps (a kernel picks a bigger workspace).
        cliff: Option<(usize, u64)>,
        runs: Vec<usize>,
    }

    impl Model {
        fn need(&self, n: usize) -> u64 {
            let extra = self.cliff.filter(|(at, _)| n >= *at).map_or(0, |(_, bytes)| bytes);
            self.per_image * n as u64 + extra
        }
    }

    impl ProbeDevice for Model {
        fn run(&mut self, n: usize) -> Result<(), EmbedError> {
            self.runs.push(n);
            let need = self.need(n);
            if self.weights + need > self.total {
                return Err(EmbedError::Runtime(format!("out of memory for {n}")));
            }
            self.peak = self.peak.max(need);
            Ok(())
        }

        fn memory(&mut self) -> Result<(u64, u64), EmbedError> {
            Ok((self.total - self.weights - self.peak, self.total))
        }
    }

    fn device(total_mib: u64, per_image_mib: u64) -> Model {
        Model { total: total_mib * MIB, weights: 600 * MIB, per_image: per_image_mib * MIB, peak: 0, cliff: None, runs: vec![] }
    }

    fn limits(max: usize) -> ProbeLimits {
        ProbeLimits { max, fraction: 0.7, floor_bytes: MIB }
    }

    #[test]
    fn the_batch_uses_the_share_of_free_memory_its_images_cost() {
        // 80 GiB card, 600 MiB of weights, 20 MiB an image: 0.7 × (81920 − 600 − 20) / 20 = 2845.
        let mut d = device(80 * 1024, 20);
        let p = probe(&mut d, limits(100_000)).unwrap();
        assert_eq!(p.bytes_per_image, 20 * MIB, "measured from the sample's growth");
        assert_eq!(p.free_bytes, (80 * 1024 - 600 - 20) * MIB);
        assert_eq!(p.batch_size, 2840, "a multiple of 8");
        assert_eq!(d.runs, [1, SAMPLE, 2840]);
        assert_eq!(p.halvings, 0);
        assert!(d.weights + d.need(p.batch_size) <= d.total);
    }

    #[test]
    fn the_configured_maximum_bounds_it() {
        let p = probe(&mut device(80 * 1024, 20), limits(1024)).unwrap();
        assert_eq!(p.batch_size, 1024);
        let p = probe(&mut device(80 * 1024, 20), limits(1)).unwrap();
        assert_eq!(p.batch_size, 1, "no sample batch above the maximum");
    }

    #[test]
    fn a_batch_that_still_does_not_fit_is_halved() {
        let mut d = device(8 * 1024, 10);
        // From 256 images on, a bigger workspace takes 6 GiB more: 528 and 264 fail.
        d.cliff = Some((256, 6 * 1024 * MIB));
        let p = probe(&mut d, limits(4096)).unwrap();
        assert_eq!(p.batch_size, 132, "{p:?}");
        assert_eq!(p.halvings, 2, "{:?}", d.runs);
    }

    #[test]
    fn no_growth_means_the_floor_and_a_full_device_fails() {
        // Memory already reserved by the arena: the sample shows no growth.
        let mut d = device(16 * 1024, 0);
        let p = probe(&mut d, ProbeLimits { max: 1 << 20, fraction: 0.5, floor_bytes: 4 * MIB }).unwrap();
        assert_eq!(p.bytes_per_image, 4 * MIB);
        assert_eq!(p.batch_size, choose(p.free_bytes, 4 * MIB, 0.5, 1 << 20));
        let mut full = device(600, 1);
        assert!(probe(&mut full, limits(64)).is_err(), "not even one image fits");
    }

    #[test]
    fn choose_rounds_and_clamps() {
        assert_eq!(choose(0, 10, 0.7, 64), 1);
        assert_eq!(choose(70, 10, 1.0, 64), 7);
        assert_eq!(choose(1000, 10, 1.0, 64), 64);
        assert_eq!(choose(1000, 10, 0.5, 1000), 48);
        assert_eq!(choose(u64::MAX, 1, 1.0, usize::MAX), usize::MAX / 8 * 8);
    }
}
