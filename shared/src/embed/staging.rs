//! Where a batch's pixels wait for inference, and the run over them.
//!
//! On CUDA a batch is written straight into page-locked (pinned) host memory from the
//! CUDA provider's allocator and bound to the graph's input with an `IoBinding`: the copy
//! to the device is one DMA, and ONNX Runtime makes no staging copy of its own. The output
//! is bound to pinned host memory too. On CPU the same binding runs over the default CPU
//! allocator, so the path a GPU takes is the path every CPU test takes, bar the allocator.

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::Tensor;

use super::vision::EmbedError;

/// The allocator batches come from, the binding they are run through, and where outputs go.
pub(crate) struct Staging {
    allocator: Allocator,
    output: MemoryInfo<'static>,
    binding: IoBinding,
    pinned: bool,
}

impl Staging {
    /// Pinned host memory of `device` when it is a CUDA device and the session has the
    /// CUDA provider's pinned allocator; the default CPU allocator otherwise (logged when
    /// pinned memory was wanted).
    pub(crate) fn new(session: &Session, device: Option<i32>) -> Result<Self, EmbedError> {
        let binding = session.create_binding().map_err(|e| runtime("cannot create an I/O binding", &e))?;
        if let Some(device) = device {
            match pinned(session, device) {
                Ok((allocator, output)) => return Ok(Self { allocator, output, binding, pinned: true }),
                Err(e) => tracing::warn!(device, error = %e, "no pinned host memory for batches; they go through pageable memory"),
            }
        }
        let output = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::CPUOutput)
            .map_err(|e| runtime("cannot describe CPU memory", &e))?;
        Ok(Self { allocator: Allocator::default(), output, binding, pinned: false })
    }

    /// Whether batches live in page-locked memory.
    pub(crate) fn pinned(&self) -> bool {
        self.pinned
    }

    /// An empty batch of `n` images of `per_image` floats, shaped `[n, 3, side, side]`.
    pub(crate) fn batch(&self, n: usize, side: usize) -> Result<PixelBatch, EmbedError> {
        let tensor = Tensor::<f32>::new(&self.allocator, [n, 3, side, side])
            .map_err(|e| runtime(&format!("cannot allocate a batch of {n} images"), &e))?;
        Ok(PixelBatch { tensor, per_image: 3 * side * side, capacity: n, filled: 0 })
    }

    /// Runs `session` over a full `batch`, handing its output named `output` to `read`.
    /// The input is unbound afterwards, so the batch's memory goes back to the allocator.
    pub(crate) fn run<T>(
        &mut self,
        session: &mut Session,
        input: &str,
        output: &str,
        batch: &PixelBatch,
        read: impl FnOnce(&ort::value::DynValue) -> Result<T, EmbedError>,
    ) -> Result<T, EmbedError> {
        if batch.filled != batch.capacity {
            return Err(EmbedError::Shape(format!(
                "a batch made for {} images holds {}",
                batch.capacity, batch.filled
            )));
        }
        self.binding.bind_input(input, &batch.tensor).map_err(|e| runtime("cannot bind the batch", &e))?;
        self.binding.bind_output_to_device(output, &self.output).map_err(|e| runtime("cannot bind the output", &e))?;
        let result = match session.run_binding(&self.binding) {
            Ok(outputs) => match outputs.get(output) {
                Some(value) => read(value),
                None => Err(EmbedError::Shape(format!("the graph produced no output {output:?}"))),
            },
            Err(e) => Err(EmbedError::Runtime(format!("running the batch: {e}"))),
        };
        self.binding.clear();
        result
    }
}

fn pinned(session: &Session, device: i32) -> Result<(Allocator, MemoryInfo<'static>), ort::Error> {
    let input = MemoryInfo::new(AllocationDevice::CUDA_PINNED, device, AllocatorType::Device, MemoryType::CPUInput)?;
    let output = MemoryInfo::new(AllocationDevice::CUDA_PINNED, device, AllocatorType::Device, MemoryType::CPUOutput)?;
    Ok((Allocator::new(session, input)?, output))
}

fn runtime(what: &str, e: &ort::Error) -> EmbedError {
    EmbedError::Runtime(format!("{what}: {e}"))
}

/// One batch of preprocessed images (NCHW, normalised), written in place where the
/// runtime reads it. Fill it with [`PixelBatch::push`], then hand it to
/// [`VisionEncoder::embed_batch`](super::VisionEncoder::embed_batch).
pub struct PixelBatch {
    tensor: Tensor<f32>,
    per_image: usize,
    capacity: usize,
    filled: usize,
}

impl PixelBatch {
    /// Appends one image of 3×S×S floats.
    pub fn push(&mut self, image: &[f32]) -> Result<(), EmbedError> {
        if image.len() != self.per_image {
            return Err(EmbedError::Shape(format!(
                "an image of this batch is {} floats, got {}",
                self.per_image,
                image.len()
            )));
        }
        if self.filled == self.capacity {
            return Err(EmbedError::Shape(format!("the batch is full ({} images)", self.capacity)));
        }
        let (_, data) = self.tensor.extract_tensor_mut();
        let at = self.filled * self.per_image;
        data[at..at + self.per_image].copy_from_slice(image);
        self.filled += 1;
        Ok(())
    }

    /// Images pushed so far.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Images the batch was made for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
