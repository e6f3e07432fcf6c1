//! Batches a pass read from one side, kept within a byte budget so the passes after it (refinement,
//! the diff) read them from memory instead of asking the store again. For a store that fetches
//! every document of a re-read range one by one (OpenSearch), the diff pass's scattered fetches
//! cost more than holding the side: a kept side is replayed stream for stream, batch for batch, so
//! a hash pass's remembered leaves (`RowLeaves`) line up with the replay.

use std::sync::{Arc, Mutex, MutexGuard};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};

use crate::scan::BatchStream;

/// What was kept of one side, or why nothing is.
#[derive(Debug)]
pub struct Retained {
    budget: usize,
    /// Rows the side is expected to hold (None: unknown): the first batch's bytes per row times
    /// this is what keeping the side would cost, and past the budget nothing is kept from the start
    expected_rows: Option<u64>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    schemas: Vec<SchemaRef>,
    streams: Vec<Vec<RecordBatch>>,
    bytes: usize,
    rows: usize,
    /// The budget was (or would be) passed: everything kept was let go, nothing more is kept.
    over: bool,
    /// Every stream was read to its end without an error: the kept batches are the whole read.
    sealed: bool,
}

impl Retained {
    pub fn new(budget: usize, expected_rows: Option<u64>) -> Self {
        Self { budget, expected_rows, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wrap a pass's streams (with their schemas) so every batch they yield is kept too. Only one
    /// pass may be kept: a second call keeps nothing.
    pub fn tee(self: &Arc<Self>, streams: Vec<(SchemaRef, BatchStream)>) -> Vec<BatchStream> {
        let mut state = self.state();
        let fresh = state.streams.is_empty() && !state.over && !state.sealed;
        if fresh {
            state.schemas = streams.iter().map(|(schema, _)| schema.clone()).collect();
            state.streams = vec![Vec::new(); streams.len()];
        }
        drop(state);
        streams
            .into_iter()
            .enumerate()
            .map(|(index, (_, inner))| {
                if fresh {
                    Box::new(Tee { inner, index, kept: Arc::clone(self) }) as BatchStream
                } else {
                    inner
                }
            })
            .collect()
    }

    fn keep(&self, index: usize, batch: &RecordBatch) {
        let mut state = self.state();
        if state.over || state.sealed {
            return;
        }
        let bytes = batch.get_array_memory_size();
        let projected = match (state.rows, self.expected_rows) {
            (0, Some(expected)) if batch.num_rows() > 0 => {
                (bytes as f64 / batch.num_rows() as f64 * expected as f64) as usize
            }
            _ => 0,
        };
        if state.bytes + bytes > self.budget || projected > self.budget {
            state.over = true;
            state.streams = Vec::new();
            state.bytes = 0;
            state.rows = 0;
            return;
        }
        state.bytes += bytes;
        state.rows += batch.num_rows();
        state.streams[index].push(batch.clone());
    }

    /// The pass that was kept read every stream to its end: from now on the kept batches are the
    /// side (until then, a failed or cancelled pass leaves nothing to replay).
    pub fn seal(&self) {
        let mut state = self.state();
        if !state.over && !state.schemas.is_empty() {
            state.sealed = true;
        }
    }

    /// The kept streams again (their batches share the kept buffers), or None when nothing whole
    /// was kept.
    pub fn replay(&self) -> Option<Vec<(SchemaRef, Vec<RecordBatch>)>> {
        let state = self.state();
        if !state.sealed {
            return None;
        }
        Some(state.schemas.iter().cloned().zip(state.streams.iter().cloned()).collect())
    }

    /// Whether a whole pass is kept (`replay` gives it).
    pub fn complete(&self) -> bool {
        self.state().sealed
    }

    /// Bytes of the kept batches' buffers.
    pub fn bytes(&self) -> usize {
        self.state().bytes
    }

    /// Rows kept.
    pub fn rows(&self) -> usize {
        self.state().rows
    }
}

/// A stream whose batches are also handed to its `Retained`.
struct Tee {
    inner: BatchStream,
    index: usize,
    kept: Arc<Retained>,
}

impl Iterator for Tee {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next();
        if let Some(Ok(batch)) = &item {
            self.kept.keep(self.index, batch);
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array};
    use arrow_schema::{DataType, Field, Schema};

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec())) as ArrayRef]).unwrap()
    }

    fn streams(parts: &[&[&[i64]]]) -> Vec<(SchemaRef, BatchStream)> {
        parts
            .iter()
            .map(|stream| {
                let batches: Vec<_> = stream.iter().map(|b| Ok(batch(b))).collect();
                (batch(&[]).schema(), Box::new(batches.into_iter()) as BatchStream)
            })
            .collect()
    }

    fn drain(streams: Vec<BatchStream>) -> Vec<Vec<Vec<i64>>> {
        streams
            .into_iter()
            .map(|s| {
                s.map(|b| {
                    let b = b.unwrap();
                    let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    col.values().to_vec()
                })
                .collect()
            })
            .collect()
    }

    #[test]
    fn replays_stream_for_stream_once_sealed() {
        let kept = Arc::new(Retained::new(1 << 20, None));
        let read = drain(kept.tee(streams(&[&[&[1, 2], &[3]], &[&[4]]])));
        assert!(kept.replay().is_none(), "nothing to replay before the pass is sealed");
        kept.seal();
        let again: Vec<Vec<Vec<i64>>> = kept
            .replay()
            .unwrap()
            .into_iter()
            .map(|(_, batches)| {
                batches
                    .iter()
                    .map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                    .collect()
            })
            .collect();
        assert_eq!(read, again);
        assert_eq!(kept.rows(), 4);
    }

    #[test]
    fn past_the_budget_keeps_nothing() {
        let one = batch(&[1, 2, 3, 4]).get_array_memory_size();
        let kept = Arc::new(Retained::new(one + one / 2, None));
        drain(kept.tee(streams(&[&[&[1, 2, 3, 4], &[5, 6, 7, 8]]])));
        kept.seal();
        assert!(kept.replay().is_none());
        assert_eq!((kept.bytes(), kept.rows()), (0, 0));
    }

    #[test]
    fn a_side_projected_past_the_budget_is_not_kept_from_its_first_batch() {
        let one = batch(&[1, 2]).get_array_memory_size();
        let kept = Arc::new(Retained::new(one * 4, Some(1_000)));
        let mut tee = kept.tee(streams(&[&[&[1, 2], &[3, 4]]]));
        tee[0].next().unwrap().unwrap();
        assert_eq!(kept.rows(), 0, "1,000 expected rows at this size pass the budget");
        drain(tee);
        kept.seal();
        assert!(!kept.complete());
    }

    #[test]
    fn only_the_first_pass_is_kept() {
        let kept = Arc::new(Retained::new(1 << 20, None));
        drain(kept.tee(streams(&[&[&[1]]])));
        kept.seal();
        drain(kept.tee(streams(&[&[&[9, 9]]])));
        assert_eq!(kept.rows(), 1);
    }
}
