//! `tessera provider new`: writes a provider crate that builds and passes the conformance
//! suite unchanged, as a starting point for a provider author. It only writes files into a
//! directory that does not exist yet; it never overwrites anything.

use std::path::{Path, PathBuf};

/// What kind of provider to scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A declarative OAuth 2 provider (authorization code, PKCE, refresh).
    Oauth2,
    /// A managed-secret provider: the operator pastes an API key, sent as a Bearer token.
    ApiKey,
}

/// Why scaffolding failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a valid provider id.
    #[error(
        "invalid provider name `{0}`: use lower-case letters, digits and dashes, starting with a letter"
    )]
    InvalidName(String),
    /// The target directory already exists.
    #[error("{0} already exists; choose another --dir (nothing was written)")]
    Exists(PathBuf),
    /// The SDK path does not hold the provider SDK.
    #[error(
        "{0} does not contain the provider SDK (expected a Cargo.toml of `tessera-provider-sdk`)"
    )]
    NoSdk(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The SDK of the source tree this binary was built from, when it is still there.
pub fn default_sdk_path() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../providers/sdk");
    path.join("Cargo.toml")
        .is_file()
        .then(|| path.canonicalize().unwrap_or(path))
}

/// Creates the crate `name` in `dir`.
pub fn create(name: &str, dir: &Path, kind: Kind, sdk: &Path) -> Result<(), ScaffoldError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && name.len() <= 48;
    if !valid {
        return Err(ScaffoldError::InvalidName(name.to_string()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let sdk_manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
    if !sdk_manifest.contains("name = \"tessera-provider-sdk\"") {
        return Err(ScaffoldError::NoSdk(sdk.to_path_buf()));
    }
    let sdk = sdk.canonicalize().unwrap_or_else(|_| sdk.to_path_buf());
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let display = type_name.clone();
    let fill = |template: &str| {
        template
            .replace("{{id}}", name)
            .replace("{{Type}}", &type_name)
            .replace("{{Display}}", &display)
            .replace("{{sdk}}", &sdk.display().to_string().replace('\\', "/"))
    };
    let lib = match kind {
        Kind::Oauth2 => OAUTH2_LIB,
        Kind::ApiKey => API_KEY_LIB,
    };
    write(&dir.join("Cargo.toml"), &fill(CARGO_TOML))?;
    write(&dir.join("src/lib.rs"), &fill(lib))?;
    write(&dir.join(".gitignore"), "/target\n")?;
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), ScaffoldError> {
    let io = |source| ScaffoldError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

const CARGO_TOML: &str = r#"[package]
name = "{{id}}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
tessera-provider-sdk = { path = "{{sdk}}" }

# A standalone crate: build it into a component with
#   cargo xtask component --manifest-path Cargo.toml --out {{id}}.wasm
# (or move it into providers/ and add it to that workspace to make it a built-in).
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true
debug = false
"#;

const OAUTH2_LIB: &str = r#"//! The `{{id}}` provider for Tessera: OAuth 2 authorization code with PKCE and refresh.
//!
//! Replace the example endpoints, scopes and hosts with the ones from the provider's own
//! documentation, then run `tessera provider check` on the built component.

use tessera_provider_sdk::oauth2::AccountLookup;
use tessera_provider_sdk::{OAuth2, OAuth2Adapter, OAuth2Provider};

/// The `{{id}}` provider.
pub struct {{Type}};

impl OAuth2Provider for {{Type}} {
    const SPEC: OAuth2 = OAuth2 {
        id: "{{id}}",
        display_name: "{{Display}}",
        version: env!("CARGO_PKG_VERSION"),
        categories: &["other"],
        authorize_url: "https://auth.{{id}}.example/oauth/authorize",
        token_url: "https://auth.{{id}}.example/oauth/token",
        default_scopes: &["read"],
        scopes: &[("read", "Read your data"), ("write", "Change your data")],
        allowed_hosts: &["api.{{id}}.example"],
        account: Some(AccountLookup {
            url: "https://api.{{id}}.example/v1/me",
            headers: &[("Accept", "application/json")],
            label_pointers: &["/email", "/login", "/name"],
            metadata: &[],
        }),
        docs_url: Some("https://docs.{{id}}.example/oauth"),
        ..OAuth2::BASE
    };
}

tessera_provider_sdk::export_provider!(OAuth2Adapter<{{Type}}>);

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_provider_sdk::{Credential, Provider, ProviderError, http};

    fn credential() -> Credential {
        Credential {
            secrets: vec![("access_token".into(), "at".into())],
            metadata: Vec::new(),
            scopes: Vec::new(),
            expires_at: None,
        }
    }

    #[test]
    fn signs_only_for_declared_hosts() {
        let ok = OAuth2Adapter::<{{Type}}>::sign(http::get("https://api.{{id}}.example/v1/me", &[]), credential(), 0);
        assert!(ok.is_ok_and(|r| http::header(&r.headers, "authorization") == Some("Bearer at")));
        let foreign = OAuth2Adapter::<{{Type}}>::sign(http::get("https://elsewhere.example/", &[]), credential(), 0);
        assert!(matches!(foreign, Err(ProviderError::HostNotAllowed(_))));
    }
}
"#;

const API_KEY_LIB: &str = r#"//! The `{{id}}` provider for Tessera: a managed secret (an API key sent as a Bearer token).
//!
//! Replace the example host and validation URL with the ones from the provider's own
//! documentation, then run `tessera provider check` on the built component.

use tessera_provider_sdk::oauth2::{body_as_json, first_string};
use tessera_provider_sdk::{
    AuthKind, Connected, Context, Credential, Field, HttpRequest, Input, Outgoing, Provider,
    ProviderError, ProviderInfo, Step, UpstreamError, hosts, http,
};

const ALLOWED_HOSTS: &[&str] = &["api.{{id}}.example"];
const VALIDATE_URL: &str = "https://api.{{id}}.example/v1/me";

/// The `{{id}}` provider.
pub struct {{Type}};

fn api_key(pairs: &[(String, String)]) -> Result<&str, ProviderError> {
    http::pair(pairs, "api_key")
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| ProviderError::InvalidInput("the field `api_key` is required".into()))
}

impl Provider for {{Type}} {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "{{id}}".into(),
            display_name: "{{Display}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            categories: vec!["other".into()],
            auth_kind: AuthKind::ManagedSecret,
            default_scopes: Vec::new(),
            scope_separator: " ".into(),
            scopes: Vec::new(),
            allowed_hosts: ALLOWED_HOSTS.iter().map(|h| (*h).into()).collect(),
            secret_fields: vec![Field {
                name: "api_key".into(),
                label: "API key".into(),
                description: "Create one in the {{Display}} dashboard under API keys.".into(),
                secret: true,
                optional: false,
                example: Some("key_test_0123456789".into()),
            }],
            connection_params: Vec::new(),
            pkce: false,
            supports_refresh: false,
            supports_revoke: false,
            logo_url: None,
            docs_url: Some("https://docs.{{id}}.example/api-keys".into()),
        }
    }

    /// Validates the key with one authenticated request before storing it.
    fn begin_connect(ctx: Context) -> Step {
        let key = match api_key(&ctx.secret_fields) {
            Ok(key) => key,
            Err(e) => return Step::Fail(e),
        };
        let mut request = http::get(VALIDATE_URL, &[("Accept", "application/json")]);
        http::bearer(&mut request, key);
        Step::Send(Outgoing { request, state: Vec::new() })
    }

    fn resume(ctx: Context, _state: Vec<u8>, input: Input) -> Step {
        let Input::HttpResponse(response) = input else {
            return Step::Fail(ProviderError::InvalidInput("expected the validation response".into()));
        };
        match response.status {
            200..=299 => {}
            401 | 403 => {
                return Step::Fail(ProviderError::InvalidInput("{{Display}} rejected the API key".into()));
            }
            status => {
                return Step::Fail(ProviderError::Upstream(UpstreamError {
                    status,
                    code: "validation_failed".into(),
                    description: "the key could not be validated".into(),
                }));
            }
        }
        let key = match api_key(&ctx.secret_fields) {
            Ok(key) => key.to_owned(),
            Err(e) => return Step::Fail(e),
        };
        let label = body_as_json(&response)
            .and_then(|json| first_string(&json, &["/email", "/name", "/id"]))
            .unwrap_or_default();
        Step::Done(Connected {
            credential: Credential {
                secrets: vec![("api_key".into(), key)],
                metadata: Vec::new(),
                scopes: Vec::new(),
                expires_at: None,
            },
            account_label: label,
        })
    }

    fn sign(mut request: HttpRequest, credential: Credential, _now: u64) -> Result<HttpRequest, ProviderError> {
        hosts::check_url(&request.url, ALLOWED_HOSTS, &credential.metadata)?;
        let key = api_key(&credential.secrets)?;
        http::bearer(&mut request, key);
        Ok(request)
    }
}

tessera_provider_sdk::export_provider!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_is_refused_by_name() {
        let ctx = Context {
            client_id: String::new(),
            client_secret: None,
            redirect_uri: String::new(),
            scopes: Vec::new(),
            connection_params: Vec::new(),
            secret_fields: Vec::new(),
            extra_params: Vec::new(),
            state: String::new(),
            entropy: Vec::new(),
            now: 0,
        };
        assert!(matches!({{Type}}::begin_connect(ctx), Step::Fail(ProviderError::InvalidInput(m)) if m.contains("api_key")));
    }
}
"#;
