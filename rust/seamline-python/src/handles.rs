//! Native handles (partitioner, leaf sets, collected rows) and the passes that produce them.
//! Every pass runs through `detached`, which releases the GIL and still answers Ctrl-C.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{RecordBatch, RecordBatchIterator};
use arrow_schema::SchemaRef;
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use pyo3_arrow::{PyRecordBatchReader, PyTable};
use seamline_core as core;
use seamline_core::{BatchStream, LeafFilter, SideSpec};

use crate::errors::{guarded, panic_error, BResult, BoundaryError, InvalidInputError};
use crate::spec::side_spec;

/// A flag Python sets to stop native passes running on other threads (signals reach only the
/// main thread; a reconcile runs its two sides' passes on worker threads).
#[pyclass(name = "CancelToken", module = "seamline._core", frozen)]
pub struct PyCancelToken(Arc<AtomicBool>);

#[pymethods]
impl PyCancelToken {
    #[new]
    fn new() -> Self {
        Self(Arc::new(AtomicBool::new(false)))
    }

    fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Rows a pass has read so far, readable from Python while the pass runs (progress).
#[pyclass(name = "RowCounter", module = "seamline._core", frozen)]
pub struct PyRowCounter(Arc<AtomicU64>);

#[pymethods]
impl PyRowCounter {
    #[new]
    fn new() -> Self {
        Self(Arc::new(AtomicU64::new(0)))
    }

    #[getter]
    fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Run `work` on a worker thread with the GIL released; every 20 ms until it is done look for a
/// pending signal (Ctrl-C, on the main thread) or a cancelled token and, if so, tell the work to
/// stop and raise KeyboardInterrupt. The wait ends the moment the work does (not at the next tick).
pub(crate) fn detached<T: Send, E: Send>(
    py: Python<'_>,
    token: Option<&PyCancelToken>,
    work: impl FnOnce(&AtomicBool) -> Result<T, E> + Send,
) -> BResult<T>
where
    BoundaryError: From<E>,
{
    let cancel = AtomicBool::new(false);
    let token = token.map(|t| t.0.clone());
    let mut interrupted: Option<PyErr> = None;
    let result = py.detach(|| {
        std::thread::scope(|scope| {
            let (done, finished) = std::sync::mpsc::channel::<()>();
            let cancel = &cancel;
            let handle = scope.spawn(move || {
                let out = work(cancel);
                drop(done); // disconnects: wakes the waiting loop below
                out
            });
            while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(Duration::from_millis(20)) {
                if interrupted.is_some() {
                    continue;
                }
                let signal = Python::attach(|py| py.check_signals()).err();
                let cancelled = token.as_ref().is_some_and(|t| t.load(Ordering::SeqCst));
                if signal.is_some() || cancelled {
                    interrupted = Some(signal.unwrap_or_else(|| PyKeyboardInterrupt::new_err("cancelled")));
                    cancel.store(true, Ordering::SeqCst);
                }
            }
            handle.join()
        })
    });
    if let Some(e) = interrupted {
        return Err(BoundaryError::Py(e));
    }
    Ok(result.map_err(panic_error)??)
}

fn workers() -> usize {
    available_cores()
}

/// The cores this process may run on: its CPU affinity and its cgroup's CPU quota (a Kubernetes
/// pod's `limits.cpu`), which Python's `os.cpu_count()` ignores (it counts the node's cores).
#[pyfunction]
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Import every object of `streams` through `__arrow_c_stream__` (needs the GIL).
fn import_streams(streams: &Bound<'_, PyList>) -> BResult<Vec<(SchemaRef, BatchStream)>> {
    streams
        .iter()
        .map(|obj| {
            let reader: PyRecordBatchReader = obj.extract().map_err(|e| {
                InvalidInputError::new_err(format!("not an Arrow stream (no __arrow_c_stream__): {e}"))
            })?;
            let reader = reader.into_reader()?;
            Ok((reader.schema(), Box::new(reader) as BatchStream))
        })
        .collect()
}

fn read_all(obj: &Bound<'_, PyAny>) -> BResult<Vec<RecordBatch>> {
    let reader: PyRecordBatchReader = obj.extract()?;
    let reader = reader.into_reader()?;
    Ok(reader.collect::<Result<Vec<_>, _>>().map_err(core::CoreError::from)?)
}

/// One side's columns: `SideSpec(side, key=[{name, type, ...}], values=[...])`.
#[pyclass(name = "SideSpec", module = "seamline._core", frozen)]
pub struct PySideSpec(pub SideSpec);

#[pymethods]
impl PySideSpec {
    #[new]
    fn new(side: String, key: &Bound<'_, PyList>, values: &Bound<'_, PyList>) -> PyResult<Self> {
        Ok(Self(side_spec(side, key, values)?))
    }

    #[getter]
    fn n_values(&self) -> usize {
        self.0.values.len()
    }
}

/// Leaves: key ranges cut at `bounds` (an Arrow stream of key rows, strictly increasing), each
/// split into 2^fanout_bits leaves by key-digest prefix.
#[pyclass(name = "Partitioner", module = "seamline._core", frozen)]
pub struct PyPartitioner(pub Arc<core::Partitioner>);

#[pymethods]
impl PyPartitioner {
    #[new]
    #[pyo3(signature = (spec, bounds, fanout_bits))]
    fn new(spec: &PySideSpec, bounds: Option<&Bound<'_, PyAny>>, fanout_bits: u32) -> BResult<Self> {
        guarded(|| {
            // straight into the compact bounds: up to 2^20 of them, no allocation per key
            let mut keys = core::partition::BoundsBuilder::default();
            if let Some(bounds) = bounds {
                for batch in read_all(bounds)? {
                    if !core::digest::for_each_wide_ordering_key(&batch, &spec.0, |key| keys.push_wide(key))?
                    {
                        core::digest::for_each_ordering_key(&batch, &spec.0, |key| keys.push(key))?;
                    }
                }
            }
            Ok(Self(Arc::new(keys.finish(fanout_bits)?)))
        })
    }

    #[getter]
    fn num_ranges(&self) -> u64 {
        self.0.num_ranges()
    }

    #[getter]
    fn fanout_bits(&self) -> u32 {
        self.0.fanout_bits()
    }

    #[getter]
    fn num_leaves(&self) -> u64 {
        self.0.num_leaves()
    }

    fn refined(&self, extra_bits: u32) -> BResult<Self> {
        guarded(|| Ok(Self(Arc::new(self.0.refined(extra_bits)?))))
    }
}

/// The leaf summaries of one side. Serialisable and mergeable (shards), comparable (merkle).
#[pyclass(name = "LeafSet", module = "seamline._core", frozen)]
pub struct PyLeafSet(pub core::LeafSet);

#[pymethods]
impl PyLeafSet {
    #[getter]
    fn num_ranges(&self) -> u64 {
        self.0.num_ranges
    }

    #[getter]
    fn fanout_bits(&self) -> u32 {
        self.0.fanout_bits
    }

    #[getter]
    fn total_rows(&self) -> u64 {
        self.0.total_rows()
    }

    #[getter]
    fn num_nonempty(&self) -> usize {
        self.0.leaves.len()
    }

    /// Hex digest of the merkle root.
    fn merkle_root(&self, py: Python<'_>) -> String {
        let set = &self.0;
        py.detach(|| root_hex(set))
    }

    /// Leaves that differ from `other`. Both sets are here in full, so one merge of the sorted
    /// leaves finds them (the same answer as a top-down walk of the two merkle trees, without
    /// building them: a tree pays off where only roots travel).
    fn mismatched(&self, py: Python<'_>, other: &PyLeafSet) -> BResult<Vec<u64>> {
        let (a, b) = (&self.0, &other.0);
        guarded(|| py.detach(|| a.mismatched(b)).map_err(BoundaryError::from))
    }

    /// `mismatched` and, for each of those leaves, the larger of its two row counts.
    fn mismatched_sizes(&self, py: Python<'_>, other: &PyLeafSet) -> BResult<(Vec<u64>, Vec<u64>)> {
        let (a, b) = (&self.0, &other.0);
        guarded(|| Ok(py.detach(|| a.mismatched_sizes(b))?.into_iter().unzip()))
    }

    /// Add a partial set of the same leaf space (another shard); returns the sum.
    fn merged(&self, other: &PyLeafSet) -> BResult<Self> {
        guarded(|| {
            let mut out = self.0.clone();
            out.merge(&other.0)?;
            Ok(Self(out))
        })
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.to_bytes())
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> BResult<Self> {
        guarded(|| Ok(Self(core::LeafSet::from_bytes(data)?)))
    }
}

/// Rows of one side that fall in a few mismatched leaves, kept for the row diff.
#[pyclass(name = "Collected", module = "seamline._core", frozen)]
pub struct PyCollected(pub core::Collected);

#[pymethods]
impl PyCollected {
    #[getter]
    fn num_rows(&self) -> usize {
        self.0.len()
    }
}

/// The leaf of every row of an in-memory side, filled by its hash pass and read by its collect
/// pass (the same data through the same streams), so the collect pass skips re-hashing keys.
#[pyclass(name = "RowLeaves", module = "seamline._core", frozen)]
pub struct PyRowLeaves(Mutex<Arc<core::RowLeaves>>);

#[pymethods]
impl PyRowLeaves {
    #[new]
    fn new() -> Self {
        Self(Mutex::new(Arc::new(core::RowLeaves::default())))
    }

    /// Rows whose leaf is remembered (0 before the hash pass).
    #[getter]
    fn num_rows(&self) -> usize {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).num_rows()
    }
}

/// The batches of one side's hash pass kept in memory, within `budget` bytes, so the passes after
/// it read them again from here instead of from the store (`hash_pass(..., retain=)`). With
/// `expected_rows`, a side whose first batch shows it would not fit is not kept at all.
#[pyclass(name = "RetainedBatches", module = "seamline._core", frozen)]
pub struct PyRetainedBatches(Arc<core::Retained>);

#[pymethods]
impl PyRetainedBatches {
    #[new]
    #[pyo3(signature = (budget, expected_rows=None))]
    fn new(budget: usize, expected_rows: Option<u64>) -> Self {
        Self(Arc::new(core::Retained::new(budget, expected_rows)))
    }

    /// Whether a whole pass is kept (`streams` gives it again).
    #[getter]
    fn complete(&self) -> bool {
        self.0.complete()
    }

    /// Bytes of the kept batches' buffers.
    #[getter]
    fn nbytes(&self) -> usize {
        self.0.bytes()
    }

    /// Rows kept.
    #[getter]
    fn num_rows(&self) -> usize {
        self.0.rows()
    }

    /// The kept streams as Arrow streams, in the order and batches they were read (None when no
    /// whole pass is kept).
    fn streams(&self) -> Option<Vec<PyRecordBatchReader>> {
        let kept = self.0.replay()?;
        Some(
            kept.into_iter()
                .map(|(schema, batches)| {
                    let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
                    PyRecordBatchReader::new(Box::new(reader))
                })
                .collect(),
        )
    }
}

fn make_filter(parents: Option<Vec<u64>>, shift: u32) -> Option<LeafFilter> {
    parents.map(|p| LeafFilter::new(p, shift))
}

/// What a pass reads and how: the arguments the two passes share.
struct PassArgs<'a> {
    spec: &'a PySideSpec,
    partitioner: &'a PyPartitioner,
    filter: Option<LeafFilter>,
    cancel: Option<&'a PyCancelToken>,
    counter: Option<&'a PyRowCounter>,
    /// Hashing threads (None: one per core).
    workers: Option<usize>,
    /// Keep the batches read, for the passes after this one (`RetainedBatches`).
    retain: Option<Arc<core::Retained>>,
}

/// Import the streams, then run `pass` over them detached from the GIL (see `detached`).
fn run_pass<T: Send>(
    py: Python<'_>,
    streams: &Bound<'_, PyList>,
    args: PassArgs<'_>,
    pass: impl FnOnce(Vec<BatchStream>, &core::PassConfig) -> core::Result<T> + Send,
) -> BResult<T> {
    let imported = import_streams(streams)?;
    let streams = match &args.retain {
        Some(kept) => kept.tee(imported),
        None => imported.into_iter().map(|(_, stream)| stream).collect(),
    };
    let rows_read = args.counter.map(|c| c.0.clone());
    let workers = args.workers.unwrap_or_else(workers).max(1);
    let (spec, partitioner, filter) = (&args.spec.0, &args.partitioner.0, args.filter);
    let out = detached(py, args.cancel, |cancel| {
        let cfg = core::PassConfig {
            spec,
            partitioner,
            filter: filter.as_ref(),
            workers,
            cancel,
            rows_read: rows_read.as_deref(),
        };
        pass(streams, &cfg)
    })?;
    // only a pass that read every stream to its end leaves something whole to replay
    if let Some(kept) = &args.retain {
        kept.seal();
    }
    Ok(out)
}

/// Leaf summaries of every row of `streams` (list of Arrow stream objects), read in parallel.
/// With `parents`, only rows whose `leaf >> shift` is in `parents` count.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // a Python signature: keyword arguments with defaults
#[pyo3(signature = (streams, spec, partitioner, parents=None, shift=0, cancel=None, counter=None, remember=None, workers=None, retain=None))]
pub fn hash_pass(
    py: Python<'_>,
    streams: &Bound<'_, PyList>,
    spec: &PySideSpec,
    partitioner: &PyPartitioner,
    parents: Option<Vec<u64>>,
    shift: u32,
    cancel: Option<&PyCancelToken>,
    counter: Option<&PyRowCounter>,
    remember: Option<&PyRowLeaves>,
    workers: Option<usize>,
    retain: Option<&PyRetainedBatches>,
) -> BResult<PyLeafSet> {
    let filter = make_filter(parents, shift);
    let retain = retain.map(|r| Arc::clone(&r.0));
    let args = PassArgs { spec, partitioner, filter, cancel, counter, workers, retain };
    guarded(|| {
        let Some(remember) = remember else {
            return Ok(PyLeafSet(run_pass(py, streams, args, core::hash_pass)?));
        };
        let (leaves, rows) = run_pass(py, streams, args, core::hash_pass_remembering)?;
        *remember.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(rows);
        Ok(PyLeafSet(leaves))
    })
}

/// Keep the rows of `streams` whose `leaf >> shift` is in `parents`, with their digests. With
/// `known` (filled by a hash pass over the same streams), rows are picked by their remembered leaf.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // a Python signature: keyword arguments with defaults
#[pyo3(signature = (streams, spec, partitioner, parents, shift=0, cancel=None, counter=None, known=None, workers=None))]
pub fn collect_pass(
    py: Python<'_>,
    streams: &Bound<'_, PyList>,
    spec: &PySideSpec,
    partitioner: &PyPartitioner,
    parents: Vec<u64>,
    shift: u32,
    cancel: Option<&PyCancelToken>,
    counter: Option<&PyRowCounter>,
    known: Option<&PyRowLeaves>,
    workers: Option<usize>,
) -> BResult<PyCollected> {
    let filter = make_filter(Some(parents), shift);
    let args = PassArgs { spec, partitioner, filter, cancel, counter, workers, retain: None };
    let known = known.map_or_else(
        || Arc::new(core::RowLeaves::default()),
        |k| k.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone(),
    );
    let pass = move |streams, cfg: &core::PassConfig| core::collect_pass_known(streams, cfg, &known);
    guarded(|| Ok(PyCollected(run_pass(py, streams, args, pass)?)))
}

/// Classify the differing keys of two collected sides. Returns (source rows, target rows,
/// differences), pyarrow Tables: the rows the differences point at (None when a side kept
/// nothing), and one row per difference: kind, source_row, target_row (indexes into those
/// tables), columns (value column indexes), duplicate_side, occurrences.
#[pyfunction]
#[allow(clippy::type_complexity)] // a Python tuple
pub fn classify<'py>(
    py: Python<'py>,
    source: &PyCollected,
    target: &PyCollected,
    n_values: usize,
) -> BResult<(Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>, Bound<'py, PyAny>)> {
    let (diffs, src_rows, dst_rows) = guarded(|| {
        Ok(py.detach(|| {
            let mut diffs = core::classify(&source.0, &target.0, n_values, workers())?;
            let (s, t) = core::compact(&source.0, &target.0, &mut diffs)?;
            Ok::<_, core::CoreError>((core::differences_batch(&diffs)?, s, t))
        })?)
    })?;
    let table = |batch: RecordBatch| PyTable::try_new(vec![batch.clone()], batch.schema())?.into_pyarrow(py);
    Ok((src_rows.map(table).transpose()?, dst_rows.map(table).transpose()?, table(diffs)?))
}

/// Row indexes of `sample` (an Arrow stream of key rows) sorted by canonical key order, one per
/// distinct key: the candidates for range boundaries.
#[pyfunction]
pub fn sorted_unique_rows(sample: &Bound<'_, PyAny>, spec: &PySideSpec) -> BResult<Vec<usize>> {
    guarded(|| {
        let mut keys = Vec::new();
        for batch in read_all(sample)? {
            keys.extend(core::digest::ordering_keys(&batch, &spec.0)?);
        }
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        order.dedup_by(|a, b| keys[*a] == keys[*b]);
        Ok(order)
    })
}

/// The hex digest of a leaf set's merkle root.
fn root_hex(set: &core::LeafSet) -> String {
    format!("{:032x}", core::MerkleTree::root_of(set))
}

/// The merkle roots of two leaf sets (a run's two sides), computed at once on two threads: each is
/// ~40 ms at 2^20 leaves, and the run waits for both before its diff starts.
#[pyfunction]
pub fn merkle_roots(py: Python<'_>, a: &PyLeafSet, b: &PyLeafSet) -> BResult<(String, String)> {
    let (a, b) = (&a.0, &b.0);
    guarded(|| {
        Ok(py.detach(|| {
            std::thread::scope(|scope| {
                let other = scope.spawn(|| root_hex(b));
                let first = root_hex(a);
                (first, other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            })
        }))
    })
}

/// Runs of consecutive ranges covering the given sorted leaves: [(first_range, last_range)].
#[pyfunction]
pub fn coalesce_ranges(leaves: Vec<u64>, fanout_bits: u32) -> Vec<(u64, u64)> {
    core::coalesce_ranges(&leaves, fanout_bits)
}
