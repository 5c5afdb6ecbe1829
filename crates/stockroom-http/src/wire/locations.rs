//! Inventory locations (Elastic Path's multi-location inventory).

use serde::{Deserialize, Serialize};
use stockroom_domain::limits::{
    LOCATION_ADDRESS_LINES_MAX, LOCATION_NAME_LEN_MAX, LOCATION_NAME_LEN_MIN, LOCATION_TEXT_LEN_MAX,
};
use stockroom_domain::{Slug, Timestamp};
use stockroom_store::Location;
use utoipa::ToSchema;

use super::fields::{self, Chars, Degrees, Many, Parsed};
use super::{tag, Timestamps, TimestampsMeta};

tag!(InventoryLocationTag, "inventory_location");

pub type Name = Chars<LOCATION_NAME_LEN_MIN, LOCATION_NAME_LEN_MAX>;
pub type Line = Chars<0, LOCATION_TEXT_LEN_MAX>;
/// At most 8 lines of at most 1024 characters.
pub type Address = Many<Parsed<Line>, 0, LOCATION_ADDRESS_LINES_MAX>;

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(expecting = "an object {\"lat\": -90…90, \"lon\": -180…180}")]
pub struct Geolocation {
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Degrees<90>>)]
    lat: Degrees<90>,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Degrees<180>>)]
    lon: Degrees<180>,
}

/// `POST /v2/inventories/locations`.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct NewLocationBody {
    #[serde(rename = "type", default)]
    pub kind: Option<InventoryLocationTag>,
    #[serde(deserialize_with = "fields::object")]
    pub attributes: NewLocation,
}

#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct NewLocation {
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Name>)]
    name: Name,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Slug>)]
    slug: Slug,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Line>)]
    external_ref: Option<Line>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Line>)]
    description: Option<Line>,
    #[serde(default)]
    #[schema(schema_with = fields::opt_partial::<Address>)]
    address: Option<Address>,
    #[serde(default, deserialize_with = "fields::opt_object")]
    geolocation: Option<Geolocation>,
}

impl NewLocation {
    pub fn into_location(self, id: String, now: Timestamp) -> Location {
        Location {
            id,
            slug: self.slug.into_string(),
            name: self.name.0,
            external_ref: self.external_ref.map(|t| t.0),
            description: self.description.map(|t| t.0),
            address: lines(self.address),
            geolocation: self.geolocation.map(|g| (g.lat.0, g.lon.0)),
            created_at: now,
            updated_at: now,
        }
    }
}

fn lines(address: Option<Address>) -> Vec<String> {
    address
        .map(|a| a.0.into_iter().map(|l| l.0 .0).collect())
        .unwrap_or_default()
}

/// `PUT /v2/inventories/locations/{id}`.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct LocationPatchBody {
    #[serde(rename = "type", default)]
    pub kind: Option<InventoryLocationTag>,
    #[serde(deserialize_with = "fields::object")]
    pub attributes: LocationPatch,
}

/// Changes to a location: a field left out is kept; `null` clears a field that may be empty.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct LocationPatch {
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Name>)]
    name: Option<Name>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Slug>)]
    slug: Option<Slug>,
    #[serde(default, deserialize_with = "fields::patch")]
    #[schema(schema_with = fields::opt_schema::<Line>)]
    external_ref: Option<Option<Line>>,
    #[serde(default, deserialize_with = "fields::patch")]
    #[schema(schema_with = fields::opt_schema::<Line>)]
    description: Option<Option<Line>>,
    #[serde(default, deserialize_with = "fields::nullable")]
    #[schema(schema_with = fields::opt_partial::<Address>)]
    address: Option<Option<Address>>,
    #[serde(default, deserialize_with = "fields::patch_object")]
    #[schema(schema_with = fields::opt_partial::<Geolocation>)]
    geolocation: Option<Option<Geolocation>>,
}

impl LocationPatch {
    pub fn apply(self, l: &mut Location, now: Timestamp) {
        if let Some(name) = self.name {
            l.name = name.0;
        }
        if let Some(slug) = self.slug {
            l.slug = slug.into_string();
        }
        if let Some(r) = self.external_ref {
            l.external_ref = r.map(|t| t.0);
        }
        if let Some(d) = self.description {
            l.description = d.map(|t| t.0);
        }
        if let Some(a) = self.address {
            l.address = lines(a);
        }
        if let Some(g) = self.geolocation {
            l.geolocation = g.map(|g| (g.lat.0, g.lon.0));
        }
        l.updated_at = now;
    }
}

// ---- answers -----------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct GeolocationOut {
    lat: f64,
    lon: f64,
}

#[derive(Serialize, ToSchema)]
pub struct LocationAttributes<'a> {
    #[schema(value_type = String)]
    name: &'a str,
    #[schema(value_type = String)]
    slug: &'a str,
    address: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    external_ref: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    geolocation: Option<GeolocationOut>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Location)]
pub struct LocationOut<'a> {
    #[schema(value_type = String)]
    id: &'a str,
    #[serde(rename = "type")]
    kind: InventoryLocationTag,
    attributes: LocationAttributes<'a>,
    meta: TimestampsMeta,
}

impl<'a> LocationOut<'a> {
    pub fn new(l: &'a Location) -> Self {
        LocationOut {
            id: &l.id,
            kind: InventoryLocationTag,
            attributes: LocationAttributes {
                name: &l.name,
                slug: &l.slug,
                address: &l.address,
                external_ref: l.external_ref.as_deref(),
                description: l.description.as_deref(),
                geolocation: l.geolocation.map(|(lat, lon)| GeolocationOut { lat, lon }),
            },
            meta: TimestampsMeta {
                timestamps: Timestamps {
                    created_at: l.created_at,
                    updated_at: l.updated_at,
                },
            },
        }
    }
}
