//! Stripe provider: a managed secret key (`sk_live_…`, `sk_test_…`, or a restricted
//! `rk_live_…` / `rk_test_…` key) pasted by the operator.
//!
//! Connecting checks the key's shape (without ever echoing it), then validates it with
//! `GET https://api.stripe.com/v1/account`; the account label is the business or dashboard
//! name, else the email, else the account id. A restricted key that may not read the account
//! (403) is still accepted: Stripe authenticated it. Signing sets `Authorization: Bearer` for
//! `api.stripe.com` and `files.stripe.com` only. Stripe keys neither expire nor refresh, and
//! Stripe has no revocation API (keys are rolled in the dashboard).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_provider_sdk::classify::retry_after;
use tessera_provider_sdk::http::{self, pair};
use tessera_provider_sdk::oauth2::first_string;
use tessera_provider_sdk::{
    AuthKind, Classification, Connected, Context, Credential, Field, HttpRequest, HttpResponse,
    Input, Outgoing, Provider, ProviderError, ProviderInfo, Step, UpstreamError, hosts,
};

/// The Stripe provider.
pub struct Stripe;

/// Hosts a Stripe key is sent to.
const ALLOWED_HOSTS: &[&str] = &["api.stripe.com", "files.stripe.com"];

/// The validation request's URL.
const ACCOUNT_URL: &str = "https://api.stripe.com/v1/account";

/// Key prefixes Stripe issues for server-side secret keys.
const KEY_PREFIXES: &[&str] = &["sk_live_", "sk_test_", "rk_live_", "rk_test_"];

/// What `resume` needs after the validation request. Kept encrypted by the host.
#[derive(Serialize, Deserialize)]
struct Pending {
    secret_key: String,
}

/// Checks the key's shape; the error names the field, never the value.
fn validate_key(key: &str) -> Result<(), ProviderError> {
    let well_formed = KEY_PREFIXES.iter().any(|prefix| {
        key.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()))
    });
    if well_formed {
        Ok(())
    } else {
        Err(ProviderError::InvalidInput(
            "secret_key must be a Stripe secret key (sk_live_…, sk_test_…) or restricted key (rk_live_…, rk_test_…)"
                .into(),
        ))
    }
}

fn mode(key: &str) -> &'static str {
    if key.contains("_live_") {
        "live"
    } else {
        "test"
    }
}

fn begin(ctx: &Context) -> Result<Step, ProviderError> {
    let key = pair(&ctx.secret_fields, "secret_key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ProviderError::InvalidInput("secret_key is required".into()))?;
    validate_key(key)?;
    let mut request = http::get(ACCOUNT_URL, &[("Accept", "application/json")]);
    http::bearer(&mut request, key);
    let state = serde_json::to_vec(&Pending {
        secret_key: key.to_owned(),
    })
    .map_err(|_| ProviderError::InvalidInput("the flow state could not be encoded".into()))?;
    Ok(Step::Send(Outgoing { request, state }))
}

fn finish(state: &[u8], input: Input) -> Result<Step, ProviderError> {
    let pending: Pending = serde_json::from_slice(state).map_err(|_| {
        ProviderError::InvalidInput("the flow state does not belong to this provider".into())
    })?;
    let Input::HttpResponse(response) = input else {
        return Err(ProviderError::InvalidInput(
            "unexpected input for this step of the flow".into(),
        ));
    };
    let json = serde_json::from_slice::<Value>(&response.body).ok();
    let key_mode = mode(&pending.secret_key);
    let (label, account_id) = match response.status {
        200..=299 => {
            let json = json.ok_or_else(|| {
                ProviderError::MalformedResponse("Stripe's account response is not JSON".into())
            })?;
            let label = first_string(
                &json,
                &[
                    "/business_profile/name",
                    "/settings/dashboard/display_name",
                    "/email",
                    "/id",
                ],
            )
            .unwrap_or_default();
            (label, first_string(&json, &["/id"]))
        }
        401 => {
            return Err(ProviderError::InvalidInput(
                "Stripe rejected the key in secret_key".into(),
            ));
        }
        // A restricted key without the permission to read the account: it authenticated.
        403 if pending.secret_key.starts_with("rk_") => {
            (format!("Stripe restricted key ({key_mode} mode)"), None)
        }
        status => {
            // Stripe's messages can quote part of the key: keep only its machine codes.
            let code = json
                .as_ref()
                .and_then(|j| first_string(j, &["/error/code", "/error/type"]))
                .unwrap_or_else(|| format!("http_{status}"));
            return Err(ProviderError::Upstream(UpstreamError {
                status,
                code,
                description: "Stripe did not accept the validation request".into(),
            }));
        }
    };
    let mut metadata = vec![("mode".to_owned(), key_mode.to_owned())];
    if let Some(id) = account_id {
        metadata.push(("account_id".into(), id));
    }
    Ok(Step::Done(Connected {
        credential: Credential {
            secrets: vec![("secret_key".into(), pending.secret_key)],
            metadata,
            scopes: Vec::new(),
            expires_at: None,
        },
        account_label: label,
    }))
}

impl Provider for Stripe {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "stripe".into(),
            display_name: "Stripe".into(),
            version: "0.1.0".into(),
            categories: vec!["payments".into(), "billing".into()],
            auth_kind: AuthKind::ManagedSecret,
            default_scopes: Vec::new(),
            scope_separator: " ".into(),
            scopes: Vec::new(),
            allowed_hosts: ALLOWED_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
            secret_fields: vec![Field {
                name: "secret_key".into(),
                label: "Secret key".into(),
                description: "A secret (sk_…) or restricted (rk_…) key from Developers → API keys in the Stripe Dashboard.".into(),
                secret: true,
                optional: false,
                example: Some("sk_test_51ExampleKeyDoNotUse".into()),
            }],
            connection_params: Vec::new(),
            pkce: false,
            supports_refresh: false,
            supports_revoke: false,
            logo_url: Some("https://images.stripeassets.com/fzn2n1nzq965/HTTOloNPhisV9P4hlMPNA/cacf1bb88b9fc492dfad34378d844280/Stripe_icon_-_square.svg".into()),
            docs_url: Some("https://docs.stripe.com/keys".into()),
        }
    }

    fn begin_connect(ctx: Context) -> Step {
        begin(&ctx).unwrap_or_else(Step::Fail)
    }

    fn resume(_ctx: Context, state: Vec<u8>, input: Input) -> Step {
        finish(&state, input).unwrap_or_else(Step::Fail)
    }

    fn sign(
        mut request: HttpRequest,
        credential: Credential,
        _now: u64,
    ) -> Result<HttpRequest, ProviderError> {
        hosts::check_url(&request.url, ALLOWED_HOSTS, &credential.metadata)?;
        let key = pair(&credential.secrets, "secret_key")
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ProviderError::ReauthorizeRequired("the credential has no secret_key".into())
            })?;
        http::bearer(&mut request, key);
        Ok(request)
    }

    /// 401: the key was rolled or deleted; 403: a restricted key lacks the permission;
    /// 429: rate limited (Stripe sends no `Retry-After`, so usually no delay); 5xx: Stripe
    /// failed.
    fn classify(response: HttpResponse, now: u64) -> Classification {
        match response.status {
            401 => Classification::Unauthorized,
            403 => Classification::InsufficientScope(Vec::new()),
            429 => Classification::RateLimited(retry_after(&response.headers, now)),
            500..=599 => Classification::ServerError,
            _ => Classification::Ok,
        }
    }
}

tessera_provider_sdk::export_provider!(Stripe);

#[cfg(test)]
mod tests;
