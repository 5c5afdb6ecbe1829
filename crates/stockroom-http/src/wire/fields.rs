//! Field types of requests: each parses into a domain type (or a checked wire value) while it
//! is deserialized, and states its JSON Schema from the same limits, so the OpenAPI document
//! says exactly what the field accepts.
//!
//! A request struct holds the domain type and names the parser and schema:
//!
//! ```ignore
//! #[serde(deserialize_with = "fields::de")]
//! #[schema(schema_with = fields::schema::<Quantity>)]
//! quantity: Quantity,
//! ```
//!
//! (`fields::opt` and `fields::opt_schema` for optional fields, where `null` means absent.)

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use stockroom_domain::limits::{
    CART_ID_LEN_MAX, LOCATION_SLUG_LEN_MAX, ORDER_PARTY_BYTES_MAX, PRICE_AMOUNT_MAX,
    PRODUCT_ID_LEN_MAX, QUANTITY_MAX, QUANTITY_MIN,
};
use stockroom_domain::{CartId, Currency, ProductId, Quantity, Slug, StockLevel};
use utoipa::openapi::schema::Schema;

/// A request field that parses into `Self` and documents what it accepts.
pub trait WireField: Sized {
    /// The field's JSON Schema.
    fn json_schema() -> Value;
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// `deserialize_with` for a required [`WireField`].
pub fn de<'de, D: Deserializer<'de>, T: WireField>(d: D) -> Result<T, D::Error> {
    T::parse(d)
}

/// `deserialize_with` for an optional [`WireField`]: absent (with `#[serde(default)]`) or
/// `null` is `None`.
pub fn opt<'de, D: Deserializer<'de>, T: WireField>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Parsed<T>>::deserialize(d).map(|o| o.map(|p| p.0))
}

/// A [`WireField`] as a `Deserialize` type, for collections of fields.
pub struct Parsed<T>(pub T);

impl<'de, T: WireField> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::parse(d).map(Parsed)
    }
}

impl<T: WireField> utoipa::PartialSchema for Parsed<T> {
    fn schema() -> utoipa::openapi::RefOr<Schema> {
        utoipa::openapi::RefOr::T(schema::<T>())
    }
}

impl<T: WireField> utoipa::ToSchema for Parsed<T> {}

/// `schema_with` for a required [`WireField`].
pub fn schema<T: WireField>() -> Schema {
    to_schema(T::json_schema())
}

/// `schema_with` for an optional [`WireField`]: the field's schema, or `null`.
pub fn opt_schema<T: WireField>() -> Schema {
    to_schema(nullable_json(T::json_schema()))
}

/// `schema_with` for an optional field of a structured type (`null` accepted).
pub fn opt_partial<T: utoipa::PartialSchema>() -> Schema {
    let inner = serde_json::to_value(T::schema()).unwrap_or_default();
    to_schema(nullable_json(inner))
}

pub fn nullable_json(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

/// A schema written as JSON (utoipa's `Schema` is the same JSON Schema, typed).
pub fn to_schema(value: Value) -> Schema {
    match serde_json::from_value(value.clone()) {
        Ok(schema) => schema,
        Err(e) => panic!("{value} is not a schema utoipa reads: {e}"),
    }
}

/// Text with no NUL character (PostgreSQL cannot store one, and no field needs it).
pub const NO_NUL: &str = "^[^\\u0000]*$";

// ---- numbers -------------------------------------------------------------------------------

/// A JSON integer (not `1.0`, not `"1"`) from `min` to `max`.
struct Whole {
    min: i64,
    max: i64,
}

impl Visitor<'_> for Whole {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a whole number from {} to {}", self.min, self.max)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
        if (self.min..=self.max).contains(&n) {
            Ok(n)
        } else {
            Err(E::invalid_value(Unexpected::Signed(n), &self))
        }
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
        match i64::try_from(n) {
            Ok(n) => self.visit_i64(n),
            Err(_) => Err(E::invalid_value(Unexpected::Unsigned(n), &self)),
        }
    }
}

fn whole<'de, D: Deserializer<'de>>(d: D, min: i64, max: i64) -> Result<i64, D::Error> {
    d.deserialize_i64(Whole { min, max })
}

fn whole_schema(min: i64, max: i64) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max})
}

impl WireField for Quantity {
    fn json_schema() -> Value {
        whole_schema(QUANTITY_MIN as i64, QUANTITY_MAX as i64)
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = whole(d, QUANTITY_MIN as i64, QUANTITY_MAX as i64)?;
        Quantity::new(n).map_err(de::Error::custom)
    }
}

impl WireField for StockLevel {
    fn json_schema() -> Value {
        whole_schema(0, QUANTITY_MAX as i64)
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = whole(d, 0, QUANTITY_MAX as i64)?;
        StockLevel::new(n).map_err(de::Error::custom)
    }
}

/// A unit price in minor units (cents): 0 to [`PRICE_AMOUNT_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitAmount(pub i64);

impl WireField for UnitAmount {
    fn json_schema() -> Value {
        let mut s = whole_schema(0, PRICE_AMOUNT_MAX);
        s["description"] = json!("Minor units (cents).");
        s
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        whole(d, 0, PRICE_AMOUNT_MAX).map(UnitAmount)
    }
}

/// Degrees of latitude (`MAX` 90) or longitude (`MAX` 180): a JSON number from `-MAX` to `MAX`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Degrees<const MAX: i64>(pub f64);

impl<const MAX: i64> Visitor<'_> for Degrees<MAX> {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a number from -{MAX} to {MAX}")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        if (-(MAX as f64)..=MAX as f64).contains(&v) {
            Ok(v)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }
}

impl<const MAX: i64> WireField for Degrees<MAX> {
    fn json_schema() -> Value {
        json!({"type": "number", "minimum": -MAX, "maximum": MAX})
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_f64(Degrees::<MAX>(0.0)).map(Degrees)
    }
}

// ---- strings -------------------------------------------------------------------------------

/// A JSON string, handed to `parse`; `expecting` says what it must be.
struct Str<F> {
    expecting: &'static str,
    parse: F,
}

impl<T, E: fmt::Display, F: FnOnce(&str) -> Result<T, E>> Visitor<'_> for Str<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<Er: de::Error>(self, s: &str) -> Result<T, Er> {
        (self.parse)(s).map_err(|e| Er::custom(format_args!("{} {e}", self.expecting)))
    }
}

fn string<'de, D, T, E>(
    d: D,
    expecting: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    d.deserialize_str(Str { expecting, parse })
}

/// A client-chosen id: 1 to `max` of `[A-Za-z0-9._:-]`.
pub fn id_schema(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": "^[A-Za-z0-9._:-]+$"})
}

impl WireField for ProductId {
    fn json_schema() -> Value {
        let mut s = id_schema(PRODUCT_ID_LEN_MAX);
        s["description"] = json!("A product id (not `multiple` or `locations`, which are paths).");
        s
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d, "a product id", ProductId::parse)
    }
}

impl WireField for CartId {
    fn json_schema() -> Value {
        id_schema(CART_ID_LEN_MAX)
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d, "a cart id", CartId::parse)
    }
}

impl WireField for Slug {
    fn json_schema() -> Value {
        id_schema(LOCATION_SLUG_LEN_MAX)
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d, "a location slug", Slug::parse)
    }
}

impl WireField for Currency {
    fn json_schema() -> Value {
        json!({"type": "string", "pattern": "^[A-Z]{3}$", "description": "An ISO 4217 code such as USD."})
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d, "a currency", |s| {
            Currency::parse(s).map_err(|_| "must be an ISO 4217 code such as USD")
        })
    }
}

/// Text of `MIN` to `MAX` characters, with no NUL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chars<const MIN: usize, const MAX: usize>(pub String);

impl<const MIN: usize, const MAX: usize> WireField for Chars<MIN, MAX> {
    fn json_schema() -> Value {
        json!({"type": "string", "minLength": MIN, "maxLength": MAX, "pattern": NO_NUL})
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d, "text", |s| {
            if s.contains('\0') {
                Err("may not contain NUL characters".to_owned())
            } else if !(MIN..=MAX).contains(&s.chars().count()) {
                Err(format!("must be {MIN} to {MAX} characters"))
            } else {
                Ok(Chars(s.to_owned()))
            }
        })
    }
}

/// Text of at most `MAX` bytes of UTF-8, with no NUL; with `NON_BLANK`, not empty or only
/// spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text<const MAX: usize, const NON_BLANK: bool>(pub String);

/// A name or SKU: something other than spaces, at most `MAX` bytes.
pub type NonBlank<const MAX: usize> = Text<MAX, true>;
/// Free text of at most `MAX` bytes (possibly empty).
pub type Bytes<const MAX: usize> = Text<MAX, false>;

impl<const MAX: usize, const NON_BLANK: bool> WireField for Text<MAX, NON_BLANK> {
    fn json_schema() -> Value {
        if NON_BLANK {
            json!({"type": "string", "minLength": 1, "maxLength": MAX,
                   "pattern": "^[^\\u0000]*\\S[^\\u0000]*$",
                   "description": format!("Not blank; at most {MAX} bytes of UTF-8.")})
        } else {
            json!({"type": "string", "maxLength": MAX, "pattern": NO_NUL,
                   "description": format!("At most {MAX} bytes of UTF-8.")})
        }
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d, "text", |s| {
            if s.contains('\0') {
                Err("may not contain NUL characters".to_owned())
            } else if s.len() > MAX || (NON_BLANK && s.trim().is_empty()) {
                let blank = if NON_BLANK { "non-blank and " } else { "" };
                Err(format!("must be {blank}at most {MAX} bytes"))
            } else {
                Ok(Text(s.to_owned()))
            }
        })
    }
}

/// A string constant, such as a resource's `type`.
pub fn constant(value: &str) -> Value {
    json!({"type": "string", "enum": [value]})
}

// ---- free-form objects ---------------------------------------------------------------------

/// A customer or an address: Elastic Path leaves these objects open (a shop adds fields of its
/// own), so they are kept as sent — as compact JSON text of at most [`ORDER_PARTY_BYTES_MAX`]
/// bytes — rather than typed. A key given twice is refused here as everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party(pub String);

impl WireField for Party {
    fn json_schema() -> Value {
        json!({"type": "object", "description":
            format!("Kept as sent; at most {ORDER_PARTY_BYTES_MAX} bytes of JSON.")})
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(StrictJson)? {
            v @ Value::Object(_) => bounded(v).map(Party),
            _ => Err(de::Error::custom("must be an object")),
        }
    }
}

/// The customer at checkout: an object, or (as the SDK sends `Checkout("customer-id", …)`) a
/// bare customer id, kept as `{"id": …}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer(pub String);

impl WireField for Customer {
    fn json_schema() -> Value {
        json!({"oneOf": [Party::json_schema(),
                         {"type": "string", "pattern": NO_NUL, "description": "A customer id."}]})
    }
    fn parse<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(StrictJson)? {
            v @ Value::Object(_) => bounded(v).map(Customer),
            Value::String(id) if !id.contains('\0') => bounded(json!({ "id": id })).map(Customer),
            _ => Err(de::Error::custom("must be an object or a customer id")),
        }
    }
}

fn bounded<E: de::Error>(v: Value) -> Result<String, E> {
    let text = v.to_string();
    if text.len() > ORDER_PARTY_BYTES_MAX {
        return Err(E::custom(format_args!(
            "may be at most {ORDER_PARTY_BYTES_MAX} bytes of JSON"
        )));
    }
    Ok(text)
}

/// Any JSON value, refusing an object that repeats a key (serde_json's `Value` keeps the last).
struct StrictJson;

impl<'de> DeserializeSeed<'de> for StrictJson {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictJson {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictJson)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictJson)?;
            if out.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} is given more than once"
                )));
            }
        }
        Ok(Value::Object(out))
    }
}

// ---- maps keyed by location slug -------------------------------------------------------------

/// An object keyed by location slug (`{"wh-a": …, "wh-b": …}`), in the order sent, at most
/// `MAX` entries, no slug twice.
#[derive(Clone, Debug, PartialEq)]
pub struct SlugMap<V, const MAX: usize>(pub Vec<(Slug, V)>);

struct SlugMapVisitor<V, const MAX: usize>(PhantomData<V>);

impl<'de, V: Deserialize<'de>, const MAX: usize> Visitor<'de> for SlugMapVisitor<V, MAX> {
    type Value = SlugMap<V, MAX>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object of at most {MAX} location slugs")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        while let Some(Parsed(slug)) = map.next_key::<Parsed<Slug>>()? {
            if !seen.insert(slug.clone()) {
                return Err(de::Error::custom(format_args!(
                    "the location {slug} is given more than once"
                )));
            }
            if entries.len() == MAX {
                return Err(de::Error::custom(format_args!(
                    "at most {MAX} locations at once"
                )));
            }
            entries.push((slug, map.next_value_seed(Strict::<V>::new())?));
        }
        Ok(SlugMap(entries))
    }
}

impl<'de, V: Deserialize<'de>, const MAX: usize> Deserialize<'de> for SlugMap<V, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SlugMapVisitor(PhantomData))
    }
}

impl<V: utoipa::PartialSchema, const MAX: usize> utoipa::PartialSchema for SlugMap<V, MAX> {
    fn schema() -> utoipa::openapi::RefOr<Schema> {
        let value = serde_json::to_value(V::schema()).unwrap_or_default();
        utoipa::openapi::RefOr::T(to_schema(json!({
            "type": "object",
            "maxProperties": MAX,
            "propertyNames": id_schema(LOCATION_SLUG_LEN_MAX),
            "additionalProperties": value,
        })))
    }
}

impl<V: utoipa::ToSchema, const MAX: usize> utoipa::ToSchema for SlugMap<V, MAX> {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<Schema>)>) {
        V::schemas(schemas);
    }
}

// ---- bounded arrays ----------------------------------------------------------------------------

/// A JSON array of `MIN` to `MAX` items, refused as soon as it runs past `MAX`.
#[derive(Clone, Debug, PartialEq)]
pub struct Many<T, const MIN: usize, const MAX: usize>(pub Vec<T>);

struct ManyVisitor<T, const MIN: usize, const MAX: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const MIN: usize, const MAX: usize> Visitor<'de>
    for ManyVisitor<T, MIN, MAX>
{
    type Value = Many<T, MIN, MAX>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of {MIN} to {MAX} items")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict::<T>::new())? {
            if items.len() == MAX {
                return Err(de::Error::invalid_length(MAX + 1, &self));
            }
            items.push(item);
        }
        if items.len() < MIN {
            return Err(de::Error::invalid_length(items.len(), &self));
        }
        Ok(Many(items))
    }
}

impl<'de, T: Deserialize<'de>, const MIN: usize, const MAX: usize> Deserialize<'de>
    for Many<T, MIN, MAX>
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ManyVisitor(PhantomData))
    }
}

impl<T: utoipa::PartialSchema, const MIN: usize, const MAX: usize> utoipa::PartialSchema
    for Many<T, MIN, MAX>
{
    fn schema() -> utoipa::openapi::RefOr<Schema> {
        let items = serde_json::to_value(T::schema()).unwrap_or_default();
        utoipa::openapi::RefOr::T(to_schema(json!({
            "type": "array", "minItems": MIN, "maxItems": MAX, "items": items,
        })))
    }
}

impl<T: utoipa::ToSchema, const MIN: usize, const MAX: usize> utoipa::ToSchema
    for Many<T, MIN, MAX>
{
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<Schema>)>) {
        T::schemas(schemas);
    }
}

// ---- one item or several -------------------------------------------------------------------------

/// An object, or an array of 1 to `MAX` such objects (add-to-cart takes both).
#[derive(Clone, Debug, PartialEq)]
pub struct OneOrMany<T, const MAX: usize>(pub Vec<T>);

struct OneOrManyVisitor<T, const MAX: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for OneOrManyVisitor<T, MAX> {
    type Value = OneOrMany<T, MAX>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object, or an array of 1 to {MAX} objects")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(Access(map)).map(|t| OneOrMany(vec![t]))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ManyVisitor::<T, 1, MAX>(PhantomData)
            .visit_seq(seq)
            .map(|m| OneOrMany(m.0))
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for OneOrMany<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

impl<T: utoipa::PartialSchema, const MAX: usize> utoipa::PartialSchema for OneOrMany<T, MAX> {
    fn schema() -> utoipa::openapi::RefOr<Schema> {
        let one = serde_json::to_value(T::schema()).unwrap_or_default();
        let many = serde_json::to_value(Many::<T, 1, MAX>::schema()).unwrap_or_default();
        utoipa::openapi::RefOr::T(to_schema(json!({"oneOf": [one, many]})))
    }
}

impl<T: utoipa::ToSchema, const MAX: usize> utoipa::ToSchema for OneOrMany<T, MAX> {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<Schema>)>) {
        T::schemas(schemas);
    }
}

/// `deserialize_with` for a field that may be left out (`None`), sent as `null`
/// (`Some(None)`: clear it) or sent with a value.
pub fn patch<'de, D: Deserializer<'de>, T: WireField>(d: D) -> Result<Option<Option<T>>, D::Error> {
    opt(d).map(Some)
}

/// A derived object schema and a constraint it must also meet: what serde checks after the
/// fields (one of two fields, say) and a derive cannot state.
pub fn with_constraints(
    schema: utoipa::openapi::RefOr<Schema>,
    extra: Value,
) -> utoipa::openapi::RefOr<Schema> {
    let value = serde_json::to_value(schema).unwrap_or_default();
    utoipa::openapi::RefOr::T(to_schema(json!({"allOf": [value, extra]})))
}

/// `deserialize_with` for a structured field that may be left out (`None`), sent as `null`
/// (`Some(None)`) or sent with a value.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// ---- objects only where objects belong -----------------------------------------------------------

/// Reads a `T` the strict way: serde's derived structs also accept a JSON *array* of their
/// fields in order (`"attributes": [null, null]`); here a struct must be an object. Used for
/// `data` and every nested object of a request.
pub struct Strict<T>(PhantomData<T>);

impl<T> Strict<T> {
    pub fn new() -> Self {
        Strict(PhantomData)
    }
}

impl<T> Default for Strict<T> {
    fn default() -> Self {
        Strict::new()
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Strict<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! forward_scalar {
    ($($visit:ident($ty:ty) => $de:ident),* $(,)?) => {
        $(fn $visit<E: de::Error>(self, v: $ty) -> Result<T, E> {
            T::deserialize(de::value::$de::<E>::new(v))
        })*
    };
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Strict<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }
    forward_scalar!(
        visit_bool(bool) => BoolDeserializer,
        visit_i64(i64) => I64Deserializer,
        visit_u64(u64) => U64Deserializer,
        visit_f64(f64) => F64Deserializer,
        visit_borrowed_str(&'de str) => BorrowedStrDeserializer,
    );
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::deserialize(de::value::StrDeserializer::<E>::new(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        T::deserialize(de::value::UnitDeserializer::<E>::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        self.visit_unit()
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(Access(map))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::deserialize(SeqAccessOf(seq))
    }
}

/// A map or a sequence already opened, as a deserializer: it hands itself to the visitor as
/// what it is, refuses to be read as a struct when it is a sequence, and is `Some` when read
/// as an option.
struct Access<A>(A);

/// [`Access`] for a sequence.
struct SeqAccessOf<A>(A);

macro_rules! access_deserializer {
    ($wrapper:ident, $access:ident, $visit:ident, $struct_ok:expr) => {
        impl<'de, A: $access<'de>> Deserializer<'de> for $wrapper<A> {
            type Error = A::Error;
            fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
                visitor.$visit(self.0)
            }
            fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
                visitor.visit_some(self)
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _name: &'static str,
                _fields: &'static [&'static str],
                visitor: V,
            ) -> Result<V::Value, A::Error> {
                if $struct_ok {
                    visitor.$visit(self.0)
                } else {
                    Err(de::Error::invalid_type(Unexpected::Seq, &visitor))
                }
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
    };
}

access_deserializer!(Access, MapAccess, visit_map, true);
access_deserializer!(SeqAccessOf, SeqAccess, visit_seq, false);

/// `deserialize_with` for a nested object field: see [`Strict`].
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(Strict::<T>::new())
}

/// `deserialize_with` for an optional nested object (`null` or left out: `None`).
pub fn opt_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    d.deserialize_any(Strict::<Option<T>>::new())
}

/// `deserialize_with` for a nested object that may be left out, `null` or sent.
pub fn patch_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    opt_object(d).map(Some)
}
