//! The add-images body, parsed straight into its fields with the path count checked
//! while parsing: a body of millions of paths fails at path `max + 1`, without an
//! intermediate `serde_json::Value` or a vector of every path.

use std::fmt;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::error::Category;

use imgidx_shared::messages::Priority;

use crate::error::ApiError;

/// The body `parse_request` reads, as the OpenAPI document describes it (the parser
/// itself is hand-written, to stop at the path limit without collecting the rest).
/// Unknown fields are ignored, as the original service's clients expect.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // described, never built
pub struct AddImagesRequest {
    /// Absolute paths of image files on the server, inside `api.allowed_roots`; at most
    /// `api.max_paths_per_request`. A path given twice counts once.
    #[schema(min_items = 1)]
    image_paths: Vec<String>,
    /// Queue priority; `normal` when absent or null.
    priority: Option<Priority>,
    /// Told (a signed POST, Standard Webhooks) when the job finishes; needs webhooks on
    /// the server (`api.webhook_secret`), and a public address unless it allows private ones.
    webhook_url: Option<String>,
    /// Collection to index into; the selected one when absent or null.
    collection: Option<String>,
}

/// A parsed add-images body.
#[derive(Debug, PartialEq)]
pub struct AddImagesBody {
    pub paths: Vec<String>,
    pub priority: Priority,
    pub webhook_url: Option<String>,
    pub collection: Option<String>,
}

/// The fields as read, before their values are checked.
struct RawBody {
    paths: Vec<String>,
    priority: Option<String>,
    webhook_url: Option<String>,
    collection: Option<String>,
}

/// Malformed JSON is a 400; well-formed JSON that breaks the contract is a 422.
pub fn parse_request(body: &[u8], max_paths: usize) -> Result<AddImagesBody, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = RequestSeed { max_paths }.deserialize(&mut de).and_then(|r| de.end().map(|()| r));
    let RawBody { paths, priority, webhook_url, collection } = parsed.map_err(|e| match e.classify() {
        Category::Data => ApiError::Validation(format!("invalid request: {e}")),
        Category::Io | Category::Syntax | Category::Eof => {
            ApiError::MalformedJson(format!("request body is not valid JSON: {e}"))
        }
    })?;
    let priority = match priority.as_deref() {
        None => Priority::Normal,
        Some(p) => parse_priority(p)?,
    };
    if paths.is_empty() {
        return Err(ApiError::Validation("image_paths must not be empty".into()));
    }
    Ok(AddImagesBody { paths, priority, webhook_url, collection })
}

/// A priority as clients name it; anything else is one 422 saying what is accepted.
pub(crate) fn parse_priority(p: &str) -> Result<Priority, ApiError> {
    Priority::parse(p)
        .ok_or_else(|| ApiError::Validation(format!("priority must be one of \"low\", \"normal\", \"high\" (got {p:?})")))
}

struct RequestSeed {
    max_paths: usize,
}

impl<'de> DeserializeSeed<'de> for RequestSeed {
    type Value = RawBody;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed {
    type Value = RawBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with image_paths")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut paths, mut priority, mut webhook_url, mut collection) = (None, None, None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "image_paths" if paths.is_some() => return Err(A::Error::duplicate_field("image_paths")),
                "image_paths" => paths = Some(map.next_value_seed(PathsSeed { max: self.max_paths })?),
                "priority" => priority = map.next_value::<Option<String>>()?,
                "webhook_url" => webhook_url = map.next_value::<Option<String>>()?,
                "collection" => collection = map.next_value::<Option<String>>()?,
                // Unknown fields are ignored, as the original service's clients expect.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let paths = paths.ok_or_else(|| A::Error::missing_field("image_paths"))?;
        Ok(RawBody { paths, priority, webhook_url, collection })
    }
}

struct PathsSeed {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for PathsSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PathsSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of image paths")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        while let Some(path) = seq.next_element::<String>()? {
            if out.len() == self.max {
                return Err(A::Error::custom(format!(
                    "too many image_paths: more than {max} given, at most {max} per request",
                    max = self.max
                )));
            }
            out.push(path);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_is_400_and_contract_breaks_are_422() {
        assert!(matches!(parse_request(b"{not json", 10), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse_request(br#"{"image_paths":["/a"]} x"#, 10), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse_request(br#"{"priority":"high"}"#, 10), Err(ApiError::Validation(_))));
        assert!(matches!(parse_request(br#"{"image_paths":[]}"#, 10), Err(ApiError::Validation(_))));
        assert!(matches!(
            parse_request(br#"{"image_paths":["/a"],"priority":"urgent"}"#, 10),
            Err(ApiError::Validation(m)) if m.contains("urgent")
        ));
        assert!(matches!(
            parse_request(br#"{"image_paths":["/a","/b"]}"#, 1),
            Err(ApiError::Validation(m)) if m.contains("at most 1")
        ));
        assert!(matches!(parse_request(br#"{"image_paths":"/a"}"#, 10), Err(ApiError::Validation(_))));
        assert!(matches!(parse_request(br#"{"image_paths":[1]}"#, 10), Err(ApiError::Validation(_))));
        assert!(matches!(parse_request(br#"["/a"]"#, 10), Err(ApiError::Validation(_))));
        let b = parse_request(br#"{"image_paths":["/a"],"priority":null,"extra":{"x":[1]}}"#, 10).unwrap();
        assert_eq!(
            b,
            AddImagesBody { paths: vec!["/a".to_string()], priority: Priority::Normal, webhook_url: None, collection: None }
        );
        let b = parse_request(br#"{"priority":"high","image_paths":["/a\u00e9","/b"],"webhook_url":"https://h/"}"#, 2).unwrap();
        assert_eq!((b.paths.len(), b.priority, b.paths[0].as_str()), (2, Priority::High, "/aé"));
        assert_eq!(b.webhook_url.as_deref(), Some("https://h/"));
        let b = parse_request(br#"{"image_paths":["/a"],"collection":"cats"}"#, 10).unwrap();
        assert_eq!(b.collection.as_deref(), Some("cats"));
        assert!(matches!(parse_request(br#"{"image_paths":["/a"],"webhook_url":5}"#, 10), Err(ApiError::Validation(_))));
    }

    #[test]
    fn a_huge_path_list_stops_at_the_limit() {
        // 4 M paths; the parser must give up at path 11 without collecting the rest.
        let mut body = String::from(r#"{"image_paths":["#);
        body.push_str(&r#""/","#.repeat(4_000_000));
        body.push_str(r#""/"]}"#);
        let err = parse_request(body.as_bytes(), 10).unwrap_err();
        assert!(matches!(err, ApiError::Validation(m) if m.contains("at most 10")));
    }
}
