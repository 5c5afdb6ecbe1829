//! `GET /openapi.json`: the OpenAPI 3.1 document, derived from the route table and the wire
//! types (utoipa's `ToSchema` and `IntoParams`), not written by hand.
//!
//! Each route of [`crate::routes`] carries a [`Doc`]: its summary and the *types* of its body,
//! query and answers; the schemas come from those types, which are the ones the handlers parse
//! and render. [`document`] fails on a route with no summary or no answer, so a route cannot go
//! undocumented.
//!
//! The statuses every route shares are derived rather than listed: 503 (with `Retry-After`)
//! everywhere, 413 wherever a body is read, 400 wherever a body, a query or a path parameter is
//! read, 404 wherever the path has a parameter, 422 wherever an `Idempotency-Key` is read; and,
//! in [`Security`] (the one `Modify` that knows about tokens), 401 and 403 from the route's
//! [`Access`]. Every error status carries the one `errors` body of `error.rs`.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use stockroom_domain::limits::{CART_ID_LEN_MAX, IDEMPOTENCY_KEY_LEN_MAX, PRODUCT_ID_LEN_MAX};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, Modify, PartialSchema, ToSchema};

use crate::auth::Access;
use crate::error::{ApiError, ErrorsBody, RETRY_AFTER_SECS};
use crate::wire::fields::{id_schema, NO_NUL};
use crate::{AppState, RouteInfo};

/// The name of the `errors` body in `components.schemas`.
pub const ERRORS_SCHEMA: &str = "Errors";
const ERRORS_REF: &str = "#/components/schemas/Errors";
/// The name of the bearer token scheme in `components.securitySchemes`.
const BEARER: &str = "bearerAuth";

type Components = Vec<(String, RefOr<Schema>)>;

/// `GET /openapi.json`. The document is built once, from the same route table as the router.
pub async fn serve_document(State(state): State<AppState>) -> Response {
    static DOCUMENT: OnceLock<Result<Bytes, String>> = OnceLock::new();
    let built = DOCUMENT.get_or_init(|| {
        let (_, table) = crate::routes(state.clone());
        let mut doc = document(&table)?;
        // The gateways this server takes: `http` only when one is configured.
        if state.payments.http.is_none() {
            doc["components"]["schemas"]["Gateway"]["enum"] = json!(["manual"]);
        }
        Ok(Bytes::from(doc.to_string()))
    });
    match built {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes.clone()).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document could not be built");
            ApiError::Internal.into_response()
        }
    }
}

/// The answer of `GET /openapi.json`: an OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Document {
    openapi: String,
    #[schema(value_type = Object)]
    paths: Value,
}

// ---- what a route says about itself ------------------------------------------------------------

/// A wire type's schema (inline) and the components it refers to.
#[derive(Clone, Copy)]
pub struct TypeDoc {
    schema: fn() -> RefOr<Schema>,
    components: fn(&mut Components),
}

impl TypeDoc {
    pub fn of<T: ToSchema>() -> Self {
        TypeDoc {
            schema: T::schema,
            components: T::schemas,
        }
    }
}

/// What a route answers when it succeeds.
#[derive(Clone, Copy)]
enum Success {
    Json(u16, TypeDoc),
    /// 200 with Prometheus text.
    Text,
    /// 204, no content.
    NoContent,
}

/// What a route reads as its body.
#[derive(Clone, Copy)]
enum Body {
    Json(TypeDoc),
    /// The token endpoint: a form (or a JSON object) of these fields.
    Form(TypeDoc),
}

/// A route's documentation: built with [`doc`] beside the route in [`crate::routes`].
#[derive(Clone)]
pub struct Doc {
    summary: &'static str,
    body: Option<Body>,
    query: Option<fn() -> Vec<Parameter>>,
    idempotent: bool,
    multi_location: bool,
    success: Option<Success>,
    /// A second success answer (the multi-location API's 201 for a transaction).
    also: Option<(u16, TypeDoc)>,
    /// Error statuses of the route's own, beyond the derived ones (see the module's docs).
    errors: &'static [u16],
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doc")
            .field("summary", &self.summary)
            .finish()
    }
}

/// A route's documentation, starting from its summary.
pub fn doc(summary: &'static str) -> Doc {
    Doc {
        summary,
        body: None,
        query: None,
        idempotent: false,
        multi_location: false,
        success: None,
        also: None,
        errors: &[],
    }
}

impl Doc {
    /// Reads a JSON body of type `T`.
    pub fn body<T: ToSchema>(self) -> Doc {
        Doc {
            body: Some(Body::Json(TypeDoc::of::<T>())),
            ..self
        }
    }
    /// Reads a form (or a JSON object) of type `T`.
    pub fn form<T: ToSchema>(self) -> Doc {
        Doc {
            body: Some(Body::Form(TypeDoc::of::<T>())),
            ..self
        }
    }
    /// Reads a query string of type `T`.
    pub fn query<T: IntoParams>(self) -> Doc {
        Doc {
            query: Some(|| T::into_params(|| Some(ParameterIn::Query))),
            ..self
        }
    }
    /// Takes an `Idempotency-Key` header (and so may answer 422 `Idempotency key reused`).
    pub fn idempotent(self) -> Doc {
        Doc {
            idempotent: true,
            ..self
        }
    }
    /// Reads `EP-Inventories-Multi-Location`, which switches to the multi-location shapes.
    pub fn multi_location(self) -> Doc {
        Doc {
            multi_location: true,
            ..self
        }
    }
    /// Answers `status` with a JSON body of type `T`.
    pub fn answers<T: ToSchema>(self, status: u16) -> Doc {
        Doc {
            success: Some(Success::Json(status, TypeDoc::of::<T>())),
            ..self
        }
    }
    /// Answers 200 with `T`.
    pub fn ok<T: ToSchema>(self) -> Doc {
        self.answers::<T>(200)
    }
    /// Answers 201 with `T`.
    pub fn created<T: ToSchema>(self) -> Doc {
        self.answers::<T>(201)
    }
    /// May also answer `status` with `T`.
    pub fn also<T: ToSchema>(self, status: u16) -> Doc {
        Doc {
            also: Some((status, TypeDoc::of::<T>())),
            ..self
        }
    }
    /// Answers 204 with no body.
    pub fn no_content(self) -> Doc {
        Doc {
            success: Some(Success::NoContent),
            ..self
        }
    }
    /// Answers 200 with plain text.
    pub fn text(self) -> Doc {
        Doc {
            success: Some(Success::Text),
            ..self
        }
    }
    pub fn errors(self, errors: &'static [u16]) -> Doc {
        Doc { errors, ..self }
    }
}

// ---- building the document -----------------------------------------------------------------------

/// The OpenAPI document of `routes`; an error names every route without a summary or an
/// answer, and every route declared twice.
pub fn document(routes: &[RouteInfo]) -> Result<Value, String> {
    let problems: Vec<String> = routes
        .iter()
        .filter(|r| r.doc.summary.trim().is_empty() || r.doc.success.is_none())
        .map(|r| {
            format!(
                "route {} {} has no description (a summary and an answer)",
                r.method, r.path
            )
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let mut components: Components = Vec::new();
    ErrorsBody::schemas(&mut components);
    components.push((ERRORS_SCHEMA.to_owned(), ErrorsBody::schema()));
    let mut paths = Map::new();
    for route in routes {
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
        item[method] = operation(route, &mut components)?;
    }
    let schemas: Map<String, Value> = components
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or_default()))
        .collect();
    let skeleton = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Stockroom",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Elastic Path's v2 inventory API and order flow. Every error is \
                {\"errors\":[{\"status\",\"title\",\"detail\",\"source\"?}]}; every 503 carries \
                Retry-After. Generated from the server's route table and wire types.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    });
    let mut openapi: utoipa::openapi::OpenApi =
        serde_json::from_value(skeleton).map_err(|e| format!("not an OpenAPI document: {e}"))?;
    Security(routes).modify(&mut openapi);
    serde_json::to_value(&openapi).map_err(|e| e.to_string())
}

fn json_of(schema: RefOr<Schema>) -> Value {
    serde_json::to_value(schema).unwrap_or_default()
}

fn operation(route: &RouteInfo, components: &mut Components) -> Result<Value, String> {
    let op = &route.doc;
    let path_params = path_parameters(route.path)?;
    let mut parameters: Vec<Value> = path_params
        .iter()
        .map(|name| {
            json!({
                "name": name, "in": "path", "required": true,
                "description": path_parameter_description(name),
                "schema": path_parameter_schema(name),
            })
        })
        .collect();
    let query = op.query.map(|params| params()).unwrap_or_default();
    let has_query = !query.is_empty();
    parameters.extend(
        query
            .into_iter()
            .map(|p| serde_json::to_value(p).unwrap_or_default()),
    );
    if op.idempotent {
        parameters.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "Makes the request safe to retry: a repeat by the same caller with \
                the same key returns the first answer and changes nothing; the same key with \
                another request is 422.",
            "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_LEN_MAX,
                       "pattern": "^[!-~]+$"},
        }));
    }
    if op.multi_location {
        parameters.push(json!({
            "name": "EP-Inventories-Multi-Location", "in": "header", "required": false,
            "description": "`true` (any case) answers in the multi-location API's shapes \
                (figures under `attributes`, per location); anything else, or no header, in the \
                classic ones.",
            "schema": {"type": "string", "pattern": NO_NUL},
        }));
    }
    let mut responses = Map::new();
    let mut json_answer = |status: u16, t: TypeDoc, components: &mut Components| {
        (t.components)(components);
        responses.insert(
            status.to_string(),
            json!({
                "description": if status == 201 { "Created." } else { "OK." },
                "content": {"application/json": {"schema": json_of((t.schema)())}},
            }),
        );
    };
    if let Some((status, t)) = op.also {
        json_answer(status, t, components);
    }
    match op.success {
        Some(Success::Json(status, t)) => json_answer(status, t, components),
        Some(Success::Text) => {
            responses.insert(
                "200".into(),
                json!({"description": "Prometheus text exposition format.",
                       "content": {"text/plain": {"schema": {"type": "string"}}}}),
            );
        }
        Some(Success::NoContent) | None => {
            responses.insert("204".into(), json!({"description": "Done; no content."}));
        }
    }
    let mut errors: Vec<u16> = op.errors.to_vec();
    errors.push(503);
    if op.body.is_some() {
        errors.extend([408, 413]);
    }
    if op.body.is_some() || has_query || !path_params.is_empty() {
        errors.push(400);
    }
    if !path_params.is_empty() {
        errors.push(404);
    }
    if op.idempotent {
        errors.push(422);
    }
    for status in errors {
        responses.insert(status.to_string(), error_response(status));
    }
    let mut operation = json!({
        "operationId": operation_id(&route.method, route.path),
        "summary": op.summary,
        "tags": [tag(route.path)],
        "responses": responses,
    });
    if !parameters.is_empty() {
        operation["parameters"] = Value::Array(parameters);
    }
    match op.body {
        Some(Body::Json(t)) => {
            (t.components)(components);
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": json_of((t.schema)())}},
            });
        }
        Some(Body::Form(t)) => {
            (t.components)(components);
            let schema = json_of((t.schema)());
            operation["requestBody"] = json!({
                "required": true,
                "content": {
                    "application/x-www-form-urlencoded": {"schema": schema},
                    "application/json": {"schema": schema},
                },
            });
        }
        None => {}
    }
    Ok(operation)
}

fn error_response(status: u16) -> Value {
    let mut response = json!({
        "description": error_description(status),
        "content": {"application/json": {"schema": {"$ref": ERRORS_REF}}},
    });
    if status == 503 {
        response["headers"] = json!({
            "Retry-After": {
                "description": format!("Seconds to wait before retrying (always {RETRY_AFTER_SECS})."),
                "schema": {"type": "integer", "minimum": 0},
            }
        });
    }
    if status == 429 {
        response["headers"] = json!({
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        });
    }
    response
}

/// The one place that knows about tokens: the bearer scheme, the whole document's security,
/// `security: []` on public routes, and the 401 and 403 each route's [`Access`] implies.
struct Security<'a>(&'a [RouteInfo]);

impl Modify for Security<'_> {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement};
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token from POST /oauth/access_token: client_credentials gives an \
                 administrator's token, implicit a shopper's.",
            ))
            .build();
        components.add_security_scheme(
            BEARER,
            utoipa::openapi::security::SecurityScheme::Http(scheme),
        );
        openapi.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        for route in self.0 {
            let Some(item) = openapi.paths.paths.get_mut(route.path) else {
                continue;
            };
            let op = match route.method {
                Method::GET => item.get.as_mut(),
                Method::POST => item.post.as_mut(),
                Method::PUT => item.put.as_mut(),
                Method::DELETE => item.delete.as_mut(),
                _ => None,
            };
            let Some(op) = op else { continue };
            let mut add = |status: u16, description: &str| {
                let mut response: utoipa::openapi::Response =
                    serde_json::from_value(error_response(status)).unwrap_or_default();
                response.description = description.to_owned();
                op.responses
                    .responses
                    .insert(status.to_string(), RefOr::T(response));
            };
            match route.access {
                Access::Public => {}
                Access::Shopper => add(401, "No token, or a bad or expired one."),
                Access::Customer => {
                    add(
                        401,
                        "No token, or a bad or expired one (or customer token).",
                    );
                    add(
                        403,
                        "A shopper's token without a customer token, or another's.",
                    );
                }
                Access::Admin => {
                    add(401, "No token, or a bad or expired one.");
                    add(403, "The token is valid but not an administrator's.");
                }
            }
            match route.access {
                Access::Public => op.security = Some(Vec::new()),
                Access::Shopper => {
                    op.description =
                        Some("Needs a token: a shopper's or an administrator's.".into())
                }
                Access::Customer => {
                    op.description = Some(
                        "Needs an administrator's token, or a shopper's with the customer's \
                         X-Moltin-Customer-Token."
                            .into(),
                    )
                }
                Access::Admin => op.description = Some("Needs an administrator's token.".into()),
            }
        }
    }
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
        "product" => id_schema(PRODUCT_ID_LEN_MAX),
        "cart" => id_schema(CART_ID_LEN_MAX),
        // Ids Stockroom makes (UUIDs); any other text names nothing (404).
        _ => json!({"type": "string", "minLength": 1, "pattern": NO_NUL}),
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

fn error_description(status: u16) -> &'static str {
    match status {
        400 => {
            "The body, query or path is malformed or breaks a limit (`source` names the \
                field); or the order flow refused: `Insufficient stock`, `Payment failed`."
        }
        401 => "The client id or secret is not valid.",
        403 => "The token is valid but not an administrator's.",
        404 => "The resource could not be found.",
        409 => "The resource's state does not allow this.",
        408 => "The body did not arrive within the body-read timeout.",
        413 => "The body is larger than the server accepts.",
        429 => {
            "Too many failed sign-ins from this address or for this client id, or too many \
                checkouts and payments from this token or address; retry after Retry-After \
                seconds."
        }
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
        assert_eq!(doc["openapi"], "3.1.0");
        for route in &routes {
            let method = route.method.as_str().to_ascii_lowercase();
            let op = &doc["paths"][route.path][&method];
            assert!(op.is_object(), "{} {} missing", route.method, route.path);
            let responses = op["responses"].as_object().expect("responses");
            let has = |s: &str| responses.contains_key(s);
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {}",
                route.path
            );
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
            assert!(responses["503"]["headers"]["Retry-After"].is_object());
            match route.access {
                Access::Public => {
                    assert_eq!(op["security"], json!([]));
                    assert!(!has("403"));
                }
                Access::Shopper => {
                    assert!(has("401") && !has("403"), "{method} {}", route.path);
                    assert!(op.get("security").is_none());
                }
                Access::Admin | Access::Customer => {
                    assert!(has("401") && has("403"), "{method} {}", route.path)
                }
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            if params.iter().any(|p| p["name"] == "Idempotency-Key") {
                assert!(has("422"), "{method} {}", route.path);
            }
            if op.get("requestBody").is_some() {
                assert!(has("413") && has("400"), "{method} {}", route.path);
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

    #[tokio::test]
    async fn a_route_without_a_description_fails_loudly() {
        let (_dir, mut routes) = real_routes().await;
        assert!(document(&routes).is_ok());
        routes.push(RouteInfo {
            method: Method::GET,
            path: "/v2/undocumented/{thing}",
            access: Access::Admin,
            doc: doc(""),
        });
        let error = document(&routes).expect_err("an undocumented route must fail");
        assert!(error.contains("GET /v2/undocumented/{thing}"), "{error}");
        routes.pop();
        routes.push(RouteInfo {
            method: Method::GET,
            path: "/v2/unanswered",
            access: Access::Admin,
            doc: doc("Says nothing of its answer"),
        });
        let error = document(&routes).expect_err("a route with no answer must fail");
        assert!(error.contains("GET /v2/unanswered"), "{error}");
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
