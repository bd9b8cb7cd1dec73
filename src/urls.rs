//! Redis URLs: which topology they name, how each server's URL is derived from them,
//! and the one redaction that every URL shown anywhere goes through.
//!
//! - `redis://`, `rediss://`, `unix://`, `redis+unix://`: one server (redis-rs parses).
//! - `redis+cluster://[user:pass@]host:port[,host:port...]` (`rediss+cluster` for
//!   TLS): seed nodes of a Redis Cluster.
//! - `redis+sentinel://[user:pass@]host:port[,host:port...]/master_name[/db]`
//!   (`rediss+sentinel` for TLS): the sentinels, and the name and database of the
//!   master they watch. The userinfo is the master's; sentinels have their own
//!   settings (`redis_sentinel_username`, `redis_sentinel_password`).

/// The topology a URL names, with each part still in URL form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Single,
    /// `redis[s]://[userinfo@]host:port` of each seed node.
    Cluster {
        seeds: Vec<String>,
    },
    Sentinel(SentinelUrl),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SentinelUrl {
    pub tls: bool,
    /// `host:port` of each sentinel.
    pub sentinels: Vec<String>,
    pub master_name: String,
    pub db: i64,
    /// `user:pass@` as written in the URL (still percent-encoded), or empty.
    pub userinfo: String,
}

impl SentinelUrl {
    /// The URL of the master at `host:port`, with the given credentials and database.
    pub fn master_url(&self, host: &str, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{}{host}:{port}/{}", self.userinfo, self.db)
    }

    /// The URL of a sentinel (credentials come from the sentinel settings).
    pub fn sentinel_url(&self, host_port: &str, tls: bool) -> String {
        let scheme = if tls { "rediss" } else { "redis" };
        format!("{scheme}://{host_port}")
    }
}

const CLUSTER_PORT: u16 = 6379;
const SENTINEL_PORT: u16 = 26379;

/// What `url` names; the error says why in words that never echo the URL.
pub fn parse(url: &str) -> Result<Parsed, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return parse_single(url).map(|_| Parsed::Single);
    };
    let (tls, kind) = match scheme {
        "redis+cluster" => (false, "cluster"),
        "rediss+cluster" => (true, "cluster"),
        "redis+sentinel" => (false, "sentinel"),
        "rediss+sentinel" => (true, "sentinel"),
        _ => return parse_single(url).map(|_| Parsed::Single),
    };
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let (hosts, path) = match rest.split_once('/') {
        Some((hosts, path)) => (hosts, path),
        None => (rest, ""),
    };
    let default_port = if kind == "cluster" {
        CLUSTER_PORT
    } else {
        SENTINEL_PORT
    };
    let hosts = host_list(hosts, default_port)?;
    let scheme = if tls { "rediss" } else { "redis" };
    if kind == "cluster" {
        if !path.trim_matches('/').is_empty() && path.trim_matches('/') != "0" {
            return Err("a Redis Cluster has only database 0".to_owned());
        }
        let seeds: Vec<String> = hosts
            .iter()
            .map(|host| format!("{scheme}://{userinfo}{host}"))
            .collect();
        for seed in &seeds {
            parse_single(seed)?;
        }
        return Ok(Parsed::Cluster { seeds });
    }
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let Some(master_name) = parts.next() else {
        return Err(
            "a Sentinel URL names the master: redis+sentinel://host:port[,host:port]/master_name[/db]"
                .to_owned(),
        );
    };
    let db = match parts.next() {
        None => 0,
        Some(db) => db.parse().map_err(|_| {
            format!("the database after the master name must be a number, got {db:?}")
        })?,
    };
    let sentinel = SentinelUrl {
        tls,
        sentinels: hosts,
        master_name: master_name.to_owned(),
        db,
        userinfo: userinfo.to_owned(),
    };
    // The master's URL must parse with its credentials (checked on a stand-in address).
    parse_single(&sentinel.master_url("localhost", 6379))?;
    Ok(Parsed::Sentinel(sentinel))
}

/// `host:port` of each entry of a comma-separated list (`[v6]:port` allowed).
fn host_list(hosts: &str, default_port: u16) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for host in hosts.split(',').map(str::trim) {
        if host.is_empty() {
            return Err("an empty host in the host list".to_owned());
        }
        let has_port = match host.rfind(']') {
            Some(end) => host[end..].contains(':'),
            None => host.contains(':'),
        };
        if has_port {
            let port = &host[host.rfind(':').expect("has a port") + 1..];
            port.parse::<u16>()
                .map_err(|_| format!("invalid port {port:?} in the host list"))?;
            out.push(host.to_owned());
        } else {
            out.push(format!("{host}:{default_port}"));
        }
    }
    Ok(out)
}

/// The URL as redis-rs reads it; the error says why in words that never echo the URL
/// (redis-rs' own messages may hold parts of it).
pub fn parse_single(url: &str) -> Result<redis::ConnectionInfo, String> {
    use redis::IntoConnectionInfo;
    url.into_connection_info().map_err(|e| {
        let why = match e.detail() {
            Some(detail) if !detail.contains('@') && !detail.contains("://") => detail.to_owned(),
            _ => "it does not parse".to_owned(),
        };
        format!(
            "{why} (expected redis://[user:password@]host[:port][/db], rediss://..., unix:///path, \
             redis+cluster://host:port[,host:port] or redis+sentinel://host:port[,host:port]/master)"
        )
    })
}

/// The password a URL carries (`redis://user:pw@host`, `unix:///sock?pass=pw`,
/// `redis+cluster://:pw@h1,h2`), decoded.
pub fn password(url: &str) -> Option<String> {
    let single = match parse(url).ok()? {
        Parsed::Single => url.to_owned(),
        Parsed::Cluster { seeds } => seeds.into_iter().next()?,
        Parsed::Sentinel(sentinel) => sentinel.master_url("localhost", 6379),
    };
    let info = parse_single(&single).ok()?;
    info.redis_settings().password().map(str::to_owned)
}

/// The URL with every credential replaced by `***`: the password of the userinfo and
/// the values of `pass`/`password` query parameters. Works on any text, including URLs
/// that do not parse (a password holding `/` or `@`): everything before the last `@`
/// of the authority is userinfo. Every URL shown anywhere goes through here.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest, None),
    };
    let is_unix = scheme.is_some_and(|s| s.ends_with("unix"));
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    match before_query.rfind('@').filter(|_| !is_unix) {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let (params, fragment) = match query.split_once('#') {
            Some((params, fragment)) => (params, Some(fragment)),
            None => (query, None),
        };
        let redacted: Vec<String> = params
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _))
                    if key.eq_ignore_ascii_case("pass") || key.eq_ignore_ascii_case("password") =>
                {
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&redacted.join("&"));
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_become_seed_urls() {
        assert_eq!(
            parse("redis+cluster://u:p%40ss@h1:7000,h2").unwrap(),
            Parsed::Cluster {
                seeds: vec![
                    "redis://u:p%40ss@h1:7000".to_owned(),
                    "redis://u:p%40ss@h2:6379".to_owned()
                ]
            }
        );
        assert_eq!(
            password("redis+cluster://u:p%40ss@h1:7000").as_deref(),
            Some("p@ss")
        );
        assert!(parse("redis+cluster://h1:7000/3").is_err());
        assert!(parse("redis+cluster://h1:x").is_err());
    }

    #[test]
    fn sentinel_urls_name_the_master() {
        let Parsed::Sentinel(s) = parse("rediss+sentinel://:pw@s1,s2:5000/mymaster/2").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.sentinels, ["s1:26379", "s2:5000"]);
        assert_eq!(s.master_name, "mymaster");
        assert_eq!(
            s.master_url("10.0.0.1", 6380),
            "rediss://:pw@10.0.0.1:6380/2"
        );
        assert!(parse("redis+sentinel://s1:5000").is_err());
        assert!(parse("redis+sentinel://s1:5000/m/x").is_err());
        assert_eq!(password("redis+sentinel://:pw@s1/m").as_deref(), Some("pw"));
    }

    #[test]
    fn every_url_form_is_redacted() {
        for (url, shown) in [
            (
                "redis://user:hunter2@host:6379/0",
                "redis://user:***@host:6379/0",
            ),
            ("redis://:hunter2@h", "redis://:***@h"),
            (
                "rediss://u:hunter2@h:1?protocol=resp3",
                "rediss://u:***@h:1?protocol=resp3",
            ),
            ("redis://user:hun/ter2@host", "redis://user:***@host"),
            ("redis://user:a@b@host:1", "redis://user:***@host:1"),
            (
                "unix:///tmp/r.sock?pass=hunter2&db=1",
                "unix:///tmp/r.sock?pass=***&db=1",
            ),
            (
                "redis+unix:///tmp/r.sock?db=1&password=hunter2",
                "redis+unix:///tmp/r.sock?db=1&password=***",
            ),
            (
                "redis+cluster://u:hunter2@h1:1,h2:2",
                "redis+cluster://u:***@h1:1,h2:2",
            ),
            (
                "redis+sentinel://:hunter2@s1:1,s2:2/mymaster",
                "redis+sentinel://:***@s1:1,s2:2/mymaster",
            ),
            ("u:hunter2@host", "u:***@host"),
            ("redis://h:1", "redis://h:1"),
            ("redis://user@h", "redis://user@h"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
        assert_eq!(
            password("unix:///tmp/r.sock?pass=hunter2").as_deref(),
            Some("hunter2")
        );
    }
}
