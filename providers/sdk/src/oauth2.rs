//! Declarative OAuth 2 (authorization code grant, RFC 6749) with PKCE (RFC 7636), refresh and
//! RFC 7009 revocation.
//!
//! A provider crate describes its service with a `const` [`OAuth2`] spec, implements
//! [`OAuth2Provider`] (overriding a hook only for a real quirk) and exports
//! [`OAuth2Adapter<Self>`](OAuth2Adapter). The state machine here never sees the network: it
//! returns `send` and `redirect` steps and is resumed with what the host brings back. Its
//! opaque state (which may hold a PKCE verifier or a fresh token) is kept encrypted by the
//! host. Error messages never contain tokens, codes or client secrets.

use core::marker::PhantomData;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::http::{self, form_decode, header, pair, set_header};
use crate::{
    AuthKind, Classification, Connected, Context, Credential, Field, HttpRequest, HttpResponse,
    Input, Outgoing, Provider, ProviderError, ProviderInfo, RedirectTo, Scope, Step, UpstreamError,
    classify, hosts, pkce,
};

/// How the client authenticates to the token (and revocation) endpoint (RFC 6749 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
    ClientSecretBasic,
    /// A public client: `client_id` in the body, no secret.
    None,
}

/// Which token an RFC 7009 revocation request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeToken {
    /// Always the access token.
    Access,
    /// The refresh token where there is one (revoking it usually ends the whole grant),
    /// else the access token.
    RefreshElseAccess,
}

/// How (and whether) a credential is revoked upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The provider has no revocation endpoint.
    Unsupported,
    /// An RFC 7009 form `POST` of `token` and `token_type_hint`.
    Rfc7009 {
        /// The revocation endpoint.
        url: &'static str,
        /// Which token to name.
        token: RevokeToken,
        /// Whether to authenticate the client as for the token endpoint.
        client_auth: bool,
    },
    /// The provider overrides [`OAuth2Provider::revoke`] with its own request.
    Custom,
}

/// Where the fields of a token response are (RFC 6901 JSON pointers). Form-encoded
/// responses are read as a flat JSON object, so `/access_token` works for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenFormat {
    /// The access token (`/access_token`; Slack user tokens: `/authed_user/access_token`).
    pub access_token: &'static str,
    /// The refresh token, if any.
    pub refresh_token: &'static str,
    /// Lifetime in seconds (a number or a numeric string).
    pub expires_in: &'static str,
    /// The granted scopes.
    pub scope: &'static str,
    /// The token type.
    pub token_type: &'static str,
    /// An account label carried by the token response itself (Slack team name), if any.
    pub account_label: Option<&'static str>,
    /// Non-secret values to keep as credential metadata: (metadata name, pointer).
    pub metadata: &'static [(&'static str, &'static str)],
}

impl TokenFormat {
    /// RFC 6749 §5.1 field names at the top level.
    pub const STANDARD: TokenFormat = TokenFormat {
        access_token: "/access_token",
        refresh_token: "/refresh_token",
        expires_in: "/expires_in",
        scope: "/scope",
        token_type: "/token_type",
        account_label: None,
        metadata: &[],
    };
}

/// A request made with the new access token to learn who the account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLookup {
    /// The URL to `GET` (may use `{param}` connection-parameter templates).
    pub url: &'static str,
    /// Headers for this request, on top of `Accept: application/json` and the API headers.
    pub headers: &'static [(&'static str, &'static str)],
    /// JSON pointers tried in order; the first string (or number) found is the label.
    pub label_pointers: &'static [&'static str],
    /// Non-secret values to keep as credential metadata: (metadata name, pointer).
    pub metadata: &'static [(&'static str, &'static str)],
}

/// A connection parameter asked for before connecting (Microsoft `tenant`, Shopify `shop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Machine name, `snake_case`.
    pub name: &'static str,
    /// Short human label.
    pub label: &'static str,
    /// One sentence saying where to find the value.
    pub description: &'static str,
    /// Whether it may be left empty.
    pub optional: bool,
    /// An example value.
    pub example: Option<&'static str>,
}

/// Everything a standard OAuth 2 provider is, as data.
///
/// Start from [`OAuth2::BASE`] with struct update syntax and set what differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuth2 {
    /// Stable identifier, lower-case `[a-z0-9-]`.
    pub id: &'static str,
    /// Name shown to people.
    pub display_name: &'static str,
    /// The component's own semantic version.
    pub version: &'static str,
    /// Free-form categories.
    pub categories: &'static [&'static str],
    /// The authorization endpoint (may use `{param}` templates).
    pub authorize_url: &'static str,
    /// The token endpoint (may use `{param}` templates).
    pub token_url: &'static str,
    /// Upstream revocation.
    pub revocation: Revocation,
    /// Scopes requested when the operator configures none.
    pub default_scopes: &'static [&'static str],
    /// How scopes are joined in the authorization request.
    pub scope_separator: &'static str,
    /// Scope names with words a person understands: (scope, label).
    pub scopes: &'static [(&'static str, &'static str)],
    /// Whether to use PKCE (S256).
    pub pkce: bool,
    /// Client authentication at the token endpoint.
    pub client_auth: ClientAuth,
    /// Extra authorization-request parameters (`access_type=offline`, ...).
    pub authorize_params: &'static [(&'static str, &'static str)],
    /// The egress allow-list (see [`hosts`]).
    pub allowed_hosts: &'static [&'static str],
    /// Parameters asked for before connecting; copied into the credential's metadata.
    pub connection_params: &'static [Param],
    /// Logo URL.
    pub logo_url: Option<&'static str>,
    /// Documentation URL.
    pub docs_url: Option<&'static str>,
    /// Where the token response keeps its fields.
    pub token_format: TokenFormat,
    /// Token-endpoint error codes that mean the grant is dead (→ `reauthorize-required`).
    pub reauthorize_errors: &'static [&'static str],
    /// Who-am-I request made after the token exchange, if any.
    pub account: Option<AccountLookup>,
    /// Headers added to token-endpoint requests (`Accept: application/json` is always sent).
    pub token_headers: &'static [(&'static str, &'static str)],
    /// Headers added (when absent) to signed API requests and the account lookup.
    pub api_headers: &'static [(&'static str, &'static str)],
    /// Whether `refresh` can renew a credential (it still needs a refresh token).
    pub supports_refresh: bool,
}

impl OAuth2 {
    /// A blank spec with standard defaults: space-separated scopes, PKCE,
    /// `client_secret_post`, the RFC 6749 token format, `invalid_grant` as the dead-grant
    /// error, refresh supported, no revocation.
    pub const BASE: OAuth2 = OAuth2 {
        id: "",
        display_name: "",
        version: "0.1.0",
        categories: &[],
        authorize_url: "",
        token_url: "",
        revocation: Revocation::Unsupported,
        default_scopes: &[],
        scope_separator: " ",
        scopes: &[],
        pkce: true,
        client_auth: ClientAuth::ClientSecretPost,
        authorize_params: &[],
        allowed_hosts: &[],
        connection_params: &[],
        logo_url: None,
        docs_url: None,
        token_format: TokenFormat::STANDARD,
        reauthorize_errors: &["invalid_grant"],
        account: None,
        token_headers: &[],
        api_headers: &[],
        supports_refresh: true,
    };

    /// The manifest this spec describes.
    pub fn info(&self) -> ProviderInfo {
        let strings = |s: &[&str]| s.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>();
        ProviderInfo {
            id: self.id.into(),
            display_name: self.display_name.into(),
            version: self.version.into(),
            categories: strings(self.categories),
            auth_kind: AuthKind::Oauth2,
            default_scopes: strings(self.default_scopes),
            scope_separator: self.scope_separator.into(),
            scopes: self
                .scopes
                .iter()
                .map(|(name, label)| Scope {
                    name: (*name).into(),
                    label: (*label).into(),
                })
                .collect(),
            allowed_hosts: strings(self.allowed_hosts),
            secret_fields: Vec::new(),
            connection_params: self
                .connection_params
                .iter()
                .map(|p| Field {
                    name: p.name.into(),
                    label: p.label.into(),
                    description: p.description.into(),
                    secret: false,
                    optional: p.optional,
                    example: p.example.map(Into::into),
                })
                .collect(),
            pkce: self.pkce,
            supports_refresh: self.supports_refresh,
            supports_revoke: self.revocation != Revocation::Unsupported,
            logo_url: self.logo_url.map(Into::into),
            docs_url: self.docs_url.map(Into::into),
        }
    }
}

/// A standard OAuth 2 provider: a [`OAuth2`] spec plus optional hooks for quirks.
pub trait OAuth2Provider {
    /// The provider, as data.
    const SPEC: OAuth2;

    /// The account label from the account-lookup response. Default: the first of
    /// [`AccountLookup::label_pointers`] that holds a string or number.
    fn account_label(json: &Value) -> Option<String> {
        Self::SPEC
            .account
            .and_then(|lookup| first_string(json, lookup.label_pointers))
    }

    /// Classifies an API response. Default: [`classify::standard`].
    fn classify(response: &HttpResponse, now: u64) -> Classification {
        classify::standard(response, now)
    }

    /// The upstream revocation request. Default: per [`OAuth2::revocation`].
    fn revoke(ctx: &Context, credential: &Credential) -> Option<HttpRequest> {
        rfc7009_revoke(&Self::SPEC, ctx, credential)
    }
}

/// Implements [`Provider`] for an [`OAuth2Provider`]; export it with
/// `export_provider!(OAuth2Adapter<MyProvider>)`.
pub struct OAuth2Adapter<T>(PhantomData<T>);

/// The flow state carried between steps (serialized as JSON, encrypted by the host).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum FlowState {
    /// Waiting for the browser to come back.
    Authorize {
        state: String,
        verifier: Option<String>,
        scopes: Vec<String>,
    },
    /// Waiting for the code exchange.
    Token { scopes: Vec<String> },
    /// Waiting for the account lookup, with the finished credential.
    Account {
        credential: StoredCredential,
        label: String,
    },
    /// Waiting for a refresh response.
    Refresh {
        refresh_token: String,
        scopes: Vec<String>,
        metadata: Vec<(String, String)>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredCredential {
    secrets: Vec<(String, String)>,
    metadata: Vec<(String, String)>,
    scopes: Vec<String>,
    expires_at: Option<u64>,
}

impl From<StoredCredential> for Credential {
    fn from(c: StoredCredential) -> Self {
        Credential {
            secrets: c.secrets,
            metadata: c.metadata,
            scopes: c.scopes,
            expires_at: c.expires_at,
        }
    }
}

impl From<Credential> for StoredCredential {
    fn from(c: Credential) -> Self {
        StoredCredential {
            secrets: c.secrets,
            metadata: c.metadata,
            scopes: c.scopes,
            expires_at: c.expires_at,
        }
    }
}

fn encode_state(state: &FlowState) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(state)
        .map_err(|_| ProviderError::InvalidInput("the flow state could not be encoded".into()))
}

fn decode_state(bytes: &[u8]) -> Result<FlowState, ProviderError> {
    serde_json::from_slice(bytes).map_err(|_| {
        ProviderError::InvalidInput("the flow state does not belong to this provider".into())
    })
}

fn step(result: Result<Step, ProviderError>) -> Step {
    result.unwrap_or_else(Step::Fail)
}

/// Parameter names the operator's extra parameters may not override.
const RESERVED_AUTHORIZE_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

impl<T: OAuth2Provider> Provider for OAuth2Adapter<T> {
    fn info() -> ProviderInfo {
        T::SPEC.info()
    }

    fn begin_connect(ctx: Context) -> Step {
        step(begin(&T::SPEC, &ctx))
    }

    fn resume(ctx: Context, state: Vec<u8>, input: Input) -> Step {
        step(resume_flow::<T>(&ctx, &state, input))
    }

    fn refresh(ctx: Context, credential: Credential) -> Step {
        step(refresh_request(&T::SPEC, &ctx, &credential))
    }

    fn sign(
        request: HttpRequest,
        credential: Credential,
        _now: u64,
    ) -> Result<HttpRequest, ProviderError> {
        sign_bearer(&T::SPEC, request, &credential)
    }

    fn classify(response: HttpResponse, now: u64) -> Classification {
        T::classify(&response, now)
    }

    fn revoke(ctx: Context, credential: Credential) -> Option<HttpRequest> {
        T::revoke(&ctx, &credential)
    }
}

/// Builds the authorization redirect (step one of the code flow).
fn begin(spec: &OAuth2, ctx: &Context) -> Result<Step, ProviderError> {
    if ctx.client_id.is_empty() {
        return Err(ProviderError::InvalidInput(
            "no OAuth client id is configured for this provider".into(),
        ));
    }
    if ctx.state.is_empty() {
        return Err(ProviderError::InvalidInput(
            "the host sent an empty state".into(),
        ));
    }
    let authorize_url = templated(spec.authorize_url, &ctx.connection_params)?;
    let scopes = requested_scopes(spec, ctx);
    let mut params: Vec<(String, String)> = vec![
        ("response_type".into(), "code".into()),
        ("client_id".into(), ctx.client_id.clone()),
        ("redirect_uri".into(), ctx.redirect_uri.clone()),
    ];
    if !scopes.is_empty() {
        params.push(("scope".into(), scopes.join(spec.scope_separator)));
    }
    params.push(("state".into(), ctx.state.clone()));
    let verifier = if spec.pkce {
        let verifier = pkce::verifier(&ctx.entropy)?;
        params.push(("code_challenge".into(), pkce::challenge(&verifier)));
        params.push(("code_challenge_method".into(), pkce::METHOD.into()));
        Some(verifier)
    } else {
        None
    };
    let operator = ctx
        .extra_params
        .iter()
        .filter(|(k, _)| !RESERVED_AUTHORIZE_PARAMS.contains(&k.as_str()));
    for (k, v) in spec.authorize_params {
        if !ctx.extra_params.iter().any(|(name, _)| name == k) {
            params.push(((*k).into(), (*v).into()));
        }
    }
    params.extend(operator.cloned());
    let state = FlowState::Authorize {
        state: ctx.state.clone(),
        verifier,
        scopes,
    };
    Ok(Step::Redirect(RedirectTo {
        url: http::with_query(&authorize_url, &params),
        state: encode_state(&state)?,
    }))
}

fn requested_scopes(spec: &OAuth2, ctx: &Context) -> Vec<String> {
    if ctx.scopes.is_empty() {
        spec.default_scopes
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        ctx.scopes.clone()
    }
}

fn templated(url: &str, params: &[(String, String)]) -> Result<String, ProviderError> {
    hosts::fill_template(url, params).ok_or_else(|| {
        ProviderError::InvalidInput("a connection parameter is missing or malformed".into())
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn resume_flow<T: OAuth2Provider>(
    ctx: &Context,
    state: &[u8],
    input: Input,
) -> Result<Step, ProviderError> {
    let spec = &T::SPEC;
    match (decode_state(state)?, input) {
        (
            FlowState::Authorize {
                state,
                verifier,
                scopes,
            },
            Input::Callback(query),
        ) => callback(spec, ctx, &state, verifier.as_deref(), scopes, &query),
        (FlowState::Token { scopes }, Input::HttpResponse(response)) => {
            let grant = parse_token_response(spec, &response)?;
            let label = grant.label.clone().unwrap_or_default();
            let credential = grant.into_credential(spec, ctx, scopes, None, Vec::new());
            after_token::<T>(ctx, credential, label)
        }
        (FlowState::Account { credential, label }, Input::HttpResponse(response)) => {
            let mut credential = Credential::from(credential);
            let json = (200..300)
                .contains(&response.status)
                .then(|| serde_json::from_slice::<Value>(&response.body).ok())
                .flatten();
            // The label is best effort: a token without the scope to read the profile is
            // still a working grant.
            let label = json.as_ref().and_then(T::account_label).unwrap_or(label);
            if let (Some(json), Some(lookup)) = (&json, spec.account) {
                add_metadata(&mut credential.metadata, json, lookup.metadata);
            }
            Ok(Step::Done(Connected {
                credential,
                account_label: label,
            }))
        }
        (
            FlowState::Refresh {
                refresh_token,
                scopes,
                metadata,
            },
            Input::HttpResponse(response),
        ) => {
            let grant = parse_token_response(spec, &response)?;
            let label = grant.label.clone().unwrap_or_default();
            let credential =
                grant.into_credential(spec, ctx, scopes, Some(refresh_token), metadata);
            Ok(Step::Done(Connected {
                credential,
                account_label: label,
            }))
        }
        _ => Err(ProviderError::InvalidInput(
            "unexpected input for this step of the flow".into(),
        )),
    }
}

fn callback(
    spec: &OAuth2,
    ctx: &Context,
    expected_state: &str,
    verifier: Option<&str>,
    scopes: Vec<String>,
    query: &[(String, String)],
) -> Result<Step, ProviderError> {
    let returned = pair(query, "state").unwrap_or_default();
    if !constant_time_eq(returned.as_bytes(), expected_state.as_bytes()) {
        return Err(ProviderError::InvalidInput(
            "the callback's state does not match this flow".into(),
        ));
    }
    if let Some(error) = pair(query, "error") {
        let description = pair(query, "error_description")
            .unwrap_or_default()
            .to_owned();
        return Err(if error == "access_denied" {
            ProviderError::AccessDenied(if description.is_empty() {
                "the authorization was refused".into()
            } else {
                description
            })
        } else {
            ProviderError::Upstream(UpstreamError {
                status: 0,
                code: error.to_owned(),
                description,
            })
        });
    }
    let code = pair(query, "code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ProviderError::InvalidInput("the callback carries no code".into()))?;
    let mut form: Vec<(String, String)> = vec![
        ("grant_type".into(), "authorization_code".into()),
        ("code".into(), code.to_owned()),
        ("redirect_uri".into(), ctx.redirect_uri.clone()),
    ];
    if let Some(verifier) = verifier {
        form.push(("code_verifier".into(), verifier.to_owned()));
    }
    let request = token_request(spec, ctx, form)?;
    Ok(Step::Send(Outgoing {
        request,
        state: encode_state(&FlowState::Token { scopes })?,
    }))
}

/// A form `POST` to the token endpoint with client authentication per the spec.
pub fn token_request(
    spec: &OAuth2,
    ctx: &Context,
    mut form: Vec<(String, String)>,
) -> Result<HttpRequest, ProviderError> {
    let url = templated(spec.token_url, &ctx.connection_params)?;
    let mut headers = vec![("Accept", "application/json")];
    headers.extend(spec.token_headers.iter().copied());
    let basic = client_auth(spec.client_auth, ctx, &mut form);
    let mut request = http::post_form(url, &form, &headers);
    if let Some(basic) = basic {
        set_header(&mut request.headers, "Authorization", basic);
    }
    Ok(request)
}

/// Adds client credentials to `form` per `method`; returns a Basic header value if needed.
fn client_auth(
    method: ClientAuth,
    ctx: &Context,
    form: &mut Vec<(String, String)>,
) -> Option<String> {
    match (method, ctx.client_secret.as_deref()) {
        (ClientAuth::ClientSecretBasic, Some(secret)) => {
            Some(http::basic_auth_oauth(&ctx.client_id, secret))
        }
        (ClientAuth::ClientSecretPost, Some(secret)) => {
            form.push(("client_id".into(), ctx.client_id.clone()));
            form.push(("client_secret".into(), secret.to_owned()));
            None
        }
        _ => {
            form.push(("client_id".into(), ctx.client_id.clone()));
            None
        }
    }
}

/// What a successful token response carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if the response had one.
    pub refresh_token: Option<String>,
    /// Lifetime in seconds, if given.
    pub expires_in: Option<u64>,
    /// Granted scopes, if the response said.
    pub scopes: Option<Vec<String>>,
    /// The token type, if given.
    pub token_type: Option<String>,
    /// An account label from the response, where [`TokenFormat::account_label`] says.
    pub label: Option<String>,
    /// Metadata picked by [`TokenFormat::metadata`].
    pub metadata: Vec<(String, String)>,
}

impl TokenGrant {
    fn into_credential(
        self,
        spec: &OAuth2,
        ctx: &Context,
        requested_scopes: Vec<String>,
        old_refresh_token: Option<String>,
        mut metadata: Vec<(String, String)>,
    ) -> Credential {
        let mut secrets = vec![("access_token".to_owned(), self.access_token)];
        if let Some(refresh) = self.refresh_token.or(old_refresh_token) {
            secrets.push(("refresh_token".into(), refresh));
        }
        for name in spec.connection_params.iter().map(|p| p.name) {
            if let Some(value) = pair(&ctx.connection_params, name) {
                upsert(&mut metadata, name, value);
            }
        }
        if let Some(token_type) = &self.token_type {
            upsert(&mut metadata, "token_type", token_type);
        }
        for (k, v) in &self.metadata {
            upsert(&mut metadata, k, v);
        }
        Credential {
            secrets,
            metadata,
            scopes: self.scopes.unwrap_or(requested_scopes),
            expires_at: self.expires_in.map(|s| ctx.now.saturating_add(s)),
        }
    }
}

fn upsert(pairs: &mut Vec<(String, String)>, name: &str, value: &str) {
    match pairs.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => value.clone_into(&mut slot.1),
        None => pairs.push((name.to_owned(), value.to_owned())),
    }
}

/// Reads a response body as JSON, or as a form-encoded body turned into a flat JSON object.
pub fn body_as_json(response: &HttpResponse) -> Option<Value> {
    if let Ok(json) = serde_json::from_slice::<Value>(&response.body) {
        return Some(json);
    }
    let content_type = header(&response.headers, "content-type").unwrap_or_default();
    let looks_like_form = content_type.contains("x-www-form-urlencoded")
        || (!response.body.is_empty() && response.body.contains(&b'='));
    if !looks_like_form || core::str::from_utf8(&response.body).is_err() {
        return None;
    }
    let map: Map<String, Value> = form_decode(&response.body)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Some(Value::Object(map))
}

/// The string at `pointer` (numbers and booleans are rendered; empty strings count as absent).
pub fn string_at(json: &Value, pointer: &str) -> Option<String> {
    match json.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first of `pointers` that [`string_at`] finds.
pub fn first_string(json: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| string_at(json, p))
}

fn add_metadata(metadata: &mut Vec<(String, String)>, json: &Value, picks: &[(&str, &str)]) {
    for (name, pointer) in picks {
        if let Some(value) = string_at(json, pointer) {
            upsert(metadata, name, &value);
        }
    }
}

/// Parses a token-endpoint response (RFC 6749 §5.1/§5.2) per the spec's [`TokenFormat`].
///
/// Errors are recognised in any status, including HTTP 200 with an `error` field (GitHub):
/// codes in [`OAuth2::reauthorize_errors`] give `reauthorize-required`, others `upstream`.
pub fn parse_token_response(
    spec: &OAuth2,
    response: &HttpResponse,
) -> Result<TokenGrant, ProviderError> {
    let status = response.status;
    let json = body_as_json(response).filter(Value::is_object);
    let Some(json) = json else {
        return Err(if (200..300).contains(&status) {
            ProviderError::MalformedResponse("the token response is not JSON or a form".into())
        } else {
            ProviderError::Upstream(UpstreamError {
                status,
                code: format!("http_{status}"),
                description: "the token endpoint answered with an error".into(),
            })
        });
    };
    if let Some(code) = string_at(&json, "/error") {
        let description = string_at(&json, "/error_description").unwrap_or_default();
        return Err(if spec.reauthorize_errors.contains(&code.as_str()) {
            ProviderError::ReauthorizeRequired(if description.is_empty() {
                format!("the provider answered {code}")
            } else {
                description
            })
        } else {
            ProviderError::Upstream(UpstreamError {
                status,
                code,
                description,
            })
        });
    }
    if !(200..300).contains(&status) {
        return Err(ProviderError::Upstream(UpstreamError {
            status,
            code: format!("http_{status}"),
            description: "the token endpoint answered with an error".into(),
        }));
    }
    let format = &spec.token_format;
    let access_token = string_at(&json, format.access_token).ok_or_else(|| {
        ProviderError::MalformedResponse("the token response has no access token".into())
    })?;
    let expires_in = match json.pointer(format.expires_in) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(bad_expiry)?),
        Some(Value::String(s)) => Some(s.trim().parse::<u64>().map_err(|_| bad_expiry())?),
        Some(_) => return Err(bad_expiry()),
    };
    let separator = spec.scope_separator;
    let scopes = string_at(&json, format.scope).map(|s| {
        s.split(|c: char| c.is_whitespace() || c == ',' || separator.contains(c))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let mut metadata = Vec::new();
    add_metadata(&mut metadata, &json, format.metadata);
    Ok(TokenGrant {
        access_token,
        refresh_token: string_at(&json, format.refresh_token),
        expires_in,
        scopes,
        token_type: string_at(&json, format.token_type),
        label: format.account_label.and_then(|p| string_at(&json, p)),
        metadata,
    })
}

fn bad_expiry() -> ProviderError {
    ProviderError::MalformedResponse("the token response has an invalid expires_in".into())
}

fn after_token<T: OAuth2Provider>(
    ctx: &Context,
    credential: Credential,
    label: String,
) -> Result<Step, ProviderError> {
    let spec = &T::SPEC;
    let Some(lookup) = spec.account else {
        return Ok(Step::Done(Connected {
            credential,
            account_label: label,
        }));
    };
    let url = templated(lookup.url, &ctx.connection_params)?;
    let mut request = http::get(url, &[("Accept", "application/json")]);
    for (k, v) in spec.api_headers.iter().chain(lookup.headers) {
        set_header(&mut request.headers, k, *v);
    }
    let token = pair(&credential.secrets, "access_token").unwrap_or_default();
    http::bearer(&mut request, token);
    Ok(Step::Send(Outgoing {
        request,
        state: encode_state(&FlowState::Account {
            credential: credential.into(),
            label,
        })?,
    }))
}

fn refresh_request(
    spec: &OAuth2,
    ctx: &Context,
    credential: &Credential,
) -> Result<Step, ProviderError> {
    if !spec.supports_refresh {
        return Err(ProviderError::Unsupported(
            "this provider's tokens cannot be refreshed".into(),
        ));
    }
    let Some(refresh_token) = pair(&credential.secrets, "refresh_token").filter(|t| !t.is_empty())
    else {
        return Err(ProviderError::ReauthorizeRequired(
            "the credential has no refresh token".into(),
        ));
    };
    // Connection parameters live in the credential's metadata after connecting.
    let mut ctx = ctx.clone();
    for (k, v) in &credential.metadata {
        if pair(&ctx.connection_params, k).is_none() {
            ctx.connection_params.push((k.clone(), v.clone()));
        }
    }
    let form = vec![
        ("grant_type".to_owned(), "refresh_token".to_owned()),
        ("refresh_token".to_owned(), refresh_token.to_owned()),
    ];
    let request = token_request(spec, &ctx, form)?;
    Ok(Step::Send(Outgoing {
        request,
        state: encode_state(&FlowState::Refresh {
            refresh_token: refresh_token.to_owned(),
            scopes: credential.scopes.clone(),
            metadata: credential.metadata.clone(),
        })?,
    }))
}

/// Signs `request` with `Authorization: Bearer <access_token>` after checking the host
/// against the spec's allow-list (templates filled from the credential's metadata), and adds
/// the spec's API headers where absent.
pub fn sign_bearer(
    spec: &OAuth2,
    mut request: HttpRequest,
    credential: &Credential,
) -> Result<HttpRequest, ProviderError> {
    hosts::check_url(&request.url, spec.allowed_hosts, &credential.metadata)?;
    let token = pair(&credential.secrets, "access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ProviderError::ReauthorizeRequired("the credential has no access token".into())
        })?;
    http::bearer(&mut request, token);
    for (k, v) in spec.api_headers {
        http::default_header(&mut request.headers, k, v);
    }
    Ok(request)
}

/// The RFC 7009 revocation request for `credential`, per [`OAuth2::revocation`].
pub fn rfc7009_revoke(
    spec: &OAuth2,
    ctx: &Context,
    credential: &Credential,
) -> Option<HttpRequest> {
    let Revocation::Rfc7009 {
        url,
        token,
        client_auth: authenticate,
    } = spec.revocation
    else {
        return None;
    };
    let refresh = pair(&credential.secrets, "refresh_token").filter(|t| !t.is_empty());
    let access = pair(&credential.secrets, "access_token").filter(|t| !t.is_empty());
    let (value, hint) = match (token, refresh, access) {
        (RevokeToken::RefreshElseAccess, Some(r), _) => (r, "refresh_token"),
        (_, _, Some(a)) => (a, "access_token"),
        _ => return None,
    };
    let mut form = vec![
        ("token".to_owned(), value.to_owned()),
        ("token_type_hint".to_owned(), hint.to_owned()),
    ];
    let basic = if authenticate {
        client_auth(spec.client_auth, ctx, &mut form)
    } else {
        None
    };
    let url = hosts::fill_template(url, &credential.metadata)?;
    let mut request = http::post_form(url, &form, &[]);
    if let Some(basic) = basic {
        set_header(&mut request.headers, "Authorization", basic);
    }
    Some(request)
}

#[cfg(test)]
mod tests;
