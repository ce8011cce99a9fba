//! Files that may come back: an I/O error of the disk or network file system, no file
//! descriptor left, or a file missing with its directory (a share that is not mounted)
//! is tried again with backoff for `worker.file_retry_secs` before the image is reported
//! failed, so a share that blinks fails no good image. Meanwhile the batch is held and
//! no new task is taken; the log and `/health` say why.

use std::time::{Duration, Instant};

use imgidx_shared::backoff::Backoff;
use imgidx_shared::embed::DecodeError;
use imgidx_shared::files::ReadRefusal;

use crate::hold::Hold;
use crate::prepare::{Attempt, Decoded, Failure, Tried};

/// First pause before a file is tried again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct FileRetry {
    /// How long one image is tried again.
    pub budget: Duration,
    pub hold: Hold,
}

impl FileRetry {
    /// The attempt's outcome, tried again while its file may come back and the budget
    /// lasts; None when the worker shuts down first.
    pub async fn read_patiently(self, attempt: Attempt) -> Option<Result<Decoded, Failure>> {
        let started = Instant::now();
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
        loop {
            let why = match attempt.run().await {
                Tried::Done(result) => return Some(result),
                Tried::Again(why) => why,
            };
            if started.elapsed() >= self.budget {
                return Some(Err(self.given_up(why)));
            }
            tracing::warn!(worker = %self.hold.worker, path = attempt.path(), error = %why, retry_in = ?backoff.next(), "file not readable for now; holding the batch and trying again");
            self.hold.health.report(&self.part(), format!("files not readable for now, retrying: {why}"));
            if !backoff.pause(&self.hold.shutdown).await {
                return None;
            }
        }
    }

    /// A batch is settled: whatever this worker said about files is over.
    pub fn settled(&self) {
        self.hold.health.clear(&self.part());
    }

    fn given_up(&self, why: ReadRefusal) -> Failure {
        let failure = Failure::from(DecodeError::from(why));
        if self.budget.is_zero() {
            return failure;
        }
        let reason = format!("{}; still so after {:?} of retries", failure.reason, self.budget);
        Failure::new(failure.kind, &reason)
    }

    fn part(&self) -> String {
        format!("{} files", self.hold.worker)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use imgidx_shared::embed::Preprocessor;
    use imgidx_shared::health::HealthBoard;
    use imgidx_shared::messages::FailureKind;
    use imgidx_shared::objects::Objects;
    use imgidx_shared::shutdown::Shutdown;

    use super::*;
    use crate::read::Reader;

    fn retry(budget: Duration) -> FileRetry {
        FileRetry { budget, hold: Hold { worker: "w".into(), health: HealthBoard::default(), shutdown: Shutdown::new() } }
    }

    fn attempt(path: &Path) -> Attempt {
        let preprocessor = Arc::new(Preprocessor::new(32, [0.5; 3], [0.5; 3], 100_000_000, 1 << 30));
        let objects = Objects::local(&std::env::temp_dir().join("imgidx-file-retry-objects")).unwrap();
        let fetch = imgidx_shared::config::IngestSettings::default().fetch_limits();
        Attempt::new(Reader { preprocessor, objects, fetch }, Arc::new(Semaphore::new(1)), path.to_str().unwrap().to_string())
    }

    fn sample() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images/astronaut.png")
    }

    #[tokio::test]
    async fn a_share_that_comes_back_within_the_budget_fails_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().canonicalize().unwrap().join("share");
        let path = share.join("astronaut.png");
        let r = retry(Duration::from_secs(30));
        let (board, mount) = (r.hold.health.clone(), share.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            // While it is away, the board says why the worker waits.
            assert!(board.troubles().iter().any(|(part, t)| part == "w files" && t.message.contains("not readable for now")));
            std::fs::create_dir(&mount).unwrap();
            std::fs::copy(sample(), mount.join("astronaut.png")).unwrap();
        });
        let got = r.clone().read_patiently(attempt(&path)).await.unwrap();
        assert!(got.is_ok(), "{:?}", got.err());
        r.settled();
        assert!(r.hold.health.troubles().is_empty());
    }

    #[tokio::test]
    async fn past_the_budget_the_image_fails_and_says_how_long_it_was_tried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap().join("unmounted/a.png");
        let started = Instant::now();
        let failure = retry(Duration::from_millis(700)).read_patiently(attempt(&path)).await.unwrap().err().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(700));
        assert_eq!(failure.kind, FailureKind::NotFound);
        assert!(failure.reason.contains("directory is missing") && failure.reason.contains("after 700ms of retries"), "{}", failure.reason);
    }

    #[tokio::test]
    async fn a_file_missing_from_its_directory_fails_at_once_and_shutdown_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let started = Instant::now();
        let failure = retry(Duration::from_secs(30)).read_patiently(attempt(&root.join("gone.png"))).await.unwrap().err().unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!((failure.kind, failure.reason.as_str()), (FailureKind::NotFound, "file not found"));

        let r = retry(Duration::from_secs(30));
        let stop = r.hold.shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.cancel();
        });
        assert!(r.read_patiently(attempt(&root.join("unmounted/a.png"))).await.is_none());
    }
}
