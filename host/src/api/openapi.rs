//! The `OpenAPI` 3.1 document of every route the host serves, at `GET /openapi.json`
//! (unauthenticated). `utoipa` generates it from the handlers' `#[utoipa::path]` annotations
//! and the `ToSchema` derives of the `proto` wire types (feature `openapi`), so it is written
//! next to the code it describes; the tests below hold it to [`super::ROUTES`] and to the
//! `.route(…)` calls that build the router.
//!
//! Also here: the pieces every `/v1` operation shares — the `tessera_signature` security
//! scheme, the signature headers, the problem responses for signature, scope and body-size
//! refusals. `GET /metrics` is added by hand ([`Additions`]): its handler lives in
//! `crate::metrics`, which carries no utoipa annotation.
//!
//! Must never: describe a route the host does not serve, or contain anything secret (the
//! document is public).

use axum::Json;
use tessera_proto::calls::{CALLER_HEADER, CONSTRAINTS_HEADER};
use tessera_proto::problem::{self, Problem};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response};
use utoipa::{IntoParams, Modify, OpenApi, ToResponse};

/// The name of the security scheme of every `/v1` operation. Its scopes on an operation are
/// the Tessera scopes the signing key must hold.
pub const SIGNATURE_SCHEME: &str = "tessera_signature";

/// The `OpenAPI` document of the host.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        version = env!("CARGO_PKG_VERSION"),
        description = "A self-hosted credential vault and API proxy. Apps and agents call \
            providers (GitHub, Stripe, AWS, …) through Tessera without ever holding the \
            provider credentials: `POST /v1/retrieve` returns the authentication to add to a \
            request the SDK sends itself, `POST /v1/proxy` has the host send it.\n\n\
            Every `/v1` request is signed with an API key (RFC 9421 HTTP message signatures, \
            `hmac-sha256`; see `docs/SIGNING.md` in the Tessera repository): it carries \
            `Signature-Input`, `Signature` and `Content-Digest`, and the key never travels. \
            Each operation names the Tessera scopes the key needs. Every error the host \
            itself answers is an RFC 9457 `application/problem+json` document with a stable \
            machine `code`; clients branch on `code`, never on `title` or `detail`.",
    ),
    paths(
        crate::server::healthz,
        crate::server::readyz,
        openapi_json,
        super::whoami,
        super::providers,
        super::provider_config::put_config,
        super::provider_config::get_config,
        super::provider_config::delete_config,
        super::idp::get_idp,
        super::idp::put_idp,
        super::idp::delete_idp,
        super::grants::set_managed_secret,
        super::grants::list_grants,
        super::grants::get_grant,
        super::grants::revoke_grant,
        super::grants::set_grant_ttl,
        super::calls::retrieve,
        super::calls::proxy,
        super::approvals::list_approvals,
        super::approvals::get_approval,
        super::approvals::approve,
        super::approvals::deny,
        super::approvals::outcome,
        super::audit::list_audit,
        super::webhooks::get_webhook,
        super::webhooks::put_webhook,
        super::webhooks::delete_webhook,
        super::webhooks::list_deliveries,
        super::agents::list_agents,
        super::agents::create_agent,
        super::agents::get_agent,
        super::agents::disable_agent,
        super::agents::enable_agent,
        super::delegations::list_delegations,
        super::delegations::create_delegation,
        super::delegations::get_delegation,
        super::delegations::revoke_delegation,
        super::policy::list_rules,
        super::policy::create_rule,
        super::policy::get_rule,
        super::policy::update_rule,
        super::policy::delete_rule,
        super::policy::schema,
        super::connect::create_session,
        super::connect::get_session,
        super::connect::consent_page,
        super::connect::consent_submit,
        super::connect::callback,
        crate::wallet::assets::index,
        crate::wallet::assets::asset,
        crate::wallet::routes::login,
        crate::wallet::routes::callback,
        crate::wallet::routes::session,
        crate::wallet::routes::logout,
        crate::wallet::routes::grants,
        crate::wallet::routes::revoke_grant,
        crate::wallet::routes::set_ttl,
        crate::wallet::routes::activity,
        crate::wallet::routes::reconnect,
        crate::wallet::routes::set_delegation_ttl,
        crate::wallet::routes::revoke_delegation,
        crate::wallet::routes::approvals,
        crate::wallet::routes::approval,
        crate::wallet::routes::approve,
        crate::wallet::routes::deny,
    ),
    components(
        schemas(Problem),
        responses(SignatureRejected, ScopeMissing, BodyTooLarge, AuthUnavailable),
    ),
    modifiers(&Additions),
    tags(
        (name = "meta", description = "Health, readiness, metrics and this document; no authentication."),
        (name = "keys", description = "The signing key itself."),
        (name = "providers", description = "The providers this host has loaded, the app's OAuth client configuration for each, and the app's identity provider (whose tokens a call's `user_token` is verified against)."),
        (name = "grants", description = "Grants (a principal's access to a provider) and managed secrets."),
        (name = "calls", description = "Calls to providers: retrieve mode and proxy mode."),
        (name = "approvals", description = "Human-in-the-loop approvals: proxied calls a require-approval policy rule holds until a person approves the exact stored request (then sent once) or denies it."),
        (name = "webhooks", description = "The app's webhook endpoint: signed events about approvals and grants, retried with backoff."),
        (name = "audit", description = "The app's audit log (for an agent key: the rows where that agent acted)."),
        (name = "agents", description = "The app's agents: workload identities with their own keys and audit trail; a disabled agent's keys are refused. Delegations let an agent use a grant it does not own."),
        (name = "policy", description = "The app's policy rules: restrictions on calls (time windows, IP allow-lists, groups, methods, rate limits, require-approval, custom Cedar `forbid` policies), decided by Cedar on every call."),
        (name = "wallet", description = "The end user's wallet: sign-in with the operator's identity provider, then the user's own grants, delegations, activity and approvals. Authenticated by the wallet's session cookie; changes also need the session's `x-csrf-token`."),
        (name = "connect", description = "Connecting end users' accounts at OAuth providers: sessions for apps (signed), and the consent page and callback for end users' browsers (unsigned)."),
    ),
)]
pub struct ApiDoc;

/// `GET /openapi.json`: this document, generated from the code.
///
/// Scope: none, and no signature: the document is public. Errors: none.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this host.", body = Object, content_type = "application/json"),
    ),
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// What the annotations cannot say: the security scheme, that the body of
/// `DELETE /v1/grants/{id}` is optional, and `GET /metrics`.
struct Additions;

impl Modify for Additions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                SIGNATURE_SCHEME,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "Signature",
                    "An RFC 9421 HTTP message signature (`hmac-sha256`) made with the signing \
                     key derived from a Tessera API key, over `@method`, `@target-uri` and \
                     `content-digest` (and `tessera-constraints` / `tessera-caller` when the \
                     request carries them), with the parameters `created`, `nonce`, `keyid` \
                     and `alg` in `Signature-Input`. Not a bearer token: the API key itself \
                     is never sent. The scheme, with worked examples, is `docs/SIGNING.md` in \
                     the Tessera repository. The scopes an operation lists are the Tessera \
                     scopes the key must hold (narrowed by `tessera-constraints`).",
                ))),
            );
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "wallet_session",
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                    "tessera_wallet",
                    "The wallet's session cookie, set by `GET /wallet/callback` after the user \
                     signed in with the operator's identity provider (HttpOnly, SameSite=Lax, \
                     path `/wallet`). Requests that change something also send the session's \
                     CSRF token (`GET /wallet/api/session`) in `x-csrf-token`.",
                ))),
            );
        // utoipa can only make a body optional with a nullable schema, but the host reads an
        // empty body, not `null`.
        if let Some(body) = doc
            .paths
            .paths
            .get_mut("/v1/grants/{id}")
            .and_then(|item| item.delete.as_mut())
            .and_then(|op| op.request_body.as_mut())
        {
            body.required = Some(Required::False);
        }
        if let Some(body) = doc
            .paths
            .paths
            .get_mut("/v1/delegations/{id}")
            .and_then(|item| item.delete.as_mut())
            .and_then(|op| op.request_body.as_mut())
        {
            body.required = Some(Required::False);
        }
        // Its handler is `crate::metrics::serve_metrics`, documented by hand here.
        let metrics = OperationBuilder::new()
            .tag("meta")
            .operation_id(Some("metrics"))
            .summary(Some("Prometheus metrics (OpenMetrics text format)."))
            .description(Some(
                "Request counts and latencies by route template, method and status, and \
                 provider-call timings. Unauthenticated, like `/healthz`: it holds counts and \
                 latencies only; restrict it at the network edge if that matters.",
            ))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The metrics, OpenMetrics text.")
                    .content(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ContentBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .build(),
                    ),
            );
        doc.paths
            .add_path_operation("/metrics", vec![HttpMethod::Get], metrics);
    }
}

/// A response whose body is a problem document.
fn problem_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            problem::CONTENT_TYPE,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

/// `401`: the signature did not verify (every `/v1` operation).
pub(super) struct SignatureRejected;

impl<'r> ToResponse<'r> for SignatureRejected {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "SignatureRejected",
            problem_response(
                "The request signature did not verify (`docs/SIGNING.md` §4). `code` is one \
                 of `signature_missing`, `signature_malformed`, \
                 `signature_algorithm_unsupported`, `signature_components_invalid`, \
                 `signature_expired`, `digest_missing`, `digest_mismatch`, `unknown_key`, \
                 `signature_invalid`, `nonce_replayed`.",
            ),
        )
    }
}

/// `403 insufficient_scope` (every `/v1` operation that needs a scope).
pub(super) struct ScopeMissing;

impl<'r> ToResponse<'r> for ScopeMissing {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "ScopeMissing",
            problem_response(
                "`insufficient_scope`: the key (narrowed by `tessera-constraints`, if sent) \
                 lacks a Tessera scope this operation needs; `missing_scopes` names them.",
            ),
        )
    }
}

/// `413 body_too_large` (every `/v1` operation).
pub(super) struct BodyTooLarge;

impl<'r> ToResponse<'r> for BodyTooLarge {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "BodyTooLarge",
            problem_response("`body_too_large`: the request body is over 1 MiB."),
        )
    }
}

/// `503 auth_unavailable`, for operations that write no audit row.
pub(super) struct AuthUnavailable;

impl<'r> ToResponse<'r> for AuthUnavailable {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "AuthUnavailable",
            problem_response(
                "`auth_unavailable`: the key or nonce store could not be read, so the \
                 signature could not be checked; retry later.",
            ),
        )
    }
}

/// The request headers of every `/v1` operation besides `Signature` (which the
/// `tessera_signature` scheme names).
pub(super) struct SignedHeaders;

impl IntoParams for SignedHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let header = |name: &str, required: Required, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(required)
                .description(Some(description))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build()
        };
        vec![
            header(
                "Signature-Input",
                Required::True,
                "The signature's covered components and parameters (`created`, `nonce`, \
                 `keyid`, `alg`), RFC 9421; see `docs/SIGNING.md` §2.",
            ),
            header(
                "Content-Digest",
                Required::True,
                "`sha-256=:BASE64:` of the request body (RFC 9530), sent for an empty body \
                 too; covered by the signature.",
            ),
            header(
                CONSTRAINTS_HEADER,
                Required::False,
                "Space- or comma-separated Tessera scopes: narrows the key's scopes for this \
                 request (never widens them). Covered by the signature when sent.",
            ),
            header(
                CALLER_HEADER,
                Required::False,
                "A caller name for attribution in the audit log (not an access boundary; cut \
                 at 128 characters). Covered by the signature when sent.",
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;
    use tessera_proto::scopes::Scope;

    use super::*;

    fn document() -> Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    const METHODS: [&str; 8] = [
        "get", "post", "put", "patch", "delete", "head", "options", "trace",
    ];

    /// (METHOD, path) of every operation in the document.
    fn operations(doc: &Value) -> BTreeSet<(String, String)> {
        let mut found = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if METHODS.contains(&method.as_str()) {
                    found.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        found
    }

    /// (METHOD, path) of every `.route(PATH, METHOD_ROUTER)` call in the two files that build
    /// the router.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let mut found = routes_in("api/mod.rs", include_str!("mod.rs"));
        found.extend(routes_in("server.rs", include_str!("../server.rs")));
        found
    }

    /// (METHOD, path) of every `.route(…)` call in `source`, comments left out. Anything else
    /// that could register a route (`nest`, `route_service`, a `merge` of another router than
    /// `api::routes()`) fails the test, so that no route can escape it.
    fn routes_in(file: &str, source: &str) -> BTreeSet<(String, String)> {
        let code: String = source
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for unseen in [".nest(", ".nest_service(", ".route_service("] {
            assert!(
                !code.contains(unseen),
                "{file} registers routes with `{unseen}`, which this test cannot see"
            );
        }
        for (at, _) in code.match_indices(".merge(") {
            assert!(
                code[at..].starts_with(".merge(api::routes())"),
                "{file} merges a router this test does not read"
            );
        }
        let mut found = BTreeSet::new();
        for (at, _) in code.match_indices(".route(") {
            let rest = code[at + ".route(".len()..].trim_start();
            let rest = rest
                .strip_prefix('"')
                .unwrap_or_else(|| panic!("{file}: a `.route(` whose path is not a literal"));
            let (path, rest) = rest.split_once('"').unwrap();
            // The method router: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .unwrap()
                .0;
            let router = &rest[..end];
            let before = found.len();
            for method in METHODS {
                for (i, _) in router.match_indices(&format!("{method}(")) {
                    let prev = router[..i].chars().next_back().unwrap_or(' ');
                    // `get(` or `.delete(`, not `grants::get(` or `forget(`.
                    if !(prev.is_alphanumeric() || prev == '_' || prev == ':') {
                        found.insert((method.to_uppercase(), path.to_owned()));
                    }
                }
            }
            assert!(found.len() > before, "{file}: no method found for {path}");
        }
        found
    }

    fn listed_routes() -> BTreeSet<(String, String)> {
        super::super::ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect()
    }

    #[test]
    fn document_is_openapi_3_1_and_covers_exactly_the_routes_the_router_serves() {
        let doc = document();
        let version = doc["openapi"].as_str().unwrap();
        assert!(version.starts_with("3.1."), "{version}");
        assert_eq!(doc["info"]["title"], "Tessera");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

        let served = routes_in_source();
        let listed = listed_routes();
        assert_eq!(
            served, listed,
            "api::ROUTES must list every route `.route(…)` registers, and nothing else"
        );
        // OpenAPI has no catch-all parameter: axum's `{*path}` is `{path}` there.
        let listed_as_documented: BTreeSet<(String, String)> = listed
            .iter()
            .map(|(m, p)| (m.clone(), p.replace("{*", "{")))
            .collect();
        assert_eq!(
            operations(&doc),
            listed_as_documented,
            "the OpenAPI document must describe exactly api::ROUTES: a new route needs a \
             `#[utoipa::path]` and an entry in ApiDoc's `paths(…)`"
        );
    }

    #[test]
    fn route_reader_sees_chained_methods_and_skips_comments_and_handler_names() {
        let sample = r#"
            Router::new()
                // .route("/commented-out", get(x))
                .route("/a", get(api::get_a))
                .route(
                    "/b/{id}",
                    get(b::get).delete(b::forget_b).post(post_b),
                )
                .merge(api::routes())
        "#;
        let pairs = |list: &[(&str, &str)]| -> BTreeSet<(String, String)> {
            list.iter()
                .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
                .collect()
        };
        assert_eq!(
            routes_in("sample", sample),
            pairs(&[
                ("GET", "/a"),
                ("GET", "/b/{id}"),
                ("DELETE", "/b/{id}"),
                ("POST", "/b/{id}")
            ])
        );
        let nested = std::panic::catch_unwind(|| routes_in("x", ".nest(\"/v2\", v2::routes())"));
        assert!(nested.is_err(), "a nested router must fail the test");
        let merged = std::panic::catch_unwind(|| routes_in("x", ".merge(metrics::routes())"));
        assert!(merged.is_err(), "a merged router must fail the test");
    }

    /// The response a `$ref` or inline response resolves to.
    fn resolve<'d>(doc: &'d Value, response: &'d Value) -> &'d Value {
        match response["$ref"].as_str() {
            Some(r) => {
                let name = r.strip_prefix("#/components/responses/").unwrap();
                &doc["components"]["responses"][name]
            }
            None => response,
        }
    }

    #[test]
    fn every_v1_operation_is_signed_scoped_and_documents_its_problems() {
        let doc = document();
        let scheme = &doc["components"]["securitySchemes"][SIGNATURE_SCHEME];
        assert_eq!(scheme["type"], "apiKey");
        assert_eq!(scheme["in"], "header");
        assert_eq!(scheme["name"], "Signature");
        assert!(
            scheme["description"]
                .as_str()
                .unwrap()
                .contains("docs/SIGNING.md")
        );

        let mut v1 = 0;
        for (method, path) in operations(&doc) {
            let op = &doc["paths"][&path][method.to_lowercase()];
            let what = format!("{method} {path}");
            if path.starts_with("/wallet/api/") {
                // The wallet's own API: the session cookie, never a signature.
                assert_eq!(
                    op["security"],
                    serde_json::json!([{ "wallet_session": [] }]),
                    "{what} must take the wallet session"
                );
                continue;
            }
            if !path.starts_with("/v1/") {
                assert!(
                    op.get("security").is_none(),
                    "{what} must be unauthenticated"
                );
                continue;
            }
            v1 += 1;
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}"));
            assert_eq!(security.len(), 1, "{what}");
            let scopes = security[0][SIGNATURE_SCHEME]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no {SIGNATURE_SCHEME} requirement"));
            for scope in scopes {
                let name = scope.as_str().unwrap();
                assert!(
                    name.parse::<Scope>().is_ok(),
                    "{what}: unknown scope {name}"
                );
            }
            let headers: BTreeSet<&str> = op["parameters"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no parameters"))
                .iter()
                .filter(|p| p["in"] == "header" && p["required"] == true)
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert!(
                headers.contains("Signature-Input") && headers.contains("Content-Digest"),
                "{what}: {headers:?}"
            );
            let responses = op["responses"].as_object().unwrap();
            let problems: Vec<&String> = responses
                .iter()
                .filter(|(status, _)| status.starts_with('4') || status.starts_with('5'))
                .map(|(status, response)| {
                    let content = &resolve(&doc, response)["content"];
                    assert_eq!(
                        content[problem::CONTENT_TYPE]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{what} {status}: not a problem document"
                    );
                    status
                })
                .collect();
            assert!(
                problems.iter().any(|s| s.starts_with('4')),
                "{what}: no 4xx problem response"
            );
            assert!(responses.contains_key("401"), "{what}: no 401");
            assert_eq!(
                responses.contains_key("403"),
                !scopes.is_empty(),
                "{what}: a 403 exactly when a scope is needed"
            );
        }
        assert!(v1 >= 9, "only {v1} /v1 operations");
    }

    #[test]
    fn every_reference_resolves() {
        fn walk<'d>(v: &'d Value, refs: &mut Vec<&'d str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        refs.push(r);
                    }
                    m.values().for_each(|v| walk(v, refs));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let doc = document();
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
    }

    #[test]
    fn wire_quirks_have_the_right_schemas() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        // `Principal` is its text form.
        assert_eq!(schemas["Principal"]["type"], "string");
        assert!(schemas["Principal"]["pattern"].is_string());
        // Header lists are arrays of [name, value] string pairs, not objects.
        let headers = &schemas["RetrieveResponse"]["properties"]["set_headers"];
        assert_eq!(headers["type"], "array");
        let pair = &headers["items"];
        assert_eq!(pair["type"], "array");
        assert_eq!(
            (pair["minItems"].as_u64(), pair["maxItems"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(pair["items"], false);
        assert_eq!(pair["prefixItems"][1]["type"], "string");
        // Scopes are their wire names.
        let scopes = schemas["Scope"]["enum"].as_array().unwrap();
        assert_eq!(scopes.len(), Scope::ALL.len());
        assert!(scopes.contains(&Value::from("tokens:retrieve")));
        // Flattened fields: the request is its own fields *and* those of the grant selector
        // and the audit note.
        for request in ["RetrieveRequest", "ProxyRequest"] {
            let parts: Vec<&Value> = schemas[request]["allOf"]
                .as_array()
                .unwrap()
                .iter()
                .collect();
            for flattened in ["GrantSelector", "CallNote"] {
                let target = format!("#/components/schemas/{flattened}");
                assert!(
                    parts.iter().any(|p| p["$ref"] == *target),
                    "{request}: {flattened}"
                );
            }
            assert!(
                parts
                    .iter()
                    .any(|p| p["properties"]["url"]["type"] == "string")
            );
        }
        assert_eq!(
            schemas["GrantSelector"]["properties"]["grant_id"]["type"][0],
            "string"
        );
        assert_eq!(
            schemas["CallNote"]["properties"]["context"]["type"],
            "object"
        );
        // An optional body is optional, not `null`.
        let revoke = &doc["paths"]["/v1/grants/{id}"]["delete"]["requestBody"];
        assert_eq!(revoke["required"], false);
        assert_eq!(
            revoke["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/RevokeRequest"
        );
        assert_eq!(schemas["Problem"]["properties"]["type"]["type"], "string");
    }
}
