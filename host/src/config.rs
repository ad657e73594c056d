//! Typed configuration, read once at start-up from an optional TOML file and `TESSERA_*`
//! environment variables, validated, then passed down by reference. There are no globals:
//! nothing else in the host reads the environment.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for this schema.
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, as the TOML parser says it.
        message: String,
    },
    /// An environment variable holds a value of the wrong shape.
    #[error("invalid value for {name}: {message}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole host configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where Tessera keeps its state (compiled-component cache, later the database).
    pub data_dir: PathBuf,
    /// A directory of operator-supplied provider components (`*.wasm`), watched for changes.
    pub providers_dir: Option<PathBuf>,
    /// Whether a component in `providers_dir` may replace a built-in provider of the same id.
    pub allow_builtin_override: bool,
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// The origin clients address this host by (`https://tessera.example.com`: scheme, host
    /// and optional port; no path, query or credentials). Request signatures cover the target
    /// URI, which the host rebuilds from this origin plus the request's path and query, never
    /// from `Host` or `X-Forwarded-*` headers — so set it when the host sits behind a proxy or
    /// load balancer. Default: `http://` + the address actually bound. Also
    /// `TESSERA_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// The reverse proxies whose `X-Forwarded-For` header is believed: IPv4 or IPv6 addresses
    /// and CIDR ranges (`10.0.0.0/8`, `::1`, `2001:db8::/32`). A signed request's client
    /// address (what IP allow-lists check) is its TCP peer, unless that peer is in this list:
    /// then it is the rightmost `X-Forwarded-For` address that is not. Default: empty, so no
    /// forwarding header is ever believed. Also `TESSERA_TRUSTED_PROXIES` (comma-separated).
    #[serde(deserialize_with = "trusted_proxies_from_toml")]
    pub trusted_proxies: Vec<IpNet>,
    /// Log output format.
    pub log_format: LogFormat,
    /// Sandbox limits for provider components.
    pub plugins: PluginLimits,
    /// Outgoing requests to providers.
    pub egress: EgressConfig,
    /// How many seconds before its expiry an OAuth access token is refreshed before use
    /// (default 60). Also `TESSERA_REFRESH_SKEW_SECS`.
    pub refresh_skew_secs: u64,
    /// How many seconds after a failed webhook delivery it is tried again (default 10);
    /// each later retry waits three times longer. Also `TESSERA_WEBHOOK_RETRY_SECS`.
    pub webhook_retry_secs: u64,
    /// The end users' wallet at `/wallet/` (off unless `issuer` and `client_id` are set).
    pub wallet: WalletConfig,
    /// PostgreSQL URL (`postgres://…`); when absent, an embedded SQLite database in the data
    /// directory. Also `TESSERA_DATABASE_URL`.
    pub database_url: Option<String>,
    /// The master key from `TESSERA_MASTER_KEY`, if set (never read from the file: a key in a
    /// configuration file would sit next to the data it protects). Else the key file
    /// `master.key` in the data directory.
    #[serde(skip)]
    pub master_key: Option<std::sync::Arc<secrecy::SecretString>>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Limits and routing of the requests the host sends to providers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// How long to wait for a provider's TCP and TLS handshake, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long one provider exchange may take in total, in milliseconds.
    pub timeout_ms: u64,
    /// The largest provider response the host relays, in MiB (larger is cut off with
    /// `response_too_large`).
    pub max_response_mib: u64,
    /// Sends requests for a host to another origin instead, keeping the original `Host`
    /// header and signature: `"api.stripe.com" = "http://127.0.0.1:9000"`. For test rigs
    /// and egress gateways; the provider's host allow-list still applies first. Also
    /// `TESSERA_EGRESS_OVERRIDES` (`host=origin,host=origin`).
    pub overrides: std::collections::BTreeMap<String, String>,
    /// Lets plain `http` through to loopback hosts (`127.0.0.1`, `::1`, `localhost`) that a
    /// provider's allow-list names, for test rigs with a local authorization server. Off by
    /// default; everything else stays `https` only. Also `TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK`.
    pub allow_http_loopback: bool,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            timeout_ms: 30_000,
            max_response_mib: 64,
            overrides: std::collections::BTreeMap::new(),
            allow_http_loopback: false,
        }
    }
}

/// The wallet's sign-in: the operator's OpenID Connect identity provider, at which the
/// wallet is a client with redirect URI `{public_url}/wallet/callback`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalletConfig {
    /// The identity provider's issuer (`https://idp.example.com`): end users sign in there
    /// and are `user:ISSUER:SUB`. Also `TESSERA_WALLET_ISSUER`.
    pub issuer: Option<String>,
    /// The wallet's client id at it. Also `TESSERA_WALLET_CLIENT_ID`.
    pub client_id: Option<String>,
    /// The client secret of a confidential client: only from `TESSERA_WALLET_CLIENT_SECRET`,
    /// never the file. Absent: a public client (PKCE alone).
    #[serde(skip)]
    pub client_secret: Option<std::sync::Arc<secrecy::SecretString>>,
    /// The scopes asked for (default `openid email profile`).
    pub scopes: String,
    /// How long a wallet session lasts, in seconds (default 28800, eight hours).
    pub session_ttl_secs: u64,
    /// The longest TTL an end user may give a grant from the wallet, in seconds (default
    /// 7776000, 90 days).
    pub max_ttl_secs: u64,
}

impl std::fmt::Debug for WalletConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret_set", &self.client_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for WalletConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            client_id: None,
            client_secret: None,
            scopes: "openid email profile".into(),
            session_ttl_secs: 8 * 3600,
            max_ttl_secs: 90 * 86_400,
        }
    }
}

/// Sandbox limits applied to every provider call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Linear memory one call may use, in MiB.
    pub memory_mib: u64,
    /// How long one call may run before it is interrupted, in milliseconds.
    pub deadline_ms: u64,
    /// How often the directory of operator components is scanned, in milliseconds.
    pub watch_interval_ms: u64,
    /// Whether to use the pooling allocator (a start-up probe still falls back to on-demand
    /// allocation where address space is short).
    pub pooling: bool,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            deadline_ms: 1_000,
            watch_interval_ms: 1_000,
            pooling: true,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            providers_dir: None,
            allow_builtin_override: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            trusted_proxies: Vec::new(),
            log_format: LogFormat::Pretty,
            plugins: PluginLimits::default(),
            egress: EgressConfig::default(),
            refresh_skew_secs: 60,
            webhook_retry_secs: 10,
            wallet: WalletConfig::default(),
            database_url: None,
            master_key: None,
        }
    }
}

/// The default data directory: `$XDG_DATA_HOME/tessera`, else `~/.local/share/tessera`, else
/// `./tessera-data`.
fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("tessera");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/tessera");
    }
    PathBuf::from("tessera-data")
}

/// Values given on the command line, which win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--providers-dir`.
    pub providers_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Reads the configuration: defaults, then the TOML file (`--config`, or
    /// `tessera.toml` in the data directory when it exists), then `TESSERA_*` variables, then
    /// command-line overrides; then validates it.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(file, overrides, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the environment supplied by the caller (for tests).
    pub fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let data_dir_hint = overrides
            .data_dir
            .clone()
            .or_else(|| env("TESSERA_DATA_DIR").map(PathBuf::from));
        let implicit = data_dir_hint
            .clone()
            .unwrap_or_else(default_data_dir)
            .join("tessera.toml");
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None => implicit.is_file().then_some(implicit),
        };
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<Config>(&text).map_err(|e| ConfigError::Parse {
                    path,
                    message: e.message().to_string(),
                })?
            }
            None => Config::default(),
        };

        if let Some(v) = data_dir_hint {
            config.data_dir = v;
        }
        if let Some(v) = env("TESSERA_PROVIDERS_DIR") {
            config.providers_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = env("TESSERA_EGRESS_OVERRIDES").filter(|v| !v.trim().is_empty()) {
            for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let Some((host, origin)) = item.split_once('=') else {
                    return Err(ConfigError::Env {
                        name: "TESSERA_EGRESS_OVERRIDES",
                        message: "expected host=origin items separated by commas".into(),
                    });
                };
                config
                    .egress
                    .overrides
                    .insert(host.trim().to_ascii_lowercase(), origin.trim().to_owned());
            }
        }
        apply_call_env(&mut config, &env)?;
        if let Some(v) = env("TESSERA_WALLET_ISSUER").filter(|v| !v.is_empty()) {
            config.wallet.issuer = Some(v);
        }
        if let Some(v) = env("TESSERA_WALLET_CLIENT_ID").filter(|v| !v.is_empty()) {
            config.wallet.client_id = Some(v);
        }
        if let Some(v) = env("TESSERA_WALLET_CLIENT_SECRET").filter(|v| !v.is_empty()) {
            config.wallet.client_secret = Some(std::sync::Arc::new(secrecy::SecretString::from(v)));
        }
        if let Some(v) = env("TESSERA_DATABASE_URL").filter(|v| !v.is_empty()) {
            config.database_url = Some(v);
        }
        if let Some(v) = env("TESSERA_MASTER_KEY").filter(|v| !v.trim().is_empty()) {
            config.master_key = Some(std::sync::Arc::new(secrecy::SecretString::from(v)));
        }
        if let Some(v) = env("TESSERA_LISTEN") {
            config.listen = v
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Env {
                    name: "TESSERA_LISTEN",
                    message: e.to_string(),
                })?;
        }
        if let Some(v) = env("TESSERA_PUBLIC_URL").filter(|v| !v.is_empty()) {
            config.public_url = Some(v);
        }
        if let Some(v) = env("TESSERA_TRUSTED_PROXIES").filter(|v| !v.trim().is_empty()) {
            config.trusted_proxies = trusted_proxies_from_env(&v)?;
        }
        if let Some(v) = env("TESSERA_LOG_FORMAT") {
            config.log_format = match v.as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                other => {
                    return Err(ConfigError::Env {
                        name: "TESSERA_LOG_FORMAT",
                        message: format!("expected `pretty` or `json`, got `{other}`"),
                    });
                }
            };
        }
        if let Some(v) = overrides.providers_dir.clone() {
            config.providers_dir = Some(v);
        }
        if let Some(v) = overrides.listen {
            config.listen = v;
        }
        if let Some(v) = overrides.log_format {
            config.log_format = v;
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            self.public_url = Some(public_origin(url)?);
        }
        let p = &self.plugins;
        if !(1..=4096).contains(&p.memory_mib) {
            return Err(ConfigError::Invalid(format!(
                "plugins.memory_mib must be between 1 and 4096, got {}",
                p.memory_mib
            )));
        }
        if !(10..=60_000).contains(&p.deadline_ms) {
            return Err(ConfigError::Invalid(format!(
                "plugins.deadline_ms must be between 10 and 60000, got {}",
                p.deadline_ms
            )));
        }
        let e = &self.egress;
        if !(100..=600_000).contains(&e.timeout_ms)
            || !(100..=60_000).contains(&e.connect_timeout_ms)
        {
            return Err(ConfigError::Invalid(format!(
                "egress.timeout_ms must be 100..=600000 and egress.connect_timeout_ms 100..=60000, got {} and {}",
                e.timeout_ms, e.connect_timeout_ms
            )));
        }
        if !(1..=4096).contains(&e.max_response_mib) {
            return Err(ConfigError::Invalid(format!(
                "egress.max_response_mib must be between 1 and 4096, got {}",
                e.max_response_mib
            )));
        }
        for (host, origin) in &e.overrides {
            let ok = url::Url::parse(origin).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.path() == "/"
            });
            if host.is_empty() || !ok {
                return Err(ConfigError::Invalid(format!(
                    "egress.overrides: {host:?} = {origin:?} must map a host name to an origin like http://127.0.0.1:9000"
                )));
            }
        }
        if p.watch_interval_ms < 50 {
            return Err(ConfigError::Invalid(format!(
                "plugins.watch_interval_ms must be at least 50, got {}",
                p.watch_interval_ms
            )));
        }
        Ok(())
    }

    /// The public origin request signatures are checked against: `public_url`, or
    /// `http://{bound}` when it is not set (`bound` is the address the listener really got,
    /// which differs from `listen` for port 0).
    pub fn public_origin(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }

    /// Where compiled components are cached.
    pub fn component_cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache/components")
    }

    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.plugins.deadline_ms)
    }
}

/// The egress and refresh settings that come from the environment
/// (`TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK`, `TESSERA_REFRESH_SKEW_SECS`).
fn apply_call_env(
    config: &mut Config,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    if let Some(v) = env("TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK").filter(|v| !v.is_empty()) {
        config.egress.allow_http_loopback = match v.as_str() {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => {
                return Err(ConfigError::Env {
                    name: "TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK",
                    message: "expected true or false".into(),
                });
            }
        };
    }
    if let Some(v) = env("TESSERA_WEBHOOK_RETRY_SECS").filter(|v| !v.is_empty()) {
        config.webhook_retry_secs = match v.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ConfigError::Env {
                    name: "TESSERA_WEBHOOK_RETRY_SECS",
                    message: "expected a whole number of seconds, at least 1".into(),
                });
            }
        };
    }
    if let Some(v) = env("TESSERA_REFRESH_SKEW_SECS").filter(|v| !v.is_empty()) {
        config.refresh_skew_secs = v.parse().map_err(|_| ConfigError::Env {
            name: "TESSERA_REFRESH_SKEW_SECS",
            message: "expected a whole number of seconds".into(),
        })?;
    }
    Ok(())
}

/// One `trusted_proxies` entry: a CIDR range (host bits cleared: `10.1.2.3/8` is
/// `10.0.0.0/8`) or a single address (an IPv4-mapped IPv6 address counts as the IPv4 one,
/// as peer addresses do).
pub fn parse_trusted_proxy(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| entry.parse::<IpAddr>().map(|ip| IpNet::from(ip.to_canonical())))
        .map_err(|_| {
            format!(
                "{entry:?} is not an IP address or CIDR range (such as 10.0.0.0/8, ::1 or 2001:db8::/32)"
            )
        })
}

/// `trusted_proxies` from the file: a list of strings, each checked by
/// [`parse_trusted_proxy`], so a bad entry fails the load naming it.
fn trusted_proxies_from_toml<'de, D>(deserializer: D) -> Result<Vec<IpNet>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let entries = Vec::<String>::deserialize(deserializer)?;
    entries
        .iter()
        .map(|e| parse_trusted_proxy(e))
        .collect::<Result<_, _>>()
        .map_err(|message| serde::de::Error::custom(format!("trusted_proxies: {message}")))
}

/// `TESSERA_TRUSTED_PROXIES`: comma-separated entries (empty items ignored).
fn trusted_proxies_from_env(value: &str) -> Result<Vec<IpNet>, ConfigError> {
    value
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .map(parse_trusted_proxy)
        .collect::<Result<_, _>>()
        .map_err(|message| ConfigError::Env {
            name: "TESSERA_TRUSTED_PROXIES",
            message,
        })
}

/// Checks that `url` is a bare `http`/`https` origin and returns it without a trailing slash.
fn public_origin(url: &str) -> Result<String, ConfigError> {
    let invalid = |why: &str| {
        ConfigError::Invalid(format!(
            "public_url must be an origin such as https://tessera.example.com ({why}), got {url:?}"
        ))
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("no user name or password"));
    }
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("no path, query or fragment"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn environment_overrides_defaults_and_flags_override_environment() {
        let overrides = Overrides {
            listen: Some("127.0.0.1:9999".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::load_from(
            None,
            &overrides,
            env_of(&[
                ("TESSERA_DATA_DIR", "/nonexistent/tessera-test"),
                ("TESSERA_LISTEN", "0.0.0.0:1"),
            ]),
        );
        let config = config.unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/nonexistent/tessera-test"));
        assert_eq!(config.listen.port(), 9999);
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap();
        let err = Config::load_from(Some(&file), &Overrides::default(), |_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn bad_environment_values_are_named() {
        let err = Config::load_from(
            None,
            &Overrides::default(),
            env_of(&[("TESSERA_LOG_FORMAT", "xml")]),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("TESSERA_LOG_FORMAT") && err.contains("xml"),
            "{err}"
        );
    }

    #[test]
    fn public_url_must_be_an_origin_and_defaults_to_the_bound_address() {
        let bound: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let config = Config::load_from(
            None,
            &Overrides::default(),
            env_of(&[("TESSERA_PUBLIC_URL", "https://Tessera.Example.com/")]),
        )
        .unwrap();
        assert_eq!(config.public_origin(bound), "https://tessera.example.com");
        let config = Config::load_from(None, &Overrides::default(), |_| None).unwrap();
        assert_eq!(config.public_origin(bound), "http://127.0.0.1:4321");
        for bad in [
            "ftp://x.example",
            "https://x.example/v1",
            "https://u:p@x.example",
            "x.example",
        ] {
            let err = Config::load_from(None, &Overrides::default(), |name| {
                (name == "TESSERA_PUBLIC_URL").then(|| bad.to_owned())
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            assert!(err.contains("public_url"), "{bad}: {err}");
        }
    }

    #[test]
    fn trusted_proxies_default_to_none_and_take_addresses_and_ranges() {
        let config = Config::load_from(None, &Overrides::default(), |_| None).unwrap();
        assert!(config.trusted_proxies.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "trusted_proxies = [\"10.1.2.3/8\", \"::1\", \"2001:db8::/32\", \"::ffff:192.0.2.7\"]\n",
        )
        .unwrap();
        let config = Config::load_from(Some(&file), &Overrides::default(), |_| None).unwrap();
        let shown: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            ["10.0.0.0/8", "::1/128", "2001:db8::/32", "192.0.2.7/32"]
        );

        // The environment replaces the file's list.
        let config = Config::load_from(Some(&file), &Overrides::default(), |name| {
            (name == "TESSERA_TRUSTED_PROXIES").then(|| " 172.16.0.0/12 , ,fd00::1 ".to_owned())
        })
        .unwrap();
        let shown: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["172.16.0.0/12", "fd00::1/128"]);
    }

    #[test]
    fn a_bad_trusted_proxy_is_named() {
        for bad in [
            "10.0.0.0/33",
            "proxy.internal",
            "10.0.0",
            "::1/129",
            "10.0.0.1:80",
        ] {
            let err = Config::load_from(None, &Overrides::default(), |name| {
                (name == "TESSERA_TRUSTED_PROXIES").then(|| format!("10.0.0.1,{bad}"))
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            assert!(
                err.contains("TESSERA_TRUSTED_PROXIES") && err.contains(bad),
                "{bad}: {err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "trusted_proxies = [\"10.0.0.1\", \"10.0.0.0/40\"]\n").unwrap();
        let err = Config::load_from(Some(&file), &Overrides::default(), |_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("trusted_proxies") && err.contains("10.0.0.0/40"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_limits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "[plugins]\ndeadline_ms = 1\n").unwrap();
        let err = Config::load_from(Some(&file), &Overrides::default(), |_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("deadline_ms"), "{err}");
    }
}
