//! One pipeline per device: on a node with several GPUs (`model.cuda_devices`), each gets
//! its own vision session, its own models and the batch size its free memory allows; all
//! of them take from the same queue and share the process's decode pool and budget. On
//! CPU there is one device, "none", with `worker.batch_size` as configured.

use std::sync::Arc;

use imgidx_shared::config::{Settings, WorkerSettings};
use imgidx_shared::embed::{BatchProbe, DecodeBudget, Tagger, VisionEncoder};
use imgidx_shared::service::ServiceError;

use crate::model::{worker_models, WorkerModel, WorkerModels};

/// What one device's pipelines run with.
pub struct DevicePipeline {
    /// The CUDA device; None on CPU.
    pub device: Option<i32>,
    /// The worker's settings, with the batch size this device runs at.
    pub settings: WorkerSettings,
    /// The worker's own model on this device, and those it loads there for other collections.
    pub models: Arc<WorkerModels>,
    /// What the batch-size probe found (CUDA with `worker.auto_batch_size`).
    pub probe: Option<BatchProbe>,
}

/// Loads the worker's model on every device of `model.devices()` and sizes its batches.
/// `first` is an encoder already loaded on the first device (serve's, shared with its
/// queries); the tagger is the same for every device (it only reads vectors).
pub async fn load_pipelines(
    settings: &Settings,
    budget: &DecodeBudget,
    first: Option<Arc<VisionEncoder>>,
    tagger: Option<Arc<Tagger>>,
) -> Result<Vec<DevicePipeline>, ServiceError> {
    let mut first = first;
    let mut pipelines = Vec::new();
    for device in settings.model.devices() {
        let mut on = settings.clone();
        on.model = settings.model.on_device(device);
        let encoder = match first.take() {
            Some(encoder) => encoder,
            None => {
                let model = on.model.clone();
                Arc::new(
                    tokio::task::spawn_blocking(move || VisionEncoder::load(&model.dir, &model))
                        .await
                        .map_err(|e| ServiceError::Other(e.to_string()))??,
                )
            }
        };
        let (worker, probe) = sized(encoder.clone(), &settings.worker).await;
        let own = WorkerModel::new(encoder, tagger.clone(), &worker, budget.clone());
        let models = Arc::new(worker_models(&on, own, budget.clone()));
        pipelines.push(DevicePipeline { device, settings: worker, models, probe });
    }
    Ok(pipelines)
}

/// `settings` with the batch size `encoder`'s device allows: probed on CUDA with
/// `auto_batch_size` (falling back to `batch_size`, logged, if the probe fails), as
/// configured otherwise.
pub async fn sized(encoder: Arc<VisionEncoder>, settings: &WorkerSettings) -> (WorkerSettings, Option<BatchProbe>) {
    let mut sized = settings.clone();
    if !settings.auto_batch_size || encoder.device().is_none() {
        return (sized, None);
    }
    let (max, fraction) = (settings.max_batch_size, settings.batch_memory_fraction);
    let device = encoder.device();
    let probed = tokio::task::spawn_blocking(move || encoder.probe_batch_size(max, fraction)).await;
    match probed {
        Ok(Ok(Some(probe))) => {
            tracing::info!(
                ?device,
                batch_size = probe.batch_size,
                mib_per_image = probe.bytes_per_image as f64 / f64::from(1 << 20),
                free_mib = probe.free_bytes >> 20,
                total_mib = probe.total_bytes >> 20,
                halvings = probe.halvings,
                "batch size probed from device memory"
            );
            sized.batch_size = probe.batch_size;
            (sized, Some(probe))
        }
        Ok(Ok(None)) => (sized, None),
        Ok(Err(e)) => {
            tracing::warn!(?device, error = %e, batch_size = settings.batch_size, "batch size probe failed; using worker.batch_size");
            (sized, None)
        }
        Err(e) => {
            tracing::warn!(?device, error = %e, batch_size = settings.batch_size, "batch size probe stopped; using worker.batch_size");
            (sized, None)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use imgidx_shared::config::ExecutionProvider;

    use super::*;

    fn settings() -> Settings {
        let mut s = Settings::load_from(None, Some(HashMap::new())).unwrap();
        s.model.dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/tiny-clip");
        s.worker.batch_size = 12;
        s
    }

    #[tokio::test]
    async fn a_cpu_worker_has_one_pipeline_at_its_configured_batch_size() {
        let s = settings();
        let pipelines = load_pipelines(&s, &DecodeBudget::from_settings(&s.worker), None, None).await.unwrap();
        assert_eq!(pipelines.len(), 1);
        let p = &pipelines[0];
        assert_eq!((p.device, p.settings.batch_size, p.probe), (None, 12, None), "no probe without a device");
        assert_eq!(p.models.default_model().dim(), 64);
    }

    #[tokio::test]
    async fn cuda_devices_each_load_the_model_or_the_start_fails() {
        let mut s = settings();
        s.model.execution_provider = ExecutionProvider::Cuda;
        s.model.cuda_devices = vec![0, 1];
        match load_pipelines(&s, &DecodeBudget::from_settings(&s.worker), None, None).await {
            // A GPU build of ONNX Runtime on a node with both devices.
            Ok(p) => assert_eq!(p.iter().map(|p| p.device).collect::<Vec<_>>(), [Some(0), Some(1)]),
            Err(e) => assert!(e.to_string().contains("CUDA"), "says why: {e}"),
        }
    }
}
