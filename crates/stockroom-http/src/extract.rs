//! Reading requests: bodies (JSON in the `{"data": …}` envelope, whatever the content type
//! says), query strings (raw brackets or percent-encoded) and the `Idempotency-Key` header.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use stockroom_domain::limits::{
    BODY_BYTES_MAX, IDEMPOTENCY_KEY_LEN_MAX, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PAGE_OFFSET_MAX,
};
use stockroom_domain::{Quantity, Timestamp};
use stockroom_store::{IdempotencyKey, Page};

use crate::error::ApiError;

/// The raw bytes of a body, at most [`BODY_BYTES_MAX`]; larger bodies are a 413.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_BYTES_MAX as u64) {
            return Err(ApiError::PayloadTooLarge);
        }
        let body: Body = req.into_body();
        match axum::body::to_bytes(body, BODY_BYTES_MAX).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(e) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if too_large {
                    Err(ApiError::PayloadTooLarge)
                } else {
                    Err(ApiError::BadJson("the body could not be read".into()))
                }
            }
        }
    }
}

/// A JSON body. An empty body reads as `null` (the SDK sends none on capture).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Value::Null));
        }
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::BadJson(e.to_string()))?;
        if has_nul(&value) {
            return Err(nul_refused());
        }
        Ok(JsonBody(value))
    }
}

/// Whether any string (or key) in a JSON value holds a NUL character, which no field accepts
/// (PostgreSQL cannot store it in text, and no id, name or address needs it).
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

pub fn nul_refused() -> ApiError {
    ApiError::Invalid {
        detail: "text may not contain NUL characters".into(),
        source: None,
    }
}

/// Refuses requests whose path or query holds an encoded NUL character (`%00`), before any
/// handler sees the decoded text.
pub async fn refuse_nul_in_uri(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let uri = req.uri();
    let encoded_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if encoded_nul(uri.path()) || uri.query().is_some_and(encoded_nul) {
        return nul_refused().into_response();
    }
    next.run(req).await
}

/// `body.data` as an object.
pub fn data_object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    match body.get("data") {
        Some(Value::Object(data)) => Ok(data),
        Some(_) => Err(ApiError::invalid("data", "data must be an object")),
        None => Err(ApiError::invalid(
            "data",
            "the body must be {\"data\": {…}}",
        )),
    }
}

/// `body.data` as an array.
pub fn data_array(body: &Value) -> Result<&Vec<Value>, ApiError> {
    match body.get("data") {
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(ApiError::invalid("data", "data must be an array")),
        None => Err(ApiError::invalid(
            "data",
            "the body must be {\"data\": […]}",
        )),
    }
}

/// A required quantity: a JSON integer from 1 to 1,000,000,000 (not a string, not 1.5).
pub fn quantity(obj: &Map<String, Value>, field: &'static str) -> Result<Quantity, ApiError> {
    let message = || format!("{field} must be a whole number from 1 to 1000000000");
    match obj.get(field) {
        None | Some(Value::Null) => Err(ApiError::invalid(field, format!("{field} is required"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| Quantity::new(n).ok())
            .ok_or_else(|| ApiError::invalid(field, message())),
        Some(_) => Err(ApiError::invalid(field, message())),
    }
}

/// An optional string field, at most `max` bytes.
pub fn optional_string(
    obj: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ApiError::invalid(
            field,
            format!("{field} must be at most {max} bytes"),
        )),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a string"),
        )),
    }
}

/// A required string field.
pub fn required_string<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, ApiError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ApiError::invalid(field, format!("{field} is required"))),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a string"),
        )),
    }
}

/// `type`, when present, must be what the route expects.
pub fn check_type(obj: &Map<String, Value>, expected: &str) -> Result<(), ApiError> {
    match obj.get("type") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if t == expected => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "type",
            format!("type must be \"{expected}\""),
        )),
    }
}

/// The query string's pairs, decoded; raw brackets and percent-encoding both work.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn query_number(pairs: &[(String, String)], name: &'static str) -> Result<Option<u64>, ApiError> {
    match pairs.iter().rev().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::invalid(name, format!("{name} must be a whole number"))),
    }
}

/// `page[limit]` (1–100, default 25) and `page[offset]` (0–10,000).
pub fn page(pairs: &[(String, String)]) -> Result<Page, ApiError> {
    let limit = query_number(pairs, "page[limit]")?.unwrap_or(PAGE_LIMIT_DEFAULT);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::invalid(
            "page[limit]",
            format!("page[limit] must be from 1 to {PAGE_LIMIT_MAX}"),
        ));
    }
    let offset = query_number(pairs, "page[offset]")?.unwrap_or(0);
    if offset > PAGE_OFFSET_MAX {
        return Err(ApiError::invalid(
            "page[offset]",
            format!("page[offset] must be at most {PAGE_OFFSET_MAX}"),
        ));
    }
    Ok(Page { limit, offset })
}

/// One term of a `filter` parameter: `op(field,value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterTerm {
    pub op: String,
    pub field: String,
    pub value: String,
}

/// Most terms in one `filter`.
const FILTER_TERMS_MAX: usize = 8;

/// Parses `eq(action,allocate):ge(created_at,2024-01-01T00:00:00Z)`. Terms are joined by `:`,
/// which values (times) may also contain, so the parser walks parentheses rather than splitting.
pub fn parse_filter(raw: &str) -> Result<Vec<FilterTerm>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "filter",
            "filter must be terms like eq(field,value) joined by ':'",
        )
    };
    let mut terms = Vec::new();
    let mut rest = raw.trim();
    while !rest.is_empty() {
        let open = rest.find('(').ok_or_else(bad)?;
        let close = rest.find(')').ok_or_else(bad)?;
        if close < open {
            return Err(bad());
        }
        let op = rest[..open].trim();
        let (field, value) = rest[open + 1..close].split_once(',').ok_or_else(bad)?;
        if op.is_empty() || !op.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(bad());
        }
        terms.push(FilterTerm {
            op: op.to_ascii_lowercase(),
            field: field.trim().to_owned(),
            value: value.trim().to_owned(),
        });
        if terms.len() > FILTER_TERMS_MAX {
            return Err(ApiError::invalid(
                "filter",
                format!("filter may have at most {FILTER_TERMS_MAX} terms"),
            ));
        }
        rest = &rest[close + 1..];
        rest = match rest.strip_prefix(':') {
            Some(next) if !next.is_empty() => next,
            Some(_) => return Err(bad()),
            None if rest.is_empty() => rest,
            None => return Err(bad()),
        };
    }
    Ok(terms)
}

/// An RFC 3339 time as a [`Timestamp`].
pub fn parse_time(field: &'static str, raw: &str) -> Result<Timestamp, ApiError> {
    let t = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::invalid(field, format!("{raw:?} is not an RFC 3339 time")))?;
    let micros = t.unix_timestamp_nanos() / 1000;
    i64::try_from(micros)
        .map(Timestamp)
        .map_err(|_| ApiError::invalid(field, "time out of range"))
}

/// The `Idempotency-Key` header, scoped to `scope` (method and path) and fingerprinted with the
/// request body, so the same key with another body is told apart.
pub fn idempotency_key(
    headers: &HeaderMap,
    scope: String,
    body: &Value,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_LEN_MAX)
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                format!(
                    "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} visible ASCII characters"
                ),
            )
        })?;
    let hex = |hash: Sha256| {
        hash.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut fingerprint = Sha256::new();
    fingerprint.update(scope.as_bytes());
    fingerprint.update(b"\n");
    // serde_json's maps are ordered, so equal JSON gives equal bytes whatever the spacing.
    fingerprint.update(body.to_string().as_bytes());
    // The scope is stored hashed: paths carry ids of any length, and a key's row must fit an
    // index entry whatever the path.
    let mut scope_hash = Sha256::new();
    scope_hash.update(scope.as_bytes());
    Ok(Some(IdempotencyKey {
        scope: hex(scope_hash),
        key: key.to_owned(),
        fingerprint: hex(fingerprint),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_with_times_parse_term_by_term() {
        let terms = parse_filter("eq(action,allocate):ge(created_at,2024-01-01T00:00:00Z)")
            .expect("parses");
        assert_eq!(terms.len(), 2);
        assert_eq!(terms[0].op, "eq");
        assert_eq!(terms[1].value, "2024-01-01T00:00:00Z");
        for bad in [
            "eq(action)",
            "eq",
            "eq(a,b)x",
            "eq(a,b):",
            "(a,b)",
            "e q(a,b)",
            "eq(a,b",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(parse_filter("").map(|t| t.len()), Ok(0));
    }

    #[test]
    fn pages_are_bounded() {
        let q = |s: &str| page(&query_pairs(Some(s)));
        assert_eq!(
            q(""),
            Ok(Page {
                limit: 25,
                offset: 0
            })
        );
        assert_eq!(
            q("page[limit]=100&page[offset]=10000"),
            Ok(Page {
                limit: 100,
                offset: 10000
            })
        );
        assert_eq!(
            q("page%5Blimit%5D=7"),
            Ok(Page {
                limit: 7,
                offset: 0
            })
        );
        assert!(q("page[limit]=0").is_err());
        assert!(q("page[limit]=101").is_err());
        assert!(q("page[offset]=10001").is_err());
        assert!(q("page[limit]=abc").is_err());
        assert!(q("page[limit]=-1").is_err());
    }

    // ---- property tests: no input makes the parsers panic ---------------------------------

    use proptest::prelude::*;

    /// Only `Invalid` (a 400 naming the field) may come out of query and filter parsing.
    fn invalid_or_ok<T: std::fmt::Debug>(result: &Result<T, ApiError>) -> bool {
        matches!(result, Ok(_) | Err(ApiError::Invalid { .. }))
    }

    /// Strings likely to reach the interesting branches: filter and query syntax, times,
    /// numbers, percent-escapes and non-ASCII.
    fn query_like() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z()\\[\\],:=&%0-9A-Fa-f+ _.TZ-]{0,40}",
            "(eq|ge|gt|lt|le|EQ|x)?\\(?(action|created_at|status)?,?[a-z0-9:T.Z+-]{0,30}\\)?(:[a-z(),:]{0,10})?",
            "page(\\[|%5B)(limit|offset)(\\]|%5D)=-?[0-9 ]{0,25}(&page\\[offset\\]=[0-9a-z]{0,8})?",
            "[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}T[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        ]
    }

    /// Arbitrary JSON trees: scalars of every kind (including huge and fractional numbers),
    /// arrays and objects, nested a few levels.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-2_000_000_000i64..2_000_000_000).prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "(stock-transaction|cart_item|product|data|quantity|type)".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            "(data|quantity|type|id|reason|action|sku)".boxed(),
                            any::<String>().boxed()
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn filters_never_panic(raw in query_like()) {
            let parsed = parse_filter(&raw);
            prop_assert!(invalid_or_ok(&parsed), "{raw:?}: {parsed:?}");
            if let Ok(terms) = parsed {
                prop_assert!(terms.len() <= FILTER_TERMS_MAX);
                for t in terms {
                    prop_assert!(!t.op.is_empty() && t.op.bytes().all(|b| b.is_ascii_lowercase()));
                }
            }
        }

        #[test]
        fn query_strings_and_pages_never_panic(raw in query_like()) {
            let pairs = query_pairs(Some(&raw));
            let parsed = page(&pairs);
            prop_assert!(invalid_or_ok(&parsed), "{raw:?}: {parsed:?}");
            if let Ok(p) = parsed {
                prop_assert!((1..=PAGE_LIMIT_MAX).contains(&p.limit));
                prop_assert!(p.offset <= PAGE_OFFSET_MAX);
            }
        }

        #[test]
        fn query_strings_of_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            // A query string reaches us as text, but its percent-escapes may decode to any bytes.
            let escaped: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            let raw = String::from_utf8_lossy(&bytes).into_owned();
            for q in [escaped, raw] {
                let pairs = query_pairs(Some(&q));
                prop_assert!(invalid_or_ok(&page(&pairs)));
                for (_, v) in &pairs {
                    prop_assert!(invalid_or_ok(&parse_filter(v)));
                }
            }
            prop_assert!(query_pairs(None).is_empty());
        }

        #[test]
        fn times_never_panic(raw in query_like()) {
            let parsed = parse_time("filter", &raw);
            prop_assert!(invalid_or_ok(&parsed), "{raw:?}: {parsed:?}");
        }

        #[test]
        fn body_helpers_never_panic(body in json_value()) {
            let as_map = |v: &Value| v.as_object().cloned().unwrap_or_default();
            let data = data_object(&body);
            prop_assert!(invalid_or_ok(&data));
            prop_assert!(invalid_or_ok(&data_array(&body)));
            let obj = match &data {
                Ok(d) => (*d).clone(),
                Err(_) => as_map(&body),
            };
            for field in ["quantity", "type", "id", "reason", "action", "sku", "data"] {
                prop_assert!(invalid_or_ok(&quantity(&obj, field)));
                prop_assert!(invalid_or_ok(&required_string(&obj, field)));
                prop_assert!(invalid_or_ok(&optional_string(&obj, field, 8)));
            }
            prop_assert!(invalid_or_ok(&check_type(&obj, "stock-transaction")));
        }

        #[test]
        fn quantities_are_exactly_the_integers_from_one_to_a_billion(value in json_value()) {
            let obj: Map<String, Value> = [("quantity".to_owned(), value.clone())].into_iter().collect();
            let expected = value
                .as_i64()
                .filter(|n| (1..=1_000_000_000).contains(n))
                .filter(|_| value.is_i64() || value.is_u64());
            match quantity(&obj, "quantity") {
                Ok(q) => prop_assert_eq!(Some(q.get() as i64), expected, "{}", value),
                Err(e) => {
                    prop_assert!(expected.is_none(), "{} refused: {:?}", value, e);
                    let named = matches!(e, ApiError::Invalid { source: Some("quantity"), .. });
                    prop_assert!(named, "{:?}", e);
                }
            }
        }

        #[test]
        fn integer_quantities_near_the_bounds(n in prop_oneof![
            -5i64..5,
            999_999_995i64..1_000_000_005,
            any::<i64>(),
        ]) {
            let obj: Map<String, Value> = [("quantity".to_owned(), Value::from(n))].into_iter().collect();
            let accepted = quantity(&obj, "quantity").map(|q| q.get());
            if (1..=1_000_000_000).contains(&n) {
                prop_assert_eq!(accepted, Ok(n as u64));
            } else {
                prop_assert!(accepted.is_err());
            }
        }
    }

    #[test]
    fn quantities_that_look_like_numbers_but_are_not_integers_are_refused() {
        for raw in [
            "1.0",
            "1.5",
            "\"5\"",
            "1e3",
            "-0",
            "0",
            "1000000001",
            "true",
            "[1]",
        ] {
            let value: Value = serde_json::from_str(raw).expect("json");
            let obj: Map<String, Value> = [("quantity".to_owned(), value)].into_iter().collect();
            let accepted = quantity(&obj, "quantity");
            assert!(accepted.is_err(), "{raw} must be refused, got {accepted:?}");
        }
        let obj: Map<String, Value> = [("quantity".to_owned(), Value::from(1_000_000_000u64))]
            .into_iter()
            .collect();
        assert_eq!(
            quantity(&obj, "quantity").map(|q| q.get()),
            Ok(1_000_000_000)
        );
    }
}
