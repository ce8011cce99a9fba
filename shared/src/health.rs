//! What the parts of one process say about themselves for `/health`: a worker that
//! holds its batch while a dependency is down reports it here until it recovers, so
//! an operator sees why nothing moves (besides the log).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

/// One part's trouble: what is wrong and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct Trouble {
    pub message: String,
    pub since: DateTime<Utc>,
}

/// Shared by every part of a process (cheap to clone).
#[derive(Clone, Default)]
pub struct HealthBoard {
    troubles: Arc<Mutex<BTreeMap<String, Trouble>>>,
}

impl HealthBoard {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Trouble>> {
        // Each critical section is one map operation: a poisoned lock still holds a whole map.
        self.troubles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `part` is in trouble; a trouble already reported keeps its start.
    pub fn report(&self, part: &str, message: String) {
        let mut troubles = self.lock();
        let since = troubles.get(part).map_or_else(Utc::now, |t| t.since);
        troubles.insert(part.to_string(), Trouble { message, since });
    }

    /// `part` is fine again.
    pub fn clear(&self, part: &str) {
        self.lock().remove(part);
    }

    /// Every part in trouble, by name.
    pub fn troubles(&self) -> Vec<(String, Trouble)> {
        self.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_trouble_keeps_its_start_until_cleared() {
        let board = HealthBoard::default();
        board.report("w1", "vector store: down".into());
        let since = board.troubles()[0].1.since;
        board.report("w1", "vector store: still down".into());
        board.report("w0", "job store: down".into());
        let t = board.troubles();
        assert_eq!(t.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["w0", "w1"]);
        assert_eq!(t[1].1, Trouble { message: "vector store: still down".into(), since });
        board.clear("w1");
        board.clear("nobody");
        assert_eq!(board.troubles().len(), 1);
    }
}
