//! Reading an image's bytes from where its path says they are (`imgidx_shared::sources`):
//! a file on this machine, or an object in the object store. Hashing is part of reading,
//! while the bytes are hot in the cache.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use imgidx_shared::embed::{DecodeError, Preprocessor};
use imgidx_shared::fetch::{fetch, FetchLimits};
use imgidx_shared::files::ReadRefusal;
use imgidx_shared::messages::{FailureKind, FileStamp};
use imgidx_shared::objects::{content_hash, ObjectError, ObjectKey, Objects};
use imgidx_shared::sources::ImageSource;

use crate::metrics::{Stage, WorkerMetrics};
use crate::prepare::{Failure, Tried};

/// An image's bytes, their stamp and their SHA-256 (hex).
pub struct Read {
    pub bytes: Vec<u8>,
    pub stamp: FileStamp,
    pub sha256: String,
    /// Where the bytes are in the object store, when they are (uploads, downloads).
    pub object_key: Option<ObjectKey>,
}

/// What reads images, and decodes them.
#[derive(Clone)]
pub struct Reader {
    pub preprocessor: Arc<Preprocessor>,
    pub objects: Objects,
    /// How URLs are fetched.
    pub fetch: FetchLimits,
}

impl Reader {
    /// The bytes of the image at `path` (for a URL, from the object `kept` when the bytes
    /// were kept); `Err` with what the attempt comes to otherwise.
    pub async fn read(&self, path: &str, kept: Option<&ObjectKey>, metrics: &WorkerMetrics) -> Result<Read, Tried> {
        match (ImageSource::parse(path), kept) {
            (Some(ImageSource::Url(_)), Some(key)) => self.read_object(key, metrics).await,
            (Some(ImageSource::File(file)), _) => {
                let (preprocessor, file, metrics) = (self.preprocessor.clone(), file.to_owned(), metrics.clone());
                match tokio::task::spawn_blocking(move || read_file(&preprocessor, Path::new(&file), &metrics)).await {
                    Ok(read) => read,
                    Err(_) => Err(Tried::Done(Err(Failure::decoder_panicked()))),
                }
            }
            (Some(ImageSource::Object { key, .. }), _) => self.read_object(&key, metrics).await,
            (Some(ImageSource::Url(url)), None) => self.download(url, metrics).await,
            (None, _) => Err(Tried::Done(Err(Failure::new(
                FailureKind::NotFound,
                "the path names neither a file nor an uploaded object",
            )))),
        }
    }

    /// The object's name is the hash of its bytes, written by this system only: it is not
    /// hashed again.
    async fn read_object(&self, key: &ObjectKey, metrics: &WorkerMetrics) -> Result<Read, Tried> {
        let started = Instant::now();
        let got = self.objects.get(key, self.preprocessor.max_file_bytes()).await;
        metrics.observe(Stage::Read, started.elapsed());
        match got {
            Ok(bytes) => {
                let stamp = FileStamp { size: bytes.len() as u64, mtime_ns: 0 };
                Ok(Read { bytes, stamp, sha256: key.sha256().to_owned(), object_key: Some(key.clone()) })
            }
            Err(ObjectError::Unavailable(why) | ObjectError::Config(why)) => {
                Err(Tried::Again(ReadRefusal::Unavailable(io::Error::other(format!("object store: {why}")))))
            }
            Err(ObjectError::NotFound) => {
                Err(Tried::Done(Err(Failure::new(FailureKind::NotFound, "object not found in the object store"))))
            }
            Err(ObjectError::TooLarge { len, limit }) => {
                Err(Tried::Done(Err(Failure::from(DecodeError::from(ReadRefusal::TooLarge { len, limit })))))
            }
        }
    }
}

impl Reader {
    /// Fetches the URL and keeps the bytes in the object store (seed 004 keeps every
    /// image it was sent), so the point says where they are. Any failure fails the image
    /// at once, a server that may answer later too: a remote server is not a share that
    /// blinks, and holding the batch for it would let one slow host stall a worker (a
    /// retry of the job tries it again).
    async fn download(&self, url: &str, metrics: &WorkerMetrics) -> Result<Read, Tried> {
        let started = Instant::now();
        let fetched = fetch(url, &self.fetch).await;
        metrics.observe(Stage::Read, started.elapsed());
        let bytes = match fetched {
            Ok(bytes) => bytes,
            Err(e) => return Err(Tried::Done(Err(Failure::new(FailureKind::DownloadFailed, &e.to_string())))),
        };
        let stamp = FileStamp { size: bytes.len() as u64, mtime_ns: 0 };
        let key = self.objects.put(bytes.clone()).await.map_err(|e| {
            Tried::Again(ReadRefusal::Unavailable(io::Error::other(format!("object store: {e}"))))
        })?;
        Ok(Read { bytes, stamp, sha256: key.sha256().to_owned(), object_key: Some(key) })
    }
}

/// The stamp comes from the `fstat` of the opened file, so it describes the bytes read.
/// Only regular files are read (`imgidx_shared::files`): a FIFO or device is reported
/// `not_an_image` at once instead of blocking a decode thread.
fn read_file(preprocessor: &Preprocessor, path: &Path, metrics: &WorkerMetrics) -> Result<Read, Tried> {
    let read = metrics.time(Stage::Read, || {
        preprocessor.read_file(path).map(|file| {
            let sha256 = content_hash(&file.bytes);
            Read { stamp: FileStamp::from_metadata(&file.meta), sha256, bytes: file.bytes, object_key: None }
        })
    });
    match read {
        Ok(read) => Ok(read),
        Err(why) if why.is_transient() => Err(Tried::Again(why)),
        Err(why) => Err(Tried::Done(Err(Failure::from(DecodeError::from(why))))),
    }
}
