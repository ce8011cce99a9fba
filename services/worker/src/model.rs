//! The models a worker embeds with. A task's physical collection is bound to a model in
//! the catalog (`ModelChoice`), so one fleet fills collections of several models, and the
//! new generation of a collection during a model switch. Models other than the worker's
//! own (`model.dir`) are loaded from `model.models_dir` on first use and kept in a small
//! bounded set (`imgidx_shared::embed::Models`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use imgidx_shared::collections::name_of;
use imgidx_shared::config::{Settings, WorkerSettings};
use imgidx_shared::embed::{DecodeBudget, EmbedError, Loader, Models, Preprocessor, Tagger, VisionEncoder};
use imgidx_shared::jobs::JobStore;
use imgidx_shared::messages::FailureKind;

use crate::hold::Hold;
use crate::inbox::Task;
use crate::prepare::Failure;

/// What embedding with one model takes.
pub struct WorkerModel {
    pub encoder: Arc<VisionEncoder>,
    /// Tags images (the model's text encoder over the tag vocabulary); None: no tags.
    pub tagger: Option<Arc<Tagger>>,
    /// This model's input size and normalisation, with the worker's limits.
    pub preprocessor: Arc<Preprocessor>,
}

pub type WorkerModels = Models<WorkerModel>;

impl WorkerModel {
    pub fn new(encoder: Arc<VisionEncoder>, tagger: Option<Arc<Tagger>>, limits: &WorkerSettings, budget: DecodeBudget) -> Self {
        let m = encoder.manifest();
        let preprocessor = Preprocessor::new(m.image_size, m.mean, m.std, limits.max_image_pixels, limits.max_file_bytes)
            .with_budget(budget)
            .with_mode(limits.preprocess);
        Self { encoder, tagger, preprocessor: Arc::new(preprocessor) }
    }

    pub fn name(&self) -> &str {
        &self.encoder.manifest().name
    }

    pub fn dim(&self) -> usize {
        self.encoder.manifest().embedding_dim
    }
}

/// `default` (the model of `model.dir`) and every model installed in `model.models_dir`.
pub fn worker_models(settings: &Settings, default: WorkerModel, budget: DecodeBudget) -> WorkerModels {
    let (model, tags, limits) = (settings.model.clone(), settings.tags.clone(), settings.worker.clone());
    let load: Loader<WorkerModel> = Arc::new(move |dir: &Path| -> Result<WorkerModel, EmbedError> {
        let encoder = Arc::new(VisionEncoder::load(dir, &model)?);
        let tagger = Tagger::load(dir, &model, &tags)?.map(Arc::new);
        Ok(WorkerModel::new(encoder, tagger, &limits, budget.clone()))
    });
    let name = default.name().to_owned();
    Models::new(&name, Arc::new(default), settings.models_dir(), settings.model.max_loaded, load)
}

/// Which model embeds a task's image: the one the catalog binds its physical collection to
/// (a collection's current generation, or the one a model switch is filling).
#[derive(Clone)]
pub struct ModelChoice {
    pub jobs: Arc<dyn JobStore>,
    pub models: Arc<WorkerModels>,
    /// The collection of tasks that name none.
    pub initial_collection: String,
}

/// Each physical collection's model, or why its images cannot be embedded.
pub type Chosen = HashMap<String, Result<Arc<WorkerModel>, Failure>>;

impl ModelChoice {
    /// The physical collection `task` goes into.
    pub fn collection_of<'a>(&'a self, task: &'a Task) -> &'a str {
        task.message.collection.as_deref().unwrap_or(&self.initial_collection)
    }

    /// The model of every collection the tasks go into (one catalog read each); None when
    /// shutdown came while the job store was down.
    pub async fn for_tasks(&self, tasks: &[Task], hold: &Hold) -> Option<Chosen> {
        let mut chosen = Chosen::new();
        for task in tasks {
            let physical = self.collection_of(task);
            if chosen.contains_key(physical) {
                continue;
            }
            let record =
                hold.until_ok("reading the collection catalog", || self.jobs.collection(name_of(physical))).await?;
            let model = match record.as_ref().map(|r| r.model_of(physical)) {
                Some(Some((model, _))) => self.load(model).await,
                // As before collections: a worker whose stores no API has set up yet.
                None if physical == self.initial_collection => Ok(Arc::clone(self.models.default_model())),
                None => Err(unavailable(physical, "it is no longer in the catalog")),
                Some(None) => Err(unavailable(physical, "it is not written any more (a model switch replaced it)")),
            };
            chosen.insert(physical.to_owned(), model);
        }
        Some(chosen)
    }

    async fn load(&self, model: &str) -> Result<Arc<WorkerModel>, Failure> {
        self.models.get(model).await.map_err(|e| Failure::new(FailureKind::ModelUnavailable, &e.to_string()))
    }
}

fn unavailable(physical: &str, why: &str) -> Failure {
    Failure::new(FailureKind::CollectionUnavailable, &format!("collection {physical} cannot take this image: {why}"))
}
