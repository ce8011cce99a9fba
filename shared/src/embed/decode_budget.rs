//! The memory budget of image decoding: each image takes a share weighed by the bytes its
//! decoded pixels need (from the header, before decoding) and waits until that much is
//! free, so many threads on huge images cannot exhaust memory together. One budget is
//! shared by everything that decodes in a process (worker pipelines and API queries).
//!
//! An image weighing more than the whole budget waits until it can take all of it and
//! then decodes alone (`worker.max_image_pixels` stays the hard per-image limit). Waiters
//! are served in order (tokio's semaphore is fair), so a large image is not starved by a
//! stream of small ones.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::WorkerSettings;

/// Unit of the budget: weights are counted in KiB so a `u32` covers terabytes.
const UNIT: u64 = 1024;
/// Least budget a derived default gives, on machines with little memory.
const MIN_DERIVED_BYTES: u64 = 512 << 20;
/// Budget when the machine's memory is unknown (no `/proc/meminfo`).
const FALLBACK_BYTES: u64 = 2 << 30;

#[derive(Debug, Clone)]
pub struct DecodeBudget {
    permits: Arc<Semaphore>,
    units: u32,
}

/// A share of the budget, given back when dropped (also on error or panic).
#[derive(Debug)]
pub struct BudgetShare {
    _permit: OwnedSemaphorePermit,
}

/// The budget's semaphore was closed; never happens, as nothing closes it.
#[derive(Debug, thiserror::Error)]
#[error("the decode memory budget is closed")]
pub struct BudgetClosed;

impl DecodeBudget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: u64) -> Self {
        let units = u32::try_from((bytes / UNIT).max(1)).unwrap_or(u32::MAX);
        Self { permits: Arc::new(Semaphore::new(units as usize)), units }
    }

    /// `worker.decode_memory_mb`, or when 0 a quarter of the machine's memory.
    pub fn from_settings(worker: &WorkerSettings) -> Self {
        Self::new(budget_bytes(worker.decode_memory_mb, physical_memory_bytes()))
    }

    pub fn total_bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    pub fn available_bytes(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }

    /// Waits for `bytes` of the budget (all of it when `bytes` exceeds the whole).
    pub async fn acquire(&self, bytes: u64) -> Result<BudgetShare, BudgetClosed> {
        let permit = self.permits.clone().acquire_many_owned(self.units_for(bytes)).await.map_err(|_| BudgetClosed)?;
        Ok(BudgetShare { _permit: permit })
    }

    /// As [`DecodeBudget::acquire`], for the blocking threads that decode. Never call it
    /// on an async runtime thread.
    pub fn acquire_blocking(&self, bytes: u64) -> Result<BudgetShare, BudgetClosed> {
        futures::executor::block_on(self.acquire(bytes))
    }

    fn units_for(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).clamp(1, self.units)
    }
}

/// Configured megabytes, or (0) a quarter of `physical`, at least [`MIN_DERIVED_BYTES`].
pub fn budget_bytes(configured_mb: u64, physical: Option<u64>) -> u64 {
    match configured_mb {
        0 => physical.map_or(FALLBACK_BYTES, |p| (p / 4).max(MIN_DERIVED_BYTES)),
        mb => mb.saturating_mul(1 << 20),
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn physical_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.trim_start_matches("MemTotal:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    const MB: u64 = 1 << 20;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acquisitions_beyond_the_budget_wait_until_shares_are_dropped() {
        let budget = DecodeBudget::new(100 * MB);
        let in_use = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for _ in 0..8 {
            let (budget, in_use, peak) = (budget.clone(), in_use.clone(), peak.clone());
            // 8 x 40 MB on a 100 MB budget: at most two at a time.
            threads.push(tokio::task::spawn_blocking(move || {
                let _share = budget.acquire_blocking(40 * MB).unwrap();
                let now = in_use.fetch_add(40 * MB, Ordering::SeqCst) + 40 * MB;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                in_use.fetch_sub(40 * MB, Ordering::SeqCst);
            }));
        }
        for t in threads {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 80 * MB, "two shares at once, never three");
        assert_eq!(budget.available_bytes(), 100 * MB, "every share was given back");
    }

    #[tokio::test]
    async fn a_waiter_gets_its_share_once_another_is_dropped() {
        let budget = DecodeBudget::new(10 * MB);
        let first = budget.acquire(6 * MB).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.acquire(6 * MB)).await;
        assert!(waiting.is_err(), "6 + 6 MB does not fit in 10 MB");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), budget.acquire(6 * MB)).await;
        assert!(second.is_ok(), "fits once the first share is back");
    }

    #[tokio::test]
    async fn a_share_is_given_back_when_the_work_fails() {
        let budget = DecodeBudget::new(10 * MB);
        let failing = |budget: &DecodeBudget| -> Result<(), String> {
            let _share = budget.acquire_blocking(8 * MB).map_err(|e| e.to_string())?;
            Err("corrupt image".into())
        };
        let b = budget.clone();
        let outcome = tokio::task::spawn_blocking(move || failing(&b)).await.unwrap();
        assert!(outcome.is_err());
        assert_eq!(budget.available_bytes(), 10 * MB);
    }

    #[tokio::test]
    async fn an_image_larger_than_the_budget_takes_all_of_it_alone() {
        let budget = DecodeBudget::new(10 * MB);
        let huge = budget.acquire(50 * MB).await.unwrap();
        assert_eq!(budget.available_bytes(), 0);
        let small = tokio::time::timeout(Duration::from_millis(50), budget.acquire(1)).await;
        assert!(small.is_err(), "nothing else decodes beside it");
        drop(huge);
        assert_eq!(budget.available_bytes(), 10 * MB);
    }

    #[test]
    fn the_default_is_a_quarter_of_memory_with_a_floor() {
        assert_eq!(budget_bytes(0, Some(64 << 30)), 16 << 30);
        assert_eq!(budget_bytes(0, Some(1 << 30)), 512 << 20, "floor on small machines");
        assert_eq!(budget_bytes(0, None), 2 << 30);
        assert_eq!(budget_bytes(300, Some(64 << 30)), 300 << 20, "configured wins");
        assert_eq!(parse_mem_total("MemFree: 1 kB\nMemTotal:       16318412 kB\n"), Some(16318412 * 1024));
        assert!(physical_memory_bytes().is_some_and(|b| b > 0), "this machine has /proc/meminfo");
    }
}
