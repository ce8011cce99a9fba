//! ONNX Runtime set-up: load the shared library once per process, keep the one
//! ORT environment alive, and build sessions with the configured execution provider.
//!
//! `ort` is built with `load-dynamic`, so `libonnxruntime.so` is found at run
//! time (config or `ORT_DYLIB_PATH`) rather than linked: one binary serves CPU
//! and GPU installs alike.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ort::environment::Environment;
use ort::ep::ExecutionProvider as _;
use ort::session::Session;

use super::vision::EmbedError;
use crate::config::{ExecutionProvider, ModelSettings};

/// Environment variable consulted when `model.ort_dylib_path` is unset.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The process's ORT environment and the library it came from. A global only
/// because ORT itself is one per process: the dylib can be loaded once, and
/// `ort` tracks a single current environment.
static RUNTIME: Mutex<Option<Loaded>> = Mutex::new(None);

struct Loaded {
    dylib: PathBuf,
    environment: Environment,
    /// The CUDA libraries loaded for the CUDA provider (see `cuda_libs`), kept loaded.
    _cuda: Vec<libloading::os::unix::Library>,
}

/// Initialises ONNX Runtime from the configured library. Idempotent: later calls
/// (other services in the same process) reuse the first initialisation.
pub fn init(settings: &ModelSettings) -> Result<(), EmbedError> {
    environment(settings).map(|_| ())
}

/// The process's ORT environment, initialising it on first use.
pub(crate) fn environment(settings: &ModelSettings) -> Result<Environment, EmbedError> {
    let dylib = dylib_path(settings)?;
    // Recover from poisoning: the guarded value is only ever replaced whole, so it is never half-written.
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(loaded) = slot.as_ref() {
        if !same_file(&loaded.dylib, &dylib) {
            // ORT cannot be loaded twice into one process; the first library stays in use.
            tracing::warn!(
                loaded = %loaded.dylib.display(),
                requested = %dylib.display(),
                "ONNX Runtime is already loaded from another library; keeping the loaded one"
            );
        }
        return Ok(loaded.environment.clone());
    }
    check_dylib_exists(&dylib)?;
    let cuda = match settings.execution_provider {
        ExecutionProvider::Cuda => super::cuda_libs::preload(&dylib),
        ExecutionProvider::Cpu => Vec::new(),
    };
    let environment = ort::init_from(&dylib)
        .map_err(|e| EmbedError::Setup(format!("cannot load ONNX Runtime from {}: {e}", dylib.display())))?
        .with_name("imgidx")
        .with_telemetry(false)
        .build()
        .map_err(|e| EmbedError::Runtime(format!("cannot create the ONNX Runtime environment: {e}")))?;
    tracing::info!(dylib = %dylib.display(), "ONNX Runtime loaded");
    *slot = Some(Loaded { dylib, environment: environment.clone(), _cuda: cuda });
    Ok(environment)
}

fn dylib_path(settings: &ModelSettings) -> Result<PathBuf, EmbedError> {
    dylib_path_from(settings, std::env::var_os(DYLIB_ENV))
}

/// `model.ort_dylib_path`, else the environment variable's value, else a setup error saying how to fix it.
fn dylib_path_from(settings: &ModelSettings, env: Option<std::ffi::OsString>) -> Result<PathBuf, EmbedError> {
    if let Some(path) = &settings.ort_dylib_path {
        return Ok(path.clone());
    }
    match env {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(EmbedError::Setup(format!(
            "ONNX Runtime library not configured: set model.ort_dylib_path (IMGIDX__MODEL__ORT_DYLIB_PATH) or \
             {DYLIB_ENV} to the path of libonnxruntime.so (ONNX Runtime >= 1.{}); run scripts/setup-ort.sh (it installs the library and prints its path)",
            ort::MINOR_VERSION
        ))),
    }
}

/// Checked before dlopen, whose own message for a missing file is terse.
fn check_dylib_exists(dylib: &Path) -> Result<(), EmbedError> {
    if dylib.is_file() {
        return Ok(());
    }
    Err(EmbedError::Setup(format!(
        "ONNX Runtime library {} does not exist; set model.ort_dylib_path or {DYLIB_ENV} to the path of \
         libonnxruntime.so (ONNX Runtime >= 1.{}), e.g. the one in the onnxruntime Python package",
        dylib.display(),
        ort::MINOR_VERSION
    )))
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Builds a session for `graph` on the configured execution provider.
pub(crate) fn session(graph: &Path, settings: &ModelSettings) -> Result<Session, EmbedError> {
    let environment = environment(settings)?;
    let rt =
        |what: &str, e: &dyn std::fmt::Display| EmbedError::Runtime(format!("{what} for {}: {e}", graph.display()));
    let mut builder = Session::builder(&environment).map_err(|e| rt("cannot create session options", &e))?;
    if settings.intra_threads > 0 {
        builder =
            builder.with_intra_threads(settings.intra_threads).map_err(|e| rt("cannot set intra-op threads", &e))?;
    }
    if settings.execution_provider == ExecutionProvider::Cuda {
        // Checked first so the common mistake (a CPU-only library) gets a precise message.
        let available = ort::ep::CUDA::is_available().map_err(|e| rt("cannot list execution providers", &e))?;
        if !available {
            return Err(EmbedError::Unsupported(
                "model.execution_provider is \"cuda\" but the loaded ONNX Runtime library has no CUDA execution \
                 provider; point model.ort_dylib_path / ORT_DYLIB_PATH at a GPU build (onnxruntime-gpu) or use \"cpu\""
                    .into(),
            ));
        }
        // error_on_failure: without it ORT silently falls back to CPU, which would hide a broken GPU set-up.
        // SameAsRequested: the arena grows by what a batch needs, not to the next power of
        // two, so the batch-size probe measures what an image costs (see batch_probe.rs).
        let cuda = ort::ep::CUDA::default()
            .with_device_id(settings.cuda_device)
            .with_arena_extend_strategy(ort::ep::ArenaExtendStrategy::SameAsRequested)
            .build()
            .error_on_failure();
        builder = builder.with_execution_providers([cuda]).map_err(|e| {
            EmbedError::Unsupported(format!(
                "cannot enable CUDA execution provider on device {} (check the CUDA/cuDNN libraries and the device \
                 ordinal): {e}",
                settings.cuda_device
            ))
        })?;
    }
    builder.commit_from_file(graph).map_err(|e| rt("cannot load ONNX model", &e))
}

/// Checks that a session has the tensor names the manifest promises, so a
/// mismatched manifest fails at load time with the names that do exist.
pub(crate) fn check_io(session: &Session, graph: &Path, input: &str, output: &str) -> Result<(), EmbedError> {
    let names = |outlets: &[ort::value::Outlet]| outlets.iter().map(|o| o.name().to_string()).collect::<Vec<_>>();
    let inputs = names(session.inputs());
    let outputs = names(session.outputs());
    if inputs.len() != 1 || inputs[0] != input {
        return Err(EmbedError::Shape(format!(
            "{} must have exactly one input named {input:?} (per the manifest); it has {inputs:?}",
            graph.display()
        )));
    }
    if !outputs.iter().any(|o| o == output) {
        return Err(EmbedError::Shape(format!(
            "{} has no output named {output:?} (per the manifest); it has {outputs:?}",
            graph.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use ort::AsPointer as _;

    use super::*;

    #[test]
    fn dylib_path_prefers_settings_then_env_then_explains() {
        let mut settings = ModelSettings::default();
        let err = dylib_path_from(&settings, None).unwrap_err();
        assert!(matches!(err, EmbedError::Setup(_)));
        let msg = err.to_string();
        assert!(msg.contains("ORT_DYLIB_PATH") && msg.contains("model.ort_dylib_path"), "{msg}");
        assert!(dylib_path_from(&settings, Some("".into())).is_err(), "empty counts as unset");
        assert_eq!(dylib_path_from(&settings, Some("/env/lib.so".into())).unwrap(), PathBuf::from("/env/lib.so"));
        settings.ort_dylib_path = Some("/cfg/lib.so".into());
        assert_eq!(dylib_path_from(&settings, Some("/env/lib.so".into())).unwrap(), PathBuf::from("/cfg/lib.so"));
    }

    #[test]
    fn missing_dylib_is_a_clear_setup_error() {
        let err = check_dylib_exists(Path::new("/nonexistent/libonnxruntime.so")).unwrap_err();
        assert!(matches!(err, EmbedError::Setup(_)), "{err}");
        assert!(err.to_string().contains("/nonexistent/libonnxruntime.so"), "{err}");
    }

    #[test]
    fn init_is_idempotent() {
        let settings = crate::embed::vision::tests::test_settings();
        init(&settings).unwrap();
        init(&settings).unwrap();
        let a = environment(&settings).unwrap();
        let b = environment(&settings).unwrap();
        assert_eq!(a.ptr(), b.ptr(), "one ORT environment per process");
    }
}
