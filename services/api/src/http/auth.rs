//! Who is calling, and may they: the API key (`X-API-Key` or `Authorization: Bearer`)
//! identifies the client and its scope; the rate limit applies to that identity (the
//! client address when there is no valid key), before the key is judged, so guessing
//! keys is rate limited too. Without configured keys every request passes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use super::rate_limit::{Client, RateLimiter};
use crate::error::ApiError;
use crate::keys::{KeyIdentity, KeySet, Scope};

/// Shared by every protected route; cheap to clone.
#[derive(Clone)]
pub struct Guard {
    pub keys: Arc<KeySet>,
    pub limiter: Option<Arc<RateLimiter>>,
}

/// The access a request was granted (a request extension): the key's scope, or write
/// when the API has no keys (it is open). Handlers whose options need more than their
/// route's scope check it (a query that writes files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted(pub Scope);

/// `route_layer` state: the guard and the scope the routes below need.
#[derive(Clone)]
pub struct Required {
    pub guard: Guard,
    pub scope: Scope,
}

pub async fn require(State(required): State<Required>, mut request: Request, next: Next) -> Result<Response, ApiError> {
    let Required { guard, scope } = required;
    let identity = presented_key(request.headers()).and_then(|k| guard.keys.identify(k)).cloned();
    if let Some(limiter) = &guard.limiter {
        let client = match &identity {
            Some(id) => Client::Key(id.name.clone()),
            None => Client::Address(client_ip(&request)),
        };
        limiter.check(&client).map_err(ApiError::RateLimited)?;
    }
    if guard.keys.is_empty() {
        request.extensions_mut().insert(Granted(Scope::Write));
        return Ok(next.run(request).await);
    }
    match identity {
        None => Err(ApiError::Unauthorized),
        Some(KeyIdentity { name, scope: have }) if have < scope => Err(ApiError::Forbidden(format!(
            "key {name:?} has {} access; this endpoint needs {} access",
            have.as_str(),
            scope.as_str()
        ))),
        Some(id) => {
            tracing::Span::current().record("key", id.name.as_str());
            request.extensions_mut().insert(Granted(id.scope));
            Ok(next.run(request).await)
        }
    }
}

/// The key a request carries, if any (the value itself is never logged).
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key") {
        return v.to_str().ok().map(str::trim);
    }
    let auth = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn keys_come_from_x_api_key_or_bearer() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer  abc "));
        assert_eq!(presented_key(&h), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        assert_eq!(presented_key(&h), Some("k1"));
    }
}
