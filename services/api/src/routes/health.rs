use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Serialize;

use imgidx_shared::time::rfc3339;

use crate::state::AppState;

/// How long the object store may take to answer before it counts as unavailable.
const OBJECT_STORE_PROBE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// healthy or unhealthy.
    #[schema(value_type = String, example = "healthy")]
    status: &'static str,
    timestamp: String,
    index_available: bool,
    queue_available: bool,
    job_store_available: bool,
    /// Whether the object store of uploads answers. Not part of `status`: only uploads
    /// need it, and a load balancer should not drop a server that still indexes paths
    /// and searches.
    object_store_available: bool,
    /// Parts of this process that are waiting out a failing dependency (`serve`'s
    /// workers holding a batch), with what fails and since when; empty when all is well.
    troubles: Vec<TroubleBody>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Trouble)]
pub struct TroubleBody {
    part: String,
    message: String,
    since: String,
}

/// Health of the server and its backends.
///
/// 200 when every backend answers, 503 otherwise (load balancers act on the code).
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    responses(
        (status = 200, description = "Every backend answers", body = Health),
        (status = 503, description = "A backend does not answer (see which)", body = Health),
    )
)]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let d = &state.deps;
    let objects = async {
        tokio::time::timeout(OBJECT_STORE_PROBE, d.uploads.objects.healthy()).await.unwrap_or(false)
    };
    let (index, queue, jobs, objects) =
        tokio::join!(d.collections.healthy(), d.broker.healthy(), d.jobs.healthy(), objects);
    let ok = index && queue && jobs;
    let body = Health {
        status: if ok { "healthy" } else { "unhealthy" },
        timestamp: rfc3339(Utc::now()),
        index_available: index,
        queue_available: queue,
        job_store_available: jobs,
        object_store_available: objects,
        troubles: d
            .health
            .troubles()
            .into_iter()
            .map(|(part, t)| TroubleBody { part, message: t.message, since: rfc3339(t.since) })
            .collect(),
    };
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}
