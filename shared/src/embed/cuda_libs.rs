//! The CUDA libraries ONNX Runtime's CUDA provider links against, loaded from NVIDIA's
//! wheels beside the ONNX Runtime library (`scripts/setup-ort.sh --gpu` installs
//! `onnxruntime-gpu[cuda,cudnn]`), as onnxruntime's own `preload_dlls()` does for
//! Python: loaded first with `RTLD_GLOBAL`, the provider finds them in the process and no
//! `LD_LIBRARY_PATH` is needed. Where no such wheels are (a system CUDA install, NVIDIA's
//! container images) nothing is loaded and the dynamic loader finds the system's.
//!
//! Also here: how much memory a device has free, from the CUDA runtime (the batch-size
//! probe's measure).
//!
//! The one other module with `unsafe` code besides the decoders' FFI: `dlopen` runs the
//! library's initialisers, which is what loading NVIDIA's own libraries is for.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

/// Wheel directories under `site-packages/nvidia/` and the library name prefixes in
/// their `lib/`, in the order they depend on each other (cuDNN's parts last).
const LIBRARIES: [(&str, &str); 7] = [
    ("cuda_runtime", "libcudart.so"),
    ("cublas", "libcublasLt.so"),
    ("cublas", "libcublas.so"),
    ("cufft", "libcufft.so"),
    ("curand", "libcurand.so"),
    ("cuda_nvrtc", "libnvrtc.so"),
    ("cudnn", "libcudnn"),
];

/// The libraries to load for the ONNX Runtime library at `ort_dylib`, in order: those
/// of the NVIDIA wheels in the same `site-packages`, none where there are none.
pub(crate) fn candidates(ort_dylib: &Path) -> Vec<PathBuf> {
    // site-packages/onnxruntime/capi/libonnxruntime.so.X
    let Some(site) = ort_dylib.parent().and_then(Path::parent).and_then(Path::parent) else {
        return Vec::new();
    };
    let nvidia = site.join("nvidia");
    let mut out = Vec::new();
    for (package, prefix) in LIBRARIES {
        let Ok(entries) = std::fs::read_dir(nvidia.join(package).join("lib")) else { continue };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.contains(".so")))
            .filter(|p| !out.contains(p))
            .collect();
        // `libcudnn.so.9` before its parts (`libcudnn_ops.so.9`, …), which it loads.
        found.sort_by_key(|p| (p.file_name().map(|n| n.len()), p.clone()));
        out.extend(found);
    }
    out
}

/// Loads [`candidates`]; the handles keep them loaded. A library that does not load is
/// logged and skipped: the CUDA provider's own error then says what is missing.
pub(crate) fn preload(ort_dylib: &Path) -> Vec<Library> {
    let mut loaded = Vec::new();
    for path in candidates(ort_dylib) {
        // SAFETY: NVIDIA's own libraries, loaded as their Python wheels are; their
        // initialisers only set up CUDA's state.
        match unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) } {
            Ok(lib) => loaded.push(lib),
            Err(e) => tracing::warn!(library = %path.display(), error = %e, "CUDA library not preloaded"),
        }
    }
    if !loaded.is_empty() {
        tracing::info!(count = loaded.len(), "CUDA libraries loaded from the NVIDIA wheels beside ONNX Runtime");
    }
    loaded
}

/// The CUDA runtime's sonames, newest first: already in the process when ONNX Runtime's
/// CUDA provider is (the loader then hands back the loaded copy).
const CUDART: [&str; 2] = ["libcudart.so.12", "libcudart.so"];

/// `(free, total)` bytes of memory on CUDA `device`, as `cudaMemGetInfo` reports them.
pub(crate) fn device_memory(device: i32) -> Result<(u64, u64), String> {
    // SAFETY: the CUDA runtime, loaded as the CUDA provider loads it.
    let lib = CUDART
        .iter()
        .find_map(|name| unsafe { Library::open(Some(*name), RTLD_NOW) }.ok())
        .ok_or_else(|| format!("the CUDA runtime ({}) is not installed", CUDART.join(" or ")))?;
    type SetDevice = unsafe extern "C" fn(i32) -> i32;
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> i32;
    // SAFETY: the symbols' C signatures, from cuda_runtime_api.h (cudaError_t is an int).
    let (set_device, mem_get_info) = unsafe {
        let set: libloading::os::unix::Symbol<SetDevice> = lib.get(b"cudaSetDevice\0").map_err(|e| e.to_string())?;
        let info: libloading::os::unix::Symbol<MemGetInfo> = lib.get(b"cudaMemGetInfo\0").map_err(|e| e.to_string())?;
        (*set, *info)
    };
    // SAFETY: plain calls into the runtime; the out-pointers are to live locals. The device
    // set is this thread's current one only.
    let code = unsafe { set_device(device) };
    if code != 0 {
        return Err(format!("cudaSetDevice({device}) failed with CUDA error {code}"));
    }
    let (mut free, mut total) = (0usize, 0usize);
    let code = unsafe { mem_get_info(&mut free, &mut total) };
    if code != 0 {
        return Err(format!("cudaMemGetInfo on device {device} failed with CUDA error {code}"));
    }
    Ok((free as u64, total as u64))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_wheels_libraries_in_dependency_order_and_none_without_wheels() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site-packages");
        let capi = site.join("onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        let ort = capi.join("libonnxruntime.so.1.31.1");
        std::fs::write(&ort, b"").unwrap();
        assert!(candidates(&ort).is_empty(), "the CPU wheel: nothing to load");
        for (package, file) in [
            ("cudnn", "libcudnn_ops.so.9"),
            ("cudnn", "libcudnn.so.9"),
            ("cublas", "libcublas.so.12"),
            ("cublas", "libcublasLt.so.12"),
            ("cuda_runtime", "libcudart.so.12"),
            ("cuda_runtime", "README"),
        ] {
            let lib = site.join("nvidia").join(package).join("lib");
            std::fs::create_dir_all(&lib).unwrap();
            std::fs::write(lib.join(file), b"").unwrap();
        }
        let names: Vec<String> =
            candidates(&ort).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["libcudart.so.12", "libcublasLt.so.12", "libcublas.so.12", "libcudnn.so.9", "libcudnn_ops.so.9"]);
        // Empty files are not libraries: skipped, not fatal.
        assert!(preload(&ort).is_empty());
    }

    #[test]
    fn device_memory_reports_a_device_or_says_what_is_missing() {
        match device_memory(0) {
            Ok((free, total)) => assert!(total > 0 && free <= total, "{free} of {total}"),
            Err(e) => assert!(e.contains("CUDA") || e.contains("cuda"), "{e}"),
        }
    }
}
