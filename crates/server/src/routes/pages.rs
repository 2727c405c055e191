//! Pages of list and search answers.

use axum::Json;
use tarn_core::Error;

/// A page of a list or search answer, `{"<key>": [...], "next_page_token": "..."}` (the token
/// only when more follow), serialized straight from the items: through a `Value` every item's
/// fields would be copied into maps first, a tenth of a 100-version registry search's time.
pub struct PageBody<T> {
    key: &'static str,
    items: Vec<T>,
    next_offset: Option<u64>,
}

impl<T: serde::Serialize> serde::Serialize for PageBody<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(self.key, &self.items)?;
        if let Some(next) = self.next_offset {
            map.serialize_entry(
                "next_page_token",
                &tarn_core::search::encode_page_token(next),
            )?;
        }
        map.end()
    }
}

pub fn page_body<T>(
    key: &'static str,
    items: Vec<T>,
    next_offset: Option<u64>,
) -> Json<PageBody<T>> {
    Json(PageBody {
        key,
        items,
        next_offset,
    })
}

/// Checks a `max_results` against MLflow's default and cap for that search.
pub fn max_results(requested: Option<i64>, default: u64, cap: u64) -> Result<u64, Error> {
    match requested {
        None => Ok(default),
        Some(n) if n <= 0 => Err(Error::invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be a positive integer"
        ))),
        Some(n) if n as u64 > cap => Err(Error::invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be at most {cap}"
        ))),
        Some(n) => Ok(n as u64),
    }
}
