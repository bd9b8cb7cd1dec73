//! `_core.Store`: the Python face of [`crate::store::Store`].
//!
//! Each operation is written once: turn the Python arguments into owned Rust data
//! (encoding records here, so a bad value fails before anything is sent), run the
//! Redis work, and build the Python result. The same operation either returns an
//! asyncio future (`blocking=False`) or waits with the GIL released (`blocking=True`).

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PySet, PyString};

use crate::bridge;
use crate::codec::{self, Fields};
use crate::config::{Layer, LayerKind, Raw, Settings};
use crate::errors::{self, Error};
use crate::metrics::{self, Call, Operation};
use crate::py_metrics;
use crate::store::Store as RustStore;
use crate::topology::Measure;
use crate::urls;

#[pyclass(frozen, module = "nano_graphrag_redis._core", name = "Store")]
pub struct Store {
    inner: Arc<RustStore>,
    blocking: bool,
}

#[pymethods]
impl Store {
    /// Resolves and validates the settings; does no I/O.
    #[new]
    #[pyo3(signature = (namespace, global_config = None, settings = None, blocking = false))]
    fn new(
        namespace: &str,
        global_config: Option<&Bound<'_, PyDict>>,
        settings: Option<&Bound<'_, PyDict>>,
        blocking: bool,
    ) -> PyResult<Store> {
        let mut layers = Vec::with_capacity(4);
        if let Some(settings) = settings {
            layers.push(layer(
                "keyword arguments",
                LayerKind::Arguments,
                settings,
                false,
            )?);
        }
        if let Some(config) = global_config {
            layers.push(layer("global_config", LayerKind::Host, config, true)?);
            if let Some(addon) = config.get_item("addon_params")? {
                if let Ok(addon) = addon.cast::<PyDict>() {
                    layers.push(layer(
                        "global_config['addon_params']",
                        LayerKind::Config,
                        addon,
                        true,
                    )?);
                }
            }
        }
        layers.push(Layer::from_env());
        let settings = Settings::resolve(namespace, &layers)?;
        crate::refresh_log_levels();
        Ok(Store {
            inner: Arc::new(RustStore::new(settings)),
            blocking,
        })
    }

    /// The stored record `id`, or None.
    fn get(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mut call = self.start(Operation::GetById);
        let id = one_id(id).map_err(|e| refused(py, &mut call, e))?;
        let store = self.inner.clone();
        let work = async move {
            let value = store.get(&id).await?;
            Ok((id, value))
        };
        self.run(py, call, work, |py, (id, value), call| {
            call.looked_up(value.is_some() as u64, value.is_none() as u64);
            match value {
                Some(bytes) => {
                    call.read(1, bytes.len() as u64);
                    Ok(decode(py, &id, &bytes, None)?.into_pyobject(py)?.unbind())
                }
                None => Ok(py.None()),
            }
        })
    }

    /// Records aligned with `ids`; with `fields`, only those keys of each record.
    #[pyo3(signature = (ids, fields = None))]
    fn get_many(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        fields: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let mut call = self.start(Operation::GetByIds);
        let ids = id_list(ids).map_err(|e| refused(py, &mut call, e))?;
        let fields = fields
            .map(field_set)
            .transpose()
            .map_err(|e| refused(py, &mut call, e))?;
        if ids.len() > READ_PAGE {
            return self.get_in_pages(py, call, ids, fields);
        }
        let store = self.inner.clone();
        let work = async move {
            let values = store.get_many(&ids).await?;
            Ok((ids, values))
        };
        self.run(py, call, work, move |py, (ids, values), call| {
            let list = PyList::empty(py);
            let (mut found, mut bytes) = (0, 0);
            for (id, value) in ids.iter().zip(values) {
                let item = match value {
                    Some(value) => {
                        found += 1;
                        bytes += value.len() as u64;
                        decode(py, id, &value, fields.as_ref())?
                    }
                    None => None,
                };
                list.append(item)?;
            }
            call.looked_up(found, ids.len() as u64 - found);
            call.read(found, bytes);
            Ok(list.into_any().unbind())
        })
    }

    /// The ids of `ids` that are NOT stored, as a set.
    fn missing(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mut call = self.start(Operation::FilterKeys);
        let ids = id_list(ids).map_err(|e| refused(py, &mut call, e))?;
        let store = self.inner.clone();
        let work = async move {
            let exists = store.exists_many(&ids).await?;
            Ok((ids, exists))
        };
        self.run(py, call, work, |py, (ids, exists), _| {
            let set = PySet::empty(py)?;
            for (id, exists) in ids.iter().zip(exists) {
                if !exists {
                    set.add(id_to_py(py, id)?)?;
                }
            }
            Ok(set.into_any().unbind())
        })
    }

    /// Writes `data` ({id: record}), each record replaced whole, all or nothing.
    fn put(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mut call = self.start(Operation::Upsert);
        let records = encode_records(data).map_err(|e| refused(py, &mut call, e))?;
        let written = (
            records.len() as u64,
            records.iter().map(|(_, v)| v.len() as u64).sum(),
        );
        let store = self.inner.clone();
        let work = async move { store.put_many(records).await };
        self.run(py, call, work, move |py, (), call| {
            call.wrote(written.0, written.1);
            Ok(py.None())
        })
    }

    /// `what` ("length": the stored JSON; "memory": what the server spends on the key)
    /// of each record of `ids` in bytes (0 where missing), as a list.
    #[pyo3(signature = (ids, what = "length"))]
    fn measure(&self, py: Python<'_>, ids: &Bound<'_, PyAny>, what: &str) -> PyResult<Py<PyAny>> {
        let mut call = self.start(Operation::Measure);
        let what = match what {
            "length" => Measure::Length,
            "memory" => Measure::Memory,
            other => {
                let err = Error::Config(format!(
                    "measure: what must be \"length\" or \"memory\", not {other:?}"
                ));
                return Err(refused(py, &mut call, err.into()));
            }
        };
        let ids = id_list(ids).map_err(|e| refused(py, &mut call, e))?;
        let store = self.inner.clone();
        let work = async move { store.measure(&ids, what).await };
        self.run(py, call, work, |py, sizes, _| {
            Ok(PyList::new(py, sizes)?.into_any().unbind())
        })
    }

    /// Counts the namespace's records and measures `sample` of them (all with None):
    /// heavy, see `Store::namespace_stats`. `progress(stage, count)` is called with
    /// the GIL after each page.
    #[pyo3(signature = (sample = None, progress = None))]
    fn namespace_stats(
        &self,
        py: Python<'_>,
        sample: Option<usize>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let call = self.start(Operation::NamespaceStats);
        let store = self.inner.clone();
        let work = async move {
            let mut report = |stage: &str, count: u64| {
                if let Some(progress) = &progress {
                    Python::attach(|py| {
                        if let Err(err) = progress.call1(py, (stage, count)) {
                            err.write_unraisable(py, Some(progress.bind(py)));
                        }
                    });
                }
            };
            store.namespace_stats(sample, &mut report).await
        };
        self.run(py, call, work, |py, stats, _| {
            let d = PyDict::new(py);
            d.set_item("records", stats.records)?;
            d.set_item("sampled", stats.sampled)?;
            d.set_item("value_bytes", stats.value_bytes)?;
            d.set_item("memory_bytes", stats.memory_bytes)?;
            Ok(d.into_any().unbind())
        })
    }

    /// Whether a rebuild is staged (atomic rebuilds: after `drop()`, until `commit()`).
    #[getter]
    fn staging(&self) -> bool {
        self.inner.staging()
    }

    /// Makes a staged rebuild live (see `store.rs`); nothing when none is staged.
    fn commit(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let call = self.start(Operation::IndexDone);
        let store = self.inner.clone();
        let work = async move { store.commit().await };
        self.run(py, call, work, |py, (), _| Ok(py.None()))
    }

    /// Removes the records of `ids`; how many existed.
    fn delete_many(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mut call = self.start(Operation::DeleteMany);
        let ids = id_list(ids).map_err(|e| refused(py, &mut call, e))?;
        let store = self.inner.clone();
        let work = async move { store.delete_many(&ids).await };
        self.run(py, call, work, |py, n, _| {
            Ok(n.into_pyobject(py)?.into_any().unbind())
        })
    }

    /// Removes record `id`; True if it existed.
    fn delete(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mut call = self.start(Operation::DeleteById);
        let id = one_id(id).map_err(|e| refused(py, &mut call, e))?;
        let store = self.inner.clone();
        let work = async move { store.delete(&id).await };
        self.run(py, call, work, |py, existed, _| {
            Ok(PyBool::new(py, existed).to_owned().into_any().unbind())
        })
    }

    /// Every id of the namespace.
    fn ids(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let call = self.start(Operation::AllKeys);
        let store = self.inner.clone();
        // The strs of a scan page are made while the next page is on its way.
        let listed = Arc::new((PyList::empty(py).unbind(), Mutex::new(Ok(()))));
        let filled = listed.clone();
        let make = move |steps: bridge::Steps| async move {
            let mut arrived = |ids: Vec<Vec<u8>>| {
                let listed = filled.clone();
                steps.run(Box::new(move |py| {
                    let (list, outcome) = &*listed;
                    let list = list.bind(py);
                    let mut outcome = outcome.lock().unwrap_or_else(|e| e.into_inner());
                    if outcome.is_ok() {
                        *outcome = ids.iter().try_for_each(|id| list.append(id_to_py(py, id)?));
                    }
                }));
            };
            store.ids_paged(&mut arrived).await
        };
        self.run_stepped(py, call, make, move |py, (), _| {
            let (list, outcome) = &*listed;
            std::mem::replace(
                &mut *outcome.lock().unwrap_or_else(|e| e.into_inner()),
                Ok(()),
            )?;
            Ok(list.clone_ref(py).into_any())
        })
    }

    /// Removes every record of the namespace; returns how many.
    fn clear(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let call = self.start(Operation::Drop);
        let store = self.inner.clone();
        let work = async move { store.clear().await };
        self.run(py, call, work, |py, n, _| {
            Ok(n.into_pyobject(py)?.into_any().unbind())
        })
    }

    /// One round trip to the server (connecting if needed).
    fn ping(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let call = self.start(Operation::Ping);
        let store = self.inner.clone();
        let work = async move { store.ping().await };
        self.run(py, call, work, |py, (), _| Ok(py.None()))
    }

    /// Runs the command `args` (read-only diagnostics: `INFO`, `CONFIG GET`, `PING`) on
    /// every server that serves keys: a list of `(server, reply, seconds)`. Not counted
    /// in the metrics.
    fn on_each_server(&self, py: Python<'_>, args: Vec<String>) -> PyResult<Py<PyAny>> {
        let Some((name, rest)) = args.split_first() else {
            return Err(Error::Config("on_each_server needs a command".to_owned()).into());
        };
        let mut cmd = redis::cmd(name);
        for arg in rest {
            cmd.arg(arg);
        }
        let store = self.inner.clone();
        let work = async move { store.on_each_server(&cmd).await };
        self.run(py, Call::start(None), work, |py, replies, _| {
            let list = PyList::empty(py);
            for r in replies {
                let reply = py_value(py, r.reply)?;
                list.append((r.server, reply, r.elapsed.as_secs_f64()))?;
            }
            Ok(list.into_any().unbind())
        })
    }

    /// This namespace's metrics (see `stats()` in Python): `{operation: {...}}` for each
    /// operation called at least once; empty with `redis_metrics = false`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.settings();
        let d = PyDict::new(py);
        if !s.metrics {
            return Ok(d);
        }
        for row in metrics::operations() {
            if row.namespace == s.namespace && row.workspace == s.workspace {
                d.set_item(row.operation.name(), py_metrics::operation(py, &row)?)?;
            }
        }
        Ok(d)
    }

    /// Lets go of the shared connection (it closes when no store uses it).
    fn close(&self) {
        self.inner.release();
    }

    /// The Redis key of record `id`.
    fn key<'py>(&self, py: Python<'py>, id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.inner.key(&one_id(id)?)))
    }

    /// A store of the same namespace and settings whose calls block.
    fn as_blocking(&self) -> Store {
        Store {
            inner: self.inner.clone(),
            blocking: true,
        }
    }

    #[getter]
    fn blocking(&self) -> bool {
        self.blocking
    }

    /// The resolved settings that are safe to show (the password is never included).
    fn describe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.settings();
        let c = &s.connection;
        let d = PyDict::new(py);
        d.set_item("namespace", &s.namespace)?;
        d.set_item("url", urls::redact(&c.url))?;
        d.set_item("mode", c.mode.name())?;
        d.set_item("username", c.username.as_deref())?;
        d.set_item("password_set", c.secret().is_some())?;
        d.set_item("key_prefix", &s.key_prefix)?;
        d.set_item("workspace", s.workspace.as_deref())?;
        d.set_item("shared_llm_cache", s.shared_llm_cache)?;
        d.set_item("atomic_rebuild", s.atomic_rebuild)?;
        d.set_item("metrics", s.metrics)?;
        d.set_item("ttl", s.ttl)?;
        d.set_item("connection_timeout", c.connection_timeout.as_secs_f64())?;
        d.set_item("socket_timeout", c.socket_timeout.as_secs_f64())?;
        d.set_item(
            "health_check_interval",
            c.health_check_interval.as_secs_f64(),
        )?;
        d.set_item("max_connections", c.max_connections)?;
        d.set_item("max_inflight", c.max_inflight)?;
        d.set_item("retry_attempts", c.retry_attempts)?;
        d.set_item("retry_deadline", c.retry_deadline.as_secs_f64())?;
        d.set_item("breaker_threshold", c.breaker_threshold)?;
        d.set_item("breaker_cooldown", c.breaker_cooldown.as_secs_f64())?;
        d.set_item(
            "eviction_check",
            format!("{:?}", c.eviction_check).to_lowercase(),
        )?;
        d.set_item("tls_ca_cert", c.tls.ca_cert.as_deref())?;
        d.set_item("tls_cert", c.tls.cert.as_deref())?;
        d.set_item("tls_key", c.tls.key.as_deref())?;
        Ok(d)
    }
}

/// Ids per page of a large `get_many`: pages are in flight together, and each is
/// decoded as soon as it arrives, while the server and the socket still work on the
/// next ones (one page for the batches nano-graphrag makes most).
const READ_PAGE: usize = 128;

/// Pages of a large `get_many` read but not yet decoded, at most: enough to keep the
/// server busy while the loop decodes, few enough that a read of 200k records does not
/// hold all their bytes in Rust and all their objects in Python at once.
const READ_WINDOW: usize = 8;

/// A large `get_many` as its pages arrive: the result list, filled in place, and what
/// the pages found.
struct Pages {
    ids: Vec<Vec<u8>>,
    fields: Option<Fields>,
    list: Py<PyList>,
    tally: Mutex<Tally>,
    /// Permits to ask for another page: one is given back by each page decoded.
    unused: tokio::sync::Semaphore,
}

#[derive(Default)]
struct Tally {
    found: u64,
    bytes: u64,
    /// The first record that could not be decoded; later pages are not decoded.
    error: Option<PyErr>,
}

impl Pages {
    /// Decodes the page of `values` that starts at `offset` into the list, then lets
    /// another page be asked for.
    fn fill(&self, py: Python<'_>, offset: usize, values: Vec<Option<Vec<u8>>>) {
        self.decode_page(py, offset, values);
        self.unused.add_permits(1);
    }

    fn decode_page(&self, py: Python<'_>, offset: usize, values: Vec<Option<Vec<u8>>>) {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let list = self.list.bind(py);
        for (i, value) in values.into_iter().enumerate() {
            let Some(value) = value else { continue };
            if tally.error.is_some() {
                return;
            }
            let at = offset + i;
            let built = decode(py, &self.ids[at], &value, self.fields.as_ref())
                .and_then(|item| list.set_item(at, item));
            tally.found += 1;
            tally.bytes += value.len() as u64;
            tally.error = built.err();
        }
    }
}

impl Store {
    fn start(&self, operation: Operation) -> Call {
        Call::start(self.inner.metrics(operation))
    }

    /// `get_many` of more than a page: see [`READ_PAGE`].
    fn get_in_pages(
        &self,
        py: Python<'_>,
        call: Call,
        ids: Vec<Vec<u8>>,
        fields: Option<Fields>,
    ) -> PyResult<Py<PyAny>> {
        let nones = (0..ids.len()).map(|_| py.None());
        let pages = Arc::new(Pages {
            list: PyList::new(py, nones)?.unbind(),
            ids,
            fields,
            tally: Mutex::new(Tally::default()),
            unused: tokio::sync::Semaphore::new(READ_WINDOW),
        });
        let store = self.inner.clone();
        let filled = pages.clone();
        let make = move |steps: bridge::Steps| async move {
            let mut arrived = |offset: usize, values: Vec<Option<Vec<u8>>>| {
                let pages = filled.clone();
                steps.run(Box::new(move |py| pages.fill(py, offset, values)));
            };
            store
                .get_paged(&filled.ids, READ_PAGE, &filled.unused, &mut arrived)
                .await
        };
        self.run_stepped(py, call, make, move |py, (), call| {
            let mut tally = pages.tally.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(err) = tally.error.take() {
                return Err(err);
            }
            call.looked_up(tally.found, pages.ids.len() as u64 - tally.found);
            call.read(tally.found, tally.bytes);
            Ok(pages.list.clone_ref(py).into_any())
        })
    }

    /// Runs `work` (on tokio) and builds its Python result with `convert` (on the
    /// caller's thread, or the event loop's), as a blocking call or an asyncio future;
    /// `call` records how it went once the result is built.
    fn run<W, T, C>(&self, py: Python<'_>, call: Call, work: W, convert: C) -> PyResult<Py<PyAny>>
    where
        W: std::future::Future<Output = crate::errors::Result<T>> + Send + 'static,
        T: Send + 'static,
        C: FnOnce(Python<'_>, T, &Call) -> PyResult<Py<PyAny>> + Send + 'static,
    {
        let (work, convert) = (measured(call, work), recorded(convert));
        if self.blocking {
            let value = bridge::block_on(py, work)?;
            convert(py, value)
        } else {
            bridge::spawn(py, work, convert)
        }
    }

    /// [`Self::run`] for work that hands parts of its result over as they come (see
    /// [`bridge::Steps`]); `make` builds the work around the steps. Only calls that
    /// have parts pay for the steps' channel.
    fn run_stepped<M, W, T, C>(
        &self,
        py: Python<'_>,
        call: Call,
        make: M,
        convert: C,
    ) -> PyResult<Py<PyAny>>
    where
        M: FnOnce(bridge::Steps) -> W,
        W: std::future::Future<Output = crate::errors::Result<T>> + Send + 'static,
        T: Send + 'static,
        C: FnOnce(Python<'_>, T, &Call) -> PyResult<Py<PyAny>> + Send + 'static,
    {
        let (work, convert) = (|steps| measured(call, make(steps)), recorded(convert));
        if self.blocking {
            let value = bridge::block_on_stepped(py, work)?;
            convert(py, value)
        } else {
            bridge::spawn_stepped(py, work, convert)
        }
    }
}

/// `work` with its retries counted for `call`, and its failure recorded there; on
/// success the call goes on to [`recorded`], which records how the result was built.
async fn measured<W, T>(mut call: Call, work: W) -> crate::errors::Result<(T, Call)>
where
    W: std::future::Future<Output = crate::errors::Result<T>>,
{
    match metrics::scope(call.metrics(), work).await {
        Ok(value) => Ok((value, call)),
        Err(err) => {
            call.failed(errors::kind(&err));
            Err(err)
        }
    }
}

/// `convert`, recording in the call whether the Python result could be built.
fn recorded<T, C>(convert: C) -> impl FnOnce(Python<'_>, (T, Call)) -> PyResult<Py<PyAny>>
where
    C: FnOnce(Python<'_>, T, &Call) -> PyResult<Py<PyAny>>,
{
    move |py, (value, mut call)| {
        let result = convert(py, value, &call);
        match &result {
            Ok(_) => call.succeeded(),
            Err(err) => call.failed(errors::py_kind(py, err)),
        }
        result
    }
}

/// A call refused before any I/O (bad arguments): counted as failed, its error
/// passed on.
fn refused(py: Python<'_>, call: &mut Call, err: PyErr) -> PyErr {
    call.failed(errors::py_kind(py, &err));
    err
}

/// A server's reply as Python data: strings for text, lists, dicts, ints.
fn py_value(py: Python<'_>, value: redis::Value) -> PyResult<Py<PyAny>> {
    use redis::Value as V;
    Ok(match value {
        V::Nil => py.None(),
        V::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        V::Double(f) => f.into_pyobject(py)?.into_any().unbind(),
        V::Boolean(b) => PyBool::new(py, b).to_owned().into_any().unbind(),
        V::BulkString(bytes) => PyString::new(py, &String::from_utf8_lossy(&bytes))
            .into_any()
            .unbind(),
        V::SimpleString(text) => PyString::new(py, &text).into_any().unbind(),
        V::Okay => PyString::new(py, "OK").into_any().unbind(),
        V::Array(items) | V::Set(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(py_value(py, item)?)?;
            }
            list.into_any().unbind()
        }
        V::Map(pairs) => {
            let dict = PyDict::new(py);
            for (k, v) in pairs {
                dict.set_item(py_value(py, k)?, py_value(py, v)?)?;
            }
            dict.into_any().unbind()
        }
        other => PyString::new(py, &format!("{other:?}")).into_any().unbind(),
    })
}

/// A settings dict as a layer; for `global_config` dicts only `redis_*` keys matter.
fn layer(
    label: &str,
    kind: LayerKind,
    dict: &Bound<'_, PyDict>,
    only_redis_keys: bool,
) -> PyResult<Layer> {
    let mut values = std::collections::HashMap::new();
    for (key, value) in dict.iter() {
        let Ok(key) = key.extract::<String>() else {
            continue;
        };
        if only_redis_keys && !key.starts_with("redis_") {
            continue;
        }
        if value.is_none() {
            continue;
        }
        values.insert(key, raw(&value));
    }
    Ok(Layer::new(label, kind, values))
}

fn raw(value: &Bound<'_, PyAny>) -> Raw {
    if let Ok(s) = value.cast::<PyString>() {
        return Raw::Str(s.to_string_lossy().into_owned());
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Raw::Bool(b.is_true());
    }
    if value.cast::<PyInt>().is_ok() {
        return match value.extract::<i64>() {
            Ok(i) => Raw::Int(i),
            Err(_) => Raw::Other("int (out of range)".to_owned()),
        };
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        return Raw::Float(f.value());
    }
    Raw::Other(
        value
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default(),
    )
}

/// `url` with every credential replaced by `***`; works on any text, even a URL that
/// does not parse. Every URL this package shows goes through it.
#[pyfunction]
pub fn redact_url(url: &str) -> String {
    urls::redact(url)
}

/// An id as the bytes of its key: UTF-8, except that lone surrogates (which UTF-8
/// cannot hold) are written as Python's `surrogatepass` does, so every `str` id
/// round-trips through `all_keys`. Anything but `str` is a `SerializationError`.
fn id_bytes(id: &Bound<'_, PyAny>, what: impl FnOnce() -> String) -> PyResult<Vec<u8>> {
    match id.cast::<PyString>() {
        Ok(s) => match s.to_str() {
            Ok(text) => Ok(text.as_bytes().to_vec()),
            Err(_) => surrogate_id(s),
        },
        Err(_) => Err(Error::Serialization(format!(
            "ids must be str; {} is of type {}",
            what(),
            id.get_type().name()?
        ))
        .into()),
    }
}

#[cold]
fn surrogate_id(id: &Bound<'_, PyString>) -> PyResult<Vec<u8>> {
    let bytes = id.call_method1("encode", ("utf-8", "surrogatepass"))?;
    Ok(bytes.cast_into::<PyBytes>()?.as_bytes().to_vec())
}

/// The `str` of an id's bytes (the inverse of [`id_bytes`]). A key written by another
/// tool that is not even `surrogatepass` UTF-8 comes back with U+FFFD replacements.
fn id_to_py<'py>(py: Python<'py>, id: &[u8]) -> PyResult<Bound<'py, PyString>> {
    match std::str::from_utf8(id) {
        Ok(text) => Ok(PyString::new(py, text)),
        Err(_) => foreign_id(py, id),
    }
}

#[cold]
fn foreign_id<'py>(py: Python<'py>, id: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let bytes = PyBytes::new(py, id);
    let text = bytes
        .call_method1("decode", ("utf-8", "surrogatepass"))
        .or_else(|_| bytes.call_method1("decode", ("utf-8", "replace")))?;
    Ok(text.cast_into::<PyString>()?)
}

fn one_id(id: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    id_bytes(id, || "this one".to_owned())
}

/// Ids as key bytes; anything but `str` is refused with its position.
fn id_list(ids: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    if ids.is_instance_of::<PyString>() {
        return Err(Error::Serialization("ids must be a list of str, not a str".to_owned()).into());
    }
    let mut out = Vec::with_capacity(ids.len().unwrap_or(0));
    for (i, id) in ids.try_iter()?.enumerate() {
        out.push(id_bytes(&id?, || format!("item {i}"))?);
    }
    Ok(out)
}

/// Decodes a stored record; the id only names it in an error.
fn decode<'py>(
    py: Python<'py>,
    id: &[u8],
    bytes: &[u8],
    fields: Option<&Fields>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    codec::decode_record(py, id, bytes, fields)
}

fn field_set(fields: &Bound<'_, PyAny>) -> PyResult<Fields> {
    let mut out = Fields::new();
    for field in fields.try_iter()? {
        let field = field?;
        // A non-str field can never match a JSON object key: like JsonKVStorage, it
        // simply selects nothing.
        // A field with a lone surrogate cannot match a decoded object key either.
        if let Ok(Ok(text)) = field.cast::<PyString>().map(|s| s.to_str()) {
            out.insert(text.into());
        }
    }
    Ok(out)
}

/// Encodes every record before anything is sent: one bad value fails the whole batch.
fn encode_records(data: &Bound<'_, PyAny>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let dict = match data.cast::<PyDict>() {
        Ok(d) => d.clone(),
        Err(_) => {
            return Err(Error::Serialization(format!(
                "upsert expects a dict of id -> record, got {}",
                data.get_type().name()?
            ))
            .into())
        }
    };
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(dict.len());
    for (id, value) in dict.iter() {
        let id = id_bytes(&id, || "a record's id".to_owned())?;
        let like_last = records.last().map_or(0, |(_, v)| v.len() + v.len() / 8);
        let bytes = codec::encode_record(&id, &value, like_last)?;
        records.push((id, bytes));
    }
    Ok(records)
}
