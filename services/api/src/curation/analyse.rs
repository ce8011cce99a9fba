//! One duplicate analysis. Every point is read once, in pages. Exact groups come from
//! content hashes. Near groups come from each point's nearest neighbours as the vector
//! store finds them (its own search, with the threshold as the score cutoff, so no pair
//! of images is compared outside it), joined into groups by union-find.

use std::collections::HashMap;

use futures::{stream, StreamExt, TryStreamExt};
use uuid::Uuid;

use imgidx_shared::jobs::{JobStore, JobStoreError};
use imgidx_shared::sources::ImageSource;
use imgidx_shared::vectors::{Point, SearchFilter, VectorStore, VectorStoreError};

use super::report::{DuplicateReport, ExactGroup, GroupImage, NearGroup};

/// Points read per page (and per lease renewal).
const PAGE: usize = 256;
/// Neighbours looked up per image: a group is found through chains of these.
const NEIGHBOURS: usize = 10;
/// Searches in flight at once.
const SEARCH_CONCURRENCY: usize = 4;
/// Groups a report keeps of each kind (largest first); the rest are counted as truncated.
pub const MAX_GROUPS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Vectors(#[from] VectorStoreError),
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    /// Another process took the analysis over (or it was finished): stop quietly.
    #[error("the analysis lease was lost")]
    LeaseLost,
}

/// The analysis's lease: progress renews it.
pub struct Lease<'a> {
    pub jobs: &'a dyn JobStore,
    pub task_id: &'a str,
    pub owner: &'a str,
}

impl Lease<'_> {
    async fn renew(&self, scanned: u64, total: u64) -> Result<(), AnalysisError> {
        match self.jobs.analysis_progress(self.task_id, self.owner, scanned, total).await? {
            true => Ok(()),
            false => Err(AnalysisError::LeaseLost),
        }
    }
}

/// What the analysis keeps of a point (not its vector).
struct Member {
    image: GroupImage,
    sha256: String,
    on_disk: bool,
}

impl Member {
    fn of(point: &Point) -> Self {
        let p = &point.payload;
        Member {
            image: GroupImage {
                point_id: point.id,
                path: p.path.clone(),
                size: p.size,
                width: p.width,
                height: p.height,
                similarity: None,
            },
            sha256: p.sha256.clone(),
            on_disk: matches!(ImageSource::parse(&p.path), Some(ImageSource::File(_))),
        }
    }

    /// Archive-exact keeps the first of a group in this order: a file on disk before an
    /// upload or a URL, then the shortest path, then the path's byte order.
    fn keeping_order(&self) -> (bool, usize, &str) {
        (!self.on_disk, self.image.path.len(), &self.image.path)
    }

    fn same_content(&self, other: &Member) -> bool {
        !self.sha256.is_empty() && self.sha256 == other.sha256
    }
}

pub async fn analyse(store: &dyn VectorStore, threshold: f32, lease: &Lease<'_>) -> Result<DuplicateReport, AnalysisError> {
    let total = store.count().await?;
    let filter = SearchFilter { min_score: Some(threshold), ..SearchFilter::default() };
    let mut graph = Graph::default();
    let mut from = None;
    loop {
        let page = store.points_page(from, PAGE).await?;
        // Collected first: a lazy `map` held across the await is not provably `Send`.
        let searches: Vec<_> = page.points.iter().map(|p| store.search(&p.vector, NEIGHBOURS + 1, &filter)).collect();
        let neighbours: Vec<_> = stream::iter(searches)
            .buffered(SEARCH_CONCURRENCY)
            .try_collect()
            .await?;
        for (point, hits) in page.points.iter().zip(neighbours) {
            let a = graph.node(point.id);
            graph.members[a] = Some(Member::of(point));
            for hit in hits.into_iter().filter(|h| h.id != point.id) {
                let b = graph.node(hit.id);
                graph.edges.push((a, b, hit.score));
            }
        }
        graph.read += page.points.len() as u64;
        lease.renew(graph.read, total.max(graph.read)).await?;
        match page.next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    Ok(graph.report())
}

/// Points met so far (read, or seen as a neighbour) and the similarities between them.
#[derive(Default)]
struct Graph {
    index: HashMap<Uuid, usize>,
    /// None for a point seen only as a neighbour (deleted before its page was read).
    members: Vec<Option<Member>>,
    edges: Vec<(usize, usize, f32)>,
    read: u64,
}

impl Graph {
    fn node(&mut self, id: Uuid) -> usize {
        let next = self.members.len();
        let index = *self.index.entry(id).or_insert(next);
        if index == next {
            self.members.push(None);
        }
        index
    }

    fn report(self) -> DuplicateReport {
        let without_hash = self.members.iter().flatten().filter(|m| m.sha256.is_empty()).count() as u64;
        let (near_groups, near_cut) = self.near_groups();
        let (exact_groups, exact_cut) = exact_groups(self.members.into_iter().flatten());
        DuplicateReport {
            images_scanned: self.read,
            images_without_hash: without_hash,
            exact_groups,
            near_groups,
            truncated: near_cut || exact_cut,
        }
    }

    /// Components joined by similarities between images whose bytes differ: exact copies
    /// alone make no near group, but one that also looks like another image does.
    fn near_groups(&self) -> (Vec<NearGroup>, bool) {
        let mut sets = UnionFind::new(self.members.len());
        let mut best = vec![f32::NEG_INFINITY; self.members.len()];
        for &(a, b, score) in &self.edges {
            let (Some(ma), Some(mb)) = (&self.members[a], &self.members[b]) else { continue };
            if ma.same_content(mb) {
                continue;
            }
            sets.union(a, b);
            best[a] = best[a].max(score);
            best[b] = best[b].max(score);
        }
        let mut components: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, member) in self.members.iter().enumerate() {
            if member.is_some() && best[i].is_finite() {
                components.entry(sets.find(i)).or_default().push(i);
            }
        }
        let mut groups: Vec<NearGroup> = components
            .into_values()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut images: Vec<GroupImage> = c
                    .iter()
                    .filter_map(|&i| {
                        let member = self.members[i].as_ref()?;
                        Some(GroupImage { similarity: Some(best[i]), ..member.image.clone() })
                    })
                    .collect();
                images.sort_by(|a, b| a.path.cmp(&b.path));
                let max_similarity = c.iter().map(|&i| best[i]).fold(f32::NEG_INFINITY, f32::max);
                NearGroup { max_similarity, images }
            })
            .collect();
        groups.sort_by(|a, b| b.images.len().cmp(&a.images.len()).then_with(|| a.images[0].path.cmp(&b.images[0].path)));
        let truncated = groups.len() > MAX_GROUPS;
        groups.truncate(MAX_GROUPS);
        (groups, truncated)
    }
}

/// Images with the same content hash, each group in keeping order.
fn exact_groups(members: impl Iterator<Item = Member>) -> (Vec<ExactGroup>, bool) {
    let mut by_hash: HashMap<String, Vec<Member>> = HashMap::new();
    for member in members.filter(|m| !m.sha256.is_empty()) {
        by_hash.entry(member.sha256.clone()).or_default().push(member);
    }
    let mut groups: Vec<ExactGroup> = by_hash
        .into_iter()
        .filter(|(_, members)| members.len() > 1)
        .map(|(sha256, mut members)| {
            members.sort_by(|a, b| a.keeping_order().cmp(&b.keeping_order()));
            ExactGroup { sha256, images: members.into_iter().map(|m| m.image).collect() }
        })
        .collect();
    groups.sort_by(|a, b| b.images.len().cmp(&a.images.len()).then_with(|| a.sha256.cmp(&b.sha256)));
    let truncated = groups.len() > MAX_GROUPS;
    groups.truncate(MAX_GROUPS);
    (groups, truncated)
}

/// Disjoint sets with path halving.
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self { parent: (0..n).collect() }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// The keeping order of archive-exact, for a group re-read from the store.
pub fn keeping_order(points: &mut [Point]) {
    points.sort_by_cached_key(|p| {
        let m = Member::of(p);
        (!m.on_disk, m.image.path.len(), m.image.path)
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn member(id: u128, path: &str, sha: &str) -> Member {
        Member {
            image: GroupImage { point_id: Uuid::from_u128(id), path: path.into(), size: 1, width: 1, height: 1, similarity: None },
            sha256: sha.into(),
            on_disk: path.starts_with('/'),
        }
    }

    fn graph(members: Vec<Member>, edges: &[(u128, u128, f32)]) -> Graph {
        let mut g = Graph::default();
        for m in members {
            let i = g.node(m.image.point_id);
            g.members[i] = Some(m);
            g.read += 1;
        }
        for &(a, b, s) in edges {
            let (a, b) = (g.node(Uuid::from_u128(a)), g.node(Uuid::from_u128(b)));
            g.edges.push((a, b, s));
        }
        g
    }

    #[test]
    fn exact_copies_group_by_hash_and_keep_the_file_with_the_shortest_path() {
        let g = graph(
            vec![
                member(1, "/r/b/copy of x.jpg", "h1"),
                member(2, "object:h1/x.jpg", "h1"),
                member(3, "/r/a/x.jpg", "h1"),
                member(4, "/r/y.jpg", "h2"),
                member(5, "/r/z.jpg", ""),
            ],
            &[(1, 3, 1.0), (3, 1, 1.0), (1, 2, 1.0)],
        );
        let report = g.report();
        assert_eq!(report.exact_groups.len(), 1);
        let paths: Vec<&str> = report.exact_groups[0].images.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["/r/a/x.jpg", "/r/b/copy of x.jpg", "object:h1/x.jpg"]);
        assert!(report.near_groups.is_empty(), "exact copies alone are no near group");
        assert_eq!((report.images_scanned, report.images_without_hash, report.truncated), (5, 1, false));
    }

    #[test]
    fn near_groups_join_chains_of_lookalikes_with_different_bytes() {
        let g = graph(
            vec![member(1, "/r/a.jpg", "h1"), member(2, "/r/a-small.jpg", "h2"), member(3, "/r/a-tiny.jpg", "h3"), member(4, "/r/b.jpg", "h4"), member(5, "/r/a-copy.jpg", "h1")],
            // 1~2 and 2~3: one group through 2; 5 is 1's exact copy and looks like 2 too.
            &[(1, 2, 0.97), (2, 3, 0.95), (5, 2, 0.97), (1, 5, 1.0), (4, 99, 0.99)],
        );
        let report = g.report();
        assert_eq!(report.near_groups.len(), 1);
        let group = &report.near_groups[0];
        let paths: Vec<&str> = group.images.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["/r/a-copy.jpg", "/r/a-small.jpg", "/r/a-tiny.jpg", "/r/a.jpg"]);
        assert!((group.max_similarity - 0.97).abs() < 1e-6);
        let tiny = group.images.iter().find(|i| i.path == "/r/a-tiny.jpg").unwrap();
        assert_eq!(tiny.similarity, Some(0.95));
    }
}
