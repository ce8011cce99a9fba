//! Typed JSON request bodies: malformed JSON is a 400, well-formed JSON that breaks the
//! contract (a missing field, a wrong type) is a 422, as everywhere in this API.

use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::error::ApiError;

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        Category::Data => ApiError::Validation(format!("invalid request: {e}")),
        Category::Io | Category::Syntax | Category::Eof => {
            ApiError::MalformedJson(format!("request body is not valid JSON: {e}"))
        }
    })
}
