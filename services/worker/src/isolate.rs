//! Finding the image a batch fails on. When inference errors or returns a non-finite
//! vector, the batch is split in halves, recursively, until each failure is pinned on
//! one image; the others keep their vectors. Costs about 2·log2(n) extra runs, and only
//! when a batch fails.

use std::future::Future;
use std::ops::Range;

/// Why one image has no vector.
#[derive(Debug, PartialEq)]
pub enum Leaf<E> {
    /// Inference failed with this image alone.
    Error(E),
    /// Its vector holds NaN or infinity.
    NonFinite,
}

/// Runs `run` on `0..n`, splitting failed ranges until single images; one answer per image.
pub async fn isolate<E, F, Fut>(n: usize, mut run: F) -> Vec<Result<Vec<f32>, Leaf<E>>>
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<Vec<Vec<f32>>, E>>,
{
    let mut out: Vec<Option<Result<Vec<f32>, Leaf<E>>>> = (0..n).map(|_| None).collect();
    let mut todo: Vec<Range<usize>> = Vec::new();
    if n > 0 {
        todo.push(0..n);
    }
    while let Some(range) = todo.pop() {
        let result = run(range.clone()).await;
        let failure = match result {
            Ok(vectors) if vectors.len() == range.len() && vectors.iter().all(|v| v.iter().all(|x| x.is_finite())) => {
                for (slot, v) in out[range].iter_mut().zip(vectors) {
                    *slot = Some(Ok(v));
                }
                continue;
            }
            Ok(_) => Leaf::NonFinite,
            Err(e) => Leaf::Error(e),
        };
        if range.len() == 1 {
            out[range.start] = Some(Err(failure));
        } else {
            let mid = range.start + range.len() / 2;
            todo.push(mid..range.end);
            todo.push(range.start..mid);
        }
    }
    // Every index was filled: each range either succeeded whole or was split down to single images.
    out.into_iter().map(|slot| slot.unwrap_or(Err(Leaf::NonFinite))).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::Cell;
    use std::future::{ready, Ready};

    use super::*;

    /// A model that fails any run holding image `bad_error` and gives NaN for `bad_nan`.
    fn model(bad_error: usize, bad_nan: usize, runs: &Cell<usize>) -> impl FnMut(Range<usize>) -> Ready<Result<Vec<Vec<f32>>, String>> + '_ {
        move |range| {
            runs.set(runs.get() + 1);
            if range.contains(&bad_error) {
                return ready(Err(format!("boom in {range:?}")));
            }
            ready(Ok(range.map(|i| vec![if i == bad_nan { f32::NAN } else { i as f32 }]).collect()))
        }
    }

    #[tokio::test]
    async fn failures_are_pinned_on_their_images_and_the_rest_keep_vectors() {
        let runs = Cell::new(0);
        let out = isolate(32, model(5, 20, &runs)).await;
        for (i, got) in out.iter().enumerate() {
            match i {
                5 => assert!(matches!(got, Err(Leaf::Error(m)) if m.contains("5..6")), "{got:?}"),
                20 => assert_eq!(got, &Err(Leaf::NonFinite)),
                _ => assert_eq!(got, &Ok(vec![i as f32])),
            }
        }
        // Two bad images in 32: far fewer runs than one per image.
        assert!(runs.get() <= 21, "{} runs", runs.get());
    }

    #[tokio::test]
    async fn a_clean_batch_runs_once_and_an_empty_one_never() {
        let runs = Cell::new(0);
        assert_eq!(isolate(4, model(99, 99, &runs)).await.len(), 4);
        assert_eq!(runs.get(), 1);
        assert!(isolate(0, model(0, 0, &runs)).await.is_empty());
        assert_eq!(runs.get(), 1);
    }
}
