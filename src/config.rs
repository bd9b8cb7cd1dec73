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
use crate::urls;

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
    /// A dict the user writes for this package (`addon_params`): setting names as they
    /// are; an unknown `redis_*` key is an error.
    Config,
    /// The top level of `global_config`, which a host (a factory-style fork) also fills
    /// with its own `redis_*` settings: an unknown key close to one of ours is a typo
    /// (an error), any other unknown key belongs to the host and is ignored.
    Host,
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
    /// As the user gave it (shown only through [`urls::redact`]).
    pub url: String,
    pub mode: Mode,
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

/// Which servers hold the data.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// One server (`redis://`, `rediss://`, `unix://`).
    Single,
    /// A Redis Cluster, discovered from these seed nodes (`redis[s]://...` each).
    Cluster { seeds: Vec<String> },
    /// The master that Sentinel names.
    Sentinel(SentinelSettings),
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Cluster { .. } => "cluster",
            Mode::Sentinel(_) => "sentinel",
        }
    }
}

/// The sentinels, the master they watch, and how to talk to the sentinels themselves
/// (their credentials and TLS may differ from the master's).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SentinelSettings {
    pub url: urls::SentinelUrl,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
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
    /// The workspace this namespace's keys carry (see `keys.rs`); `None` without one,
    /// and for the LLM cache when it is shared across workspaces.
    pub workspace: Option<String>,
    /// `redis_shared_llm_cache`: every workspace reads and writes one LLM cache.
    pub shared_llm_cache: bool,
    /// `redis_atomic_rebuild`, for `community_reports` only: a `drop()` and the upserts
    /// after it become visible to other instances in one switch (see `store.rs`).
    pub atomic_rebuild: bool,
    /// `redis_metrics`: count and time this namespace's operations (see `metrics/`).
    pub metrics: bool,
    pub namespace: String,
    /// `None` means the records never expire.
    pub ttl: Option<u64>,
}

/// Which values a setting accepts.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Text,
    /// true/false (also "1"/"0", "yes"/"no" from the environment).
    Flag,
    /// A number of seconds in `(0, max]`, or `[0, max]` when zero is allowed (= off).
    Seconds {
        zero_allowed: bool,
        max: f64,
    },
    /// An integer in `[min, max]`.
    Integer {
        min: u64,
        max: u64,
    },
}

/// One setting: its name (as in `global_config`; the environment variable is the name
/// upper-cased), its default and the values it accepts.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
}

const fn text(name: &'static str, default: &'static str) -> Spec {
    Spec {
        name,
        default,
        kind: Kind::Text,
    }
}

const fn flag(name: &'static str, default: &'static str) -> Spec {
    Spec {
        name,
        default,
        kind: Kind::Flag,
    }
}

const fn seconds(name: &'static str, default: &'static str, zero_allowed: bool, max: f64) -> Spec {
    Spec {
        name,
        default,
        kind: Kind::Seconds { zero_allowed, max },
    }
}

const fn integer(name: &'static str, default: &'static str, min: u64, max: u64) -> Spec {
    Spec {
        name,
        default,
        kind: Kind::Integer { min, max },
    }
}

const HOUR: f64 = 3600.0;
const DAY: f64 = 86400.0;

/// Every setting (besides `redis_ttl_<namespace>`), with its default and range.
pub const SETTINGS: &[Spec] = &[
    text("redis_url", "redis://localhost:6379"),
    text("redis_username", ""),
    text("redis_password", ""),
    text("redis_key_prefix", "nano_graphrag"),
    text("redis_workspace", ""),
    flag("redis_shared_llm_cache", "false"),
    flag("redis_atomic_rebuild", "false"),
    flag("redis_metrics", "true"),
    seconds("redis_connection_timeout", "5", false, HOUR),
    seconds("redis_socket_timeout", "5", false, HOUR),
    seconds("redis_health_check_interval", "30", true, DAY),
    integer("redis_max_connections", "50", 1, 100_000),
    integer("redis_max_inflight", "4096", 1, 1_000_000),
    integer("redis_retry_attempts", "3", 0, 1000),
    seconds("redis_retry_deadline", "10", false, DAY),
    integer("redis_breaker_threshold", "5", 0, 1_000_000),
    seconds("redis_breaker_cooldown", "2", false, HOUR),
    text("redis_eviction_check", "warn"),
    text("redis_tls_ca_cert", ""),
    text("redis_tls_cert", ""),
    text("redis_tls_key", ""),
    flag("redis_cluster", "false"),
    text("redis_sentinel_username", ""),
    text("redis_sentinel_password", ""),
    flag("redis_sentinel_tls", ""),
];

/// The largest TTL, in seconds (about 68 years): far beyond any use, far below what
/// overflows Redis' millisecond clock.
pub const MAX_TTL: u64 = i32::MAX as u64;

fn spec(name: &str) -> &'static Spec {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .expect("every setting is in SETTINGS")
}

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

    /// A true/false setting; `None` when not set and its default is empty.
    fn flag(&self, name: &str) -> Result<Option<bool>> {
        let Some(found) = self.find(name) else {
            return Ok(spec(name).default.parse().ok());
        };
        let expected = "true or false";
        match found.raw {
            Raw::Bool(b) => Ok(Some(*b)),
            Raw::Int(0) => Ok(Some(false)),
            Raw::Int(1) => Ok(Some(true)),
            Raw::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" => Ok(Some(false)),
                _ => Err(bad(&found, expected)),
            },
            _ => Err(bad(&found, expected)),
        }
    }

    /// A duration setting, checked against its range (NaN and infinities never pass).
    fn seconds(&self, name: &str) -> Result<Duration> {
        let spec = spec(name);
        let Kind::Seconds { zero_allowed, max } = spec.kind else {
            unreachable!("{name} is not a duration")
        };
        let default: f64 = spec.default.parse().expect("numeric default");
        let Some(found) = self.find(name) else {
            return Ok(Duration::from_secs_f64(default));
        };
        let low = if zero_allowed { "[0" } else { "(0" };
        let expected = format!("a number of seconds in {low}, {max}]");
        let value = match found.raw {
            Raw::Int(i) => *i as f64,
            Raw::Float(f) => *f,
            Raw::Str(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| bad(&found, &expected))?,
            _ => return Err(bad(&found, &expected)),
        };
        let in_range =
            value.is_finite() && value <= max && (value > 0.0 || (zero_allowed && value == 0.0));
        if !in_range {
            return Err(bad(&found, &expected));
        }
        Ok(Duration::from_secs_f64(value))
    }

    /// An integer setting of the table, checked against its range.
    fn setting_integer(&self, name: &str) -> Result<u64> {
        let spec = spec(name);
        let Kind::Integer { min, max } = spec.kind else {
            unreachable!("{name} is not an integer")
        };
        let default = spec.default.parse().expect("integer default");
        self.integer(&[name.to_owned()], default, min, max)
    }

    fn integer(&self, names: &[String], default: u64, min: u64, max: u64) -> Result<u64> {
        let Some(found) = self.find_any(names) else {
            return Ok(default);
        };
        let what = format!("an integer from {min} to {max}");
        let value = match found.raw {
            Raw::Int(i) => u64::try_from(*i).map_err(|_| bad(&found, &what))?,
            Raw::Str(s) => s.trim().parse::<u64>().map_err(|_| bad(&found, &what))?,
            _ => return Err(bad(&found, &what)),
        };
        if !(min..=max).contains(&value) {
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
        let default = |name: &str| spec(name).default;

        let (url, url_origin) = r.string("redis_url", default("redis_url"))?;
        let mode = resolve_mode(&r, &url, &url_origin)?;
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

        let (workspace, workspace_origin) = r.string("redis_workspace", "")?;
        if !workspace.is_empty() && !crate::keys::valid_workspace(&workspace) {
            return Err(Error::Config(format!(
                "{workspace_origin}: a workspace is 1 to 64 of A-Z a-z 0-9 _ . - \
                 (other characters could make keys ambiguous), got {workspace:?}"
            )));
        }
        let shared_llm_cache = r.flag("redis_shared_llm_cache")?.unwrap_or(false);
        let atomic_rebuild =
            r.flag("redis_atomic_rebuild")?.unwrap_or(false) && namespace == "community_reports";
        // The cache's keys are hashes of model and prompt: safe to share.
        let shared_here = shared_llm_cache && namespace == "llm_response_cache";
        let workspace = (!workspace.is_empty() && !shared_here).then_some(workspace);

        let ttl_names = [
            "redis_ttl".to_owned(),
            format!("redis_ttl_{namespace}"),
            ttl_env_name(namespace).to_ascii_lowercase(),
        ];
        let ttl = r.integer(&ttl_names, default_ttl(namespace), 0, MAX_TTL)?;

        let tls = tls_files(&r, &url)?;
        let connection = ConnectionSettings {
            url,
            mode,
            username: r.optional_string("redis_username")?,
            password: r.optional_string("redis_password")?,
            connection_timeout: r.seconds("redis_connection_timeout")?,
            socket_timeout: r.seconds("redis_socket_timeout")?,
            health_check_interval: r.seconds("redis_health_check_interval")?,
            // Each fits: the table's ranges are far below u32::MAX.
            max_connections: r.setting_integer("redis_max_connections")? as u32,
            max_inflight: r.setting_integer("redis_max_inflight")? as usize,
            retry_attempts: r.setting_integer("redis_retry_attempts")? as u32,
            retry_deadline: r.seconds("redis_retry_deadline")?,
            breaker_threshold: r.setting_integer("redis_breaker_threshold")? as u32,
            breaker_cooldown: r.seconds("redis_breaker_cooldown")?,
            eviction_check,
            tls,
        };
        Ok(Settings {
            connection,
            key_prefix,
            workspace,
            shared_llm_cache,
            atomic_rebuild,
            metrics: r.flag("redis_metrics")?.unwrap_or(true),
            namespace: namespace.to_owned(),
            ttl: (ttl > 0).then_some(ttl),
        })
    }
}

/// The topology: from the URL's scheme, or `redis_cluster` with a plain URL.
fn resolve_mode(r: &Resolver<'_>, url: &str, origin: &str) -> Result<Mode> {
    let cluster_flag = r.flag("redis_cluster")?.unwrap_or(false);
    match parse_url(url, origin)? {
        urls::Parsed::Single if cluster_flag => {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(Error::Config(format!(
                    "redis_cluster: a cluster needs a redis:// or rediss:// seed URL, got {}",
                    urls::redact(url)
                )));
            }
            Ok(Mode::Cluster {
                seeds: vec![url.to_owned()],
            })
        }
        urls::Parsed::Single => Ok(Mode::Single),
        urls::Parsed::Cluster { seeds } => Ok(Mode::Cluster { seeds }),
        urls::Parsed::Sentinel(url) => Ok(Mode::Sentinel(SentinelSettings {
            tls: r.flag("redis_sentinel_tls")?.unwrap_or(url.tls),
            username: r.optional_string("redis_sentinel_username")?,
            password: r.optional_string("redis_sentinel_password")?,
            url,
        })),
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
        if !url.starts_with("rediss") {
            return Err(Error::Config(format!(
                "{origin}: TLS files need a rediss:// URL, got {}",
                urls::redact(url)
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

/// Every `redis_*` key the user wrote for this package must be a known setting: a typo
/// would otherwise silently fall back to a default (the seed's CODEX-001 in disguise).
/// At the top level of `global_config` a host may keep `redis_*` settings of its own:
/// there only a near miss of one of ours is an error; other keys are ignored (logged once).
fn check_names(namespace: &str, layers: &[Layer]) -> Result<()> {
    for layer in layers.iter().filter(|l| l.kind != LayerKind::Environment) {
        for name in layer.values.keys() {
            let known = SETTINGS.iter().any(|s| s.name == name)
                || name.starts_with("redis_ttl_")
                || (name == "redis_ttl" && layer.kind == LayerKind::Arguments);
            if known {
                continue;
            }
            let near = nearest_setting(name);
            if layer.kind == LayerKind::Host && near.is_none() && name != "redis_ttl" {
                log_ignored_once(name, &layer.label);
                continue;
            }
            let hint = match (name.as_str(), near) {
                ("redis_ttl", _) => format!(" (use redis_ttl_{namespace} here)"),
                (_, Some(near)) => format!(" (did you mean {near}?)"),
                _ => String::new(),
            };
            return Err(Error::Config(format!(
                "unknown setting {name} in {}{hint}",
                layer.label
            )));
        }
    }
    Ok(())
}

/// The setting `name` is a likely typo of (at most two edits away).
fn nearest_setting(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|s| (edit_distance(name, s.name), s.name))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn log_ignored_once(name: &str, label: &str) {
    static SEEN: std::sync::Mutex<Option<std::collections::HashSet<String>>> =
        std::sync::Mutex::new(None);
    let first = SEEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .insert(name.to_owned());
    if first {
        log::info!(
            "ignoring {name} in {label}: not a setting of nano-graphrag-redis (the host's own?)"
        );
    }
}

/// What `url` names, or a `ConfigError` naming the setting, that never echoes a password.
fn parse_url(url: &str, origin: &str) -> Result<urls::Parsed> {
    urls::parse(url).map_err(|why| {
        Error::Config(format!(
            "{origin}: invalid Redis URL {}: {why}",
            urls::redact(url)
        ))
    })
}

impl ConnectionSettings {
    /// The password, wherever it was given: never to leave the process in a message.
    pub fn secret(&self) -> Option<String> {
        self.password.clone().or_else(|| urls::password(&self.url))
    }
}

impl fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSettings")
            .field("url", &urls::redact(&self.url))
            .field("mode", &self.mode.name())
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
            .field("workspace", &self.workspace)
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
            "redis_socket_timeout in global_config['addon_params']: expected a number of seconds in (0, 3600], got \"soon\""
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
    fn every_numeric_setting_is_range_checked() {
        let out_of_range: &[(&str, Raw)] = &[
            ("redis_max_inflight", Raw::Int(1 << 62)),
            ("redis_max_inflight", Raw::Int(0)),
            ("redis_retry_attempts", Raw::Int((1 << 32) + 1)),
            ("redis_breaker_threshold", Raw::Int(1 << 32)),
            ("redis_max_connections", Raw::Int(1 << 32)),
            ("redis_max_connections", Raw::Int(-1)),
            ("redis_socket_timeout", Raw::Float(f64::NAN)),
            ("redis_socket_timeout", Raw::Float(f64::INFINITY)),
            ("redis_socket_timeout", Raw::Str("inf".into())),
            ("redis_socket_timeout", Raw::Str("nan".into())),
            ("redis_connection_timeout", Raw::Int(10_000)),
            ("redis_retry_deadline", Raw::Float(1e12)),
            ("redis_breaker_cooldown", Raw::Int(0)),
            ("redis_health_check_interval", Raw::Int(-1)),
            ("redis_ttl_docs", Raw::Int(1 << 40)),
            (
                "redis_max_inflight",
                Raw::Other("int (out of range)".into()),
            ),
        ];
        for (name, value) in out_of_range {
            let err = Settings::resolve(
                "docs",
                &[layer("keyword arguments", &[(name, value.clone())])],
            )
            .expect_err(name);
            assert!(
                matches!(&err, Error::Config(m) if m.starts_with(name)),
                "{name}: {err}"
            );
        }
        let s = Settings::resolve(
            "docs",
            &[layer(
                "keyword arguments",
                &[
                    ("redis_health_check_interval", Raw::Int(0)),
                    ("redis_max_inflight", Raw::Int(1_000_000)),
                    ("redis_ttl_docs", Raw::Int(MAX_TTL as i64)),
                ],
            )],
        )
        .unwrap();
        assert_eq!(s.connection.max_inflight, 1_000_000);
        assert_eq!(s.ttl, Some(MAX_TTL));
    }

    #[test]
    fn host_keys_are_ignored_but_typos_are_not() {
        let host = |pairs: &[(&str, Raw)]| {
            let values = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            Layer::new("global_config", LayerKind::Host, values)
        };
        // A fork keeps its own redis_* settings at the top level: not ours, ignored.
        Settings::resolve("x", &[host(&[("redis_cluster_nodes_hint", Raw::Int(3))])]).unwrap();
        // A near miss of one of ours is a typo, wherever it is.
        let err =
            Settings::resolve("x", &[host(&[("redis_socket_timout", Raw::Int(3))])]).unwrap_err();
        assert!(
            err.to_string()
                .contains("did you mean redis_socket_timeout?"),
            "{err}"
        );
        let err = Settings::resolve(
            "x",
            &[layer(
                "global_config['addon_params']",
                &[("redis_anything", Raw::Int(3))],
            )],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown setting redis_anything"),
            "{err}"
        );
    }

    #[test]
    fn password_never_shown() {
        let url = "redis://user:hunter2@host:6379/0";
        assert_eq!(urls::redact(url), "redis://user:***@host:6379/0");
        assert_eq!(urls::redact("redis://:pw@h"), "redis://:***@h");
        assert_eq!(urls::redact("redis://h:1"), "redis://h:1");
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
