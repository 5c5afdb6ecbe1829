//! `GET /openapi.json`: an OpenAPI 3.1 document of the whole API, generated from the code.
//!
//! The operations come from the route table that [`crate::routes`] builds the router from
//! (method, path and [`Access`]); this module adds what the table does not say — a summary,
//! the request body, the query parameters, the success answer and the route's own error
//! statuses — from [`table`], keyed by (method, path). [`document`] fails on a route with no
//! entry (and on an entry with no route), so a new route cannot go undocumented: the unit test
//! below builds the real table.
//!
//! The statuses every route shares are derived rather than listed: 401 from `Shopper` and
//! `Admin` access, 403 from `Admin`, 503 (with `Retry-After`) everywhere, 413 wherever a body
//! is read, 400 wherever a body, a query or a path parameter is read, 404 wherever the path has
//! a parameter (an id that names nothing, or a path that reaches no route), 422 wherever an
//! `Idempotency-Key` is read. Every error status carries the one `errors` body of `error.rs`.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use stockroom_domain::limits::{
    CART_ADD_ITEMS_MAX, CART_ID_LEN_MAX, IDEMPOTENCY_KEY_LEN_MAX, LOCATIONS_PER_REQUEST_MAX,
    LOCATION_ADDRESS_LINES_MAX, LOCATION_NAME_LEN_MAX, LOCATION_NAME_LEN_MIN,
    LOCATION_SLUG_LEN_MAX, LOCATION_TEXT_LEN_MAX, MULTIPLE_IDS_MAX, ORDER_PARTY_BYTES_MAX,
    PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PAGE_OFFSET_MAX, PRICE_AMOUNT_MAX, PRODUCT_ID_LEN_MAX,
    PRODUCT_NAME_LEN_MAX, PRODUCT_SKU_LEN_MAX, QUANTITY_MAX, QUANTITY_MIN, REASON_LEN_MAX,
};

use crate::auth::Access;
use crate::error::{ApiError, RETRY_AFTER_SECS};
use crate::{AppState, RouteInfo};

/// The name of the `errors` body in `components.schemas`.
pub const ERRORS_SCHEMA: &str = "Errors";
const ERRORS_REF: &str = "#/components/schemas/Errors";
/// The name of the bearer token scheme in `components.securitySchemes`.
const BEARER: &str = "bearerAuth";

/// `GET /openapi.json`. The document is built once, from the same route table as the router.
pub async fn serve_document(State(state): State<AppState>) -> Response {
    static DOCUMENT: OnceLock<Result<Bytes, String>> = OnceLock::new();
    let built = DOCUMENT.get_or_init(|| {
        let (_, table) = crate::routes(state.clone());
        document(&table).map(|doc| Bytes::from(doc.to_string()))
    });
    match built {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes.clone()).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document could not be built");
            ApiError::Internal.into_response()
        }
    }
}

// ---- the per-route description table ---------------------------------------------------------

/// A query parameter a route reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Query {
    /// `page[limit]` and `page[offset]`.
    Page,
    /// `filter`, with what it supports on this route.
    Filter(&'static str),
    /// `include`, with what it supports on this route.
    Include(&'static str),
}

/// What a route reads as its body.
#[derive(Clone, Copy)]
enum Body {
    /// A JSON body of this schema; `required: false` when an empty body is accepted.
    Json {
        schema: fn() -> Value,
        required: bool,
    },
    /// The token endpoint: a form (or JSON) of these fields.
    Token,
}

/// What a route answers when it succeeds.
#[derive(Clone, Copy)]
enum Success {
    /// This status with a JSON body of this schema.
    Json(u16, fn() -> Value),
    /// 200 with Prometheus text.
    Text,
    /// 204, no content.
    NoContent,
}

/// What the route table does not say about a route.
#[derive(Clone, Copy)]
struct Op {
    summary: &'static str,
    body: Option<Body>,
    query: &'static [Query],
    /// Takes an `Idempotency-Key` header (and so may answer 422 `Idempotency key reused`).
    idempotent: bool,
    /// Reads `EP-Inventories-Multi-Location`, which switches the answer to the multi-location
    /// shapes.
    multi_location: bool,
    success: Success,
    /// A second success answer (the multi-location API's 201 for a transaction).
    also: Option<(u16, fn() -> Value)>,
    /// Error statuses of the route's own, beyond those derived from its access, body, query
    /// and path (see the module's documentation).
    errors: &'static [u16],
}

const NO_QUERY: &[Query] = &[];

fn op(summary: &'static str, success: Success) -> Op {
    Op {
        summary,
        body: None,
        query: NO_QUERY,
        idempotent: false,
        multi_location: false,
        success,
        also: None,
        errors: &[],
    }
}

impl Op {
    fn body(self, schema: fn() -> Value) -> Op {
        Op {
            body: Some(Body::Json {
                schema,
                required: true,
            }),
            ..self
        }
    }
    fn optional_body(self, schema: fn() -> Value) -> Op {
        Op {
            body: Some(Body::Json {
                schema,
                required: false,
            }),
            ..self
        }
    }
    fn token_body(self) -> Op {
        Op {
            body: Some(Body::Token),
            ..self
        }
    }
    fn query(self, query: &'static [Query]) -> Op {
        Op { query, ..self }
    }
    fn idempotent(self) -> Op {
        Op {
            idempotent: true,
            ..self
        }
    }
    fn multi_location(self) -> Op {
        Op {
            multi_location: true,
            ..self
        }
    }
    fn also(self, status: u16, schema: fn() -> Value) -> Op {
        Op {
            also: Some((status, schema)),
            ..self
        }
    }
    fn errors(self, errors: &'static [u16]) -> Op {
        Op { errors, ..self }
    }
}

const STOCK_FILTER: &str = "`eq(locations,<slug>)` (or `eq(location,<slug>)`): stock held there";
const HISTORY_FILTER: &str = "`eq(action,<action>)`, `eq(location,<slug>)` and \
     `gt|ge|lt|le(created_at,<RFC 3339 time>)`, terms joined by `:` (at most 8)";
const ORDER_FILTER: &str = "`eq(status|payment|shipping,<value>)`, terms joined by `:` (at most 8)";

/// Every route's description, keyed by (method, path) exactly as `routes()` declares them.
fn table() -> Vec<(Method, &'static str, Op)> {
    use Success::{Json, NoContent, Text};
    let m = |method: Method, path: &'static str, op: Op| (method, path, op);
    vec![
        m(
            Method::POST,
            "/oauth/access_token",
            op(
                "Get an access token (client credentials or implicit grant)",
                Json(200, token),
            )
            .token_body()
            .errors(&[401, 429]),
        ),
        m(
            Method::GET,
            "/health",
            op("Health check: the database answers", Json(200, health)),
        ),
        m(Method::GET, "/metrics", op("Prometheus metrics", Text)),
        m(
            Method::GET,
            "/openapi.json",
            op("This OpenAPI document", Json(200, openapi_document)),
        ),
        m(
            Method::GET,
            "/v2/inventories",
            op("List products' stock", Json(200, || list_of("AnyStock")))
                .query(&[Query::Page, Query::Filter(STOCK_FILTER)])
                .multi_location(),
        ),
        m(
            Method::POST,
            "/v2/inventories",
            op(
                "Create a product's stock at no location or at locations (multi-location API)",
                Json(201, || data(schema_ref("StockMultiLocation"))),
            )
            .body(stock_create_multi_request)
            .idempotent()
            .errors(&[404, 409]),
        ),
        m(
            Method::GET,
            "/v2/inventories/locations",
            op(
                "List inventory locations",
                Json(200, || list_of("Location")),
            )
            .query(&[Query::Page]),
        ),
        m(
            Method::POST,
            "/v2/inventories/locations",
            op(
                "Create an inventory location",
                Json(201, || data(schema_ref("Location"))),
            )
            .body(location_create_request)
            .idempotent()
            // 404: a repeated Idempotency-Key whose location was deleted since.
            .errors(&[404, 409]),
        ),
        m(
            Method::GET,
            "/v2/inventories/locations/{location}",
            op(
                "Read an inventory location",
                Json(200, || data(schema_ref("Location"))),
            ),
        ),
        m(
            Method::PUT,
            "/v2/inventories/locations/{location}",
            op(
                "Update an inventory location (its slug is kept while it holds stock)",
                Json(200, || data(schema_ref("Location"))),
            )
            .body(location_update_request)
            .errors(&[409]),
        ),
        m(
            Method::DELETE,
            "/v2/inventories/locations/{location}",
            op(
                "Delete an inventory location (refused while it holds stock)",
                NoContent,
            )
            .errors(&[409]),
        ),
        m(
            Method::POST,
            "/v2/inventories/multiple",
            op(
                "Read the stock of several products (ids with no stock are left out)",
                Json(200, || data(array(schema_ref("AnyStock")))),
            )
            .body(multiple_request)
            .multi_location(),
        ),
        m(
            Method::GET,
            "/v2/inventories/{product}",
            op(
                "Read a product's stock",
                Json(200, || data(schema_ref("AnyStock"))),
            )
            .multi_location(),
        ),
        m(
            Method::POST,
            "/v2/inventories/{product}",
            op(
                "Create a product's stock (at no location)",
                Json(201, || data(schema_ref("AnyStock"))),
            )
            .body(stock_create_request)
            .idempotent()
            .multi_location()
            .errors(&[409]),
        ),
        m(
            Method::PUT,
            "/v2/inventories/{product}",
            op(
                "Set a product's available stock per location; null removes a location \
                 (multi-location API)",
                Json(200, || data(schema_ref("StockMultiLocation"))),
            )
            .body(stock_update_multi_request)
            .errors(&[409, 422]),
        ),
        m(
            Method::DELETE,
            "/v2/inventories/{product}",
            op(
                "Delete a product's stock (refused while units are allocated)",
                NoContent,
            )
            .errors(&[409]),
        ),
        m(
            Method::GET,
            "/v2/inventories/{product}/transactions",
            op(
                "List a product's stock transactions, newest first",
                Json(200, || list_of("AnyStockTransaction")),
            )
            .query(&[Query::Page, Query::Filter(HISTORY_FILTER)])
            .multi_location(),
        ),
        m(
            Method::POST,
            "/v2/inventories/{product}/transactions",
            op(
                "Change a product's stock (200 on the classic API, 201 on the multi-location one)",
                Json(200, || data(schema_ref("AnyStockTransaction"))),
            )
            .also(201, || data(schema_ref("AnyStockTransaction")))
            .body(stock_transaction_request)
            .idempotent()
            .multi_location()
            .errors(&[422]),
        ),
        m(
            Method::GET,
            "/v2/inventories/{product}/transactions/{transaction}",
            op(
                "Read one stock transaction",
                Json(200, || data(schema_ref("AnyStockTransaction"))),
            )
            .multi_location(),
        ),
        m(
            Method::POST,
            "/v2/products",
            op(
                "Create a product",
                Json(201, || data(schema_ref("Product"))),
            )
            .body(product_create_request)
            .idempotent()
            // 404: a repeated Idempotency-Key whose product was deleted since.
            .errors(&[404, 409]),
        ),
        m(
            Method::GET,
            "/v2/products",
            op("List products", Json(200, || list_of("Product"))).query(&[Query::Page]),
        ),
        m(
            Method::GET,
            "/v2/products/{product}",
            op("Read a product", Json(200, || data(schema_ref("Product")))),
        ),
        m(
            Method::PUT,
            "/v2/products/{product}",
            op(
                "Update a product",
                Json(200, || data(schema_ref("Product"))),
            )
            .body(product_update_request)
            .errors(&[409]),
        ),
        m(
            Method::DELETE,
            "/v2/products/{product}",
            op("Delete a product (and its lines in carts)", NoContent),
        ),
        m(
            Method::GET,
            "/v2/carts/{cart}",
            op("Read a cart (a new cart reads as empty)", Json(200, cart)),
        ),
        m(
            Method::DELETE,
            "/v2/carts/{cart}",
            op("Delete a cart", NoContent),
        ),
        m(
            Method::GET,
            "/v2/carts/{cart}/items",
            op("Read a cart's items", Json(200, cart_items)),
        ),
        m(
            Method::POST,
            "/v2/carts/{cart}/items",
            op(
                "Add one item or several to a cart, all or nothing",
                Json(200, cart_items),
            )
            .body(cart_add_request)
            .idempotent(),
        ),
        m(
            Method::PUT,
            "/v2/carts/{cart}/items/{item}",
            op("Change the quantity of a cart item", Json(200, cart_items))
                .body(cart_update_request),
        ),
        m(
            Method::DELETE,
            "/v2/carts/{cart}/items/{item}",
            op("Remove an item from a cart", NoContent),
        ),
        m(
            Method::POST,
            "/v2/carts/{cart}/checkout",
            op(
                "Check a cart out into an order",
                Json(201, || data(schema_ref("Order"))),
            )
            .body(checkout_request)
            .idempotent(),
        ),
        m(
            Method::GET,
            "/v2/orders",
            op("List orders, newest first", Json(200, || list_of("Order")))
                .query(&[Query::Page, Query::Filter(ORDER_FILTER)]),
        ),
        m(
            Method::GET,
            "/v2/orders/{order}",
            op("Read an order", Json(200, order_answer)).query(&[Query::Include(
                "`items` adds the order's items under `included`",
            )]),
        ),
        m(
            Method::PUT,
            "/v2/orders/{order}",
            op(
                "Ship (`shipping: fulfilled`) or cancel (`status: cancelled`) an order",
                Json(200, || data(schema_ref("Order"))),
            )
            .body(order_update_request)
            .idempotent()
            .errors(&[409]),
        ),
        m(
            Method::GET,
            "/v2/orders/{order}/items",
            op(
                "Read an order's items",
                Json(200, || data(array(schema_ref("OrderItem")))),
            ),
        ),
        m(
            Method::POST,
            "/v2/orders/{order}/payments",
            op(
                "Pay for an order (purchase or authorize); allocates every line or none",
                Json(200, || data(schema_ref("PaymentTransaction"))),
            )
            .body(payment_request)
            .idempotent()
            .errors(&[409]),
        ),
        m(
            Method::GET,
            "/v2/orders/{order}/transactions",
            op(
                "List an order's payment transactions",
                Json(200, || data(array(schema_ref("PaymentTransaction")))),
            ),
        ),
        m(
            Method::GET,
            "/v2/orders/{order}/transactions/{transaction}",
            op(
                "Read one payment transaction",
                Json(200, || data(schema_ref("PaymentTransaction"))),
            ),
        ),
        m(
            Method::POST,
            "/v2/orders/{order}/transactions/{transaction}/capture",
            op(
                "Capture an authorized payment",
                Json(200, || data(schema_ref("PaymentTransaction"))),
            )
            .optional_body(any_json)
            .idempotent()
            .errors(&[409]),
        ),
    ]
}

// ---- building the document -------------------------------------------------------------------

/// The OpenAPI document of `routes`; an error names every route with no entry in [`table`]
/// and every entry with no route.
pub fn document(routes: &[RouteInfo]) -> Result<Value, String> {
    let described = table();
    let mut problems = Vec::new();
    for route in routes {
        if !described
            .iter()
            .any(|(m, p, _)| *m == route.method && *p == route.path)
        {
            problems.push(format!(
                "route {} {} has no entry in openapi::table()",
                route.method, route.path
            ));
        }
    }
    for (method, path, _) in &described {
        if !routes
            .iter()
            .any(|r| r.method == *method && r.path == *path)
        {
            problems.push(format!(
                "openapi::table() describes {method} {path}, which routes() does not declare"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let mut paths = Map::new();
    for route in routes {
        let Some((_, _, op)) = described
            .iter()
            .find(|(m, p, _)| *m == route.method && *p == route.path)
        else {
            continue;
        };
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        let method = route.method.as_str().to_ascii_lowercase();
        if item.get(&method).is_some() {
            return Err(format!(
                "route {} {} is declared twice",
                route.method, route.path
            ));
        }
        item[method] = operation(route, op)?;
    }
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Stockroom",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Elastic Path's v2 inventory API and order flow. Every error is \
                {\"errors\":[{\"status\",\"title\",\"detail\",\"source\"?}]}; every 503 carries \
                Retry-After. Generated from the server's route table.",
        },
        "security": [{ BEARER: [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from POST /oauth/access_token: client_credentials \
                        gives an administrator's token, implicit a shopper's.",
                }
            },
            "schemas": component_schemas(),
        },
    }))
}

fn operation(route: &RouteInfo, op: &Op) -> Result<Value, String> {
    let mut parameters = Vec::new();
    let path_params = path_parameters(route.path)?;
    for name in &path_params {
        parameters.push(json!({
            "name": name,
            "in": "path",
            "required": true,
            "description": path_parameter_description(name),
            "schema": path_parameter_schema(name),
        }));
    }
    for query in op.query {
        match query {
            Query::Page => {
                parameters.push(json!({
                    "name": "page[limit]",
                    "in": "query",
                    "required": false,
                    "description": format!("Items per page (default {PAGE_LIMIT_DEFAULT})."),
                    "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT_MAX},
                }));
                parameters.push(json!({
                    "name": "page[offset]",
                    "in": "query",
                    "required": false,
                    "description": "Items to skip.",
                    "schema": {"type": "integer", "minimum": 0, "maximum": PAGE_OFFSET_MAX},
                }));
            }
            Query::Filter(what) => parameters.push(json!({
                "name": "filter",
                "in": "query",
                "required": false,
                "description": format!("Filter terms: {what}."),
                "schema": {"type": "string"},
            })),
            Query::Include(what) => parameters.push(json!({
                "name": "include",
                "in": "query",
                "required": false,
                "description": format!("Related resources to include: {what}."),
                "schema": {"type": "string"},
            })),
        }
    }
    if op.idempotent {
        parameters.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Makes the request safe to retry: a repeat with the same key returns \
                the first answer and changes nothing; the same key with another request is 422.",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": IDEMPOTENCY_KEY_LEN_MAX,
                "pattern": "^[!-~]+$",
            },
        }));
    }

    if op.multi_location {
        parameters.push(json!({
            "name": "EP-Inventories-Multi-Location",
            "in": "header",
            "required": false,
            "description": "`true` (any case) answers in the multi-location API's shapes \
                (figures under `attributes`, per location); anything else, or no header, in the \
                classic ones.",
            "schema": {"type": "string"},
        }));
    }

    let mut responses = Map::new();
    if let Some((status, schema)) = op.also {
        responses.insert(
            status.to_string(),
            json!({
                "description": success_description(status),
                "content": {"application/json": {"schema": schema()}},
            }),
        );
    }
    match op.success {
        Success::Json(status, schema) => {
            responses.insert(
                status.to_string(),
                json!({
                    "description": success_description(status),
                    "content": {"application/json": {"schema": schema()}},
                }),
            );
        }
        Success::Text => {
            responses.insert(
                "200".into(),
                json!({
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }),
            );
        }
        Success::NoContent => {
            responses.insert("204".into(), json!({"description": "Done; no content."}));
        }
    }
    let mut errors: Vec<u16> = op.errors.to_vec();
    match route.access {
        Access::Public => {}
        Access::Shopper => errors.push(401),
        Access::Admin => errors.extend([401, 403]),
    }
    errors.push(503);
    if op.body.is_some() {
        errors.extend([408, 413]);
    }
    if op.body.is_some() || !op.query.is_empty() || !path_params.is_empty() {
        errors.push(400);
    }
    if !path_params.is_empty() {
        errors.push(404);
    }
    if op.idempotent {
        errors.push(422);
    }
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        let mut response = json!({
            "description": error_description(status, route.access),
            "content": {"application/json": {"schema": {"$ref": ERRORS_REF}}},
        });
        if status == 429 {
            response["headers"] = json!({
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "required": true,
                    "schema": {"type": "integer", "minimum": 1},
                }
            });
        }
        if status == 503 {
            response["headers"] = json!({
                "Retry-After": {
                    "description": format!("Seconds to wait before retrying (always {RETRY_AFTER_SECS})."),
                    "required": true,
                    "schema": {"type": "integer", "minimum": 0},
                }
            });
        }
        responses.insert(status.to_string(), response);
    }

    let mut operation = json!({
        "operationId": operation_id(&route.method, route.path),
        "summary": op.summary,
        "tags": [tag(route.path)],
        "responses": responses,
    });
    if route.access == Access::Public {
        operation["security"] = json!([]);
    } else {
        operation["description"] = json!(match route.access {
            Access::Admin => "Needs an administrator's token.",
            _ => "Needs a token: a shopper's or an administrator's.",
        });
    }
    if !parameters.is_empty() {
        operation["parameters"] = Value::Array(parameters);
    }
    match op.body {
        Some(Body::Json { schema, required }) => {
            operation["requestBody"] = json!({
                "required": required,
                "content": {"application/json": {"schema": schema()}},
            });
        }
        Some(Body::Token) => {
            operation["requestBody"] = json!({
                "required": true,
                "content": {
                    "application/x-www-form-urlencoded": {"schema": token_request()},
                    "application/json": {"schema": token_request()},
                },
            });
        }
        None => {}
    }
    Ok(operation)
}

/// The `{name}` segments of a path, in order.
fn path_parameters(path: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for segment in path.split('/') {
        if let Some(inner) = segment.strip_prefix('{') {
            let name = inner
                .strip_suffix('}')
                .filter(|n| !n.is_empty() && !n.contains(['{', '}', '*']))
                .ok_or_else(|| format!("path {path}: cannot read the parameter {segment}"))?;
            names.push(name.to_owned());
        } else if segment.contains(['{', '}']) {
            return Err(format!("path {path}: a parameter must be a whole segment"));
        }
    }
    Ok(names)
}

fn path_parameter_description(name: &str) -> &'static str {
    match name {
        "product" => {
            "A product id: 1 to 64 of A–Z, a–z, 0–9, '-', '_', '.', ':' (not `multiple` or \
             `locations`)."
        }
        "cart" => "A cart id chosen by the client: 1 to 64 of A–Z, a–z, 0–9, '-', '_', '.', ':'.",
        "item" => "A cart item's id.",
        "order" => "An order's id.",
        "transaction" => "A transaction's id.",
        "location" => "An inventory location's id.",
        _ => "An id.",
    }
}

fn path_parameter_schema(name: &str) -> Value {
    match name {
        "product" => id_string(PRODUCT_ID_LEN_MAX),
        "cart" => id_string(CART_ID_LEN_MAX),
        _ => json!({"type": "string", "minLength": 1}),
    }
}

fn operation_id(method: &Method, path: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(segment.chars().filter(|c| *c != '{' && *c != '}').map(|c| {
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '_'
            }
        }));
    }
    id
}

fn tag(path: &str) -> &str {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next()) {
        (Some("v2"), Some(resource)) => resource,
        (Some("oauth"), _) => "auth",
        _ => "service",
    }
}

fn success_description(status: u16) -> &'static str {
    match status {
        201 => "Created.",
        _ => "OK.",
    }
}

fn error_description(status: u16, access: Access) -> &'static str {
    match status {
        400 => {
            "The body, query or path is malformed or breaks a limit (`source` names the \
                field); or the order flow refused: `Insufficient stock`, `Payment failed`."
        }
        401 if access == Access::Public => "The client id or secret is not valid.",
        401 => "No token, or a bad or expired one.",
        403 => "The token is valid but not an administrator's.",
        404 => "The resource could not be found.",
        409 => "The resource's state does not allow this.",
        408 => "The body did not arrive within the body-read timeout.",
        413 => "The body is larger than the server accepts.",
        429 => "Too many failed sign-ins from this address or for this client id; retry after Retry-After seconds.",
        422 => {
            "The Idempotency-Key was used before with another request, or the stock \
                arithmetic refused the change."
        }
        503 => {
            "Busy, timed out or the database is unreachable; retry after Retry-After seconds \
                (with the same Idempotency-Key)."
        }
        _ => "An error.",
    }
}

// ---- schema helpers --------------------------------------------------------------------------

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// An object with these properties, of which `required` must be present.
fn object(properties: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let properties: Map<String, Value> = properties
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    json!({"type": "object", "properties": properties, "required": required})
}

fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn integer() -> Value {
    json!({"type": "integer"})
}

fn figure() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn boolean() -> Value {
    json!({"type": "boolean"})
}

fn constant(value: &str) -> Value {
    json!({"type": "string", "const": value})
}

fn one_of_strings(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

/// `schema`, or `null`.
fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

fn timestamp() -> Value {
    json!({"type": "string", "format": "date-time"})
}

/// A client-chosen id: 1 to `max` of `[A-Za-z0-9._:-]`.
fn id_string(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": "^[A-Za-z0-9._:-]+$"})
}

/// A required quantity: a JSON integer from 1 to 1,000,000,000.
fn quantity() -> Value {
    json!({"type": "integer", "minimum": QUANTITY_MIN, "maximum": QUANTITY_MAX})
}

/// Elastic Path's `{"data": …}` envelope.
fn data(inner: Value) -> Value {
    object(vec![("data", inner)], &["data"])
}

/// `type`, which may be left out (or null) but otherwise must be `expected`.
fn type_tag(expected: &str) -> Value {
    json!({"enum": [expected, null]})
}

fn any_json() -> Value {
    json!({"description": "Ignored; may be empty."})
}

// ---- request bodies --------------------------------------------------------------------------

fn token_request() -> Value {
    object(
        vec![
            (
                "grant_type",
                one_of_strings(&["client_credentials", "implicit"]),
            ),
            ("client_id", string()),
            (
                "client_secret",
                json!({"type": "string", "description": "Required for client_credentials."}),
            ),
        ],
        &["grant_type", "client_id"],
    )
}

fn multiple_request() -> Value {
    let mut ids = array(object(vec![("id", id_string(PRODUCT_ID_LEN_MAX))], &["id"]));
    ids["maxItems"] = json!(MULTIPLE_IDS_MAX);
    data(ids)
}

fn stock_create_request() -> Value {
    data(object(vec![("quantity", quantity())], &["quantity"]))
}

fn stock_transaction_request() -> Value {
    let fields = || {
        object(
            vec![
                ("type", type_tag("stock-transaction")),
                (
                    "action",
                    one_of_strings(&["increment", "decrement", "allocate", "deallocate", "set"]),
                ),
                ("quantity", quantity()),
                (
                    "reason",
                    json!({
                        "type": ["string", "null"],
                        "maxLength": REASON_LEN_MAX,
                        "description": format!("At most {REASON_LEN_MAX} bytes of UTF-8."),
                    }),
                ),
                (
                    "location",
                    json!({
                        "anyOf": [id_string(LOCATION_SLUG_LEN_MAX), {"type": "null"}],
                        "description": "The slug of the location whose stock changes; required \
                            when the product's stock is held at locations.",
                    }),
                ),
                (
                    "product_id",
                    json!({"type": ["string", "null"],
                           "description": "When sent, the product in the path."}),
                ),
            ],
            &["action", "quantity"],
        )
    };
    let mut classic = fields();
    classic["not"] = json!({"required": ["attributes"]});
    let wrapped = object(
        vec![
            ("type", type_tag("stock-transaction")),
            ("attributes", fields()),
        ],
        &["attributes"],
    );
    data(json!({
        "description": "The classic shape (fields in `data`) or the multi-location one (fields \
            in `data.attributes`).",
        "anyOf": [classic, wrapped],
    }))
}

/// `attributes` of a multi-location stock create (`create: true`) or update.
fn stock_attributes(create: bool) -> Value {
    let per_location = object(vec![("available", quantity())], &["available"]);
    let change = if create {
        per_location
    } else {
        nullable(per_location)
    };
    object(
        vec![
            (
                "available",
                json!({
                    "anyOf": [quantity(), {"type": "null"}],
                    "description": "Available units held at no location.",
                }),
            ),
            (
                "locations",
                json!({
                    "type": ["object", "null"],
                    "maxProperties": LOCATIONS_PER_REQUEST_MAX,
                    "propertyNames": id_string(LOCATION_SLUG_LEN_MAX),
                    "additionalProperties": change,
                    "description": if create {
                        "Location slug → its available units."
                    } else {
                        "Location slug → its new available units, or null to stop holding \
                         stock there (refused while units there are allocated)."
                    },
                }),
            ),
        ],
        &[],
    )
}

fn stock_create_multi_request() -> Value {
    data(object(
        vec![
            ("type", type_tag("stock")),
            (
                "id",
                json!({"allOf": [id_string(PRODUCT_ID_LEN_MAX)], "description": "The product's id."}),
            ),
            ("attributes", stock_attributes(true)),
        ],
        &["id", "attributes"],
    ))
}

fn stock_update_multi_request() -> Value {
    data(object(
        vec![
            ("type", type_tag("stock")),
            (
                "id",
                json!({"description": "When a string, the product in the path."}),
            ),
            ("attributes", stock_attributes(false)),
        ],
        &["attributes"],
    ))
}

/// A location's attributes; on create `name` and `slug` are required and not null.
fn location_attributes(create: bool) -> Value {
    let maybe = |schema: Value| if create { schema } else { nullable(schema) };
    let text = json!({
        "type": ["string", "null"],
        "maxLength": LOCATION_TEXT_LEN_MAX,
    });
    object(
        vec![
            (
                "name",
                maybe(json!({
                    "type": "string",
                    "minLength": LOCATION_NAME_LEN_MIN,
                    "maxLength": LOCATION_NAME_LEN_MAX,
                })),
            ),
            ("slug", maybe(id_string(LOCATION_SLUG_LEN_MAX))),
            ("external_ref", text.clone()),
            ("description", text),
            (
                "address",
                json!({
                    "type": ["array", "null"],
                    "maxItems": LOCATION_ADDRESS_LINES_MAX,
                    "items": {"type": "string", "maxLength": LOCATION_TEXT_LEN_MAX},
                    "description": format!("At most {LOCATION_ADDRESS_LINES_MAX} lines of at most \
                        {LOCATION_TEXT_LEN_MAX} bytes."),
                }),
            ),
            (
                "geolocation",
                nullable(object(
                    vec![
                        (
                            "lat",
                            json!({"type": "number", "minimum": -90, "maximum": 90}),
                        ),
                        (
                            "lon",
                            json!({"type": "number", "minimum": -180, "maximum": 180}),
                        ),
                    ],
                    &["lat", "lon"],
                )),
            ),
        ],
        if create { &["name", "slug"] } else { &[] },
    )
}

fn location_create_request() -> Value {
    data(object(
        vec![
            ("type", type_tag("inventory_location")),
            ("attributes", location_attributes(true)),
        ],
        &["attributes"],
    ))
}

fn location_update_request() -> Value {
    data(object(
        vec![
            ("type", type_tag("inventory_location")),
            ("attributes", location_attributes(false)),
        ],
        &["attributes"],
    ))
}

/// A product's name or SKU: a string with something other than spaces, at most `max` bytes.
fn product_text(max: usize) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": max,
        "pattern": "\\S",
        "description": format!("Not blank; at most {max} bytes of UTF-8."),
    })
}

fn price_request() -> Value {
    object(
        vec![
            (
                "amount",
                json!({"type": "integer", "minimum": 0, "maximum": PRICE_AMOUNT_MAX,
                       "description": "Minor units (cents)."}),
            ),
            (
                "currency",
                json!({"type": "string", "minLength": 3, "maxLength": 3, "pattern": "^[A-Z]+$",
                       "description": "An ISO 4217 code such as USD."}),
            ),
            ("includes_tax", json!({"type": ["boolean", "null"]})),
        ],
        &["amount", "currency"],
    )
}

fn product_create_request() -> Value {
    data(object(
        vec![
            ("type", type_tag("product")),
            (
                "id",
                json!({
                    "anyOf": [id_string(PRODUCT_ID_LEN_MAX), {"type": "null"}],
                    "description": "Chosen by the client, or a UUID when left out.",
                }),
            ),
            (
                "attributes",
                object(
                    vec![
                        ("name", product_text(PRODUCT_NAME_LEN_MAX)),
                        ("sku", product_text(PRODUCT_SKU_LEN_MAX)),
                        ("price", price_request()),
                    ],
                    &["name", "sku", "price"],
                ),
            ),
        ],
        &["attributes"],
    ))
}

fn product_update_request() -> Value {
    data(object(
        vec![
            ("type", type_tag("product")),
            (
                "attributes",
                object(
                    vec![
                        ("name", nullable(product_text(PRODUCT_NAME_LEN_MAX))),
                        ("sku", nullable(product_text(PRODUCT_SKU_LEN_MAX))),
                        ("price", nullable(price_request())),
                    ],
                    &[],
                ),
            ),
        ],
        &["attributes"],
    ))
}

fn cart_item_request() -> Value {
    let mut item = object(
        vec![
            ("type", type_tag("cart_item")),
            (
                "id",
                json!({"type": "string", "description": "The product's id."}),
            ),
            (
                "sku",
                json!({"type": "string", "description": "The product's SKU (when no id is sent)."}),
            ),
            ("quantity", quantity()),
            (
                "location",
                json!({"anyOf": [id_string(LOCATION_SLUG_LEN_MAX), {"type": "null"}],
                       "description": "The slug of the location to sell from."}),
            ),
        ],
        &["quantity"],
    );
    item["anyOf"] = json!([{"required": ["id"]}, {"required": ["sku"]}]);
    item
}

fn cart_add_request() -> Value {
    data(json!({
        "oneOf": [
            cart_item_request(),
            {"type": "array", "minItems": 1, "maxItems": CART_ADD_ITEMS_MAX, "items": cart_item_request()},
        ]
    }))
}

fn cart_update_request() -> Value {
    data(object(
        vec![("type", type_tag("cart_item")), ("quantity", quantity())],
        &["quantity"],
    ))
}

/// A customer or an address: any object, kept as sent.
fn party() -> Value {
    json!({
        "type": "object",
        "description": format!("Kept as sent; at most {ORDER_PARTY_BYTES_MAX} bytes of JSON."),
    })
}

fn checkout_request() -> Value {
    data(object(
        vec![
            (
                "customer",
                json!({"oneOf": [party(), {"type": "string", "description": "A customer id."}]}),
            ),
            ("billing_address", party()),
            ("shipping_address", nullable(party())),
        ],
        &["customer", "billing_address"],
    ))
}

fn order_update_request() -> Value {
    let mut update = object(
        vec![
            ("type", type_tag("order")),
            ("shipping", constant("fulfilled")),
            ("status", constant("cancelled")),
        ],
        &[],
    );
    update["oneOf"] = json!([{"required": ["shipping"]}, {"required": ["status"]}]);
    data(update)
}

fn payment_request() -> Value {
    data(object(
        vec![
            (
                "gateway",
                json!({"type": "string", "enum": ["manual", "http"],
                       "description": "`http` only when the server has a payment gateway URL."}),
            ),
            ("method", one_of_strings(&["purchase", "authorize"])),
            (
                "amount",
                json!({"type": ["integer", "null"],
                       "description": "Left out, or the order's total (no split payments)."}),
            ),
        ],
        &["gateway", "method"],
    ))
}

// ---- response bodies -------------------------------------------------------------------------

fn token() -> Value {
    object(
        vec![
            ("access_token", string()),
            ("token_type", constant("Bearer")),
            ("expires_in", integer()),
            ("expires", integer()),
            (
                "identifier",
                one_of_strings(&["client_credentials", "implicit"]),
            ),
        ],
        &[
            "access_token",
            "token_type",
            "expires_in",
            "expires",
            "identifier",
        ],
    )
}

fn health() -> Value {
    object(vec![("status", constant("ok"))], &["status"])
}

fn openapi_document() -> Value {
    object(
        vec![("openapi", string()), ("paths", json!({"type": "object"}))],
        &["openapi", "paths"],
    )
}

/// A page of a list, with Elastic Path's `links` and `meta`.
fn list_of(item: &str) -> Value {
    object(
        vec![
            ("data", array(schema_ref(item))),
            ("links", schema_ref("ListLinks")),
            ("meta", schema_ref("ListMeta")),
        ],
        &["data", "links", "meta"],
    )
}

fn cart() -> Value {
    data(schema_ref("Cart"))
}

fn cart_items() -> Value {
    object(
        vec![
            ("data", array(schema_ref("CartItem"))),
            ("meta", schema_ref("CartMeta")),
        ],
        &["data", "meta"],
    )
}

fn order_answer() -> Value {
    object(
        vec![
            ("data", schema_ref("Order")),
            (
                "included",
                object(vec![("items", array(schema_ref("OrderItem")))], &["items"]),
            ),
        ],
        &["data"],
    )
}

fn timestamps() -> Value {
    object(
        vec![("created_at", timestamp()), ("updated_at", timestamp())],
        &["created_at", "updated_at"],
    )
}

fn relation(kind: &str) -> Value {
    object(
        vec![("type", constant(kind)), ("id", string())],
        &["type", "id"],
    )
}

/// Unit and line value, as cart and order items show them.
fn item_prices() -> Value {
    let both = object(
        vec![
            ("unit", schema_ref("DisplayPrice")),
            ("value", schema_ref("DisplayPrice")),
        ],
        &["unit", "value"],
    );
    object(
        vec![
            (
                "display_price",
                object(
                    vec![("with_tax", both.clone()), ("without_tax", both)],
                    &["with_tax", "without_tax"],
                ),
            ),
            ("timestamps", timestamps()),
        ],
        &["display_price"],
    )
}

/// Totals with and without tax, and the tax, as carts and orders show them.
fn totals_meta() -> Value {
    object(
        vec![
            (
                "display_price",
                object(
                    vec![
                        ("with_tax", schema_ref("DisplayPrice")),
                        ("without_tax", schema_ref("DisplayPrice")),
                        ("tax", schema_ref("DisplayPrice")),
                    ],
                    &["with_tax", "without_tax", "tax"],
                ),
            ),
            ("timestamps", timestamps()),
        ],
        &["display_price", "timestamps"],
    )
}

fn component_schemas() -> Value {
    let error = object(
        vec![
            (
                "status",
                json!({"type": "integer", "minimum": 400, "maximum": 599,
                       "description": "Always the HTTP status."}),
            ),
            ("title", string()),
            ("detail", string()),
            (
                "source",
                json!({"type": "string", "description": "The field at fault, when there is one."}),
            ),
        ],
        &["status", "title", "detail"],
    );
    let errors = {
        let mut list = array(error);
        list["minItems"] = json!(1);
        object(vec![("errors", list)], &["errors"])
    };
    let stock = object(
        vec![
            ("id", string()),
            ("type", constant("stock")),
            ("total", figure()),
            ("available", figure()),
            ("allocated", figure()),
            (
                "meta",
                object(vec![("timestamps", timestamps())], &["timestamps"]),
            ),
        ],
        &["id", "type", "total", "available", "allocated", "meta"],
    );
    // A history entry's fields: at the top in the classic shape, under `attributes` in the
    // multi-location one.
    let entry_fields = || {
        vec![
            ("type", constant("stock-transaction")),
            (
                "action",
                one_of_strings(&[
                    "create",
                    "increment",
                    "decrement",
                    "allocate",
                    "deallocate",
                    "set",
                    "ship",
                    "delete",
                ]),
            ),
            ("product_id", string()),
            ("quantity", figure()),
            ("total", figure()),
            ("allocated", figure()),
            ("available", figure()),
            (
                "location",
                json!({"type": "string", "description": "The location's slug, for stock held \
                    at a location."}),
            ),
            (
                "order_id",
                json!({"type": "string", "description": "The order whose payment, shipment or \
                    cancellation made this entry."}),
            ),
            ("reason", string()),
        ]
    };
    const ENTRY_REQUIRED: [&str; 7] = [
        "type",
        "action",
        "product_id",
        "quantity",
        "total",
        "allocated",
        "available",
    ];
    let created_at = || object(vec![("created_at", timestamp())], &["created_at"]);
    let stock_transaction = {
        let mut fields = entry_fields();
        fields.push(("id", string()));
        fields.push(("timestamps", created_at()));
        let mut required = ENTRY_REQUIRED.to_vec();
        required.extend(["id", "timestamps"]);
        object(fields, &required)
    };
    let stock_transaction_mli = object(
        vec![
            ("id", string()),
            ("type", constant("stock-transaction")),
            ("attributes", object(entry_fields(), &ENTRY_REQUIRED)),
            (
                "meta",
                object(vec![("timestamps", created_at())], &["timestamps"]),
            ),
        ],
        &["id", "type", "attributes", "meta"],
    );
    let figures = object(
        vec![
            ("total", figure()),
            ("allocated", figure()),
            ("available", figure()),
        ],
        &["total", "allocated", "available"],
    );
    let stock_mli = {
        let mut attributes = figures.clone();
        attributes["properties"]["locations"] = json!({
            "type": "object",
            "additionalProperties": figures,
            "description": "Location slug → its figures.",
        });
        attributes["required"] = json!(["total", "allocated", "available", "locations"]);
        object(
            vec![
                ("id", string()),
                ("type", constant("stock")),
                ("attributes", attributes),
                (
                    "meta",
                    object(
                        vec![("stock_id", string()), ("timestamps", timestamps())],
                        &["stock_id", "timestamps"],
                    ),
                ),
            ],
            &["id", "type", "attributes", "meta"],
        )
    };
    let location = object(
        vec![
            ("id", string()),
            ("type", constant("inventory_location")),
            (
                "attributes",
                object(
                    vec![
                        ("name", string()),
                        ("slug", string()),
                        ("address", array(string())),
                        ("external_ref", string()),
                        ("description", string()),
                        (
                            "geolocation",
                            object(
                                vec![
                                    ("lat", json!({"type": "number"})),
                                    ("lon", json!({"type": "number"})),
                                ],
                                &["lat", "lon"],
                            ),
                        ),
                    ],
                    &["name", "slug", "address"],
                ),
            ),
            (
                "meta",
                object(vec![("timestamps", timestamps())], &["timestamps"]),
            ),
        ],
        &["id", "type", "attributes", "meta"],
    );
    let list_links = object(
        vec![
            ("current", string()),
            ("first", string()),
            ("last", string()),
            ("next", string()),
            ("prev", string()),
        ],
        &["current", "first", "last"],
    );
    let list_meta = object(
        vec![
            (
                "page",
                object(
                    vec![
                        ("limit", figure()),
                        ("offset", figure()),
                        ("current", figure()),
                        ("total", figure()),
                    ],
                    &["limit", "offset", "current", "total"],
                ),
            ),
            ("results", object(vec![("total", figure())], &["total"])),
        ],
        &["page", "results"],
    );
    let money = object(
        vec![
            ("amount", integer()),
            ("currency", string()),
            ("includes_tax", boolean()),
        ],
        &["amount", "currency", "includes_tax"],
    );
    let display_price = object(
        vec![
            ("amount", integer()),
            ("currency", string()),
            ("formatted", string()),
        ],
        &["amount", "currency", "formatted"],
    );
    let product = object(
        vec![
            ("type", constant("product")),
            ("id", string()),
            (
                "attributes",
                object(
                    vec![
                        ("name", string()),
                        ("sku", string()),
                        ("price", schema_ref("Money")),
                    ],
                    &["name", "sku", "price"],
                ),
            ),
            (
                "meta",
                object(
                    vec![
                        (
                            "display_price",
                            object(
                                vec![("without_tax", schema_ref("DisplayPrice"))],
                                &["without_tax"],
                            ),
                        ),
                        ("timestamps", timestamps()),
                    ],
                    &["display_price", "timestamps"],
                ),
            ),
        ],
        &["type", "id", "attributes", "meta"],
    );
    let cart = object(
        vec![
            ("id", string()),
            ("type", constant("cart")),
            ("name", string()),
            ("links", object(vec![("self", string())], &["self"])),
            (
                "relationships",
                object(
                    vec![(
                        "items",
                        object(vec![("data", array(relation("cart_item")))], &["data"]),
                    )],
                    &["items"],
                ),
            ),
            ("meta", schema_ref("CartMeta")),
        ],
        &["id", "type", "name", "links", "relationships", "meta"],
    );
    let cart_item = object(
        vec![
            ("id", string()),
            ("type", constant("cart_item")),
            ("product_id", string()),
            (
                "name",
                json!({"type": "string", "description": "Empty for stock with no product record."}),
            ),
            ("sku", string()),
            ("quantity", figure()),
            ("location", json!({"type": ["string", "null"]})),
            (
                "manage_stock",
                json!({"type": "boolean", "description": "Whether the product has a stock record."}),
            ),
            ("unit_price", schema_ref("Money")),
            ("value", schema_ref("Money")),
            (
                "links",
                object(
                    vec![("self", string()), ("product", string())],
                    &["self", "product"],
                ),
            ),
            ("meta", item_prices()),
        ],
        &[
            "id",
            "type",
            "product_id",
            "name",
            "sku",
            "quantity",
            "manage_stock",
            "unit_price",
            "value",
            "links",
            "meta",
        ],
    );
    let order = object(
        vec![
            ("type", constant("order")),
            ("id", string()),
            (
                "status",
                one_of_strings(&["incomplete", "complete", "cancelled"]),
            ),
            ("payment", one_of_strings(&["unpaid", "authorized", "paid"])),
            ("shipping", one_of_strings(&["unfulfilled", "fulfilled"])),
            ("customer", json!({"type": ["object", "null"]})),
            ("billing_address", json!({"type": ["object", "null"]})),
            ("shipping_address", json!({"type": ["object", "null"]})),
            ("links", json!({"type": "object"})),
            ("meta", totals_meta()),
            (
                "relationships",
                object(
                    vec![(
                        "items",
                        object(vec![("data", array(relation("item")))], &["data"]),
                    )],
                    &["items"],
                ),
            ),
        ],
        &[
            "type",
            "id",
            "status",
            "payment",
            "shipping",
            "customer",
            "billing_address",
            "shipping_address",
            "links",
            "meta",
            "relationships",
        ],
    );
    let order_relation = object(
        vec![(
            "order",
            object(vec![("data", relation("order"))], &["data"]),
        )],
        &["order"],
    );
    let order_item = object(
        vec![
            ("type", constant("order_item")),
            ("id", string()),
            ("product_id", string()),
            ("name", string()),
            ("sku", string()),
            ("quantity", quantity()),
            ("location", json!({"type": ["string", "null"]})),
            ("unit_price", schema_ref("Money")),
            ("value", schema_ref("Money")),
            ("relationships", order_relation.clone()),
            ("meta", item_prices()),
        ],
        &[
            "type",
            "id",
            "product_id",
            "name",
            "sku",
            "quantity",
            "unit_price",
            "value",
            "relationships",
            "meta",
        ],
    );
    let transaction_type = one_of_strings(&["purchase", "authorize", "capture"]);
    let payment = object(
        vec![
            ("id", string()),
            ("type", constant("transaction")),
            ("reference", string()),
            ("gateway", string()),
            ("amount", integer()),
            ("currency", string()),
            ("transaction_type", transaction_type.clone()),
            ("transaction-type", transaction_type),
            ("status", one_of_strings(&["pending", "complete", "failed"])),
            ("relationships", order_relation),
            (
                "meta",
                object(
                    vec![
                        ("display_price", schema_ref("DisplayPrice")),
                        ("timestamps", timestamps()),
                    ],
                    &["display_price", "timestamps"],
                ),
            ),
            (
                "failure",
                json!({"type": "string", "description": "Why the gateway did not approve."}),
            ),
        ],
        &[
            "id",
            "type",
            "reference",
            "gateway",
            "amount",
            "currency",
            "transaction_type",
            "status",
            "relationships",
            "meta",
        ],
    );
    json!({
        ERRORS_SCHEMA: errors,
        "Stock": stock,
        "StockMultiLocation": stock_mli,
        "AnyStock": {
            "description": "Classic, or multi-location with `EP-Inventories-Multi-Location: true`.",
            "anyOf": [schema_ref("Stock"), schema_ref("StockMultiLocation")],
        },
        "StockTransaction": stock_transaction,
        "StockTransactionMultiLocation": stock_transaction_mli,
        "AnyStockTransaction": {
            "description": "Classic, or multi-location with `EP-Inventories-Multi-Location: true`.",
            "anyOf": [schema_ref("StockTransaction"), schema_ref("StockTransactionMultiLocation")],
        },
        "Location": location,
        "ListLinks": list_links,
        "ListMeta": list_meta,
        "Money": money,
        "DisplayPrice": display_price,
        "Product": product,
        "Cart": cart,
        "CartMeta": totals_meta(),
        "CartItem": cart_item,
        "Order": order,
        "OrderItem": order_item,
        "PaymentTransaction": payment,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use stockroom_domain::Timestamp;
    use stockroom_store::testing::{fresh_database, Backend};
    use stockroom_store::{OpenOptions, SqlStore};

    use super::*;
    use crate::clock::ManualClock;

    /// The route table exactly as the server builds it.
    async fn real_routes() -> (tempfile::TempDir, Vec<RouteInfo>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = fresh_database(Backend::Sqlite, dir.path())
            .await
            .expect("sqlite url");
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_800_000_000)));
        let store = SqlStore::open(&url, OpenOptions::default(), clock.clone())
            .await
            .expect("open store");
        let state = AppState::new(store, clock).await.expect("state");
        let (_, routes) = crate::routes(state);
        (dir, routes)
    }

    #[tokio::test]
    async fn every_route_is_documented_with_its_derived_errors() {
        let (_dir, routes) = real_routes().await;
        let doc = document(&routes).unwrap_or_else(|e| panic!("{e}"));
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        for route in &routes {
            let method = route.method.as_str().to_ascii_lowercase();
            let op = &doc["paths"][route.path][&method];
            assert!(op.is_object(), "{} {} missing", route.method, route.path);
            let responses = op["responses"].as_object().expect("responses");
            let has = |s: &str| responses.contains_key(s);
            let twoxx: Vec<_> = responses.keys().filter(|k| k.starts_with('2')).collect();
            assert!(!twoxx.is_empty(), "{method} {}: a success", route.path);
            for (status, response) in responses {
                if status.starts_with('2') {
                    if status == "204" {
                        assert!(response.get("content").is_none());
                    }
                    continue;
                }
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"], ERRORS_REF,
                    "{method} {} {status}",
                    route.path
                );
            }
            assert!(has("503"));
            assert_eq!(responses["503"]["headers"]["Retry-After"]["required"], true);
            match route.access {
                Access::Public => {
                    assert_eq!(op["security"], json!([]));
                    assert!(!has("403"));
                }
                Access::Shopper => {
                    assert!(has("401") && !has("403"), "{method} {}", route.path);
                    assert!(op.get("security").is_none());
                }
                Access::Admin => assert!(has("401") && has("403"), "{method} {}", route.path),
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let has_query = params.iter().any(|p| p["in"] == "query");
            let has_path = params.iter().any(|p| p["in"] == "path");
            if params.iter().any(|p| p["name"] == "Idempotency-Key") {
                assert!(has("422"), "{method} {}", route.path);
            }
            if op.get("requestBody").is_some() {
                assert!(has("413") && has("400"), "{method} {}", route.path);
            }
            if has_query || has_path {
                assert!(has("400"), "{method} {}", route.path);
            }
            for name in path_parameters(route.path).expect("path") {
                assert!(
                    params
                        .iter()
                        .any(|p| p["in"] == "path" && p["name"] == name.as_str()),
                    "{method} {}: path parameter {name}",
                    route.path
                );
            }
        }
        // Every $ref points at a schema that exists.
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or("");
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
    }

    #[test]
    fn an_undocumented_route_fails_loudly() {
        let mut routes: Vec<RouteInfo> = table()
            .into_iter()
            .map(|(method, path, _)| RouteInfo {
                method,
                path,
                access: Access::Admin,
            })
            .collect();
        assert!(document(&routes).is_ok());
        routes.push(RouteInfo {
            method: Method::PATCH,
            path: "/v2/undocumented/{thing}",
            access: Access::Admin,
        });
        let error = document(&routes).expect_err("an undocumented route must fail");
        assert!(error.contains("PATCH /v2/undocumented/{thing}"), "{error}");
    }

    #[test]
    fn a_description_of_a_route_that_is_gone_fails_too() {
        let routes: Vec<RouteInfo> = table()
            .into_iter()
            .filter(|(_, path, _)| *path != "/health")
            .map(|(method, path, _)| RouteInfo {
                method,
                path,
                access: Access::Public,
            })
            .collect();
        let error = document(&routes).expect_err("a stale entry must fail");
        assert!(error.contains("GET /health"), "{error}");
    }

    #[test]
    fn path_parameters_are_read_from_whole_segments() {
        assert_eq!(
            path_parameters("/v2/orders/{order}/transactions/{transaction}"),
            Ok(vec!["order".to_owned(), "transaction".to_owned()])
        );
        assert!(path_parameters("/v2/x{y}").is_err());
        assert!(path_parameters("/v2/{}").is_err());
        assert_eq!(
            operation_id(&Method::GET, "/v2/inventories/{product}"),
            "get_v2_inventories_product"
        );
    }
}
