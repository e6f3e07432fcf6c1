//! Parallel consumption of many Arrow streams: one thread per stream reads batches, a pool of
//! workers digests them. Batches may arrive in any order; each worker keeps its own partial result
//! (leaves or collected rows), merged at the end, so no locks sit on the hot path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;

use crate::error::{CoreError, Result};

pub type BatchStream = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send>;

/// Large batches are cut into slices of this many rows so every worker gets a share.
const SLICE_ROWS: usize = 65_536;

/// Where a slice came from: (stream index, slice number within the stream). Reading the same
/// in-memory data again through the same streams gives every slice the same tag.
pub type SliceTag = (u32, u64);

/// Run `step` over every batch (sliced, tagged) of every stream on `workers` threads. Each worker starts from
/// `init()`; the per-worker states are returned. Stops early (and returns the first error) when a
/// stream or a step fails, or when `cancel` is set (then `CoreError::Cancelled`).
pub fn run_parallel<S, I, F>(
    streams: Vec<BatchStream>,
    workers: usize,
    cancel: &AtomicBool,
    init: I,
    step: F,
) -> Result<Vec<S>>
where
    S: Send,
    I: Fn() -> S + Sync,
    F: Fn(&mut S, SliceTag, RecordBatch) -> Result<()> + Sync,
{
    let workers = workers.max(1);
    let (tx, rx) = crossbeam_channel::bounded::<(SliceTag, RecordBatch)>(workers * 2);
    let first_error: Mutex<Option<CoreError>> = Mutex::new(None);
    let fail = |e: CoreError| {
        let mut slot = first_error.lock().unwrap();
        slot.get_or_insert(e);
        cancel.store(true, Ordering::SeqCst);
    };
    let states = std::thread::scope(|scope| {
        for (index, stream) in streams.into_iter().enumerate() {
            let tx = tx.clone();
            let fail = &fail;
            scope.spawn(move || {
                let mut seq = 0u64;
                for item in stream {
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    match item {
                        Ok(batch) => {
                            let mut offset = 0;
                            while offset < batch.num_rows() {
                                let len = SLICE_ROWS.min(batch.num_rows() - offset);
                                if tx.send(((index as u32, seq), batch.slice(offset, len))).is_err() {
                                    return;
                                }
                                offset += len;
                                seq += 1;
                            }
                        }
                        Err(e) => return fail(CoreError::Stream(e)),
                    }
                }
            });
        }
        drop(tx);
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                let (init, step, fail) = (&init, &step, &fail);
                scope.spawn(move || {
                    let mut state = init();
                    for (tag, batch) in rx.iter() {
                        if cancel.load(Ordering::Relaxed) {
                            continue; // drain so readers can finish
                        }
                        if let Err(e) = step(&mut state, tag, batch) {
                            fail(e);
                        }
                    }
                    state
                })
            })
            .collect();
        // a worker's panic goes on with its own message (the bindings turn it into an error)
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Vec<S>>()
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    if cancel.load(Ordering::SeqCst) {
        return Err(CoreError::Cancelled);
    }
    Ok(states)
}
