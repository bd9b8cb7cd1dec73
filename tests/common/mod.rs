//! Test helpers: a real `redis-server` per test, on a free loopback port, in its own
//! temporary directory, killed by PID when dropped (modelled on redis-rs
//! `redis-test/src/server.rs`). Never port 6379, never a kill by name.
//!
//! Futures run on the library's process-wide runtime ([`block_on`]), not on a
//! `#[tokio::test]` runtime: clients are shared process-wide and their connection
//! driver tasks live on the runtime that created them.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nano_graphrag_redis::config::{Layer, LayerKind, Raw, Settings};
use nano_graphrag_redis::store::Store;
use redis::IntoConnectionInfo;

/// How long a fresh server may take to answer PING.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process owned by one test.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra_args: Vec<String>,
    /// The `--requirepass` value, if any, so helper connections can authenticate.
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with `--save "" --appendonly no --bind 127.0.0.1` plus
    /// `extra_args` (e.g. `["--requirepass", "pw"]`), and waits until it answers.
    pub fn start(extra_args: &[&str]) -> RedisServer {
        let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        let password = extra_args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| extra_args.get(i + 1).cloned());
        // A free port can be taken by someone else between our probe and redis'
        // bind; redis then exits at once and we try another port.
        let mut errors = Vec::new();
        for _ in 0..5 {
            let mut server = RedisServer {
                port: free_port(),
                dir: fresh_dir(),
                extra_args: extra_args.clone(),
                password: password.clone(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => errors.push(e),
            }
        }
        panic!("cannot start redis-server: {errors:#?}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`, without credentials.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (by PID) and waits for it; the directory is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (with an empty dataset: no persistence).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("cannot restart redis-server on port {}: {e}", self.port);
        }
    }

    /// A plain synchronous connection for assertions and for writing foreign keys
    /// behind the store's back. Authenticates if the server has `--requirepass`.
    pub fn conn(&self) -> redis::Connection {
        connect(self.port, self.password.as_deref())
            .unwrap_or_else(|e| panic!("cannot connect to redis-server on {}: {e}", self.port))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.join("redis.log");
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let port = self.port.to_string();
        let dir = self.dir.to_str().expect("temp dir path is UTF-8");
        let child = Command::new(redis_server_binary())
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port, "--dir", dir])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", redis_server_binary()))?;
        self.child = Some(child);
        let ready = self.wait_until_ready();
        if let Err(e) = &ready {
            self.stop();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("port {}: {e}\n--- redis.log ---\n{log}", self.port));
        }
        ready
    }

    /// Polls until the server on our port answers and is *our* child (its
    /// `process_id` matches), so a foreign process that grabbed the port is not
    /// mistaken for ours.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let child = self.child.as_mut().expect("spawned");
        let pid = child.id();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited early ({status})"));
            }
            if let Ok(mut conn) = connect(self.port, self.password.as_deref()) {
                let info: redis::RedisResult<String> =
                    redis::cmd("INFO").arg("server").query(&mut conn);
                if let Ok(info) = info {
                    if info_field(&info, "process_id") == Some(pid.to_string()) {
                        return Ok(());
                    }
                    return Err("another process answers on this port".to_owned());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no answer within {STARTUP_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis_server_binary() -> &'static str {
    // Debian's server first; the PATH lookup only helps on other machines.
    if Path::new("/usr/bin/redis-server").exists() {
        "/usr/bin/redis-server"
    } else {
        "redis-server"
    }
}

fn connect(port: u16, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
    let mut info = format!("redis://127.0.0.1:{port}").into_connection_info()?;
    if let Some(password) = password {
        let redis = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(redis);
    }
    redis::Client::open(info)?.get_connection_with_timeout(Duration::from_secs(2))
}

/// A loopback port nothing listens on right now (bind to port 0, read it, drop it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "nano-graphrag-redis-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The value of `name:` in an `INFO` reply.
pub fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// Runs `future` on the library's process-wide runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    nano_graphrag_redis::runtime::runtime().block_on(future)
}

pub fn text(value: &str) -> Raw {
    Raw::Str(value.to_owned())
}

/// Settings for `namespace` on `url`, as constructor keyword arguments plus `extra`.
/// Only this one layer: the process environment never leaks into a test.
pub fn settings(namespace: &str, url: &str, extra: &[(&str, Raw)]) -> Settings {
    let mut values: HashMap<String, Raw> = HashMap::new();
    values.insert("redis_url".to_owned(), text(url));
    for (name, value) in extra {
        values.insert((*name).to_owned(), value.clone());
    }
    let layer = Layer::new("keyword arguments", LayerKind::Arguments, values);
    Settings::resolve(namespace, &[layer]).expect("test settings are valid")
}

pub fn store(namespace: &str, url: &str, extra: &[(&str, Raw)]) -> Store {
    Store::new(settings(namespace, url, extra))
}

/// `ids` as owned key bytes, for `get_many` / `exists_many`.
pub fn ids(ids: &[&str]) -> Vec<Vec<u8>> {
    ids.iter().map(|id| id.as_bytes().to_vec()).collect()
}

/// Records `(id, value)` with the value's bytes.
pub fn records(pairs: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(id, value)| (id.as_bytes().to_vec(), value.to_vec()))
        .collect()
}
