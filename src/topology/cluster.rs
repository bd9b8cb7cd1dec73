//! Redis Cluster: keys spread over the masters by hash slot.
//!
//! The client keeps its own slot map (from `CLUSTER SLOTS`, asked of any node that
//! answers) and one [`Node`] per master, each with its own connection and breaker.
//! - A batch is grouped by master and sent as ONE pipeline per master (per page of
//!   [`PAGE`] keys), all masters at once; results go back in the caller's order. Keys
//!   of one batch land in many slots, so a multi-key command (`MGET`, `MSET`, a
//!   transaction) could not carry them: each key gets its own `GET`/`SET`/`EXISTS`.
//! - After a redirect (`MOVED`, `ASK`), a connection failure or `CLUSTERDOWN`, the
//!   slot map is read again (at most once per [`REFRESH_EVERY`]) and only the keys not
//!   yet served are sent again, to whichever master owns them now. The attempts and
//!   the deadline are those of [`with_retries`], for the whole batch.
//! - Writes are not atomic across keys (no multi-slot transaction exists): each
//!   `SET key value EX ttl` is atomic on its own and idempotent, so a failed batch is
//!   safe to send again; the error names the keys that may not have been written.
//! - A scan visits every master and then checks the slot map again: slots whose owner
//!   changed meanwhile (failover, resharding, a node joining or leaving) are scanned
//!   again on their new owner, until every slot was scanned on the master that owns it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join_all, BoxFuture};
use redis::{Cmd, Pipeline, Value as RedisValue};

use super::single::{on_server, scan_node, set, PAGE};
use super::{Key, Measure, OnPage, ServerReply, Topology, Value};
use crate::client::{with_retries, Failure, Request};
use crate::config::ConnectionSettings;
use crate::errors::{self, Error, Result};
use crate::link::Fixed;
use crate::node::{redis_client, Node};

const SLOTS: usize = 16384;

/// The slot map is read again at most this often, however many requests see it stale.
const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// The hash slot of `key`, as Redis computes it: CRC16 (XMODEM) of the key, or of its
/// hash tag (the text between the first `{` and the next `}`, when not empty).
pub fn slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Which master owns each slot.
struct SlotMap {
    /// `host:port` of each master.
    masters: Vec<String>,
    /// For each slot, an index into `masters` (`u16::MAX`: no owner).
    owners: Vec<u16>,
    read_at: Instant,
}

impl SlotMap {
    fn owner(&self, slot: u16) -> Option<usize> {
        let owner = self.owners[slot as usize];
        (owner != u16::MAX).then_some(owner as usize)
    }
}

pub struct Cluster {
    settings: ConnectionSettings,
    seeds: Vec<String>,
    /// `scheme://userinfo@` of the seeds: every node's URL starts the same way.
    url_head: String,
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    map: RwLock<Option<Arc<SlotMap>>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Cluster {
    pub fn open(seeds: &[String], settings: &ConnectionSettings) -> Result<Cluster> {
        for seed in seeds {
            redis_client(seed, settings)?;
        }
        let first = seeds.first().expect("a cluster URL names a seed");
        let authority_start = first.find("://").map_or(0, |i| i + 3);
        let head_end = first[authority_start..]
            .rfind('@')
            .map_or(authority_start, |at| authority_start + at + 1);
        Ok(Cluster {
            settings: settings.clone(),
            seeds: seeds.to_vec(),
            url_head: first[..head_end].to_owned(),
            nodes: Mutex::new(HashMap::new()),
            map: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    fn describe(&self) -> String {
        let seeds: Vec<String> = self.seeds.iter().map(|s| crate::urls::redact(s)).collect();
        format!("the cluster of {}", seeds.join(","))
    }

    /// The node at `host:port` (created on first use; it connects on its first request).
    fn node(&self, address: &str) -> Result<Arc<Node>> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(node) = nodes.get(address) {
            return Ok(node.clone());
        }
        let client = redis_client(&format!("{}{address}", self.url_head), &self.settings)?;
        let node = Arc::new(Node::new(Box::new(Fixed(client)), &self.settings));
        nodes.insert(address.to_owned(), node.clone());
        Ok(node)
    }

    /// The slot map; read again when `stale` (and not read within [`REFRESH_EVERY`]).
    async fn slot_map(&self, stale: bool) -> std::result::Result<Arc<SlotMap>, Failure> {
        if let Some(map) = self.current_map() {
            if !stale || map.read_at.elapsed() < REFRESH_EVERY {
                return Ok(map);
            }
        }
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(map) = self.current_map() {
            if map.read_at.elapsed() < REFRESH_EVERY {
                return Ok(map);
            }
        }
        let map = Arc::new(self.read_slot_map().await?);
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = Some(map.clone());
        Ok(map)
    }

    fn current_map(&self) -> Option<Arc<SlotMap>> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `CLUSTER SLOTS` from the first node that answers: the known masters first, then
    /// the seeds.
    async fn read_slot_map(&self) -> std::result::Result<SlotMap, Failure> {
        let mut candidates: Vec<String> = self
            .current_map()
            .map(|m| m.masters.clone())
            .unwrap_or_default();
        for seed in &self.seeds {
            let address = seed.rsplit('@').next().unwrap_or(seed);
            let address = address.split("://").last().unwrap_or(address).to_owned();
            if !candidates.contains(&address) {
                candidates.push(address);
            }
        }
        let mut last = Failure::Dial("no node of the cluster answered".to_owned());
        for address in candidates {
            let node = self.node(&address).map_err(Failure::Final)?;
            let cmd = redis::cmd("CLUSTER").arg("SLOTS").to_owned();
            match node.send::<RedisValue>(Request::cmd(&cmd), true).await {
                Ok(reply) => return parse_slots(&reply, &address).map_err(Failure::Final),
                Err(Failure::Final(err)) => return Err(Failure::Final(err)),
                Err(failure) => last = failure,
            }
        }
        Err(last)
    }

    /// Runs `command` for every key: each master gets one pipeline per page of its
    /// keys, all masters at once; each reply lands at its key's position. Keys not
    /// served yet are re-routed on a fresh slot map and sent again on the next attempt;
    /// a key answered `ASK` is sent at once to the node named, after `ASKING`.
    /// `largest` (a record id and its length) is checked against each master's limit
    /// before sending.
    async fn batch<T, B>(
        &self,
        keys: &[Key],
        largest: Option<(&[u8], usize)>,
        command: B,
    ) -> Result<Vec<T>>
    where
        T: redis::FromRedisValue + Clone + Send,
        B: Fn(&Key) -> Cmd + Sync,
    {
        let results: Mutex<Vec<Option<T>>> = Mutex::new(vec![None; keys.len()]);
        let pending: Mutex<Vec<usize>> = Mutex::new((0..keys.len()).collect());
        let page = Page {
            cluster: self,
            keys,
            largest,
            command: &command,
        };
        let (results_ref, pending_ref, page) = (&results, &pending, &page);
        with_retries(
            &self.settings,
            || self.describe(),
            |retrying| async move {
                let map = self.slot_map(retrying).await?;
                let todo =
                    std::mem::take(&mut *pending_ref.lock().unwrap_or_else(|e| e.into_inner()));
                let groups = group_by_master(&map, keys, &todo).map_err(Failure::Final)?;
                let sends = groups.into_iter().flat_map(|(master, positions)| {
                    let address = map.masters[master].clone();
                    positions
                        .chunks(PAGE)
                        .map(|chunk| (address.clone(), chunk.to_vec()))
                        .collect::<Vec<_>>()
                });
                let sent = join_all(
                    sends.map(|(address, positions)| page.send(address, positions, false)),
                )
                .await;
                let mut outcome = Outcome::default();
                for (positions, reply) in sent {
                    outcome.take(self, positions, reply, results_ref);
                }
                // Redirected keys go to the node named, now (after ASKING for a slot in
                // migration); the slot map learns the moved slots.
                let redirects = std::mem::take(&mut outcome.redirects);
                self.learn_moves(keys, &redirects);
                let mut by_target: HashMap<(String, bool), Vec<usize>> = HashMap::new();
                for (position, asking, target) in redirects {
                    by_target
                        .entry((target, asking))
                        .or_default()
                        .push(position);
                }
                let redirected = join_all(
                    by_target
                        .into_iter()
                        .map(|((target, asking), positions)| page.send(target, positions, asking)),
                )
                .await;
                for (positions, reply) in redirected {
                    outcome.take(self, positions, reply, results_ref);
                }
                let redirected_again = outcome.redirects.iter().map(|(p, _, _)| *p);
                pending_ref
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(outcome.unserved.iter().copied().chain(redirected_again));
                match outcome.failure {
                    None if outcome.redirects.is_empty() => Ok(()),
                    None => Err(Failure::Sent("the slot kept moving (MOVED/ASK)".to_owned())),
                    Some(Failure::Dial(why)) => {
                        // A master is unreachable: give the cluster a moment to fail it
                        // over before the slot map is read again.
                        tokio::time::sleep(REFRESH_EVERY).await;
                        Err(Failure::Dial(why))
                    }
                    Some(failure) => Err(failure),
                }
            },
        )
        .await?;
        Ok(results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|v| v.expect("every key was served"))
            .collect())
    }

    /// Records the new owners that `MOVED` replies named, so the next requests go there
    /// without waiting for the slot map to be read again.
    fn learn_moves(&self, keys: &[Key], redirects: &[(usize, bool, String)]) {
        let moves: Vec<(u16, &str)> = redirects
            .iter()
            .filter(|(_, asking, _)| !asking)
            .map(|(position, _, target)| (slot(&keys[*position]), target.as_str()))
            .collect();
        if moves.is_empty() {
            return;
        }
        let mut current = self.map.write().unwrap_or_else(|e| e.into_inner());
        let Some(map) = current.as_ref() else { return };
        let mut masters = map.masters.clone();
        let mut owners = map.owners.clone();
        for (slot, target) in moves {
            let index = match masters.iter().position(|m| m == target) {
                Some(index) => index,
                None => {
                    masters.push(target.to_owned());
                    masters.len() - 1
                }
            };
            owners[slot as usize] = index as u16;
        }
        *current = Some(Arc::new(SlotMap {
            masters,
            owners,
            read_at: map.read_at,
        }));
    }

    /// What an error reply to one key means for the batch.
    fn refusal(&self, err: &redis::RedisError) -> Failure {
        crate::client::refusal(err, self.settings.secret().as_deref())
    }

    /// The keys of a failed write, for the error: which ones may not have been written.
    fn unwritten(&self, records: &[(Key, Value)], err: Error) -> Error {
        let shown: Vec<String> = records
            .iter()
            .take(5)
            .map(|(key, _)| format!("{:?}", String::from_utf8_lossy(key)))
            .collect();
        let more = records.len().saturating_sub(shown.len());
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let message = format!(
            "{err}; on a cluster a batch is not atomic: any of its {} records may not have been written (keys {}{tail}); \
             sending the batch again is safe",
            records.len(),
            shown.join(", ")
        );
        match err {
            Error::Unavailable(_) => Error::Unavailable(message),
            _ => Error::Operation(message),
        }
    }
}

/// What one attempt of a batch sends: the keys, the per-key command, the size check.
struct Page<'a, B> {
    cluster: &'a Cluster,
    keys: &'a [Key],
    largest: Option<(&'a [u8], usize)>,
    command: &'a B,
}

/// One node's replies to a page: one result per key, or the failure of the whole page.
type PageReply<T> = std::result::Result<Vec<redis::RedisResult<T>>, Failure>;

impl<B: Fn(&Key) -> Cmd> Page<'_, B> {
    /// Sends the keys at `positions` to `address` as one pipeline (each command after
    /// `ASKING` when `asking`); errors come back per key.
    async fn send<T: redis::FromRedisValue>(
        &self,
        address: String,
        positions: Vec<usize>,
        asking: bool,
    ) -> (Vec<usize>, PageReply<T>) {
        let node = match self.cluster.node(&address) {
            Ok(node) => node,
            Err(err) => return (positions, Err(Failure::Final(err))),
        };
        let mut pipe = Pipeline::with_capacity(positions.len() * (1 + usize::from(asking)));
        pipe.ignore_errors();
        for &position in &positions {
            if asking {
                pipe.cmd("ASKING").ignore();
            }
            pipe.add_command((self.command)(&self.keys[position]));
        }
        let mut request = Request::pipeline(&pipe);
        if let Some((id, len)) = self.largest {
            request = request.with_largest_value(id, len);
        }
        // Not `retrying`: if this master is down for good, its slots move to a
        // replica; waiting for its breaker would not help.
        let reply = node
            .send::<Vec<redis::RedisResult<T>>>(request, false)
            .await;
        (positions, reply.map_err(reroutable))
    }
}

/// What an attempt of a batch achieved.
#[derive(Default)]
struct Outcome {
    /// Positions to send again on the next attempt.
    unserved: Vec<usize>,
    /// Positions redirected: `(position, asking, host:port)` (see
    /// [`errors::redirect_target`]).
    redirects: Vec<(usize, bool, String)>,
    /// Why the attempt is not complete (a final failure wins over a retryable one).
    failure: Option<Failure>,
}

impl Outcome {
    fn take<T>(
        &mut self,
        cluster: &Cluster,
        positions: Vec<usize>,
        reply: PageReply<T>,
        results: &Mutex<Vec<Option<T>>>,
    ) {
        let replies = match reply {
            Ok(replies) => replies,
            Err(failure) => {
                self.unserved.extend(positions);
                self.fail(failure);
                return;
            }
        };
        let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
        for (position, reply) in positions.into_iter().zip(replies) {
            match reply {
                Ok(value) => results[position] = Some(value),
                Err(err) => match errors::redirect_target(&err) {
                    Some((asking, target)) => self.redirects.push((position, asking, target)),
                    None => {
                        self.unserved.push(position);
                        self.fail(cluster.refusal(&err));
                    }
                },
            }
        }
    }

    fn fail(&mut self, failure: Failure) {
        if !matches!(self.failure, Some(Failure::Final(_))) {
            self.failure = Some(failure);
        }
    }
}

/// A node's open breaker is final for that node, not for the keys: their slots may
/// have moved to another master by the next attempt.
fn reroutable(failure: Failure) -> Failure {
    match failure {
        Failure::Final(Error::Unavailable(why)) => Failure::Dial(why),
        failure => failure,
    }
}

/// Positions of `todo` grouped by the master that owns their key's slot.
fn group_by_master(
    map: &SlotMap,
    keys: &[Key],
    todo: &[usize],
) -> Result<Vec<(usize, Vec<usize>)>> {
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for &position in todo {
        let slot = slot(&keys[position]);
        let owner = map.owner(slot).ok_or_else(|| {
            Error::Unavailable(format!(
                "slot {slot} of the cluster has no master (the cluster is not fully covered)"
            ))
        })?;
        groups.entry(owner).or_default().push(position);
    }
    Ok(groups.into_iter().collect())
}

/// Parses `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replicas...], ...]`.
/// A master announcing an empty host is the node that answered (`asked`).
fn parse_slots(reply: &RedisValue, asked: &str) -> Result<SlotMap> {
    let bad = || Error::Operation("the cluster's CLUSTER SLOTS reply is not understood".to_owned());
    let RedisValue::Array(ranges) = reply else {
        return Err(bad());
    };
    let asked_host = asked.rsplit_once(':').map_or(asked, |(h, _)| h);
    let mut masters: Vec<String> = Vec::new();
    let mut owners = vec![u16::MAX; SLOTS];
    for range in ranges {
        let RedisValue::Array(fields) = range else {
            return Err(bad());
        };
        let (
            Some(RedisValue::Int(start)),
            Some(RedisValue::Int(end)),
            Some(RedisValue::Array(master)),
        ) = (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(bad());
        };
        let host = match master.first() {
            Some(RedisValue::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            Some(RedisValue::SimpleString(h)) => h.clone(),
            _ => return Err(bad()),
        };
        let host = if host.is_empty() || host == "?" {
            asked_host.to_owned()
        } else {
            host
        };
        let Some(RedisValue::Int(port)) = master.get(1) else {
            return Err(bad());
        };
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let index = match masters.iter().position(|m| *m == address) {
            Some(i) => i,
            None => {
                masters.push(address);
                masters.len() - 1
            }
        };
        for slot in (*start).max(0)..=(*end).min(SLOTS as i64 - 1) {
            owners[slot as usize] = index as u16;
        }
    }
    Ok(SlotMap {
        masters,
        owners,
        read_at: Instant::now(),
    })
}

impl Topology for Cluster {
    fn get_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Option<Value>>>> {
        Box::pin(async move {
            // MGET of one key: a key of another type reads as absent, as on one server.
            let replies: Vec<Vec<Option<Value>>> = self
                .batch(keys, None, |key| redis::cmd("MGET").arg(key).to_owned())
                .await?;
            Ok(replies.into_iter().map(|mut r| r.pop().flatten()).collect())
        })
    }

    fn exists_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(self.batch(keys, None, |key| redis::cmd("EXISTS").arg(key).to_owned()))
    }

    fn expire_many<'a>(&'a self, keys: &'a [Key], seconds: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let _: Vec<bool> = self
                .batch(keys, None, |key| {
                    redis::cmd("EXPIRE").arg(key).arg(seconds).to_owned()
                })
                .await?;
            Ok(())
        })
    }

    fn measure<'a>(&'a self, keys: &'a [Key], what: Measure) -> BoxFuture<'a, Result<Vec<u64>>> {
        Box::pin(async move {
            let sizes: Vec<Option<u64>> = self.batch(keys, None, |key| what.cmd(key)).await?;
            Ok(sizes.into_iter().map(Option::unwrap_or_default).collect())
        })
    }

    fn put_many<'a>(
        &'a self,
        records: &'a [(Key, Value)],
        ttl: Option<u64>,
        largest: (&'a [u8], usize),
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let keys: Vec<Key> = records.iter().map(|(k, _)| k.clone()).collect();
            let values: HashMap<&[u8], &[u8]> = records
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                .collect();
            let written = self
                .batch::<RedisValue, _>(&keys, Some(largest), |key| {
                    set(key, values[key.as_slice()], ttl)
                })
                .await;
            written
                .map(drop)
                .map_err(|err| self.unwritten(records, err))
        })
    }

    fn unlink_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let removed: Vec<u64> = self
                .batch(keys, None, |key| redis::cmd("UNLINK").arg(key).to_owned())
                .await?;
            Ok(removed.into_iter().sum())
        })
    }

    fn scan<'a>(&'a self, pattern: &'a [u8], page: OnPage<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // For each slot, the master it was scanned on.
            let mut scanned: Vec<Option<String>> = vec![None; SLOTS];
            let mut stale = false;
            for _round in 0..10 {
                let map = with_retries(
                    &self.settings,
                    || self.describe(),
                    |retrying| self.slot_map(stale || retrying),
                )
                .await?;
                let todo: HashSet<usize> = (0..SLOTS)
                    .filter_map(|slot| {
                        let owner = map.owner(slot as u16)?;
                        (scanned[slot].as_deref() != Some(map.masters[owner].as_str()))
                            .then_some(owner)
                    })
                    .collect();
                if todo.is_empty() {
                    return Ok(());
                }
                for owner in todo {
                    let address = &map.masters[owner];
                    match scan_node(&*self.node(address)?, pattern, page).await {
                        Ok(()) => {
                            for (done, &slot_owner) in scanned.iter_mut().zip(&map.owners) {
                                if slot_owner as usize == owner {
                                    *done = Some(address.clone());
                                }
                            }
                        }
                        // The node failed after its retries: its slots may have a new
                        // owner by the next round.
                        Err(Error::Unavailable(why)) => {
                            log::info!("scan of {address} failed, rescanning its slots: {why}");
                        }
                        Err(err) => return Err(err),
                    }
                }
                stale = true;
            }
            Err(Error::Unavailable(format!(
                "{}: the slot map kept changing during the scan (resharding?); try again",
                self.describe()
            )))
        })
    }

    fn each_server<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<Vec<ServerReply>>> {
        Box::pin(async move {
            let map = with_retries(
                &self.settings,
                || self.describe(),
                |retrying| self.slot_map(retrying),
            )
            .await?;
            let nodes = map
                .masters
                .iter()
                .map(|address| self.node(address))
                .collect::<Result<Vec<_>>>()?;
            try_join_all(nodes.iter().map(|node| on_server(node, cmd))).await
        })
    }
}
