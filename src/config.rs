//! Settings: resolved in one place, from layered sources, validated, secrets redacted.
//!
//! Precedence, first hit wins: constructor keyword arguments, then top-level `redis_*`
//! keys of nano-graphrag's `global_config`, then `global_config["addon_params"]`, then
//! the environment (`REDIS_URL`, ... : the setting name upper-cased), then defaults.
//! A `None` value counts as "not set here".

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::errors::{Error, Result};

/// A setting's value as a source gave it, before validation.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Any other type; holds the type's name for the error message.
    Other(String),
}

/// One source of settings, e.g. `global_config['addon_params']`.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Where the values came from, as the user would write it (used in errors).
    pub label: String,
    pub values: HashMap<String, Raw>,
    pub kind: LayerKind,
}

/// How a layer names its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// The constructor's keyword arguments: may also hold `redis_ttl` for its namespace.
    Arguments,
    /// A dict of `global_config`: setting names as they are, unknown `redis_*` is an error.
    Config,
    /// Environment variables: names upper-cased; unrelated `REDIS_*` variables of other
    /// tools are ignored.
    Environment,
}

impl Layer {
    pub fn new(label: impl Into<String>, kind: LayerKind, values: HashMap<String, Raw>) -> Layer {
        Layer {
            label: label.into(),
            values,
            kind,
        }
    }

    /// The process environment's `REDIS_*` variables.
    pub fn from_env() -> Layer {
        let values = std::env::vars()
            .filter(|(k, _)| k.starts_with("REDIS_"))
            .map(|(k, v)| (k, Raw::Str(v)))
            .collect();
        Layer::new("the environment", LayerKind::Environment, values)
    }
}

/// What to do when the server's `maxmemory-policy` may evict keys without a TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvictionCheck {
    Warn,
    Refuse,
    Ignore,
}

/// Everything that identifies a connection: instances that agree on all of it share one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConnectionSettings {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub connection_timeout: Duration,
    pub socket_timeout: Duration,
    pub health_check_interval: Duration,
    pub max_connections: u32,
    pub max_inflight: usize,
    pub retry_attempts: u32,
    pub retry_deadline: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    pub eviction_check: EvictionCheck,
    pub tls: TlsFiles,
}

/// PEM files for `rediss://` URLs: a CA to trust instead of the system's roots, and a
/// client certificate + key for servers that require them (mutual TLS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    pub ca_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}
#[derive(Clone)]
pub struct Settings {
    pub connection: ConnectionSettings,
    pub key_prefix: String,
    pub namespace: String,
    /// `None` means the records never expire.
    pub ttl: Option<u64>,
}

/// The settings every layer may hold (besides `redis_ttl_<namespace>`), with defaults.
pub const SETTINGS: &[(&str, &str)] = &[
    ("redis_url", "redis://localhost:6379"),
    ("redis_username", ""),
    ("redis_password", ""),
    ("redis_key_prefix", "nano_graphrag"),
    ("redis_connection_timeout", "5"),
    ("redis_socket_timeout", "5"),
    ("redis_health_check_interval", "30"),
    ("redis_max_connections", "50"),
    ("redis_max_inflight", "4096"),
    ("redis_retry_attempts", "3"),
    ("redis_retry_deadline", "10"),
    ("redis_breaker_threshold", "5"),
    ("redis_breaker_cooldown", "2"),
    ("redis_eviction_check", "warn"),
    ("redis_tls_ca_cert", ""),
    ("redis_tls_cert", ""),
    ("redis_tls_key", ""),
];

/// Default TTLs in seconds: the LLM cache and community reports can be recomputed.
pub fn default_ttl(namespace: &str) -> u64 {
    match namespace {
        "llm_response_cache" => 12 * 3600,
        "community_reports" => 24 * 3600,
        _ => 0,
    }
}

/// The environment variable that sets `namespace`'s TTL: `REDIS_TTL_` + the namespace
/// upper-cased, with every character other than A-Z, 0-9 turned into `_`.
pub fn ttl_env_name(namespace: &str) -> String {
    let tail: String = namespace
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("REDIS_TTL_{tail}")
}

/// A value found for a setting, and where.
struct Found<'a> {
    raw: &'a Raw,
    /// e.g. "redis_socket_timeout in global_config['addon_params']"
    origin: String,
}

struct Resolver<'a> {
    layers: &'a [Layer],
}

impl<'a> Resolver<'a> {
    fn find(&self, name: &str) -> Option<Found<'a>> {
        self.find_any(&[name.to_owned()])
    }

    fn find_any(&self, names: &[String]) -> Option<Found<'a>> {
        for layer in self.layers {
            for name in names {
                // `redis_ttl` names no namespace: only an instance's own arguments say it.
                if name == "redis_ttl" && layer.kind != LayerKind::Arguments {
                    continue;
                }
                let key = match layer.kind {
                    LayerKind::Environment => name.to_ascii_uppercase(),
                    _ => name.clone(),
                };
                if let Some(raw) = layer.values.get(&key) {
                    let origin = format!("{key} in {}", layer.label);
                    return Some(Found { raw, origin });
                }
            }
        }
        None
    }

    fn string(&self, name: &str, default: &str) -> Result<(String, String)> {
        match self.find(name) {
            None => Ok((default.to_owned(), format!("{name} (default)"))),
            Some(Found {
                raw: Raw::Str(s),
                origin,
            }) => Ok((s.clone(), origin)),
            Some(found) => Err(bad(&found, "a string")),
        }
    }

    fn optional_string(&self, name: &str) -> Result<Option<String>> {
        let (value, _) = self.string(name, "")?;
        Ok((!value.is_empty()).then_some(value))
    }

    fn seconds(&self, name: &str, default: f64, allow_zero: bool) -> Result<Duration> {
        let Some(found) = self.find(name) else {
            return Ok(Duration::from_secs_f64(default));
        };
        let expected = if allow_zero {
            "a number of seconds >= 0"
        } else {
            "a number of seconds > 0"
        };
        let value = match found.raw {
            Raw::Int(i) => *i as f64,
            Raw::Float(f) => *f,
            Raw::Str(s) => s.trim().parse::<f64>().map_err(|_| bad(&found, expected))?,
            _ => return Err(bad(&found, expected)),
        };
        let in_range = value.is_finite() && (value > 0.0 || (allow_zero && value == 0.0));
        if !in_range || value > 1e9 {
            return Err(bad(&found, expected));
        }
        Ok(Duration::from_secs_f64(value))
    }

    fn integer(&self, names: &[String], default: u64, min: u64) -> Result<u64> {
        let Some(found) = self.find_any(names) else {
            return Ok(default);
        };
        let what = format!("an integer >= {min}");
        let value = match found.raw {
            Raw::Int(i) => u64::try_from(*i).map_err(|_| bad(&found, &what))?,
            Raw::Str(s) => s.trim().parse::<u64>().map_err(|_| bad(&found, &what))?,
            _ => return Err(bad(&found, &what)),
        };
        if value < min {
            return Err(bad(&found, &what));
        }
        Ok(value)
    }
}

#[cold]
fn bad(found: &Found<'_>, expected: &str) -> Error {
    let shown = match found.raw {
        Raw::Str(s) => format!("{s:?}"),
        Raw::Int(i) => i.to_string(),
        Raw::Float(f) => f.to_string(),
        Raw::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Raw::Other(type_name) => format!("a value of type {type_name}"),
    };
    Error::Config(format!(
        "{}: expected {expected}, got {shown}",
        found.origin
    ))
}

impl Settings {
    /// Resolves the settings of `namespace` from `layers`, highest precedence first.
    pub fn resolve(namespace: &str, layers: &[Layer]) -> Result<Settings> {
        check_names(namespace, layers)?;
        let r = Resolver { layers };
        let default = |name: &str| {
            SETTINGS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, d)| *d)
                .expect("every setting has a default")
        };
        let secs = |name: &str, allow_zero: bool| {
            let d: f64 = default(name).parse().expect("numeric default");
            r.seconds(name, d, allow_zero)
        };
        let int = |name: &str, min: u64| {
            let d: u64 = default(name).parse().expect("integer default");
            r.integer(&[name.to_owned()], d, min)
        };

        let (url, url_origin) = r.string("redis_url", default("redis_url"))?;
        validate_url(&url, &url_origin)?;
        let (eviction, eviction_origin) =
            r.string("redis_eviction_check", default("redis_eviction_check"))?;
        let eviction_check = match eviction.as_str() {
            "warn" => EvictionCheck::Warn,
            "refuse" => EvictionCheck::Refuse,
            "ignore" => EvictionCheck::Ignore,
            other => {
                return Err(Error::Config(format!(
                    "{eviction_origin}: expected one of \"warn\", \"refuse\", \"ignore\", got {other:?}"
                )))
            }
        };
        let (key_prefix, prefix_origin) =
            r.string("redis_key_prefix", default("redis_key_prefix"))?;
        if key_prefix.is_empty() || key_prefix.contains(':') {
            // ':' separates prefix, namespace and id: with one inside the prefix, prefix
            // "a:b" + namespace "c" and prefix "a" + namespace "b" would share keys.
            return Err(Error::Config(format!(
                "{prefix_origin}: the key prefix must be non-empty and contain no ':', got {key_prefix:?}"
            )));
        }

        let ttl_names = [
            "redis_ttl".to_owned(),
            format!("redis_ttl_{namespace}"),
            ttl_env_name(namespace).to_ascii_lowercase(),
        ];
        let ttl = r.integer(&ttl_names, default_ttl(namespace), 0)?;

        let tls = tls_files(&r, &url)?;
        let connection = ConnectionSettings {
            url,
            username: r.optional_string("redis_username")?,
            password: r.optional_string("redis_password")?,
            connection_timeout: secs("redis_connection_timeout", false)?,
            socket_timeout: secs("redis_socket_timeout", false)?,
            health_check_interval: secs("redis_health_check_interval", true)?,
            max_connections: int("redis_max_connections", 1)? as u32,
            max_inflight: int("redis_max_inflight", 1)? as usize,
            retry_attempts: int("redis_retry_attempts", 0)? as u32,
            retry_deadline: secs("redis_retry_deadline", false)?,
            breaker_threshold: int("redis_breaker_threshold", 0)? as u32,
            breaker_cooldown: secs("redis_breaker_cooldown", false)?,
            eviction_check,
            tls,
        };
        Ok(Settings {
            connection,
            key_prefix,
            namespace: namespace.to_owned(),
            ttl: (ttl > 0).then_some(ttl),
        })
    }
}

/// TLS files: each must be readable; a certificate needs its key; and they only make
/// sense with a `rediss://` URL.
fn tls_files(r: &Resolver<'_>, url: &str) -> Result<TlsFiles> {
    let mut files = TlsFiles::default();
    for (name, slot) in [
        ("redis_tls_ca_cert", &mut files.ca_cert),
        ("redis_tls_cert", &mut files.cert),
        ("redis_tls_key", &mut files.key),
    ] {
        let (path, origin) = r.string(name, "")?;
        if path.is_empty() {
            continue;
        }
        if let Err(e) = std::fs::File::open(&path) {
            return Err(Error::Config(format!(
                "{origin}: cannot read {path:?}: {e}"
            )));
        }
        if !url.starts_with("rediss://") {
            return Err(Error::Config(format!(
                "{origin}: TLS files need a rediss:// URL, got {}",
                redact_url(url)
            )));
        }
        *slot = Some(path);
    }
    if files.cert.is_some() != files.key.is_some() {
        return Err(Error::Config(
            "redis_tls_cert and redis_tls_key go together (a client certificate needs its key)"
                .to_owned(),
        ));
    }
    Ok(files)
}

/// Every `redis_*` key of a non-environment layer must be a known setting: a typo
/// would otherwise silently fall back to a default (the seed's CODEX-001 in disguise).
fn check_names(namespace: &str, layers: &[Layer]) -> Result<()> {
    for layer in layers.iter().filter(|l| l.kind != LayerKind::Environment) {
        for name in layer.values.keys() {
            let known = SETTINGS.iter().any(|(n, _)| n == name)
                || name.starts_with("redis_ttl_")
                || (name == "redis_ttl" && layer.kind == LayerKind::Arguments);
            if !known {
                let hint = if name == "redis_ttl" {
                    format!(" (use redis_ttl_{namespace} here)")
                } else {
                    String::new()
                };
                return Err(Error::Config(format!(
                    "unknown setting {name} in {}{hint}",
                    layer.label
                )));
            }
        }
    }
    Ok(())
}

fn validate_url(url: &str, origin: &str) -> Result<()> {
    use redis::IntoConnectionInfo;
    url.into_connection_info().map(drop).map_err(|e| {
        let why = crate::errors::scrub(&e.to_string(), url_password(url).as_deref());
        Error::Config(format!(
            "{origin}: invalid Redis URL {}: {why}",
            redact_url(url)
        ))
    })
}

/// The password part of `scheme://user:password@host...`, if any.
pub fn url_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// The URL with its password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url_password(url) {
        Some(password) => {
            let (scheme, rest) = url.split_once("://").expect("url_password found it");
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let at = authority.rfind('@').expect("url_password found it");
            let (userinfo, host) = authority.split_at(at);
            let user = &userinfo[..userinfo.len() - password.len() - 1];
            format!("{scheme}://{user}:***{host}{path}")
        }
        None => url.to_owned(),
    }
}

impl ConnectionSettings {
    /// Strings that must never leave the process in a message.
    pub fn secret(&self) -> Option<String> {
        self.password.clone().or_else(|| url_password(&self.url))
    }
}

impl fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSettings")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("connection_timeout", &self.connection_timeout)
            .field("socket_timeout", &self.socket_timeout)
            .field("max_inflight", &self.max_inflight)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("namespace", &self.namespace)
            .field("key_prefix", &self.key_prefix)
            .field("ttl", &self.ttl)
            .field("connection", &self.connection)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(label: &str, pairs: &[(&str, Raw)]) -> Layer {
        let kind = if label == "keyword arguments" {
            LayerKind::Arguments
        } else {
            LayerKind::Config
        };
        Layer::new(
            label,
            kind,
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn env(pairs: &[(&str, &str)]) -> Layer {
        Layer::new(
            "the environment",
            LayerKind::Environment,
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Raw::Str(v.to_string())))
                .collect(),
        )
    }

    #[test]
    fn defaults() {
        let s = Settings::resolve("text_chunks", &[]).unwrap();
        assert_eq!(s.connection.url, "redis://localhost:6379");
        assert_eq!(s.key_prefix, "nano_graphrag");
        assert_eq!(s.ttl, None);
        assert_eq!(s.connection.socket_timeout, Duration::from_secs(5));
        let cache = Settings::resolve("llm_response_cache", &[]).unwrap();
        assert_eq!(cache.ttl, Some(43200));
        let reports = Settings::resolve("community_reports", &[]).unwrap();
        assert_eq!(reports.ttl, Some(86400));
    }

    #[test]
    fn precedence_is_first_layer_wins() {
        let layers = [
            layer(
                "keyword arguments",
                &[("redis_socket_timeout", Raw::Int(1))],
            ),
            layer(
                "global_config",
                &[
                    ("redis_socket_timeout", Raw::Int(2)),
                    ("redis_key_prefix", Raw::Str("g".into())),
                ],
            ),
            layer(
                "global_config['addon_params']",
                &[
                    ("redis_key_prefix", Raw::Str("a".into())),
                    ("redis_max_inflight", Raw::Int(7)),
                ],
            ),
            env(&[
                ("REDIS_MAX_INFLIGHT", "9"),
                ("REDIS_URL", "redis://example:1"),
            ]),
        ];
        let s = Settings::resolve("x", &layers).unwrap();
        assert_eq!(s.connection.socket_timeout, Duration::from_secs(1));
        assert_eq!(s.key_prefix, "g");
        assert_eq!(s.connection.max_inflight, 7);
        assert_eq!(s.connection.url, "redis://example:1");
    }

    #[test]
    fn ttl_sources_and_validation() {
        let s = Settings::resolve(
            "llm_response_cache",
            &[env(&[("REDIS_TTL_LLM_RESPONSE_CACHE", "0")])],
        )
        .unwrap();
        assert_eq!(s.ttl, None);
        let s = Settings::resolve("a b", &[env(&[("REDIS_TTL_A_B", "60")])]).unwrap();
        assert_eq!(s.ttl, Some(60));
        let s = Settings::resolve(
            "docs",
            &[layer(
                "global_config['addon_params']",
                &[("redis_ttl_docs", Raw::Int(5))],
            )],
        )
        .unwrap();
        assert_eq!(s.ttl, Some(5));
        for bad in ["-1", "1.5", "abc", ""] {
            let err = Settings::resolve("docs", &[env(&[("REDIS_TTL_DOCS", bad)])]).unwrap_err();
            let Error::Config(message) = err else {
                panic!()
            };
            assert!(message.contains("REDIS_TTL_DOCS"), "{message}");
        }
        let err = Settings::resolve(
            "docs",
            &[layer("global_config", &[("redis_ttl", Raw::Int(5))])],
        )
        .unwrap_err();
        assert!(err.to_string().contains("redis_ttl_docs"));
    }

    #[test]
    fn bad_values_name_setting_and_source() {
        let err = Settings::resolve(
            "x",
            &[layer(
                "global_config['addon_params']",
                &[("redis_socket_timeout", Raw::Str("soon".into()))],
            )],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "redis_socket_timeout in global_config['addon_params']: expected a number of seconds > 0, got \"soon\""
        );
        let err = Settings::resolve(
            "x",
            &[layer(
                "keyword arguments",
                &[("redis_max_inflight", Raw::Bool(true))],
            )],
        )
        .unwrap_err();
        assert!(err.to_string().contains("got True"));
        let err = Settings::resolve(
            "x",
            &[layer(
                "keyword arguments",
                &[("redis_urll", Raw::Str("x".into()))],
            )],
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown setting redis_urll"));
    }

    #[test]
    fn password_never_shown() {
        let url = "redis://user:hunter2@host:6379/0";
        assert_eq!(redact_url(url), "redis://user:***@host:6379/0");
        assert_eq!(redact_url("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        let s = Settings::resolve(
            "x",
            &[env(&[("REDIS_URL", url), ("REDIS_PASSWORD", "s3cret")])],
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        let err = Settings::resolve(
            "x",
            &[env(&[("REDIS_URL", "redis://:hunter2@host:notaport")])],
        )
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
