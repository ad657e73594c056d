//! Generic OAuth 2 / `OpenID` Connect provider: any authorization server an operator points it
//! at (Keycloak, Okta, Auth0, a company SSO), configured by connection parameters instead of
//! code.
//!
//! Where the server is: `issuer` (its `/.well-known/openid-configuration` is fetched as a
//! `send` step, and the document's `issuer` must equal the configured one exactly), or
//! explicit `authorization_endpoint` and `token_endpoint` (then nothing is discovered, and
//! `issuer`, if given, is only what RFC 9207 `iss` values are compared with). Explicit
//! `revocation_endpoint` and `userinfo_endpoint` win over discovered ones. URLs must be
//! `https`; plain `http` is accepted only on `127.0.0.1` and `localhost`, for test servers.
//!
//! Egress: the allow-list is templates over the connection parameters, which the credential
//! keeps as metadata (`{issuer}`, `{token_endpoint}`, ... allow exactly the host and port of
//! those URLs). During connect only the operator's parameters fill the templates, so a token
//! or userinfo endpoint that discovery names must be on the issuer's own host and port;
//! otherwise the connect fails (token) or skips the lookup (userinfo), and the operator sets
//! the endpoint explicitly. Credentials are signed (`Authorization: Bearer`) only for
//! `api_host`, never for the authorization server's own hosts.
//!
//! Connect: PKCE S256 with the verifier from `ctx.entropy`; `prompt=consent` is added when
//! `offline_access` is requested (`OpenID` Connect Core §11) unless the operator sets `prompt`.
//! The callback's `iss` is checked when present and required when the discovery document
//! says `authorization_response_iss_parameter_supported`. The client authenticates at the
//! token endpoint per `token_auth`: `client_secret_basic` (default), `client_secret_post`, or
//! `none` for a public client.
//!
//! The account label comes from the ID token's `email`, `preferred_username` or `sub` claim.
//! The ID token's payload is decoded **without verifying its signature**: it came straight
//! from the token endpoint over TLS in answer to this client's own authenticated request
//! (`OpenID` Connect Core §3.1.3.7 allows TLS server validation in place of the signature in
//! exactly this case), and it is used only for the label and the `sub` metadata, never for
//! an authorization decision. Without an ID token, the userinfo endpoint is asked instead.
//!
//! Refresh and revocation read the endpoints from the credential's metadata, so they need no
//! rediscovery. A refresh keeps the old refresh token when the server does not rotate it;
//! `invalid_grant` means the grant is gone. Revocation is RFC 7009, naming the refresh token
//! (which ends the whole grant at most servers), else the access token.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_provider_sdk::http::{self, pair, set_header};
use tessera_provider_sdk::oauth2::{
    ClientAuth, Param, Revocation, body_as_json, first_string, parse_token_response, sign_bearer,
    string_at,
};
use tessera_provider_sdk::{
    Connected, Context, Credential, HttpRequest, HttpResponse, Input, OAuth2, Outgoing, Pairs,
    Provider, ProviderError, ProviderInfo, RedirectTo, Step, UpstreamError, hosts, pkce,
};

/// The generic OAuth 2 / `OpenID` Connect provider.
pub struct GenericOAuth2;

/// Hosts credentials are signed for: the operator's API host only.
const SIGN_HOSTS: &[&str] = &["{api_host}"];

/// The egress allow-list: the API host and the authorization server's endpoints, each the
/// host and port of a connection parameter (or the same name in the credential's metadata).
const EGRESS_HOSTS: &[&str] = &[
    "{api_host}",
    "{issuer}",
    "{token_endpoint}",
    "{userinfo_endpoint}",
    "{revocation_endpoint}",
];

const PARAMS: &[Param] = &[
    Param {
        name: "issuer",
        label: "Issuer URL",
        description: "The authorization server's issuer; its /.well-known/openid-configuration is read unless both endpoints below are set (https, or http on 127.0.0.1 or localhost).",
        optional: true,
        example: Some("https://idp.example.com/realms/acme"),
    },
    Param {
        name: "authorization_endpoint",
        label: "Authorization endpoint",
        description: "Where users authorize; set it with the token endpoint to skip discovery.",
        optional: true,
        example: Some("https://idp.example.com/realms/acme/protocol/openid-connect/auth"),
    },
    Param {
        name: "token_endpoint",
        label: "Token endpoint",
        description: "Where codes and refresh tokens are exchanged; set it with the authorization endpoint to skip discovery.",
        optional: true,
        example: Some("https://idp.example.com/realms/acme/protocol/openid-connect/token"),
    },
    Param {
        name: "revocation_endpoint",
        label: "Revocation endpoint",
        description: "RFC 7009 token revocation, if the server has it and discovery does not name it.",
        optional: true,
        example: Some("https://idp.example.com/realms/acme/protocol/openid-connect/revoke"),
    },
    Param {
        name: "userinfo_endpoint",
        label: "Userinfo endpoint",
        description: "Asked for the account name when the token response carries no ID token.",
        optional: true,
        example: Some("https://idp.example.com/realms/acme/protocol/openid-connect/userinfo"),
    },
    Param {
        name: "api_host",
        label: "API host",
        description: "The host API calls are signed for, with :port when it is not 443.",
        optional: false,
        example: Some("api.example.com"),
    },
    Param {
        name: "token_auth",
        label: "Client authentication",
        description: "How the client authenticates at the token endpoint: client_secret_basic (default), client_secret_post, or none for a public client.",
        optional: true,
        example: Some("client_secret_basic"),
    },
];

/// The provider as data: manifest fields, token-response parsing and Bearer signing. Its
/// endpoints are empty because they come from the connection parameters.
const SPEC: OAuth2 = OAuth2 {
    id: "oauth2",
    display_name: "OAuth 2 / OpenID Connect",
    version: "0.1.0",
    categories: &["identity", "sso"],
    revocation: Revocation::Custom,
    default_scopes: &["openid", "profile", "email", "offline_access"],
    scope_separator: " ",
    scopes: &[
        ("openid", "Know who you are at your identity provider"),
        ("profile", "See your name and user name"),
        ("email", "See your email address"),
        (
            "offline_access",
            "Keep access while you are not using the app",
        ),
    ],
    pkce: true,
    client_auth: ClientAuth::ClientSecretBasic,
    allowed_hosts: SIGN_HOSTS,
    connection_params: PARAMS,
    docs_url: Some("https://openid.net/specs/openid-connect-discovery-1_0.html"),
    supports_refresh: true,
    ..OAuth2::BASE
};

/// Authorization-request parameters the operator's extra parameters may not override.
const RESERVED_AUTHORIZE_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// ID-token and userinfo claims tried, in order, for the account label.
const LABEL_CLAIMS: &[&str] = &["/email", "/preferred_username", "/sub"];

/// Client authentication at the token and revocation endpoints (RFC 6749 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TokenAuth {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

impl TokenAuth {
    fn parse(value: Option<&str>) -> Result<Self, ProviderError> {
        match value.map(str::trim).unwrap_or_default() {
            "" | "client_secret_basic" => Ok(Self::ClientSecretBasic),
            "client_secret_post" => Ok(Self::ClientSecretPost),
            "none" => Ok(Self::None),
            other => Err(invalid(format!(
                "token_auth `{other}` is not one of client_secret_basic, client_secret_post, none"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }

    /// Adds client credentials to `form`; returns the `Authorization: Basic` value if needed.
    /// A confidential method without a secret (a host that does not hand it over for a
    /// revocation) degrades to naming the client only.
    fn apply(self, ctx: &Context, form: &mut Pairs) -> Option<String> {
        let secret = ctx.client_secret.as_deref().filter(|s| !s.is_empty());
        match (self, secret) {
            _ if ctx.client_id.is_empty() => None,
            (Self::ClientSecretBasic, Some(secret)) => {
                Some(http::basic_auth_oauth(&ctx.client_id, secret))
            }
            (Self::ClientSecretPost, Some(secret)) => {
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
}

/// What the operator configured, checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Config {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    api_host: String,
    token_auth: TokenAuth,
}

impl Config {
    fn from_params(params: &[(String, String)]) -> Result<Self, ProviderError> {
        let value = |name: &str| {
            pair(params, name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let url = |name: &str| {
            value(name)
                .map(|v| endpoint_url(name, &v).map_err(invalid))
                .transpose()
        };
        let issuer = url("issuer")?;
        if issuer.as_deref().is_some_and(|i| i.contains('?')) {
            return Err(invalid("issuer must not have a query"));
        }
        let config = Config {
            issuer,
            authorization_endpoint: url("authorization_endpoint")?,
            token_endpoint: url("token_endpoint")?,
            revocation_endpoint: url("revocation_endpoint")?,
            userinfo_endpoint: url("userinfo_endpoint")?,
            api_host: value("api_host")
                .ok_or_else(|| invalid("api_host is required: the host API calls are made to"))?,
            token_auth: TokenAuth::parse(pair(params, "token_auth"))?,
        };
        if config.api_host.contains("://") || hosts::authority_of(&config.api_host).is_none() {
            return Err(invalid(
                "api_host must be a host name, optionally with :port (api.example.com)",
            ));
        }
        if config.issuer.is_none()
            && (config.authorization_endpoint.is_none() || config.token_endpoint.is_none())
        {
            return Err(invalid(
                "set issuer, or both authorization_endpoint and token_endpoint",
            ));
        }
        Ok(config)
    }

    /// The server as configured, when nothing needs discovering.
    fn explicit(&self) -> Option<Server> {
        Some(Server {
            issuer: self.issuer.clone(),
            authorization_endpoint: self.authorization_endpoint.clone()?,
            token_endpoint: self.token_endpoint.clone()?,
            revocation_endpoint: self.revocation_endpoint.clone(),
            userinfo_endpoint: self.userinfo_endpoint.clone(),
            iss_required: false,
            api_host: self.api_host.clone(),
            token_auth: self.token_auth,
        })
    }

    /// The server as the discovery document `doc` describes it, operator values first.
    fn discovered(&self, doc: &Value) -> Result<Server, ProviderError> {
        let Some(issuer) = &self.issuer else {
            return Err(invalid("discovery needs an issuer"));
        };
        let claimed = doc.get("issuer").and_then(Value::as_str).ok_or_else(|| {
            ProviderError::MalformedResponse("the discovery document names no issuer".into())
        })?;
        if claimed != issuer {
            return Err(invalid(format!(
                "the discovery document names the issuer `{claimed}`, not the configured `{issuer}`; they must be equal exactly"
            )));
        }
        if let Some(methods) = doc
            .get("code_challenge_methods_supported")
            .and_then(Value::as_array)
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(ProviderError::Unsupported(
                "the authorization server does not support PKCE with S256".into(),
            ));
        }
        let found = |name: &str| -> Result<Option<String>, ProviderError> {
            doc.get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(|v| endpoint_url(name, v).map_err(ProviderError::MalformedResponse))
                .transpose()
        };
        let required = |name: &str| -> Result<String, ProviderError> {
            found(name)?.ok_or_else(|| {
                ProviderError::MalformedResponse(format!("the discovery document names no {name}"))
            })
        };
        let token_endpoint = if let Some(explicit) = &self.token_endpoint {
            explicit.clone()
        } else {
            let discovered = required("token_endpoint")?;
            if !same_origin(&discovered, issuer) {
                return Err(invalid(format!(
                    "the discovered token endpoint `{discovered}` is not on the issuer's host; set token_endpoint explicitly to allow it"
                )));
            }
            discovered
        };
        let userinfo_endpoint = match &self.userinfo_endpoint {
            Some(explicit) => Some(explicit.clone()),
            // Another host could not be reached while connecting; the label then stays empty.
            None => found("userinfo_endpoint")?.filter(|u| same_origin(u, issuer)),
        };
        Ok(Server {
            issuer: Some(issuer.clone()),
            authorization_endpoint: match &self.authorization_endpoint {
                Some(explicit) => explicit.clone(),
                None => required("authorization_endpoint")?,
            },
            token_endpoint,
            revocation_endpoint: match &self.revocation_endpoint {
                Some(explicit) => Some(explicit.clone()),
                None => found("revocation_endpoint")?,
            },
            userinfo_endpoint,
            iss_required: doc
                .get("authorization_response_iss_parameter_supported")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            api_host: self.api_host.clone(),
            token_auth: self.token_auth,
        })
    }
}

/// The authorization server a flow talks to, resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Server {
    issuer: Option<String>,
    authorization_endpoint: String,
    token_endpoint: String,
    revocation_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    /// RFC 9207: the server says it always sends `iss` on its authorization responses.
    iss_required: bool,
    api_host: String,
    token_auth: TokenAuth,
}

impl Server {
    /// What the credential keeps, so refresh, revocation and the allow-list need no discovery.
    fn metadata(&self) -> Pairs {
        let mut metadata = Vec::new();
        let mut add = |name: &str, value: &str| metadata.push((name.to_owned(), value.to_owned()));
        if let Some(issuer) = &self.issuer {
            add("issuer", issuer);
        }
        add("token_endpoint", &self.token_endpoint);
        if let Some(url) = &self.revocation_endpoint {
            add("revocation_endpoint", url);
        }
        if let Some(url) = &self.userinfo_endpoint {
            add("userinfo_endpoint", url);
        }
        add("api_host", &self.api_host);
        add("token_auth", self.token_auth.as_str());
        metadata
    }
}

/// The flow state carried between steps (JSON, encrypted by the host).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Flow {
    /// Waiting for the discovery document. The `state` and PKCE verifier are fixed here, so
    /// the redirect does not depend on the host passing the same context again.
    Discovery {
        config: Config,
        state: String,
        verifier: String,
    },
    /// Waiting for the browser to come back.
    Authorize {
        server: Server,
        state: String,
        verifier: String,
        scopes: Vec<String>,
    },
    /// Waiting for the code exchange.
    Token { server: Server, scopes: Vec<String> },
    /// Waiting for the userinfo response, with the finished credential.
    UserInfo { credential: StoredCredential },
    /// Waiting for a refresh response.
    Refresh {
        refresh_token: String,
        scopes: Vec<String>,
        metadata: Pairs,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredCredential {
    secrets: Pairs,
    metadata: Pairs,
    scopes: Vec<String>,
    expires_at: Option<u64>,
}

impl From<Credential> for StoredCredential {
    fn from(c: Credential) -> Self {
        Self {
            secrets: c.secrets,
            metadata: c.metadata,
            scopes: c.scopes,
            expires_at: c.expires_at,
        }
    }
}

impl From<StoredCredential> for Credential {
    fn from(c: StoredCredential) -> Self {
        Self {
            secrets: c.secrets,
            metadata: c.metadata,
            scopes: c.scopes,
            expires_at: c.expires_at,
        }
    }
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidInput(message.into())
}

fn encode(flow: &Flow) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(flow).map_err(|_| invalid("the flow state could not be encoded"))
}

fn decode(bytes: &[u8]) -> Result<Flow, ProviderError> {
    serde_json::from_slice(bytes)
        .map_err(|_| invalid("the flow state does not belong to this provider"))
}

/// Checks an endpoint or issuer URL: absolute, no fragment, `https` (or `http` on loopback).
fn endpoint_url(name: &str, value: &str) -> Result<String, String> {
    let url = http::parse_url(value).map_err(|_| format!("{name} is not an absolute URL"))?;
    if value.contains('#') {
        return Err(format!("{name} must not have a fragment"));
    }
    let loopback = url.host == "127.0.0.1" || url.host == "localhost";
    if url.scheme == "https" || (url.scheme == "http" && loopback) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{name} must be an https URL (plain http only on 127.0.0.1 or localhost)"
        ))
    }
}

/// Whether two URLs have the same scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (http::parse_url(a), http::parse_url(b)) {
        (Ok(a), Ok(b)) => {
            a.scheme == b.scheme && a.host == b.host && a.effective_port() == b.effective_port()
        }
        _ => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The claims of a compact JWS, decoded but **not verified** (see the module doc for why that
/// is enough here). `None` for anything that is not a three-part token with a JSON object.
fn id_token_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

fn step(result: Result<Step, ProviderError>) -> Step {
    result.unwrap_or_else(Step::Fail)
}

/// A form `POST` to a token endpoint with client authentication.
fn token_request(url: &str, auth: TokenAuth, ctx: &Context, mut form: Pairs) -> HttpRequest {
    let basic = auth.apply(ctx, &mut form);
    let mut request = http::post_form(url, &form, &[("Accept", "application/json")]);
    if let Some(basic) = basic {
        set_header(&mut request.headers, "Authorization", basic);
    }
    request
}

fn begin(ctx: &Context) -> Result<Step, ProviderError> {
    if ctx.client_id.is_empty() {
        return Err(invalid(
            "no OAuth client id is configured for this provider",
        ));
    }
    if ctx.state.is_empty() {
        return Err(invalid("the host sent an empty state"));
    }
    let config = Config::from_params(&ctx.connection_params)?;
    if config.token_auth != TokenAuth::None
        && ctx.client_secret.as_deref().is_none_or(str::is_empty)
    {
        return Err(invalid(format!(
            "token_auth {} needs a client secret; use token_auth none for a public client",
            config.token_auth.as_str()
        )));
    }
    let verifier = pkce::verifier(&ctx.entropy)?;
    if let Some(server) = config.explicit() {
        return authorize(ctx, server, ctx.state.clone(), verifier);
    }
    let issuer = config.issuer.as_deref().unwrap_or_default();
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    Ok(Step::Send(Outgoing {
        request: http::get(url, &[("Accept", "application/json")]),
        state: encode(&Flow::Discovery {
            config,
            state: ctx.state.clone(),
            verifier,
        })?,
    }))
}

/// The authorization redirect: code flow, PKCE S256, the flow's `state`.
fn authorize(
    ctx: &Context,
    server: Server,
    state: String,
    verifier: String,
) -> Result<Step, ProviderError> {
    let scopes: Vec<String> = if ctx.scopes.is_empty() {
        SPEC.default_scopes
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        ctx.scopes.clone()
    };
    let mut params: Pairs = vec![
        ("response_type".into(), "code".into()),
        ("client_id".into(), ctx.client_id.clone()),
        ("redirect_uri".into(), ctx.redirect_uri.clone()),
    ];
    if !scopes.is_empty() {
        params.push(("scope".into(), scopes.join(SPEC.scope_separator)));
    }
    params.push(("state".into(), state.clone()));
    params.push(("code_challenge".into(), pkce::challenge(&verifier)));
    params.push(("code_challenge_method".into(), pkce::METHOD.into()));
    let operator_prompt = ctx.extra_params.iter().any(|(k, _)| k == "prompt");
    if scopes.iter().any(|s| s == "offline_access") && !operator_prompt {
        params.push(("prompt".into(), "consent".into()));
    }
    params.extend(
        ctx.extra_params
            .iter()
            .filter(|(k, _)| !RESERVED_AUTHORIZE_PARAMS.contains(&k.as_str()))
            .cloned(),
    );
    let url = http::with_query(&server.authorization_endpoint, &params);
    Ok(Step::Redirect(RedirectTo {
        url,
        state: encode(&Flow::Authorize {
            server,
            state,
            verifier,
            scopes,
        })?,
    }))
}

fn resume_flow(ctx: &Context, state: &[u8], input: Input) -> Result<Step, ProviderError> {
    match (decode(state)?, input) {
        (
            Flow::Discovery {
                config,
                state,
                verifier,
            },
            Input::HttpResponse(response),
        ) => {
            if !(200..300).contains(&response.status) {
                return Err(ProviderError::Upstream(UpstreamError {
                    status: response.status,
                    code: format!("http_{}", response.status),
                    description: "the discovery document could not be fetched".into(),
                }));
            }
            let doc = serde_json::from_slice::<Value>(&response.body)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    ProviderError::MalformedResponse(
                        "the discovery document is not a JSON object".into(),
                    )
                })?;
            authorize(ctx, config.discovered(&doc)?, state, verifier)
        }
        (
            Flow::Authorize {
                server,
                state,
                verifier,
                scopes,
            },
            Input::Callback(query),
        ) => on_callback(ctx, server, &state, &verifier, scopes, &query),
        (Flow::Token { server, scopes }, Input::HttpResponse(response)) => {
            tokens(ctx, &server, scopes, &response)
        }
        (Flow::UserInfo { credential }, Input::HttpResponse(response)) => {
            let mut credential = Credential::from(credential);
            // The label is best effort: a token that may not read the profile still works.
            let json = (200..300)
                .contains(&response.status)
                .then(|| serde_json::from_slice::<Value>(&response.body).ok())
                .flatten();
            if let Some(sub) = json.as_ref().and_then(|j| string_at(j, "/sub"))
                && pair(&credential.metadata, "sub").is_none()
            {
                credential.metadata.push(("sub".into(), sub));
            }
            Ok(Step::Done(Connected {
                credential,
                account_label: json
                    .as_ref()
                    .and_then(|j| first_string(j, LABEL_CLAIMS))
                    .unwrap_or_default(),
            }))
        }
        (
            Flow::Refresh {
                refresh_token,
                scopes,
                metadata,
            },
            Input::HttpResponse(response),
        ) => refreshed(ctx, refresh_token, scopes, metadata, &response),
        _ => Err(invalid("unexpected input for this step of the flow")),
    }
}

/// The browser came back: check `state` and `iss`, then exchange the code once.
fn on_callback(
    ctx: &Context,
    server: Server,
    expected_state: &str,
    verifier: &str,
    scopes: Vec<String>,
    query: &[(String, String)],
) -> Result<Step, ProviderError> {
    let returned = pair(query, "state").unwrap_or_default();
    if !constant_time_eq(returned.as_bytes(), expected_state.as_bytes()) {
        return Err(invalid("the callback's state does not match this flow"));
    }
    // RFC 9207: checked before anything else the response says, errors included, so a
    // response from another authorization server (a mix-up attack) is never acted on.
    match (pair(query, "iss"), &server.issuer) {
        (Some(iss), Some(issuer)) if iss != issuer => {
            return Err(invalid(format!(
                "the callback's iss `{iss}` is not the issuer `{issuer}`: the response comes from another authorization server"
            )));
        }
        (None, Some(_)) if server.iss_required => {
            return Err(invalid(
                "the callback carries no iss although the authorization server always sends one",
            ));
        }
        _ => {}
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
        .ok_or_else(|| invalid("the callback carries no code"))?;
    let form = vec![
        ("grant_type".into(), "authorization_code".into()),
        ("code".into(), code.to_owned()),
        ("redirect_uri".into(), ctx.redirect_uri.clone()),
        ("code_verifier".into(), verifier.to_owned()),
    ];
    let request = token_request(&server.token_endpoint, server.token_auth, ctx, form);
    Ok(Step::Send(Outgoing {
        request,
        state: encode(&Flow::Token { server, scopes })?,
    }))
}

/// The code exchange answered: build the credential, then find the account label.
fn tokens(
    ctx: &Context,
    server: &Server,
    scopes: Vec<String>,
    response: &HttpResponse,
) -> Result<Step, ProviderError> {
    let grant = parse_token_response(&SPEC, response)?;
    let claims = body_as_json(response)
        .and_then(|json| string_at(&json, "/id_token"))
        .and_then(|token| id_token_claims(&token));
    let mut metadata = server.metadata();
    if let Some(token_type) = &grant.token_type {
        metadata.push(("token_type".into(), token_type.clone()));
    }
    if let Some(sub) = claims.as_ref().and_then(|c| string_at(c, "/sub")) {
        metadata.push(("sub".into(), sub));
    }
    let mut secrets = vec![("access_token".to_owned(), grant.access_token.clone())];
    if let Some(refresh) = grant.refresh_token {
        secrets.push(("refresh_token".into(), refresh));
    }
    let credential = Credential {
        secrets,
        metadata,
        scopes: grant.scopes.unwrap_or(scopes),
        expires_at: grant.expires_in.map(|s| ctx.now.saturating_add(s)),
    };
    let label = claims.as_ref().and_then(|c| first_string(c, LABEL_CLAIMS));
    match (label, &server.userinfo_endpoint) {
        (Some(label), _) => Ok(Step::Done(Connected {
            credential,
            account_label: label,
        })),
        (None, Some(userinfo)) => {
            let mut request = http::get(userinfo.as_str(), &[("Accept", "application/json")]);
            http::bearer(&mut request, &grant.access_token);
            Ok(Step::Send(Outgoing {
                request,
                state: encode(&Flow::UserInfo {
                    credential: credential.into(),
                })?,
            }))
        }
        (None, None) => Ok(Step::Done(Connected {
            credential,
            account_label: String::new(),
        })),
    }
}

/// The value of `name` in the credential's metadata, else in the connection parameters.
fn setting<'a>(credential: &'a Credential, ctx: &'a Context, name: &str) -> Option<&'a str> {
    pair(&credential.metadata, name)
        .or_else(|| pair(&ctx.connection_params, name))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn refresh_request(ctx: &Context, credential: &Credential) -> Result<Step, ProviderError> {
    let refresh_token = pair(&credential.secrets, "refresh_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ProviderError::ReauthorizeRequired("the credential has no refresh token".into())
        })?;
    let url = setting(credential, ctx, "token_endpoint")
        .ok_or_else(|| invalid("the credential does not name its token endpoint"))?;
    let url = endpoint_url("token_endpoint", url).map_err(invalid)?;
    let auth = TokenAuth::parse(setting(credential, ctx, "token_auth"))?;
    let form = vec![
        ("grant_type".into(), "refresh_token".into()),
        ("refresh_token".into(), refresh_token.to_owned()),
    ];
    Ok(Step::Send(Outgoing {
        request: token_request(&url, auth, ctx, form),
        state: encode(&Flow::Refresh {
            refresh_token: refresh_token.to_owned(),
            scopes: credential.scopes.clone(),
            metadata: credential.metadata.clone(),
        })?,
    }))
}

/// The refresh answered: new access token, the rotated refresh token or the old one.
fn refreshed(
    ctx: &Context,
    old_refresh_token: String,
    scopes: Vec<String>,
    mut metadata: Pairs,
    response: &HttpResponse,
) -> Result<Step, ProviderError> {
    let grant = parse_token_response(&SPEC, response)?;
    let claims = body_as_json(response)
        .and_then(|json| string_at(&json, "/id_token"))
        .and_then(|token| id_token_claims(&token));
    if let Some(token_type) = grant.token_type {
        match metadata.iter_mut().find(|(k, _)| k == "token_type") {
            Some(slot) => slot.1 = token_type,
            None => metadata.push(("token_type".into(), token_type)),
        }
    }
    let secrets = vec![
        ("access_token".to_owned(), grant.access_token),
        (
            "refresh_token".to_owned(),
            grant.refresh_token.unwrap_or(old_refresh_token),
        ),
    ];
    Ok(Step::Done(Connected {
        credential: Credential {
            secrets,
            metadata,
            scopes: grant.scopes.unwrap_or(scopes),
            expires_at: grant.expires_in.map(|s| ctx.now.saturating_add(s)),
        },
        account_label: claims
            .as_ref()
            .and_then(|c| first_string(c, LABEL_CLAIMS))
            .unwrap_or_default(),
    }))
}

/// The RFC 7009 request revoking the refresh token (else the access token), if the server
/// has a revocation endpoint.
fn revocation(ctx: &Context, credential: &Credential) -> Option<HttpRequest> {
    let url = setting(credential, ctx, "revocation_endpoint")
        .and_then(|url| endpoint_url("revocation_endpoint", url).ok())?;
    let nonempty = |name| pair(&credential.secrets, name).filter(|t| !t.is_empty());
    let (token, hint) = match (nonempty("refresh_token"), nonempty("access_token")) {
        (Some(refresh), _) => (refresh, "refresh_token"),
        (None, Some(access)) => (access, "access_token"),
        (None, None) => return None,
    };
    let mut form: Pairs = vec![
        ("token".into(), token.to_owned()),
        ("token_type_hint".into(), hint.into()),
    ];
    let auth = TokenAuth::parse(setting(credential, ctx, "token_auth"))
        .unwrap_or(TokenAuth::ClientSecretBasic);
    let basic = auth.apply(ctx, &mut form);
    let mut request = http::post_form(url, &form, &[]);
    if let Some(basic) = basic {
        set_header(&mut request.headers, "Authorization", basic);
    }
    Some(request)
}

impl Provider for GenericOAuth2 {
    fn info() -> ProviderInfo {
        let mut info = SPEC.info();
        info.allowed_hosts = EGRESS_HOSTS.iter().map(|h| (*h).to_owned()).collect();
        info
    }

    fn begin_connect(ctx: Context) -> Step {
        step(begin(&ctx))
    }

    fn resume(ctx: Context, state: Vec<u8>, input: Input) -> Step {
        step(resume_flow(&ctx, &state, input))
    }

    fn refresh(ctx: Context, credential: Credential) -> Step {
        step(refresh_request(&ctx, &credential))
    }

    fn sign(
        request: HttpRequest,
        credential: Credential,
        _now: u64,
    ) -> Result<HttpRequest, ProviderError> {
        sign_bearer(&SPEC, request, &credential)
    }

    fn revoke(ctx: Context, credential: Credential) -> Option<HttpRequest> {
        revocation(&ctx, &credential)
    }
}

tessera_provider_sdk::export_provider!(GenericOAuth2);

#[cfg(test)]
mod tests;
