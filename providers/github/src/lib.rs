//! GitHub provider: OAuth apps and GitHub Apps acting for a user (web application flow).
//!
//! Covers the authorization-code flow with PKCE (S256) at `github.com/login/oauth`, the token
//! endpoint's quirks (it needs `Accept: application/json` and reports errors with HTTP 200),
//! expiring GitHub App user tokens and their refresh (OAuth-app tokens do not expire), the
//! account label (`login` from `GET /user`), Bearer signing for `api.github.com` and
//! `uploads.github.com`, GitHub's rate-limit and missing-scope signals, and revocation of the
//! whole grant (`DELETE /applications/{client_id}/grant`).
//!
//! `github.com` is in the allow-list because the token exchange is sent there.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use serde_json::json;
use tessera_provider_sdk::classify::{self, rate_limit_exhausted, retry_after};
use tessera_provider_sdk::http::{self, header, pair};
use tessera_provider_sdk::oauth2::{AccountLookup, ClientAuth, Revocation};
use tessera_provider_sdk::{
    Classification, Context, Credential, HttpRequest, HttpResponse, OAuth2, OAuth2Adapter,
    OAuth2Provider,
};

/// The GitHub provider, as data plus its classify and revoke quirks.
pub struct GitHub;

/// GitHub's REST API version this provider speaks.
const API_VERSION: &str = "2022-11-28";

impl OAuth2Provider for GitHub {
    const SPEC: OAuth2 = OAuth2 {
        id: "github",
        display_name: "GitHub",
        version: "0.1.0",
        categories: &["developer-tools", "source-control"],
        authorize_url: "https://github.com/login/oauth/authorize",
        token_url: "https://github.com/login/oauth/access_token",
        revocation: Revocation::Custom,
        default_scopes: &["read:user"],
        scope_separator: " ",
        scopes: &[
            (
                "repo",
                "Full control of your public and private repositories",
            ),
            ("repo:status", "Read and write commit statuses"),
            ("repo_deployment", "Read and write deployment statuses"),
            ("public_repo", "Read and write your public repositories"),
            ("repo:invite", "Accept and decline repository invitations"),
            ("security_events", "Read and write security events"),
            ("admin:repo_hook", "Fully manage repository webhooks"),
            ("read:repo_hook", "Read repository webhooks"),
            (
                "admin:org",
                "Fully manage your organizations, their teams and memberships",
            ),
            ("write:org", "Manage organization and team membership"),
            ("read:org", "Read organization and team membership"),
            ("admin:public_key", "Fully manage your public SSH keys"),
            ("read:public_key", "Read your public SSH keys"),
            ("gist", "Create and edit gists"),
            ("notifications", "Read and manage your notifications"),
            ("user", "Read and update your profile"),
            ("read:user", "Read your profile"),
            ("user:email", "Read your email addresses"),
            ("user:follow", "Follow and unfollow users"),
            ("project", "Read and write projects"),
            ("read:project", "Read projects"),
            ("delete_repo", "Delete repositories"),
            ("write:packages", "Upload and publish packages"),
            ("read:packages", "Download packages"),
            ("delete:packages", "Delete packages"),
            ("admin:gpg_key", "Fully manage your GPG keys"),
            ("read:gpg_key", "Read your GPG keys"),
            ("codespace", "Create and manage codespaces"),
            ("workflow", "Update GitHub Actions workflow files"),
        ],
        pkce: true,
        client_auth: ClientAuth::ClientSecretPost,
        allowed_hosts: &["api.github.com", "uploads.github.com", "github.com"],
        logo_url: Some("https://github.githubassets.com/images/modules/logos_page/GitHub-Mark.png"),
        docs_url: Some(
            "https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps",
        ),
        reauthorize_errors: &["invalid_grant", "bad_refresh_token"],
        account: Some(AccountLookup {
            url: "https://api.github.com/user",
            headers: &[
                ("Accept", "application/vnd.github+json"),
                ("X-GitHub-Api-Version", API_VERSION),
            ],
            label_pointers: &["/login"],
            metadata: &[("login", "/login"), ("user_id", "/id")],
        }),
        api_headers: &[("User-Agent", "tessera")],
        supports_refresh: true,
        ..OAuth2::BASE
    };

    fn classify(response: &HttpResponse, now: u64) -> Classification {
        classify_github(response, now)
    }

    fn revoke(ctx: &Context, credential: &Credential) -> Option<HttpRequest> {
        revoke_grant(ctx, credential)
    }
}

/// GitHub's signals: primary rate limit (`X-RateLimit-Remaining: 0`, reset at
/// `X-RateLimit-Reset`), secondary rate limit (`Retry-After`), and a missing OAuth scope
/// (none of `X-Accepted-OAuth-Scopes` among `X-OAuth-Scopes`, on 403 or 404); otherwise the
/// standard classification.
fn classify_github(response: &HttpResponse, now: u64) -> Classification {
    let headers = &response.headers;
    if matches!(response.status, 403 | 429) {
        if rate_limit_exhausted(headers) {
            let reset = header(headers, "x-ratelimit-reset")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|at| at.saturating_sub(now));
            return Classification::RateLimited(retry_after(headers, now).or(reset));
        }
        if header(headers, "retry-after").is_some() {
            return Classification::RateLimited(retry_after(headers, now));
        }
    }
    if matches!(response.status, 403 | 404)
        && let Some(missing) = missing_scopes(headers)
    {
        return Classification::InsufficientScope(missing);
    }
    classify::standard(response, now)
}

/// Scopes that imply others (GitHub's scope hierarchy), so `repo` satisfies `public_repo`.
const IMPLIED: &[(&str, &[&str])] = &[
    (
        "repo",
        &[
            "repo:status",
            "repo_deployment",
            "public_repo",
            "repo:invite",
            "security_events",
        ],
    ),
    (
        "admin:org",
        &["write:org", "read:org", "manage_runners:org"],
    ),
    ("write:org", &["read:org"]),
    ("admin:public_key", &["write:public_key", "read:public_key"]),
    ("write:public_key", &["read:public_key"]),
    ("admin:repo_hook", &["write:repo_hook", "read:repo_hook"]),
    ("write:repo_hook", &["read:repo_hook"]),
    ("user", &["read:user", "user:email", "user:follow"]),
    ("project", &["read:project"]),
    ("write:packages", &["read:packages"]),
    ("admin:gpg_key", &["write:gpg_key", "read:gpg_key"]),
    ("write:gpg_key", &["read:gpg_key"]),
    (
        "admin:enterprise",
        &[
            "manage_runners:enterprise",
            "manage_billing:enterprise",
            "read:enterprise",
        ],
    ),
];

fn scope_list(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The accepted scopes when the token holds none of them (directly or by implication).
fn missing_scopes(headers: &[(String, String)]) -> Option<Vec<String>> {
    let accepted = scope_list(header(headers, "x-accepted-oauth-scopes")?);
    let granted = scope_list(header(headers, "x-oauth-scopes")?);
    if accepted.is_empty() {
        return None;
    }
    let holds = |scope: &str| {
        granted.contains(&scope)
            || IMPLIED
                .iter()
                .any(|(parent, children)| granted.contains(parent) && children.contains(&scope))
    };
    if accepted.iter().any(|s| holds(s)) {
        return None;
    }
    Some(accepted.into_iter().map(str::to_owned).collect())
}

/// `DELETE https://api.github.com/applications/{client_id}/grant` with HTTP Basic
/// `client_id:client_secret` and `{"access_token": ...}`: ends the whole grant.
fn revoke_grant(ctx: &Context, credential: &Credential) -> Option<HttpRequest> {
    let secret = ctx.client_secret.as_deref()?;
    let token = pair(&credential.secrets, "access_token").filter(|t| !t.is_empty())?;
    if ctx.client_id.is_empty()
        || !ctx
            .client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return None;
    }
    Some(HttpRequest {
        method: "DELETE".into(),
        url: format!(
            "https://api.github.com/applications/{}/grant",
            ctx.client_id
        ),
        headers: http::owned_pairs(&[
            ("Accept", "application/vnd.github+json"),
            ("Content-Type", "application/json"),
            ("X-GitHub-Api-Version", API_VERSION),
            ("User-Agent", "tessera"),
            ("Authorization", &http::basic_auth(&ctx.client_id, secret)),
        ]),
        body: json!({ "access_token": token }).to_string().into_bytes(),
    })
}

tessera_provider_sdk::export_provider!(OAuth2Adapter<GitHub>);

#[cfg(test)]
mod tests;
