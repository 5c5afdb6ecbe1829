//! Elastic Path's JSON shapes, as types: every request body and query is a `Deserialize` type
//! of domain values (parsing is validation), every answer a `Serialize` type, and each is a
//! `ToSchema` from which the OpenAPI document is derived. Only this module knows the shapes;
//! handlers convert between these and the store's records in one call each.

pub mod auth;
pub mod carts;
pub mod customers;
pub mod fields;
pub mod integrations;
pub mod locations;
pub mod orders;
pub mod payments;
pub mod products;
pub mod stock;

use std::fmt;
use std::marker::PhantomData;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use stockroom_domain::limits::{PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PAGE_OFFSET_MAX};
use stockroom_domain::Timestamp;
use stockroom_store::Page;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use self::fields::to_schema;

// ---- the envelope ----------------------------------------------------------------------------

/// Elastic Path's envelope, `{"data": …}`, of a request or an answer. Other keys of a request
/// (the bulk cart call's `options`) are ignored.
#[derive(Debug, Serialize)]
pub struct Data<T> {
    pub data: T,
}

impl<T> Data<T> {
    pub fn new(data: T) -> Self {
        Data { data }
    }
}

impl<T: Serialize> Data<T> {
    /// The answer with a status other than 200.
    pub fn with_status(self, status: StatusCode) -> Response {
        (status, axum::Json(self)).into_response()
    }
}

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        axum::Json(self).into_response()
    }
}

struct DataVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for DataVisitor<T> {
    type Value = Data<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object {\"data\": …}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data<T>, A::Error> {
        let mut data = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "data" {
                map.next_value::<IgnoredAny>()?;
            } else if data.is_some() {
                return Err(de::Error::duplicate_field("data"));
            } else {
                data = Some(map.next_value_seed(fields::Strict::<T>::new())?);
            }
        }
        data.map(Data::new)
            .ok_or_else(|| de::Error::missing_field("data"))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Data<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DataVisitor(PhantomData))
    }
}

// Operations show their bodies' and answers' top-level types inline; the types those refer to
// are components (utoipa's derive collects them through `ToSchema::schemas`).
impl<T: PartialSchema> PartialSchema for Data<T> {
    fn schema() -> RefOr<Schema> {
        object([("data", T::schema())], &["data"])
    }
}

impl<T: ToSchema> ToSchema for Data<T> {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        T::schemas(schemas);
    }
}

/// Adds `T` as a component, and what it refers to.
pub(crate) fn component<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

/// An object schema of these properties, of which `required` must be present.
pub fn object<const N: usize>(
    properties: [(&str, RefOr<Schema>); N],
    required: &[&str],
) -> RefOr<Schema> {
    let mut builder = utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Object);
    for (name, schema) in properties {
        builder = builder.property(name, schema);
    }
    for name in required {
        builder = builder.required(*name);
    }
    RefOr::T(Schema::Object(builder.build()))
}

/// A reference to the component of `T`.
pub(crate) fn reference<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(T::name()))
}

// ---- lists -----------------------------------------------------------------------------------

/// A page of a list with Elastic Path's `links` and `meta`.
#[derive(Serialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub links: ListLinks,
    pub meta: ListMeta,
}

#[derive(Serialize, ToSchema)]
pub struct ListLinks {
    current: String,
    first: String,
    last: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ListMeta {
    page: PageMeta,
    results: ResultsMeta,
}

#[derive(Serialize, ToSchema)]
struct PageMeta {
    limit: u64,
    offset: u64,
    current: u64,
    total: u64,
}

#[derive(Serialize, ToSchema)]
struct ResultsMeta {
    total: u64,
}

impl<T> List<T> {
    /// A page of `total` items. `path` is the list's path and `extra` any query (a filter) to
    /// keep in the links.
    pub fn new(data: Vec<T>, total: u64, page: Page, path: &str, extra: &str) -> Self {
        let link = |offset: u64| {
            format!(
                "{path}?page[offset]={offset}&page[limit]={}{extra}",
                page.limit
            )
        };
        let pages = total.div_ceil(page.limit).max(1);
        List {
            data,
            links: ListLinks {
                current: link(page.offset),
                first: link(0),
                last: link((pages - 1) * page.limit),
                next: (page.offset + page.limit < total).then(|| link(page.offset + page.limit)),
                prev: (page.offset > 0).then(|| link(page.offset.saturating_sub(page.limit))),
            },
            meta: ListMeta {
                page: PageMeta {
                    limit: page.limit,
                    offset: page.offset,
                    current: page.offset / page.limit + 1,
                    total: pages,
                },
                results: ResultsMeta { total },
            },
        }
    }
}

impl<T: Serialize> IntoResponse for List<T> {
    fn into_response(self) -> Response {
        axum::Json(self).into_response()
    }
}

impl<T: ToSchema> PartialSchema for List<T> {
    fn schema() -> RefOr<Schema> {
        let items = utoipa::openapi::schema::ArrayBuilder::new().items(T::schema());
        object(
            [
                ("data", RefOr::T(Schema::Array(items.build()))),
                ("links", reference::<ListLinks>()),
                ("meta", reference::<ListMeta>()),
            ],
            &["data", "links", "meta"],
        )
    }
}

impl<T: ToSchema> ToSchema for List<T> {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        T::schemas(schemas);
        component::<ListLinks>(schemas);
        component::<ListMeta>(schemas);
    }
}

// ---- queries ---------------------------------------------------------------------------------

/// `page[limit]` (1–100, default 25) and `page[offset]` (0–10,000).
#[derive(Deserialize, Debug, Default, PartialEq, Eq, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (default 25).
    #[serde(rename = "page[limit]", default, deserialize_with = "fields::opt")]
    #[param(rename = "page[limit]", schema_with = page_limit_schema)]
    limit: Option<Bounded<1, PAGE_LIMIT_MAX>>,
    /// Items to skip.
    #[serde(rename = "page[offset]", default, deserialize_with = "fields::opt")]
    #[param(rename = "page[offset]", schema_with = page_offset_schema)]
    offset: Option<Bounded<0, PAGE_OFFSET_MAX>>,
}

fn page_limit_schema() -> Schema {
    fields::schema::<Bounded<1, PAGE_LIMIT_MAX>>()
}

fn page_offset_schema() -> Schema {
    fields::schema::<Bounded<0, PAGE_OFFSET_MAX>>()
}

impl PageQuery {
    pub fn page(&self) -> Page {
        Page {
            limit: self.limit.map_or(PAGE_LIMIT_DEFAULT, |l| l.0),
            offset: self.offset.map_or(0, |o| o.0),
        }
    }
}

/// A whole number from `MIN` to `MAX` given as query text (`page[limit]=10`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> fields::WireField for Bounded<MIN, MAX> {
    fn json_schema() -> serde_json::Value {
        serde_json::json!({"type": "integer", "minimum": MIN, "maximum": MAX})
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MIN: u64, const MAX: u64>;
        impl<const MIN: u64, const MAX: u64> Visitor<'_> for V<MIN, MAX> {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a whole number from {MIN} to {MAX}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
                s.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (MIN..=MAX).contains(n))
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_str(V::<MIN, MAX>).map(Bounded)
    }
}

/// A `filter` query parameter: terms `op(field,value)` joined by `:`, each parsed by `F`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter<F> {
    pub terms: Vec<F>,
    /// As sent, to keep in a list's links.
    pub raw: String,
}

impl<F> Default for Filter<F> {
    fn default() -> Self {
        Filter {
            terms: Vec::new(),
            raw: String::new(),
        }
    }
}

impl<F> Filter<F> {
    /// `&filter=…` for a list's links, or nothing.
    pub fn link_suffix(&self) -> String {
        if self.raw.is_empty() {
            String::new()
        } else {
            format!("&filter={}", self.raw)
        }
    }
}

/// One term of a filter, parsed from `op(field,value)`.
pub trait FilterTerm: Sized {
    /// What the route's filter supports, for the error and the document.
    const SUPPORTS: &'static str;
    fn parse(op: &str, field: &str, value: &str) -> Result<Self, String>;
}

/// Most terms in one `filter`.
pub const FILTER_TERMS_MAX: usize = 8;

/// Splits `eq(action,allocate):ge(created_at,2024-01-01T00:00:00Z)` into `(op, field, value)`.
/// Terms are joined by `:`, which values (times) may also contain, so the parser walks
/// parentheses rather than splitting.
pub fn filter_terms(raw: &str) -> Result<Vec<(String, String, String)>, String> {
    let bad = || "filter must be terms like eq(field,value) joined by ':'".to_owned();
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
        terms.push((
            op.to_ascii_lowercase(),
            field.trim().to_owned(),
            value.trim().to_owned(),
        ));
        if terms.len() > FILTER_TERMS_MAX {
            return Err(format!("filter may have at most {FILTER_TERMS_MAX} terms"));
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

impl<'de, F: FilterTerm> Deserialize<'de> for Filter<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let terms = filter_terms(&raw)
            .map_err(de::Error::custom)?
            .into_iter()
            .map(|(op, field, value)| {
                F::parse(&op, &field, &value)
                    .map_err(|e| de::Error::custom(format_args!("{e}; {}", F::SUPPORTS)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter { terms, raw })
    }
}

/// A list's query: `page[limit]`, `page[offset]` and a `filter` of `F` terms.
#[derive(Deserialize, Default)]
#[serde(bound = "F: FilterTerm")]
pub struct ListQuery<F> {
    #[serde(flatten)]
    pub page: PageQuery,
    #[serde(default)]
    pub filter: Filter<F>,
}

impl<F: FilterTerm> utoipa::IntoParams for ListQuery<F> {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let mut params = PageQuery::into_params(&parameter_in);
        params.push(
            utoipa::openapi::path::ParameterBuilder::new()
                .name("filter")
                .parameter_in(utoipa::openapi::path::ParameterIn::Query)
                .required(utoipa::openapi::Required::False)
                .schema(Some(filter_schema::<F>()))
                .build(),
        );
        params
    }
}

pub fn filter_schema<F: FilterTerm>() -> Schema {
    to_schema(serde_json::json!({
        "type": "string",
        "pattern": fields::NO_NUL,
        "description": format!("Filter terms: {}.", F::SUPPORTS),
    }))
}

// ---- common parts of answers -----------------------------------------------------------------

/// Declares a constant string (a resource's `type`) as a type: it serializes to its text, its
/// schema is that one value, and as a request field (`Option<Tag>`) it accepts that text or
/// `null`, anything else being a 400 that names the field.
macro_rules! tag {
    ($name:ident, $text:literal) => {
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($text)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("\"", $text, "\""))
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        if s == $text {
                            Ok($name)
                        } else {
                            Err(E::invalid_value(serde::de::Unexpected::Str(s), &self))
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::RefOr::T($crate::wire::fields::to_schema(
                    $crate::wire::fields::constant($text),
                ))
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }
    };
}
pub(crate) use tag;

/// RFC 3339, UTC, e.g. `2026-11-27T09:17:43.123456Z`.
pub fn rfc3339(t: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.micros()) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// `serialize_with` for a [`Timestamp`]: RFC 3339.
pub fn time<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

#[derive(Serialize, ToSchema, Clone, Copy)]
pub struct Timestamps {
    #[serde(serialize_with = "time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(serialize_with = "time")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// `{"timestamps": …}`, the `meta` of most resources.
#[derive(Serialize, ToSchema)]
pub struct TimestampsMeta {
    pub timestamps: Timestamps,
}

/// An amount as Elastic Path shows it: integer minor units and the currency.
#[derive(Serialize, ToSchema, Clone)]
#[schema(as = Money)]
pub struct MoneyOut {
    pub amount: i64,
    pub currency: String,
    pub includes_tax: bool,
}

impl From<&stockroom_domain::Price> for MoneyOut {
    fn from(p: &stockroom_domain::Price) -> Self {
        MoneyOut {
            amount: p.amount.amount_minor(),
            currency: p.amount.currency().to_string(),
            includes_tax: p.includes_tax,
        }
    }
}

/// An amount with no tax flag of its own (an order's total, a payment) shows `includes_tax:
/// false`.
impl From<&stockroom_domain::Money> for MoneyOut {
    fn from(m: &stockroom_domain::Money) -> Self {
        MoneyOut {
            amount: m.amount_minor(),
            currency: m.currency().to_string(),
            includes_tax: false,
        }
    }
}

/// A price with a `formatted` string (two decimals and the code).
#[derive(Serialize, ToSchema, Clone)]
pub struct DisplayPrice {
    pub amount: i64,
    pub currency: String,
    pub formatted: String,
}

impl DisplayPrice {
    pub fn of(m: &stockroom_domain::Money) -> Self {
        DisplayPrice::new(m.amount_minor(), m.currency().as_str())
    }

    pub fn new(amount: i64, currency: &str) -> Self {
        let sign = if amount < 0 { "-" } else { "" };
        let abs = amount.unsigned_abs();
        DisplayPrice {
            amount,
            currency: currency.to_owned(),
            formatted: format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100),
        }
    }
}

/// Totals with and without tax, and the tax (none), as carts and orders show them.
#[derive(Serialize, ToSchema)]
pub struct TotalPrices {
    pub with_tax: DisplayPrice,
    pub without_tax: DisplayPrice,
    pub tax: DisplayPrice,
}

impl TotalPrices {
    pub fn of(m: &stockroom_domain::Money) -> Self {
        TotalPrices::new(m.amount_minor(), m.currency().as_str())
    }

    pub fn new(amount: i64, currency: &str) -> Self {
        TotalPrices {
            with_tax: DisplayPrice::new(amount, currency),
            without_tax: DisplayPrice::new(amount, currency),
            tax: DisplayPrice::new(0, currency),
        }
    }
}

/// A line's unit price and value.
#[derive(Serialize, ToSchema)]
pub struct LinePrices {
    pub unit: DisplayPrice,
    pub value: DisplayPrice,
}

/// A line's prices with and without tax (the same: Stockroom keeps no tax).
#[derive(Serialize, ToSchema)]
pub struct LineDisplayPrice {
    pub with_tax: LinePrices,
    pub without_tax: LinePrices,
}

impl LineDisplayPrice {
    pub fn new(unit: i64, value: i64, currency: &str) -> Self {
        let prices = || LinePrices {
            unit: DisplayPrice::new(unit, currency),
            value: DisplayPrice::new(value, currency),
        };
        LineDisplayPrice {
            with_tax: prices(),
            without_tax: prices(),
        }
    }
}

/// `{"type": …, "id": …}`: a reference to another resource.
#[derive(Serialize, ToSchema)]
pub struct Relation<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
}

/// `amount × quantity`; `None` if it would not fit.
pub fn line_value(amount: i64, quantity: u64) -> Option<i64> {
    amount.checked_mul(i64::try_from(quantity).ok()?)
}

/// The health answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_with_times_parse_term_by_term() {
        let terms = filter_terms("eq(action,allocate):ge(created_at,2024-01-01T00:00:00Z)")
            .expect("parses");
        assert_eq!(terms.len(), 2);
        assert_eq!(terms[0].0, "eq");
        assert_eq!(terms[1].2, "2024-01-01T00:00:00Z");
        for bad in [
            "eq(action)",
            "eq",
            "eq(a,b)x",
            "eq(a,b):",
            "(a,b)",
            "e q(a,b)",
            "eq(a,b",
        ] {
            assert!(filter_terms(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(filter_terms("").map(|t| t.len()), Ok(0));
    }

    #[test]
    fn pages_are_bounded_raw_or_percent_encoded() {
        let q = |s: &str| {
            crate::extract::parse_query::<PageQuery>(s)
                .map(|p| p.page())
                .ok()
        };
        assert_eq!(
            q(""),
            Some(Page {
                limit: 25,
                offset: 0
            })
        );
        assert_eq!(
            q("page[limit]=100&page[offset]=10000"),
            Some(Page {
                limit: 100,
                offset: 10000
            })
        );
        assert_eq!(
            q("page%5Blimit%5D=7"),
            Some(Page {
                limit: 7,
                offset: 0
            })
        );
        for bad in [
            "page[limit]=0",
            "page[limit]=101",
            "page[offset]=10001",
            "page[limit]=abc",
            "page[limit]=-1",
            "page[limit]=1&page[limit]=2",
        ] {
            assert_eq!(q(bad), None, "{bad}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn query_strings_never_panic_and_pages_stay_bounded(raw in prop_oneof![
            any::<String>(),
            "page(\\[|%5B)(limit|offset)(\\]|%5D)=-?[0-9 ]{0,25}(&page\\[offset\\]=[0-9a-z]{0,8})?",
            "[a-z()\\[\\],:=&%0-9A-Fa-f+ _.TZ-]{0,40}",
        ]) {
            if let Ok(p) = crate::extract::parse_query::<PageQuery>(&raw) {
                let page = p.page();
                prop_assert!((1..=PAGE_LIMIT_MAX).contains(&page.limit));
                prop_assert!(page.offset <= PAGE_OFFSET_MAX);
            }
        }

        #[test]
        fn filters_never_panic(raw in "(eq|ge|gt|lt|le|EQ|x)?\\(?(action|created_at|status)?,?[a-z0-9:T.Z+-]{0,30}\\)?(:[a-z(),:]{0,10})?") {
            if let Ok(terms) = filter_terms(&raw) {
                prop_assert!(terms.len() <= FILTER_TERMS_MAX);
            }
        }
    }
}
